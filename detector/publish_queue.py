"""A bounded queue in front of the Redis sink, so that a stalled or dead Redis never holds up
result intake: the collector hands writes over and goes on scoring; one thread writes them.

While Redis does not answer, writes wait in the queue and are retried. The thumbnail, the kept
frame, the heartbeat and a stream's status refreshes keep only their latest value (one queued
write each, updated in place), so they never pile up; a status *change* is always queued, so
the events channel still shows every change. Score messages queue up to ``max_scores``;
past it the oldest is shed, counted and logged (first five, then one per ``SHED_LOG_EVERY``).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from detector.records import ScoreRecord, StatusRecord
from detector.redis_sink import RETRY_INTERVAL_S, RedisSink

log = logging.getLogger(__name__)

SHED_LOG_EVERY = 1000


@dataclass
class _Write:
    method: str
    args: tuple
    kwargs: dict = field(default_factory=dict)
    key: tuple | None = None  # writes with a key keep only their latest value
    is_sheddable: bool = False


def _mergeable(pending: _Write, write: _Write) -> bool:
    """A status change is never merged away (the events channel shows every change); a refresh
    of the same status replaces the queued one."""
    if write.method != "set_status":
        return True
    return pending.args[0].status == write.args[0].status


class PublishQueue:
    """Queued, non-blocking stand-in for :class:`RedisSink` (same write methods).

    Args:
        sink: the synchronous writer the queue's thread calls.
        max_scores: score messages held while Redis is slow or away; older ones are shed.
    """

    def __init__(self, sink: RedisSink, max_scores: int = 1000):
        self.sink = sink
        self.client = sink.client
        self.keys = sink.keys
        self._max_scores = max_scores
        self._writes: collections.deque[_Write] = collections.deque()
        self._latest: dict[tuple, _Write] = {}
        self._scores = 0
        self._cond = threading.Condition()
        self._closed = False
        self._in_flight: _Write | None = None
        self.shed = 0
        self.written = 0
        self._thread = threading.Thread(target=self._loop, name="redis-publisher", daemon=True)
        self._thread.start()

    # --- the RedisSink write methods, queued ---------------------------------------------------
    def publish_score(self, record: ScoreRecord) -> bool:
        return self._put(_Write("publish_score", (record,), is_sheddable=True))

    def set_status(self, record: StatusRecord) -> bool:
        return self._put(_Write("set_status", (record,), key=("status", record.stream_id)))

    def set_thumbnail(self, stream_id: str, jpeg: bytes, ttl_s: int = 3600) -> bool:
        return self._put(_Write("set_thumbnail", (stream_id, jpeg), {"ttl_s": ttl_s},
                                key=("thumbnail", stream_id)))

    def set_frame(self, stream_id: str, frame_index: int, jpeg: bytes, ttl_s: int = 3600) -> bool:
        return self._put(_Write("set_frame", (stream_id, frame_index, jpeg), {"ttl_s": ttl_s},
                                key=("frame", stream_id)))

    def heartbeat(self, info: dict[str, Any], ttl_s: int = 10) -> bool:
        return self._put(_Write("heartbeat", (info,), {"ttl_s": ttl_s}, key=("heartbeat",)))

    def clear_stream(self, stream_id: str) -> bool:
        return self._put(_Write("clear_stream", (stream_id,)), ends_stream=stream_id)

    def forget_stream(self, stream_id: str, keep_history_s: float = 0.0) -> bool:
        return self._put(_Write("forget_stream", (stream_id, keep_history_s)), ends_stream=stream_id)

    def forget_expired(self, now_s: float | None = None) -> list[str]:
        return self.sink.forget_expired(now_s)  # at start-up only, before any stream runs

    @property
    def is_connected(self) -> bool:
        return self.sink.is_connected

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._writes)

    # --- queue --------------------------------------------------------------------------------
    def _put(self, write: _Write, ends_stream: str | None = None) -> bool:
        with self._cond:
            if self._closed:
                return False
            if ends_stream is not None:
                # later writes for this stream must land after this one, not merge into older ones
                for key in [k for k in self._latest if len(k) > 1 and k[1] == ends_stream]:
                    del self._latest[key]
            pending = self._latest.get(write.key) if write.key is not None else None
            if pending is not None and pending is not self._in_flight and _mergeable(pending, write):
                pending.args, pending.kwargs = write.args, write.kwargs
                return True
            if write.is_sheddable:
                if self._scores >= self._max_scores:
                    self._shed_oldest_score()
                self._scores += 1
            self._writes.append(write)
            if write.key is not None:
                self._latest[write.key] = write
            self._cond.notify()
        return True

    def _shed_oldest_score(self) -> None:
        for i, pending in enumerate(self._writes):
            if pending.is_sheddable:
                del self._writes[i]
                self._scores -= 1
                self.shed += 1
                if self.shed <= 5 or self.shed % SHED_LOG_EVERY == 0:
                    log.warning("Redis is not keeping up: shed the oldest queued score message "
                                "(%d shed so far; scoring goes on)", self.shed)
                return

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._writes and not self._closed:
                    self._cond.wait()
                if not self._writes:
                    return
                write = self._writes[0]
                self._in_flight = write
                args, kwargs = write.args, write.kwargs
            is_written = self._write(write.method, args, kwargs)
            with self._cond:
                self._in_flight = None
                if is_written or self._closed:
                    if self._writes and self._writes[0] is write:
                        self._writes.popleft()
                        if write.is_sheddable:
                            self._scores -= 1
                        if write.key is not None and self._latest.get(write.key) is write:
                            del self._latest[write.key]
                    self.written += is_written
                    self._cond.notify_all()
                    continue
                self._cond.wait(RETRY_INTERVAL_S)  # Redis is away: retry the same write

    def _write(self, method: str, args: tuple, kwargs: dict) -> bool:
        try:
            return bool(getattr(self.sink, method)(*args, **kwargs))
        except Exception:  # a bad record must not stop publishing
            log.exception("writing %s to Redis failed; dropped", method)
            return True

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued write is written (True) or ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._writes or self._in_flight is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued (for at most ``timeout_s``), then stop the thread."""
        if not self.flush(timeout_s) and self._writes:
            log.warning("Redis did not take %d queued writes before stopping; dropped them",
                        len(self._writes))
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
