"""ZeroMQ wire formats: frames (producer → worker) and results (worker → collector).

Every message is multipart. Part 0 is a UTF-8 JSON header carrying ``schema_version``; raw
bytes follow. No pickle crosses the wire. Decoders raise :class:`WireFormatError` for anything
malformed, truncated, oversized or of another schema version. See docs/wire.md.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from detector.errors import WireFormatError
from detector.identifiers import STREAM_ID_RULE, is_valid_stream_id, shown

SCHEMA_VERSION = 2
# Versions a reader accepts: version 1 frames have no ``detect`` (full detection) and no
# ``payload`` (their pixels are always inline).
SUPPORTED_VERSIONS = (1, 2)
MAX_SIDE_PX = 8192
MAX_HEADER_BYTES = 64 * 1024
MAX_THUMBNAIL_BYTES = 2 * 1024 * 1024
MAX_NONCE_CHARS = 64
_FRAME_KIND = "frame"
_RESULT_KIND = "result"
_STATS_KIND = "worker_stats"
FULL_DETECT = "full"
TRACK_DETECT = "track"
MAX_TRACK_HINTS = 32
MAX_TRACK_ID = 2**31 - 1
INLINE_PAYLOAD = "inline"
SHM_PAYLOAD = "shm"
PIXEL_FORMATS = ("bgr24",)
RING_NAME_PREFIX = "ring-"
RING_NAME_RULE = f"{RING_NAME_PREFIX} and 16 lowercase hex digits"
_RING_NAME_RE = re.compile(rf"{RING_NAME_PREFIX}[0-9a-f]{{16}}\Z")
MAX_RING_SLOTS = 4096
MAX_GENERATION = 2**63 - 1
_SLOT_KEYS = frozenset({"kind", "ring", "slot", "generation", "format"})


def _load_header(part: bytes, expected_kind: str) -> dict:
    """The JSON header of a message of ``expected_kind`` in one of :data:`SUPPORTED_VERSIONS`."""
    if len(part) > MAX_HEADER_BYTES:
        raise WireFormatError(f"header of {len(part)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = json.loads(bytes(part).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: JSON errors, 4300+ digit ints
        raise WireFormatError(f"header is not UTF-8 JSON ({exc.__class__.__name__})") from None
    if not isinstance(header, dict):
        raise WireFormatError(f"expected a JSON object header, got {type(header).__name__}")
    version = header.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or version not in SUPPORTED_VERSIONS:
        supported = " or ".join(str(v) for v in SUPPORTED_VERSIONS)
        raise WireFormatError(f"expected schema_version {supported} (the versions this side "
                              f"reads), got {shown(version, 40)}")
    kind = header.get("kind")
    if kind != expected_kind:
        raise WireFormatError(f"expected kind {expected_kind!r}, got {kind!r}")
    return header


def _field(header: dict, name: str, types: type | tuple[type, ...], optional: bool = False):
    if name not in header:
        if optional:
            return None
        raise WireFormatError(f"header lacks {name!r}")
    value = header[name]
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, types):
        raise WireFormatError(f"expected {name} of type {types}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise WireFormatError(f"expected a finite {name}, got {value!r}")
    return value


def _seconds(header: dict, name: str, optional: bool = False, minimum: float | None = None):
    """A finite time in seconds from a JSON int or float (huge integers do not overflow)."""
    value = _field(header, name, (int, float), optional=optional)
    if value is None:
        return None
    try:
        seconds = float(value)
    except OverflowError:
        raise WireFormatError(f"expected a finite {name}, got an integer of {value.bit_length()} bits") from None
    if minimum is not None and seconds < minimum:
        raise WireFormatError(f"expected {name} >= {minimum}, got {value!r}")
    return seconds


def _stream_id(header: dict) -> str:
    stream_id = _field(header, "stream_id", str)
    if not is_valid_stream_id(stream_id):
        raise WireFormatError(f"expected a stream_id of {STREAM_ID_RULE}, got {shown(stream_id, 80)}")
    return stream_id


def _nonce(header: dict) -> str:
    nonce = _field(header, "nonce", str, optional=True) or ""
    if len(nonce) > MAX_NONCE_CHARS:
        raise WireFormatError(f"expected a nonce of at most {MAX_NONCE_CHARS} characters, got {len(nonce)}")
    return nonce


def peek_stream_id(parts: Sequence[bytes]) -> str | None:
    """Best-effort stream id of a message that failed to decode, for the log line."""
    try:
        header = json.loads(bytes(parts[0][:MAX_HEADER_BYTES]).decode("utf-8"))
        value = header.get("stream_id") if isinstance(header, dict) else None
        return value if isinstance(value, str) else None
    except Exception:  # noqa: BLE001 - any garbage means "unknown"
        return None


def _track_id(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TRACK_ID:
        raise WireFormatError(f"expected {what} an integer in [1, {MAX_TRACK_ID}], got {value!r}")
    return value


def _finite_box(raw: Any, what: str) -> tuple[float, float, float, float]:
    if not isinstance(raw, list) or len(raw) != 4 or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) for v in raw):
        raise WireFormatError(f"expected {what} of 4 numbers, got {shown(raw, 80)}")
    try:
        box = tuple(float(v) for v in raw)
    except OverflowError:
        raise WireFormatError(f"expected {what} of finite numbers, got a huge integer") from None
    if not all(math.isfinite(v) for v in box):
        raise WireFormatError(f"expected {what} of finite numbers, got {raw!r}")
    return box


@dataclass(frozen=True)
class TrackHint:
    """Where a face was: look for it near ``box_xyxy`` (frame pixels) and report it as ``track_id``."""

    track_id: int
    box_xyxy: tuple[float, float, float, float]

    def __post_init__(self) -> None:
        x1, y1, x2, y2 = self.box_xyxy
        if not (x2 > x1 and y2 > y1):
            raise ValueError(f"expected a box with x2 > x1 and y2 > y1, got {self.box_xyxy}")

    def to_json(self) -> dict[str, Any]:
        return {"id": self.track_id, "box_xyxy": [round(float(v), 1) for v in self.box_xyxy]}


@dataclass(frozen=True)
class DetectRequest:
    """How a worker should find the faces of a frame (the frame header's ``detect``).

    ``full``: the whole frame. ``track``: only near each hinted box; a face found there is
    reported with the hint's track id, a hint without a face is reported by its absence.
    """

    mode: str = FULL_DETECT
    tracks: tuple[TrackHint, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in (FULL_DETECT, TRACK_DETECT):
            raise ValueError(f"expected mode {FULL_DETECT!r} or {TRACK_DETECT!r}, got {self.mode!r}")
        if self.mode == FULL_DETECT and self.tracks:
            raise ValueError("expected no track hints in full mode")
        if self.mode == TRACK_DETECT and not 1 <= len(self.tracks) <= MAX_TRACK_HINTS:
            raise ValueError(f"expected 1..{MAX_TRACK_HINTS} track hints, got {len(self.tracks)}")

    def to_json(self) -> dict[str, Any]:
        if self.mode == FULL_DETECT:
            return {"mode": FULL_DETECT}
        return {"mode": TRACK_DETECT, "tracks": [hint.to_json() for hint in self.tracks]}

    @classmethod
    def from_json(cls, raw: Any, height: int, width: int) -> DetectRequest:
        """Validate a header's ``detect`` for a ``height`` × ``width`` frame.

        Raises:
            WireFormatError: anything but ``{"mode": "full"}`` or ``{"mode": "track",
                "tracks": [{"id": 1.., "box_xyxy": [x1, y1, x2, y2]}, …]}`` with 1..32 distinct
                ids and finite boxes inside the frame.
        """
        if not isinstance(raw, dict):
            raise WireFormatError(f"expected detect to be an object, got {shown(raw, 80)}")
        mode = raw.get("mode")
        allowed = {"mode"} if mode == FULL_DETECT else {"mode", "tracks"}
        if mode not in (FULL_DETECT, TRACK_DETECT):
            raise WireFormatError(f"expected detect.mode 'full' or 'track', got {shown(mode, 40)}")
        if set(raw) - allowed:
            raise WireFormatError(f"unexpected detect keys {sorted(set(raw) - allowed)[:3]}")
        if mode == FULL_DETECT:
            return cls(FULL_DETECT)
        tracks = raw.get("tracks")
        if not isinstance(tracks, list) or not 1 <= len(tracks) <= MAX_TRACK_HINTS:
            raise WireFormatError(
                f"expected detect.tracks a list of 1..{MAX_TRACK_HINTS} hints, got "
                f"{len(tracks) if isinstance(tracks, list) else shown(tracks, 40)}")
        hints = []
        for hint in tracks:
            if not isinstance(hint, dict) or set(hint) != {"id", "box_xyxy"}:
                raise WireFormatError(f"expected a hint {{id, box_xyxy}}, got {shown(hint, 80)}")
            x1, y1, x2, y2 = box = _finite_box(hint["box_xyxy"], "a hint's box_xyxy")
            if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
                raise WireFormatError(
                    f"expected a hint box inside the {width}x{height} frame, got {list(box)}")
            hints.append(TrackHint(_track_id(hint["id"], "a hint id"), box))
        if len({h.track_id for h in hints}) != len(hints):
            raise WireFormatError("expected distinct hint ids")
        return cls(TRACK_DETECT, tuple(hints))


@dataclass(frozen=True)
class SlotRef:
    """Where a frame's pixels wait in shared memory (detector/frame_ring.py).

    Attributes:
        ring: the ring's file name inside the service's ring folder (never a path).
        slot: the slot index in that ring.
        generation: the slot's generation when the frame was written; the slot is released
            (and its generation moves on) when the frame's result is answered.
        format: the pixel layout in the slot.
    """

    ring: str
    slot: int
    generation: int
    format: str = "bgr24"

    def __post_init__(self) -> None:
        if not isinstance(self.ring, str) or not _RING_NAME_RE.match(self.ring):
            raise ValueError(f"expected a ring name of {RING_NAME_RULE}, got {shown(self.ring, 80)}")
        if not 0 <= self.slot < MAX_RING_SLOTS:
            raise ValueError(f"expected a slot in [0, {MAX_RING_SLOTS}), got {self.slot}")
        if not 0 <= self.generation <= MAX_GENERATION:
            raise ValueError(f"expected a generation in [0, 2^63), got {self.generation}")
        if self.format not in PIXEL_FORMATS:
            raise ValueError(f"expected format in {PIXEL_FORMATS}, got {self.format!r}")

    def to_json(self) -> dict[str, Any]:
        return {"kind": SHM_PAYLOAD, "ring": self.ring, "slot": self.slot,
                "generation": self.generation, "format": self.format}

    @classmethod
    def from_json(cls, raw: Any) -> SlotRef:
        if not isinstance(raw, dict):
            raise WireFormatError(f"expected a payload object, got {shown(raw, 80)}")
        unknown = set(raw) - _SLOT_KEYS
        if unknown:
            raise WireFormatError(f"unknown payload keys {shown(sorted(map(str, unknown)), 80)}")
        ring = _field(raw, "ring", str)
        slot = _field(raw, "slot", int)
        generation = _field(raw, "generation", int)
        pixel_format = _field(raw, "format", str)
        try:
            return cls(ring, slot, generation, pixel_format)
        except ValueError as exc:
            raise WireFormatError(str(exc)) from None


class SlotReader(Protocol):
    """Maps a :class:`SlotRef` to pixels (a worker's ``detector.frame_ring.RingReader``)."""

    def view(self, ref: SlotRef, shape: tuple[int, int, int]) -> Any:
        """The slot's pixels; raises ``WireFormatError`` for a ring or slot it cannot read."""
        ...


@dataclass(frozen=True)
class FrameMessage:
    """A sampled frame on its way to a worker.

    Attributes:
        stream_id: the stream it belongs to.
        frame_index: index among all decoded frames of the stream (not only sampled ones).
        pts_s: presentation time in seconds, or None.
        capture_time_s: Unix time the producer read the frame (latency origin).
        image_bgr: ``(height, width, 3)`` uint8 BGR pixels.
        want_thumbnail: ask the worker to send back a small annotated JPEG.
        nonce: the stream run's nonce; the worker echoes it in the result, and the collector
            accepts only results that carry it (detector/inflight.py).
        detect: how to find its faces (schema version 2); None = full detection.
        slot: where the pixels wait in shared memory (schema version 2; then ``image_bgr`` is a
            view of that slot and only the header crosses ZeroMQ); None: the pixels are inline.
    """

    stream_id: str
    frame_index: int
    pts_s: float | None
    capture_time_s: float
    image_bgr: np.ndarray = field(repr=False)
    want_thumbnail: bool = False
    nonce: str = ""
    detect: DetectRequest | None = None
    slot: SlotRef | None = None

    def __post_init__(self) -> None:
        shape = self.image_bgr.shape
        if self.image_bgr.dtype != np.uint8 or len(shape) != 3 or shape[2] != 3:
            raise ValueError(f"expected a (height, width, 3) uint8 image, got {shape}")
        if self.frame_index < 0:
            raise ValueError(f"expected frame_index >= 0, got {self.frame_index}")

    def encode(self) -> list[bytes]:
        header = {
            "schema_version": SCHEMA_VERSION,
            "kind": _FRAME_KIND,
            "stream_id": self.stream_id,
            "frame_index": self.frame_index,
            "pts_s": self.pts_s,
            "capture_time_s": self.capture_time_s,
            "shape": list(self.image_bgr.shape),
            "dtype": "uint8",
            "want_thumbnail": self.want_thumbnail,
            "nonce": self.nonce,
        }
        if self.detect is not None:
            header["detect"] = self.detect.to_json()
        if self.slot is not None:
            header["payload"] = self.slot.to_json()
            return [json.dumps(header).encode("utf-8")]
        pixels = np.ascontiguousarray(self.image_bgr)
        return [json.dumps(header).encode("utf-8"), pixels.data]

    @classmethod
    def decode(cls, parts: Sequence[bytes], slots: SlotReader | None = None) -> FrameMessage:
        """Decode a frame message: 2 parts (pixels inline) or 1 (pixels in a shared-memory
        slot, read through ``slots``).

        Raises:
            WireFormatError: anything malformed; a shared-memory frame when ``slots`` is None
                (a remote worker) or names a ring or slot ``slots`` cannot read.
        """
        if len(parts) not in (1, 2):
            raise WireFormatError(f"expected 1 or 2 frame parts, got {len(parts)}")
        header = _load_header(parts[0], _FRAME_KIND)
        shape = _field(header, "shape", list)
        if len(shape) != 3 or any(isinstance(v, bool) or not isinstance(v, int) for v in shape):
            raise WireFormatError(f"expected shape [height, width, 3], got {shape!r}")
        height, width, channels = shape
        if channels != 3 or not (0 < height <= MAX_SIDE_PX and 0 < width <= MAX_SIDE_PX):
            raise WireFormatError(f"expected shape [1..{MAX_SIDE_PX}, 1..{MAX_SIDE_PX}, 3], got {shape}")
        if header.get("dtype") != "uint8":
            raise WireFormatError(f"expected dtype 'uint8', got {header.get('dtype')!r}")
        frame_index = _field(header, "frame_index", int)
        if frame_index < 0:
            raise WireFormatError(f"expected frame_index >= 0, got {frame_index}")
        pts = _seconds(header, "pts_s", optional=True)
        detect = None
        if header.get("detect") is not None:
            if header["schema_version"] < 2:
                raise WireFormatError("expected no detect in a schema_version 1 frame")
            detect = DetectRequest.from_json(header["detect"], height, width)
        capture_time_s = _seconds(header, "capture_time_s", minimum=0.0)
        stream_id = _stream_id(header)
        nonce = _nonce(header)
        payload = header.get("payload")
        slot = None
        if payload is not None and header["schema_version"] < 2:
            raise WireFormatError("expected no payload in a schema_version 1 frame")
        if payload is None or (isinstance(payload, dict) and payload == {"kind": INLINE_PAYLOAD}):
            if len(parts) != 2:
                raise WireFormatError(f"expected 2 parts for inline pixels, got {len(parts)}")
            pixels = parts[1]
            expected_bytes = height * width * 3
            if len(pixels) != expected_bytes:
                raise WireFormatError(
                    f"expected {expected_bytes} pixel bytes for shape {shape}, got {len(pixels)}"
                )
            image = np.frombuffer(pixels, dtype=np.uint8).reshape(height, width, 3)
        elif isinstance(payload, dict) and payload.get("kind") == SHM_PAYLOAD:
            slot = SlotRef.from_json(payload)
            if len(parts) != 1:
                raise WireFormatError(f"expected 1 part for a shared-memory frame, got {len(parts)}")
            if slots is None:
                raise WireFormatError("a shared-memory frame, but this worker reads no frame rings "
                                      "(only the service's own workers do)")
            image = slots.view(slot, (height, width, 3))
        else:
            raise WireFormatError(f"expected payload kind {INLINE_PAYLOAD!r} or {SHM_PAYLOAD!r}, "
                                  f"got {shown(payload, 80)}")
        return cls(
            stream_id=stream_id,
            frame_index=frame_index,
            pts_s=pts,
            capture_time_s=capture_time_s,
            image_bgr=image,
            want_thumbnail=bool(header.get("want_thumbnail", False)),
            nonce=nonce,
            detect=detect,
            slot=slot,
        )


@dataclass(frozen=True)
class FaceResult:
    """One face in a scored frame. ``fake_probability`` is in [0, 1]; ``track_id``: the hint
    it answers (a worker in track mode) or the track it belongs to (the collector), else None."""

    box_xyxy: tuple[float, float, float, float]
    detector_confidence: float
    fake_probability: float
    track_id: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.fake_probability <= 1.0:
            raise ValueError(f"expected fake_probability in [0, 1], got {self.fake_probability}")

    def to_json(self) -> dict[str, Any]:
        face = {
            "box_xyxy": [round(float(v), 1) for v in self.box_xyxy],
            "detector_confidence": round(float(self.detector_confidence), 4),
            "fake_probability": round(float(self.fake_probability), 6),
        }
        if self.track_id is not None:
            face["track_id"] = self.track_id
        return face

    @classmethod
    def from_json(cls, raw: Any) -> FaceResult:
        if not isinstance(raw, dict):
            raise WireFormatError(f"expected a face object, got {raw!r}")
        box = raw.get("box_xyxy")
        if not isinstance(box, list) or len(box) != 4:
            raise WireFormatError(f"expected box_xyxy of 4 numbers, got {box!r}")
        track_id = raw.get("track_id")
        try:
            return cls(
                box_xyxy=tuple(float(v) for v in box),
                detector_confidence=float(raw["detector_confidence"]),
                fake_probability=float(raw["fake_probability"]),
                track_id=None if track_id is None else _track_id(track_id, "a face's track_id"),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise WireFormatError(f"bad face object {raw!r}: {exc}") from None


@dataclass(frozen=True)
class ResultMessage:
    """A worker's answer for one frame: its faces (empty = no face) or an error.

    Attributes:
        timings_ms: per-stage times for this frame's batch share: ``queue``, ``detect``,
            ``classify`` (milliseconds).
        thumbnail_jpeg: small annotated JPEG when the frame asked for one.
        nonce: the frame's nonce, echoed.
    """

    stream_id: str
    frame_index: int
    pts_s: float | None
    capture_time_s: float
    faces: tuple[FaceResult, ...]
    worker_id: str
    batch_size: int
    timings_ms: dict[str, float]
    error: str | None = None
    thumbnail_jpeg: bytes | None = field(default=None, repr=False)
    nonce: str = ""

    def encode(self) -> list[bytes]:
        header = {
            "schema_version": SCHEMA_VERSION,
            "kind": _RESULT_KIND,
            "stream_id": self.stream_id,
            "frame_index": self.frame_index,
            "pts_s": self.pts_s,
            "capture_time_s": self.capture_time_s,
            "faces": [face.to_json() for face in self.faces],
            "worker_id": self.worker_id,
            "batch_size": self.batch_size,
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
            "error": self.error,
            "nonce": self.nonce,
        }
        parts = [json.dumps(header).encode("utf-8")]
        if self.thumbnail_jpeg is not None:
            parts.append(self.thumbnail_jpeg)
        return parts

    @classmethod
    def decode(cls, parts: Sequence[bytes]) -> ResultMessage:
        if len(parts) not in (1, 2):
            raise WireFormatError(f"expected 1 or 2 result parts, got {len(parts)}")
        header = _load_header(parts[0], _RESULT_KIND)
        faces = _field(header, "faces", list)
        timings = _field(header, "timings_ms", dict)
        thumbnail = bytes(parts[1]) if len(parts) == 2 else None
        if thumbnail is not None and len(thumbnail) > MAX_THUMBNAIL_BYTES:
            raise WireFormatError(f"thumbnail of {len(thumbnail)} bytes is too large")
        pts = _seconds(header, "pts_s", optional=True)
        try:
            timings_ms = {str(k): float(v) for k, v in timings.items()}
        except (TypeError, ValueError, OverflowError):
            raise WireFormatError(f"expected numeric timings_ms, got {timings!r}") from None
        return cls(
            stream_id=_stream_id(header),
            frame_index=_field(header, "frame_index", int),
            pts_s=pts,
            capture_time_s=_seconds(header, "capture_time_s", minimum=0.0),
            faces=tuple(FaceResult.from_json(face) for face in faces),
            worker_id=_field(header, "worker_id", str),
            batch_size=_field(header, "batch_size", int),
            timings_ms=timings_ms,
            error=_field(header, "error", str, optional=True),
            thumbnail_jpeg=thumbnail,
            nonce=_nonce(header),
        )


@dataclass(frozen=True)
class WorkerStats:
    """A worker's periodic report: liveness and counts of what it received."""

    worker_id: str
    pid: int
    frames_scored: int
    malformed_messages: int
    is_ready: bool
    is_stopping: bool = False

    def encode(self) -> list[bytes]:
        header = {
            "schema_version": SCHEMA_VERSION,
            "kind": _STATS_KIND,
            "worker_id": self.worker_id,
            "pid": self.pid,
            "frames_scored": self.frames_scored,
            "malformed_messages": self.malformed_messages,
            "is_ready": self.is_ready,
            "is_stopping": self.is_stopping,
        }
        return [json.dumps(header).encode("utf-8")]

    @classmethod
    def decode(cls, parts: Sequence[bytes]) -> WorkerStats:
        if len(parts) != 1:
            raise WireFormatError(f"expected 1 stats part, got {len(parts)}")
        header = _load_header(parts[0], _STATS_KIND)
        return cls(
            worker_id=_field(header, "worker_id", str),
            pid=_field(header, "pid", int),
            frames_scored=_field(header, "frames_scored", int),
            malformed_messages=_field(header, "malformed_messages", int),
            is_ready=bool(header.get("is_ready")),
            is_stopping=bool(header.get("is_stopping")),
        )


def decode_worker_output(parts: Sequence[bytes]) -> ResultMessage | WorkerStats:
    """Decode a message on the results socket: a frame result or a worker's stats."""
    if not parts:
        raise WireFormatError("expected at least one part, got none")
    try:
        kind = json.loads(bytes(parts[0][:MAX_HEADER_BYTES]).decode("utf-8")).get("kind")
    except Exception:  # noqa: BLE001 - reported below as malformed
        kind = None
    if kind == _STATS_KIND:
        return WorkerStats.decode(parts)
    return ResultMessage.decode(parts)
