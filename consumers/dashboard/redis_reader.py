"""Reads the Redis contract (docs/redis.md) for the dashboard: streams, history, thumbnails."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Any

import redis

from detector.errors import RedisUnavailableError
from detector.records import HistoryEntry, ScoreRecord, StatusRecord
from detector.redis_keys import RedisKeys
from detector.url_mask import mask_url

log = logging.getLogger(__name__)

def status_row(raw: bytes | str, stream_id: str) -> StatusRecord:
    """A status record as the page shows it: credentials in its source masked.

    Raises:
        ValueError: the record is not a JSON object.
    """
    record = StatusRecord.from_redis(raw, stream_id)
    return dataclasses.replace(record, source=mask_url(record.source))


class DashboardReader:
    """Read-only access to the service's keys; every method raises one error type on an outage.

    Args:
        redis_url: the Redis to read (credentials are masked in every message).
        prefix: ``redis.prefix``.
        socket_timeout_s: short, so a dead Redis turns into "disconnected" within a refresh or two.
    """

    def __init__(self, redis_url: str, prefix: str = "deepfake", socket_timeout_s: float = 1.0):
        self.redis_url = redis_url
        self.display_url = mask_url(redis_url)
        self.keys = RedisKeys(prefix)
        self.client = redis.Redis.from_url(redis_url, socket_timeout=socket_timeout_s,
                                           socket_connect_timeout=socket_timeout_s)

    def _call(self, fn):
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise RedisUnavailableError(f"cannot reach Redis at {self.display_url}: {exc}") from None

    def streams(self) -> list[StatusRecord]:
        """Every stream in ``<prefix>:streams``, sorted by id; malformed records are skipped."""
        raw = self._call(lambda: self.client.hgetall(self.keys.streams))
        rows = []
        now_s = time.time()
        for key, value in raw.items():
            stream_id = _text(key)
            try:
                record = status_row(value, stream_id)
            except ValueError:
                log.warning("stream %s: ignoring a malformed status record", stream_id)
                continue
            if not record.has_expired(now_s):   # else ended over redis.finished_ttl_s ago
                rows.append(record)
        return sorted(rows, key=lambda row: row.stream_id)

    def history(self, stream_id: str, max_points: int = 2000) -> list[HistoryEntry]:
        """The last ``max_points`` history entries, oldest first."""
        entries = self._call(
            lambda: self.client.xrevrange(self.keys.history(stream_id), count=max_points))
        points = []
        for entry_id, fields in reversed(entries):
            try:
                points.append(HistoryEntry.from_redis(entry_id, fields))
            except ValueError as exc:
                log.warning("stream %s: skipping a malformed history entry: %s", stream_id, exc)
        return points

    def last_history_id(self, stream_id: str) -> str | None:
        """Id of the newest history entry (cheap change detection), None if there is none."""
        entries = self._call(lambda: self.client.xrevrange(self.keys.history(stream_id), count=1))
        return _text(entries[0][0]) if entries else None

    def latest(self, stream_id: str) -> ScoreRecord | None:
        """The stream's latest score message, None if none or malformed."""
        raw = self._call(lambda: self.client.get(self.keys.latest(stream_id)))
        if raw is None:
            return None
        try:
            return ScoreRecord.from_redis(raw)
        except ValueError:
            log.warning("stream %s: ignoring a malformed latest message", stream_id)
            return None

    def thumbnail(self, stream_id: str) -> bytes | None:
        """JPEG bytes of ``<prefix>:thumb:<id>``, None if the workers have not written one."""
        return self._call(lambda: self.client.get(self.keys.thumbnail(stream_id)))

    def kept_frame(self, stream_id: str) -> tuple[int, bytes] | None:
        """``(frame_index, jpeg)`` of ``<prefix>:frame:<id>`` (a live stream's latest thumbnail
        frame), None when none is kept or the record is malformed."""
        raw = self._call(lambda: self.client.hgetall(self.keys.frame(stream_id)))
        try:
            return int(raw[b"frame_index"]), bytes(raw[b"jpeg"])
        except (KeyError, TypeError, ValueError):
            return None

    def service(self) -> dict[str, Any] | None:
        """The service heartbeat, None when no service is running (the key has a 10 s TTL)."""
        raw = self._call(lambda: self.client.get(self.keys.service))
        if raw is None:
            return None
        try:
            beat = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        return beat if isinstance(beat, dict) else None

    def close(self) -> None:
        self.client.close()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)

