"""The records the service keeps in Redis (docs/redis.md), each with its Redis form written once.

``StatusRecord`` is a field of ``<prefix>:streams`` (and a message on ``<prefix>:events``),
``ScoreRecord`` is a message on ``<prefix>:scores`` and the value of ``<prefix>:latest:<id>``,
``HistoryEntry`` is one entry of ``<prefix>:history:<id>``. The collector and the sink write
them with ``to_redis()``; ``watch`` and the dashboard read them back with ``from_redis()``, which
gives a missing field a neutral value (never a score) and raises ValueError on a record that is
not one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from detector.redis_keys import SCHEMA_VERSION, SCORE_SCHEMA_VERSION, SCORE_SCHEMA_VERSIONS_READ
from detector.scoring import NO_FACE, unscored_verdict
from detector.stream_status import StreamStatus


def _json(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"))


def _object(raw: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(raw, Mapping):
        return raw
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
        raise ValueError("expected a JSON object, got text that is not JSON") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _float_or_none(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _num_field(value: float | None) -> str:
    """Redis stream fields are strings; None is written as an empty string."""
    return "" if value is None else repr(round(float(value), 6))


@dataclass(frozen=True)
class StatusRecord:
    """One stream's status: ``HSET <prefix>:streams <id>`` and ``PUBLISH <prefix>:events``.

    ``video_score`` and ``label`` are a file stream's (None for live streams, and left out of
    the Redis form); ``ended_at`` and ``expires_at`` are set once the stream has ended.
    """

    stream_id: str
    status: str
    source: str = ""
    kind: str = ""
    error: str | None = None
    started_at: float | None = None
    updated_at: float | None = None
    frames_read: int = 0
    frames_sampled: int = 0
    frames_dropped: int = 0
    frames_scored: int = 0
    frames_with_faces: int = 0
    reconnects: int = 0
    rolling_score: float | None = None
    verdict: str = NO_FACE
    fps: float = 0.0
    latency_ms: float | None = None
    scored_at: float | None = None
    ended_at: float | None = None
    expires_at: float | None = None
    video_score: float | None = None
    label: str | None = None

    @property
    def activity_key(self) -> tuple:
        """Sorts the most recently active stream last: the latest scored frame first, then
        any scored frame, then the latest status change."""
        return (self.scored_at or 0.0, self.frames_scored > 0, self.updated_at or 0.0)

    def has_expired(self, now_s: float) -> bool:
        """The stream ended longer than ``redis.finished_ttl_s`` ago (its ``expires_at`` passed)."""
        return self.expires_at is not None and self.expires_at <= now_s

    def to_redis(self) -> str:
        """The JSON document stored in ``<prefix>:streams``."""
        record = {
            "schema_version": SCHEMA_VERSION, "stream_id": self.stream_id,
            "source": self.source, "kind": self.kind, "status": str(self.status),
            "error": self.error, "started_at": self.started_at, "updated_at": self.updated_at,
            "frames_read": self.frames_read, "frames_sampled": self.frames_sampled,
            "frames_dropped": self.frames_dropped, "frames_scored": self.frames_scored,
            "frames_with_faces": self.frames_with_faces, "reconnects": self.reconnects,
            "rolling_score": self.rolling_score, "verdict": self.verdict, "fps": self.fps,
            "latency_ms": self.latency_ms, "scored_at": self.scored_at,
        }
        if self.ended_at is not None:
            record["ended_at"] = self.ended_at
            record["expires_at"] = self.expires_at
        if self.kind == "file":
            record["video_score"] = self.video_score
            record["label"] = self.label
        return _json(record)

    @classmethod
    def from_redis(cls, raw: bytes | str | Mapping[str, Any],
                   stream_id: str | bytes | None = None) -> StatusRecord:
        """Read a ``<prefix>:streams`` field (its key is ``stream_id``) or an events message.
        A stream with ``frames_scored = 0`` or no verdict reads as ``PENDING`` / ``FAILED``,
        never ``NO_FACE`` (records written before those verdicts existed said ``NO_FACE``).

        Raises:
            ValueError: not a JSON object, or no stream id in the key or the record.
        """
        record = _object(raw)
        stream_id = record.get("stream_id") if stream_id is None else _text(stream_id)
        if not isinstance(stream_id, str) or not stream_id:
            raise ValueError(f"expected a stream_id string, got {stream_id!r}")
        status = str(record.get("status") or "unknown")
        frames_scored = _int(record.get("frames_scored"))
        return cls(
            stream_id=stream_id,
            status=status,
            source=str(record.get("source") or ""),
            kind=str(record.get("kind") or ""),
            error=record.get("error") or None,
            started_at=_float_or_none(record.get("started_at")),
            updated_at=_float_or_none(record.get("updated_at")),
            frames_read=_int(record.get("frames_read")),
            frames_sampled=_int(record.get("frames_sampled")),
            frames_dropped=_int(record.get("frames_dropped")),
            frames_scored=frames_scored,
            frames_with_faces=_int(record.get("frames_with_faces")),
            reconnects=_int(record.get("reconnects")),
            rolling_score=_float_or_none(record.get("rolling_score")),
            verdict=(str(record["verdict"]) if record.get("verdict")
                     and record.get("frames_scored") != 0 else unscored_verdict(status)),
            fps=_float_or_none(record.get("fps")) or 0.0,
            latency_ms=_float_or_none(record.get("latency_ms")),
            scored_at=_float_or_none(record.get("scored_at")),
            ended_at=_float_or_none(record.get("ended_at")),
            expires_at=_float_or_none(record.get("expires_at")),
            video_score=_float_or_none(record.get("video_score")),
            label=record.get("label") or None,
        )


def removed_event(stream_id: str) -> str:
    """The events-channel message that says a stream left the stream list."""
    return _json({"schema_version": SCHEMA_VERSION, "stream_id": stream_id,
                  "status": str(StreamStatus.REMOVED)})


def record_expired(raw: bytes | str | Mapping[str, Any], now_s: float) -> bool:
    """Whether a stored status record's ``expires_at`` (set once a stream ended) has passed;
    an unreadable record has not."""
    try:
        return StatusRecord.from_redis(raw, stream_id="?").has_expired(now_s)
    except ValueError:
        return False


@dataclass(frozen=True)
class HistoryEntry:
    """One entry of ``<prefix>:history:<id>`` (``entry_id`` is Redis's, known once read)."""

    frame_index: int
    frame_score: float | None
    rolling_score: float | None
    verdict: str
    latency_ms: float | None
    capture_time: float | None = None
    faces: int = 0
    entry_id: str | None = None
    track_scores: Mapping[int, float | None] = field(default_factory=dict)

    def to_redis(self) -> dict[str, str | int | float]:
        """The fields XADDed (all strings to Redis; None is ``''``). ``tracks`` is the live
        tracks' rolling scores as compact JSON, ``{"1":0.42,"2":null}``."""
        return {
            "frame_index": self.frame_index,
            "capture_time": self.capture_time if self.capture_time is not None else "",
            "frame_score": _num_field(self.frame_score),
            "rolling_score": _num_field(self.rolling_score),
            "verdict": self.verdict,
            "faces": self.faces,
            "latency_ms": _num_field(self.latency_ms),
            "tracks": _json({str(k): None if v is None else round(float(v), 6)
                             for k, v in sorted(self.track_scores.items())}),
        }

    @classmethod
    def from_redis(cls, entry_id: bytes | str,
                   fields: Mapping[bytes | str, bytes | str]) -> HistoryEntry:
        """Decode one XRANGE entry (all values are strings; ``''`` means none).

        Raises:
            ValueError: ``frame_index`` is missing or not an integer.
        """
        decoded = {_text(k): _text(v) for k, v in fields.items()}
        if "frame_index" not in decoded:
            raise ValueError(f"expected a frame_index field, got {sorted(decoded)}")
        return cls(
            frame_index=int(decoded["frame_index"]),
            frame_score=_float_or_none(decoded.get("frame_score")),
            rolling_score=_float_or_none(decoded.get("rolling_score")),
            verdict=decoded.get("verdict") or NO_FACE,
            latency_ms=_float_or_none(decoded.get("latency_ms")),
            capture_time=_float_or_none(decoded.get("capture_time")),
            faces=_int(decoded.get("faces")),
            entry_id=_text(entry_id),
            track_scores=_track_scores(decoded.get("tracks")),
        )


def _track_scores(raw: str | None) -> dict[int, float | None]:
    """A history entry's ``tracks`` field; absent (version 1) or unreadable → no tracks."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        return {}
    if not isinstance(value, dict):
        return {}
    scores = {}
    for key, score in value.items():
        if isinstance(key, str) and key.isdigit():
            scores[int(key)] = _float_or_none(score)
    return scores


@dataclass(frozen=True)
class ScoreRecord:
    """One scored frame: ``PUBLISH <prefix>:scores`` and ``SET <prefix>:latest:<id>``.

    ``faces`` are the faces' JSON objects (``detector.wire.FaceResult.to_json``, with the
    ``track_id`` each belongs to); ``tracks`` the live tracks and those that ended on this
    frame (``detector.tracking.TrackSummary.to_json``). The service always writes
    ``frame_index``; a reader gets None when a message left it out.
    """

    stream_id: str
    frame_index: int | None
    frame_score: float | None
    rolling_score: float | None
    verdict: str
    threshold: float | None = None
    pts_s: float | None = None
    capture_time: float | None = None
    published_time: float | None = None
    faces: tuple[dict[str, Any], ...] = ()
    latency_ms: float | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    batch_size: int = 0
    worker: str = ""
    model: str = ""
    fps: float = 0.0
    frames_scored: int = 0
    frames_dropped: int = 0
    error: str | None = None
    tracks: tuple[dict[str, Any], ...] = ()
    detect_mode: str = "full"

    def to_json(self) -> dict[str, Any]:
        """The message as a JSON object (what ``to_redis`` serialises)."""
        return {
            "schema_version": SCORE_SCHEMA_VERSION, "stream_id": self.stream_id,
            "frame_index": self.frame_index, "pts_s": self.pts_s,
            "capture_time": self.capture_time, "published_time": self.published_time,
            "faces": list(self.faces), "frame_score": self.frame_score,
            "rolling_score": self.rolling_score, "verdict": self.verdict,
            "threshold": self.threshold, "latency_ms": self.latency_ms,
            "timings_ms": self.timings_ms, "batch_size": self.batch_size, "worker": self.worker,
            "model": self.model, "fps": self.fps, "frames_scored": self.frames_scored,
            "frames_dropped": self.frames_dropped, "error": self.error,
            "tracks": list(self.tracks), "detect_mode": self.detect_mode,
        }

    def to_redis(self) -> str:
        """The JSON published on ``<prefix>:scores`` and stored in ``<prefix>:latest:<id>``."""
        return _json(self.to_json())

    def history_entry(self) -> HistoryEntry:
        """This frame's entry in the stream's history."""
        return HistoryEntry(self.frame_index, self.frame_score, self.rolling_score, self.verdict,
                            self.latency_ms, self.capture_time, len(self.faces),
                            track_scores={int(t["track_id"]): t.get("rolling_score")
                                          for t in self.tracks if t.get("status") == "live"})

    @classmethod
    def from_redis(cls, raw: bytes | str | Mapping[str, Any]) -> ScoreRecord:
        """Read a score message (or a ``latest`` value) back.

        Version 1 messages (before tracks) read with no tracks.

        Raises:
            ValueError: not a JSON object, no ``stream_id``, or a ``schema_version`` newer than
                this reader knows.
        """
        record = _object(raw)
        version = record.get("schema_version", 1)
        if version not in SCORE_SCHEMA_VERSIONS_READ or isinstance(version, bool):
            raise ValueError(f"expected a score message of schema_version "
                             f"{' or '.join(map(str, SCORE_SCHEMA_VERSIONS_READ))}, got {version!r}"
                             " (a newer service? upgrade this reader)")
        stream_id = record.get("stream_id")
        if not isinstance(stream_id, str) or not stream_id:
            raise ValueError(f"expected a stream_id string, got {stream_id!r}")
        index = record.get("frame_index")
        frame_index = index if isinstance(index, int) and not isinstance(index, bool) else None
        faces = record.get("faces")
        tracks = record.get("tracks")
        timings = record.get("timings_ms")
        return cls(
            stream_id=stream_id,
            frame_index=frame_index,
            frame_score=_float_or_none(record.get("frame_score")),
            rolling_score=_float_or_none(record.get("rolling_score")),
            verdict=str(record.get("verdict") or NO_FACE),
            threshold=_float_or_none(record.get("threshold")),
            pts_s=_float_or_none(record.get("pts_s")),
            capture_time=_float_or_none(record.get("capture_time")),
            published_time=_float_or_none(record.get("published_time")),
            faces=tuple(f for f in faces if isinstance(f, dict)) if isinstance(faces, list) else (),
            latency_ms=_float_or_none(record.get("latency_ms")),
            timings_ms=dict(timings) if isinstance(timings, dict) else {},
            batch_size=_int(record.get("batch_size")),
            worker=str(record.get("worker") or ""),
            model=str(record.get("model") or ""),
            fps=_float_or_none(record.get("fps")) or 0.0,
            frames_scored=_int(record.get("frames_scored")),
            frames_dropped=_int(record.get("frames_dropped")),
            error=record.get("error") or None,
            tracks=tuple(t for t in tracks if isinstance(t, dict)) if isinstance(tracks, list) else (),
            detect_mode=str(record.get("detect_mode") or "full"),
        )
