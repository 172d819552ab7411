"""The dashboard's app factory: the page, its Redis reader and the tools app/ hands it."""

from __future__ import annotations

import dash

from consumers.dashboard.callbacks import register_callbacks
from consumers.dashboard.layout import REFRESH_INTERVAL_MS, build_layout
from consumers.dashboard.redis_reader import DashboardReader
from consumers.dashboard.services import DashboardServices
from detector.config import DashboardConfig, RedisConfig

# dcc.Upload sends the file base64-encoded inside a JSON callback body.
BASE64_OVERHEAD = 4 / 3
REQUEST_SLACK_BYTES = 1_000_000


def create_app(redis_url: str, redis_config: RedisConfig, dashboard_config: DashboardConfig,
               services: DashboardServices,
               refresh_interval_ms: int = REFRESH_INTERVAL_MS) -> dash.Dash:
    """Build the Dash app. Nothing connects or loads a model yet: Redis is polled by the page
    (an unreachable Redis shows "disconnected") and the model loads on the first upload.

    Args:
        redis_url: the Redis that the service writes to.
        redis_config: the ``[redis]`` section (key prefix, socket timeout).
        dashboard_config: the ``[dashboard]`` section (upload limit).
        services: upload scoring, frame reading and the control client (from app/).
        refresh_interval_ms: how often the live views poll Redis.
    Returns:
        the app; ``app.server`` is its Flask server.
    """
    reader = DashboardReader(redis_url, redis_config.prefix,
                             socket_timeout_s=min(1.0, redis_config.socket_timeout_s))
    # No handler of Dash's own: its "Dash is running on …" would print beside our logging's
    # copy; the command prints the address once itself.
    app = dash.Dash(__name__, title="Deepfake detector", update_title=None, add_log_handler=False)
    # The page refuses oversize files before sending them (a clientside check); this refuses
    # bodies far above the limit from any other client before Flask reads them.
    app.server.config["MAX_CONTENT_LENGTH"] = int(
        services.uploads.max_bytes * BASE64_OVERHEAD * 1.1 + REQUEST_SLACK_BYTES)
    app.layout = build_layout(reader.display_url, dashboard_config.max_upload_mb,
                              refresh_interval_ms)
    register_callbacks(app, reader, services)
    return app
