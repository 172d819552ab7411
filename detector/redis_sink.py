"""Writes the Redis contract (docs/redis.md): score channel, latest state, history, stream list.

A Redis outage never stops the service: writes fail fast, the outage is logged once, and
publishing resumes when Redis answers again. The service puts a bounded queue in front of it
(detector/publish_queue.py), so a stalled Redis never holds up scoring.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any

import redis

from detector.records import ScoreRecord, StatusRecord, record_expired, removed_event
from detector.redis_keys import RedisKeys

log = logging.getLogger(__name__)

RETRY_INTERVAL_S = 1.0


class RedisSink:
    """Thread-safe writer of scores and stream status.

    Args:
        client: a redis-py client (its own connection pool makes it thread-safe).
        keys: key templates under the configured prefix.
        history_maxlen: approximate length cap of each ``history`` stream.
    """

    def __init__(self, client: redis.Redis, keys: RedisKeys, history_maxlen: int):
        self.client = client
        self.keys = keys
        self.history_maxlen = history_maxlen
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._next_try_s = 0.0
        self.failed_writes = 0

    @property
    def is_connected(self) -> bool:
        return self._down_since is None

    def _run(self, what: str, fn) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._down_since is not None and now < self._next_try_s:
                self.failed_writes += 1
                return False
        try:
            fn()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            with self._lock:
                self.failed_writes += 1
                self._next_try_s = time.monotonic() + RETRY_INTERVAL_S
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    log.warning("Redis unreachable (%s); scores are not published until it is back", exc)
            return False
        with self._lock:
            if self._down_since is not None:
                log.warning("Redis is back after %.1f s; publishing resumed",
                            time.monotonic() - self._down_since)
                self._down_since = None
        return True

    def publish_score(self, record: ScoreRecord) -> bool:
        """PUBLISH the score message, SET the stream's latest state, XADD its history."""
        stream_id = record.stream_id
        payload = record.to_redis()
        history = record.history_entry().to_redis()

        def write() -> None:
            pipe = self.client.pipeline(transaction=False)
            pipe.publish(self.keys.scores_channel, payload)
            pipe.set(self.keys.latest(stream_id), payload)
            pipe.xadd(self.keys.history(stream_id), history,
                      maxlen=self.history_maxlen, approximate=True)
            pipe.execute()

        return self._run("score", write)

    def set_status(self, record: StatusRecord) -> bool:
        """HSET the stream's status record and PUBLISH it on the events channel."""
        payload = record.to_redis()

        def write() -> None:
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(self.keys.streams, record.stream_id, payload)
            pipe.publish(self.keys.events_channel, payload)
            pipe.execute()

        return self._run("status", write)

    def set_thumbnail(self, stream_id: str, jpeg: bytes, ttl_s: int = 3600) -> bool:
        return self._run("thumbnail",
                         lambda: self.client.set(self.keys.thumbnail(stream_id), jpeg, ex=ttl_s))

    def set_frame(self, stream_id: str, frame_index: int, jpeg: bytes, ttl_s: int = 3600) -> bool:
        def write() -> None:
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(self.keys.frame(stream_id), mapping={"frame_index": frame_index, "jpeg": jpeg})
            pipe.expire(self.keys.frame(stream_id), ttl_s)
            pipe.execute()

        return self._run("frame", write)

    def heartbeat(self, info: dict[str, Any], ttl_s: int = 10) -> bool:
        payload = json.dumps({"pid": os.getpid(), "updated_at": time.time(), **info})
        return self._run("heartbeat", lambda: self.client.set(self.keys.service, payload, ex=ttl_s))

    def forget_stream(self, stream_id: str, keep_history_s: float = 0.0) -> bool:
        """Take a stream off the stream list (HDEL, and a ``{"status": "removed"}`` event for
        live readers); its history, latest score, thumbnail and kept frame expire after
        ``keep_history_s`` (0 = deleted now)."""
        event = removed_event(stream_id)
        keys = (self.keys.latest(stream_id), self.keys.history(stream_id),
                self.keys.thumbnail(stream_id), self.keys.frame(stream_id))

        def write() -> None:
            pipe = self.client.pipeline(transaction=False)
            pipe.hdel(self.keys.streams, stream_id)
            for key in keys:
                if keep_history_s > 0:
                    pipe.expire(key, max(1, int(keep_history_s)))
                else:
                    pipe.delete(key)
            pipe.publish(self.keys.events_channel, event)
            pipe.execute()

        return self._run("forget", write)

    def forget_expired(self, now_s: float | None = None) -> list[str]:
        """Forget every stream whose record's ``expires_at`` has passed (left by an earlier run
        or replay); returns their ids."""
        now_s = time.time() if now_s is None else now_s
        expired: list[str] = []

        def scan() -> None:
            for key, raw in self.client.hgetall(self.keys.streams).items():
                if record_expired(raw, now_s):
                    expired.append(key.decode("utf-8", "replace") if isinstance(key, bytes) else key)

        if not self._run("expire", scan):
            return []
        for stream_id in expired:
            self.forget_stream(stream_id)
        return expired

    def clear_stream(self, stream_id: str) -> bool:
        """Forget a stream's history, latest state, thumbnail and kept frame (a new run of the
        same id)."""
        return self._run("clear", lambda: self.client.delete(
            self.keys.latest(stream_id), self.keys.history(stream_id),
            self.keys.thumbnail(stream_id), self.keys.frame(stream_id)))

