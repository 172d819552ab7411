"""The live reader loop: read a camera forever, reconnecting with capped exponential backoff.

Statuses published per stream (docs/live-sources.md):
``connecting`` (first open) → ``running`` (frames flow) → ``stalled`` (no frame for
``sources.stall_timeout_s``) / ``reconnecting`` (EOF, error or stall; retried after a backoff
that doubles from ``reconnect_min_s`` up to ``reconnect_max_s``) → ``running`` again … until the
stream is detached (``stopped``). ``failed`` is only for URLs that can never work; those are
refused when the source is built, so this loop never gives up.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from detector.config import SourcesConfig
from detector.errors import SourceError
from detector.stream_status import StreamStatus
from producers.hub import (
    ProducerHub,
    ReaderLoop,
    StreamHandle,
)

log = logging.getLogger(__name__)


def backoff_delay_s(attempt: int, min_s: float, max_s: float) -> float:
    """Wait before reconnect ``attempt`` (1-based): ``min_s · 2^(attempt-1)``, capped at ``max_s``.

    Raises:
        ValueError: ``attempt < 1``, ``min_s <= 0`` or ``max_s < min_s``.
    """
    if attempt < 1:
        raise ValueError(f"expected attempt >= 1, got {attempt}")
    if min_s <= 0 or max_s < min_s:
        raise ValueError(f"expected 0 < min_s <= max_s, got {min_s}, {max_s}")
    return min(max_s, min_s * 2.0 ** min(attempt - 1, 62))


def make_live_reader(sources: SourcesConfig) -> ReaderLoop:
    """The reader loop for live sources (``ProducerHub(live_reader=…)``), with these settings."""

    def reader(hub: ProducerHub, handle: StreamHandle) -> None:
        run_live_reader(hub, handle, sources)

    return reader


def run_live_reader(hub: ProducerHub, handle: StreamHandle, sources: SourcesConfig) -> None:
    """Read ``handle.source`` until ``handle.stop`` is set, reopening it after every failure.

    Frame indices keep counting across reconnects, so rolling scores stay ordered.
    """
    source = handle.source
    stream_id = source.stream_id
    info = {"source": source.display_url, "kind": "live"}
    next_index = 0
    attempt = 0  # consecutive failed sessions (no frame since the last reopen)
    hub.report(handle, StreamStatus.CONNECTING, **info)
    while not handle.stop.is_set():
        session_frames = 0
        is_open = False
        last_frame_s = time.monotonic()
        error = None
        try:
            source.open()
            is_open = True
            last_frame_s = time.monotonic()
            for frame in source.frames():
                if handle.stop.is_set():
                    break
                last_frame_s = time.monotonic()
                if session_frames == 0:
                    attempt = 0
                    hub.report(handle, StreamStatus.RUNNING, **info)
                    log.info("stream %s: frames flowing from %s", stream_id, source.display_url)
                session_frames += 1
                hub.offer(handle, dataclasses.replace(frame, frame_index=next_index))
                next_index += 1
            if not handle.stop.is_set():
                error = "the camera ended the stream"
        except SourceError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - one broken camera must not stop the others
            # the type only: a library's message or traceback may quote the URL with credentials
            error = f"{source.display_url}: unexpected error ({exc.__class__.__name__})"
            log.error("stream %s: %s", stream_id, error)
        finally:
            source.close()
        if handle.stop.is_set():
            break
        attempt += 1
        handle.counters.reconnects += 1
        delay_s = backoff_delay_s(attempt, sources.reconnect_min_s, sources.reconnect_max_s)
        stalled_s = time.monotonic() - last_frame_s
        if is_open and stalled_s >= sources.stall_timeout_s * 0.9:
            hub.report(handle, StreamStatus.STALLED, error=error, stalled_s=round(stalled_s, 1), **info)
        hub.report(handle, StreamStatus.RECONNECTING, error=error, retry_in_s=delay_s, attempt=attempt, **info)
        log.warning("stream %s: %s; reconnecting in %.1f s (attempt %d)",
                    stream_id, error, delay_s, attempt)
        handle.stop.wait(delay_s)
    handle.is_done = True
    hub.report(handle, StreamStatus.STOPPED, **info)
    log.info("stream %s stopped after %d reconnects", stream_id, handle.counters.reconnects)
