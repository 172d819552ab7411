"""The dashboard's app factory and the ``deepfake-detector dashboard`` entry point."""

from __future__ import annotations

import logging

import dash

from consumers.dashboard.callbacks import control_client_factory, register_callbacks
from consumers.dashboard.layout import REFRESH_INTERVAL_MS, build_layout
from consumers.dashboard.redis_reader import DashboardReader
from consumers.dashboard.upload import UploadScorer
from detector.config import Config, mask_url

log = logging.getLogger(__name__)

# dcc.Upload sends the file base64-encoded inside a JSON callback body.
BASE64_OVERHEAD = 4 / 3
REQUEST_SLACK_BYTES = 1_000_000


def create_app(config: Config, redis_url: str,
               refresh_interval_ms: int = REFRESH_INTERVAL_MS) -> dash.Dash:
    """Build the Dash app. Nothing connects or loads a model yet: Redis is polled by the page
    (an unreachable Redis shows "disconnected") and the model loads on the first upload.

    Args:
        config: the loaded config (redis.prefix, dashboard, model, faces, sampling, scoring).
        redis_url: the Redis that the service writes to.
        refresh_interval_ms: how often the live views poll Redis.
    Returns:
        the app; ``app.server`` is its Flask server.
    """
    reader = DashboardReader(redis_url, config.redis.prefix,
                             socket_timeout_s=min(1.0, config.redis.socket_timeout_s))
    uploads = UploadScorer(config)
    app = dash.Dash(__name__, title="Deepfake detector", update_title=None)
    # The page refuses oversize files before sending them (a clientside check); this refuses
    # bodies far above the limit from any other client before Flask reads them.
    app.server.config["MAX_CONTENT_LENGTH"] = int(
        uploads.max_bytes * BASE64_OVERHEAD * 1.1 + REQUEST_SLACK_BYTES)
    app.layout = build_layout(reader.display_url, config.dashboard.max_upload_mb,
                              refresh_interval_ms)
    register_callbacks(app, reader, uploads,
                       control_client_factory(redis_url, config.redis.socket_timeout_s))
    return app


def run_dashboard(config: Config, redis_url: str, host: str | None = None,
                  port: int | None = None) -> int:
    """Serve the dashboard until Ctrl-C.

    Args:
        host: interface to listen on (default ``dashboard.host``, 127.0.0.1).
        port: port (default ``dashboard.port``, 8050).
    Returns:
        the exit status.
    """
    host = host or config.dashboard.host
    port = port or config.dashboard.port
    app = create_app(config, redis_url)
    if not log.isEnabledFor(logging.DEBUG):
        # The page polls several times a second; one log line per request drowns the rest.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    log.info("dashboard on http://%s:%d/ reading Redis %s", host, port, mask_url(redis_url))
    try:
        app.run(host=host, port=port, debug=False)
    except KeyboardInterrupt:
        log.info("dashboard stopped")
    return 0
