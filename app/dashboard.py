"""The ``deepfake-detector dashboard`` entry point: hands the dashboard its tools and serves it.

The dashboard (``consumers/dashboard/``) reads Redis only; upload scoring, frame reading and the
control client are built here and handed to it.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

import dash
import redis

from app.control import send_request
from app.frame_reader import read_frame
from app.signals import handle_signals
from app.upload import UploadScorer
from consumers.dashboard import create_app
from consumers.dashboard.layout import REFRESH_INTERVAL_MS
from consumers.dashboard.services import DashboardServices
from detector.config import Config
from detector.errors import DetectorError
from detector.redis_keys import RedisKeys
from detector.url_mask import mask_url
from producers.factory import check_source

log = logging.getLogger(__name__)

CONTROL_TIMEOUT_S = 10.0


def control_client_factory(redis_url: str, socket_timeout_s: float) -> Callable[[], redis.Redis]:
    """A lazily created client for control requests: its timeout outlasts BLPOP's 1 s wait."""
    lock = threading.Lock()
    holder: list[redis.Redis] = []

    def get() -> redis.Redis:
        with lock:
            if not holder:
                holder.append(redis.Redis.from_url(
                    redis_url, socket_timeout=max(3.0, socket_timeout_s),
                    socket_connect_timeout=max(1.0, min(socket_timeout_s, 3.0))))
            return holder[0]

    return get


def dashboard_services(config: Config, redis_url: str) -> DashboardServices:
    """The dashboard's tools: the workers' scoring for uploads, PyAV frame reading, control."""
    client = control_client_factory(redis_url, config.redis.socket_timeout_s)
    keys = RedisKeys(config.redis.prefix)

    def send_control(op: str, stream_id: str, url: str | None,
                     stride: int | None) -> dict[str, Any]:
        if op == "attach" and url:
            check_source(url)  # a missing file is refused on the page, before any request
        return send_request(client(), keys, op, stream_id, url=url, stride=stride,
                            timeout_s=CONTROL_TIMEOUT_S)

    return DashboardServices(uploads=UploadScorer(config), read_frame=read_frame,
                             send_control=send_control)


def dashboard_app(config: Config, redis_url: str,
                  refresh_interval_ms: int = REFRESH_INTERVAL_MS) -> dash.Dash:
    """The dashboard app for ``config`` reading ``redis_url``, with its tools wired in."""
    return create_app(redis_url, config.redis, config.dashboard,
                      dashboard_services(config, redis_url), refresh_interval_ms)


def _check_port_free(host: str, port: int) -> None:
    """Werkzeug answers a taken port with its own paragraph and exit 1; say it in one sentence.

    Raises:
        DetectorError: ``host:port`` cannot be listened on.
    """
    import socket

    try:
        with socket.create_server((host, port), reuse_port=False):
            pass
    except OSError as exc:
        raise DetectorError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
                            "choose another port with --port") from None


def run_dashboard(config: Config, redis_url: str, host: str | None = None,
                  port: int | None = None) -> int:
    """Serve the dashboard until Ctrl-C or SIGTERM.

    Both get a handler of their own (``app.signals``), as ``run``'s do, rather than Python's
    KeyboardInterrupt, which a process started in the background may not have; SIGTERM (``kill``,
    ``docker stop``) would otherwise kill it without closing the socket.

    Args:
        host: interface to listen on (default ``dashboard.host``, 127.0.0.1).
        port: port (default ``dashboard.port``, 8050).
    Returns:
        the exit status.
    """
    host = host or config.dashboard.host
    port = port or config.dashboard.port
    app = dashboard_app(config, redis_url)
    if not log.isEnabledFor(logging.DEBUG):
        # The page polls several times a second; one log line per request drowns the rest.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from werkzeug.serving import make_server

    # Served by werkzeug directly: app.run would add Dash's "Dash is running on …" and Flask's
    # "Serving Flask app" banner to the one line below.
    _check_port_free(host, port)
    server = make_server(host, port, app.server, threaded=True)
    print(f"dashboard: http://{host}:{server.server_port}/ (reading Redis {mask_url(redis_url)}; "
          "Ctrl-C stops)", file=sys.stderr, flush=True)

    def on_signal(signum, frame):
        # serve_forever runs in this thread and shutdown() waits for it to return: ask from another.
        threading.Thread(target=server.shutdown, name="dashboard-stop", daemon=True).start()

    restore_signals = handle_signals(on_signal)
    try:
        server.serve_forever()
    finally:
        restore_signals()
        server.server_close()
    log.info("dashboard stopped")
    return 0
