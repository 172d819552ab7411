"""``deepfake-detector run``: the long-running service."""

from __future__ import annotations

import logging
import threading

from app.control import ControlServer
from app.service import Service
from app.signals import handle_signals
from detector.config import Config
from detector.errors import DetectorError, SourceError
from detector.stream_status import StreamStatus
from detector.stream_urls import default_stream_id, url_kind
from detector.url_mask import mask_url
from producers.factory import check_source, make_source

log = logging.getLogger(__name__)


def run_service(config: Config, exit_when_done: bool = False, extra_urls: list[str] = ()) -> int:
    """Serve ``config.streams`` (plus ``extra_urls``) and control requests until Ctrl-C.

    The first Ctrl-C (or SIGTERM) drains frames in flight and stops; a second forces.
    """
    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        log.warning("stopping: draining frames in flight (Ctrl-C again to force)")
        stop.set()

    restore_signals = handle_signals(on_signal)
    service = Service(config)
    control = None
    try:
        service.start()
        print(f"Redis: {mask_url(service.redis_url)} (channel {service.keys.scores_channel}); "
              f"frames endpoint {service.endpoints.frames}", flush=True)

        def attach(stream_id: str, url: str, stride: int | None) -> str:
            existing = service.collector.stream(stream_id)
            if existing is not None and not existing.done.is_set():
                raise SourceError(f"stream id {stream_id!r} is already running")
            check_source(url)
            source = make_source(url, stream_id, config.sources)
            service.add_source(source, stride)
            return f"attached {stream_id} ({source.display_url})"

        def detach(stream_id: str) -> str:
            if not service.detach_stream(stream_id):
                raise SourceError(f"no stream with id {stream_id!r}")
            return (f"detached {stream_id}; its history stays in Redis for "
                    f"{config.redis.finished_ttl_s:.0f} s (redis.finished_ttl_s)")

        control = ControlServer(service.sink.client, service.keys, attach, detach).start()
        streams = [(s.id, s.url, s.stride) for s in config.streams]
        streams += [(default_stream_id(url), url, None) for url in extra_urls]
        for stream_id, url, stride in streams:
            try:
                attach(stream_id, url, stride)
            except DetectorError as exc:
                # Registered as failed below; the collector logs that once.
                try:
                    kind = "file" if url_kind(url) == "file" else "live"
                except SourceError:
                    kind = "file"
                service.collector.register(stream_id, mask_url(url), kind)
                service.collector.fail(stream_id, str(exc))
        if not streams:
            log.warning("no streams configured: add [[streams]] to config.toml or use "
                        "`deepfake-detector attach URL`")
        while not stop.wait(0.5):
            control.supervise()
            if service.fatal_error:
                break
            if exit_when_done and all(s.done.is_set() for s in service.collector.streams()):
                break
    finally:
        if control is not None:
            control.stop()
        service.stop(drain=True)
        restore_signals()
    if service.fatal_error:
        raise DetectorError(service.fatal_error)
    failed = [s.stream_id for s in service.collector.streams() if s.status == StreamStatus.FAILED]
    return 1 if exit_when_done and failed else 0
