"""Reads the Redis contract (docs/redis.md) for the dashboard: streams, history, thumbnails."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Mapping

import redis

from detector.errors import RedisUnavailableError
from detector.redis_keys import RedisKeys
from detector.redis_sink import record_expired
from detector.scoring import unscored_verdict
from detector.url_mask import mask_url

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class StreamStatus:
    """One row of the live streams table, from a ``<prefix>:streams`` status record."""

    stream_id: str
    status: str
    source: str
    kind: str
    rolling_score: float | None
    verdict: str
    fps: float
    frames_scored: int
    frames_dropped: int
    latency_ms: float | None
    error: str | None
    scored_at: float | None = None
    updated_at: float | None = None

    @property
    def activity_key(self) -> tuple:
        """Sorts the most recently active stream last: the latest scored frame first, then
        any scored frame, then the latest status change."""
        return (self.scored_at or 0.0, self.frames_scored > 0, self.updated_at or 0.0)

    @classmethod
    def from_record(cls, stream_id: str, record: Mapping[str, Any]) -> "StreamStatus":
        """Build from a decoded status record; missing fields get neutral values (never a score).
        A stream without a scored frame is ``PENDING`` / ``FAILED``, never ``NO_FACE``."""
        status = str(record.get("status") or "unknown")
        frames_scored = int(record.get("frames_scored") or 0)
        return cls(
            stream_id=stream_id,
            status=status,
            source=mask_url(str(record.get("source") or "")),
            kind=str(record.get("kind") or ""),
            rolling_score=_float_or_none(record.get("rolling_score")),
            verdict=(str(record["verdict"]) if record.get("verdict") and
                     record.get("frames_scored") != 0 else unscored_verdict(status)),
            fps=_float_or_none(record.get("fps")) or 0.0,
            frames_scored=frames_scored,
            frames_dropped=int(record.get("frames_dropped") or 0),
            latency_ms=_float_or_none(record.get("latency_ms")),
            error=record.get("error") or None,
            scored_at=_float_or_none(record.get("scored_at")),
            updated_at=_float_or_none(record.get("updated_at")),
        )


@dataclass(frozen=True)
class HistoryPoint:
    """One entry of ``<prefix>:history:<id>``; ``None`` scores mean "no face"."""

    entry_id: str
    frame_index: int
    frame_score: float | None
    rolling_score: float | None
    verdict: str
    latency_ms: float | None


def parse_history_entry(entry_id: bytes | str, fields: Mapping[bytes | str, bytes | str]) -> HistoryPoint:
    """Decode one XRANGE entry (all values are strings; ``''`` means none).

    Raises:
        ValueError: ``frame_index`` is missing or not an integer.
    """
    decoded = {_text(k): _text(v) for k, v in fields.items()}
    if "frame_index" not in decoded:
        raise ValueError(f"expected a frame_index field, got {sorted(decoded)}")
    return HistoryPoint(
        entry_id=_text(entry_id),
        frame_index=int(decoded["frame_index"]),
        frame_score=_float_or_none(decoded.get("frame_score")),
        rolling_score=_float_or_none(decoded.get("rolling_score")),
        verdict=decoded.get("verdict") or "NO_FACE",
        latency_ms=_float_or_none(decoded.get("latency_ms")),
    )


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

    def streams(self) -> list[StreamStatus]:
        """Every stream in ``<prefix>:streams``, sorted by id; malformed records are skipped."""
        raw = self._call(lambda: self.client.hgetall(self.keys.streams))
        rows = []
        now_s = time.time()
        for key, value in raw.items():
            stream_id = _text(key)
            try:
                record = json.loads(value)
                if record_expired(record, now_s):
                    continue   # ended longer than redis.finished_ttl_s ago
                rows.append(StreamStatus.from_record(stream_id, record))
            except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError, AttributeError):
                log.warning("stream %s: ignoring a malformed status record", stream_id)
        return sorted(rows, key=lambda row: row.stream_id)

    def history(self, stream_id: str, max_points: int = 2000) -> list[HistoryPoint]:
        """The last ``max_points`` history entries, oldest first."""
        entries = self._call(
            lambda: self.client.xrevrange(self.keys.history(stream_id), count=max_points))
        points = []
        for entry_id, fields in reversed(entries):
            try:
                points.append(parse_history_entry(entry_id, fields))
            except ValueError as exc:
                log.warning("stream %s: skipping a malformed history entry: %s", stream_id, exc)
        return points

    def last_history_id(self, stream_id: str) -> str | None:
        """Id of the newest history entry (cheap change detection), None if there is none."""
        entries = self._call(lambda: self.client.xrevrange(self.keys.history(stream_id), count=1))
        return _text(entries[0][0]) if entries else None

    def latest(self, stream_id: str) -> dict[str, Any] | None:
        """The stream's latest score message, None if none or malformed."""
        raw = self._call(lambda: self.client.get(self.keys.latest(stream_id)))
        if raw is None:
            return None
        try:
            message = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("stream %s: ignoring a malformed latest message", stream_id)
            return None
        return message if isinstance(message, dict) else None

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


def _float_or_none(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
