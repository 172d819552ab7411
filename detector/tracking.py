"""Face tracks per stream: ids that persist across sampled frames, a rolling score per track,
and the detection plan (full frame, or only near the known faces) for the next frame.

Pure logic, no I/O: the service's collector thread feeds results in (:meth:`StreamTracker.update`)
and the hub's sender thread asks for plans (:meth:`StreamTracker.plan`); a lock makes the two
safe. Workers stay stateless: a plan travels with its frame (docs/wire.md, ``detect``).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from detector.boxes import box_iou
from detector.config import TrackingConfig
from detector.scoring import RollingScore
from detector.wire import FULL_DETECT, TRACK_DETECT, DetectRequest, FaceResult, TrackHint

Box = tuple[float, float, float, float]

LIVE = "live"
ENDED = "ended"
MAX_PLANS_KEPT = 256  # plans issued and not yet answered (live frames may never be answered)


def greedy_matches(track_boxes: Sequence[Box], face_boxes: Sequence[Box],
                   min_iou: float) -> list[tuple[int, int]]:
    """Pairs ``(track position, face position)`` by descending IoU, each used once, IoU ≥
    ``min_iou``. Ties go to the earlier track, then the earlier face, so the result is
    deterministic."""
    candidates = sorted(
        ((box_iou(t, f), ti, fi) for ti, t in enumerate(track_boxes)
         for fi, f in enumerate(face_boxes)),
        key=lambda item: (-item[0], item[1], item[2]),
    )
    used_tracks: set[int] = set()
    used_faces: set[int] = set()
    pairs = []
    for iou, ti, fi in candidates:
        if iou < min_iou:
            break
        if ti in used_tracks or fi in used_faces:
            continue
        used_tracks.add(ti)
        used_faces.add(fi)
        pairs.append((ti, fi))
    return sorted(pairs)


@dataclass(frozen=True)
class TrackSummary:
    """A track as the score message reports it (docs/redis.md, ``tracks``)."""

    track_id: int
    box_xyxy: Box
    rolling_score: float | None
    status: str  # LIVE or ENDED
    first_frame_index: int
    last_frame_index: int  # the last frame the face was seen in

    def to_json(self) -> dict:
        return {
            "track_id": self.track_id,
            "box_xyxy": [round(float(v), 1) for v in self.box_xyxy],
            "rolling_score": None if self.rolling_score is None else round(self.rolling_score, 6),
            "status": self.status,
            "first_frame_index": self.first_frame_index,
            "last_frame_index": self.last_frame_index,
        }


@dataclass(frozen=True)
class TrackUpdate:
    """What one frame's result did: its faces with track ids, the tracks now, the stream score.

    ``tracks`` lists the live tracks and those that ended on this frame; ``stream_score`` is
    the most suspicious live track's rolling score, None when no live track has one;
    ``detect_mode`` how the frame was searched (its plan's mode; ``full`` without a plan).
    """

    faces: tuple[FaceResult, ...]
    tracks: tuple[TrackSummary, ...]
    stream_score: float | None
    detect_mode: str = FULL_DETECT


@dataclass
class _Track:
    track_id: int
    box_xyxy: Box
    confidence: float
    rolling: RollingScore
    first_frame_index: int
    last_frame_index: int
    misses: int = 0
    is_lost: bool = False  # missed on the last frame: the next plan detects in full

    def summary(self, status: str) -> TrackSummary:
        return TrackSummary(self.track_id, self.box_xyxy, self.rolling.value(), status,
                            self.first_frame_index, self.last_frame_index)


class StreamTracker:
    """The tracks of one run of one stream.

    Args:
        settings: the ``[tracking]`` section.
        window: each track's rolling window in sampled frames (``scoring.window``).
        max_tracks: at most this many live tracks (``faces.max_faces``); extra faces get none.
        allow_track_mode: False: every plan is a full detection (file streams by default).
    """

    def __init__(self, settings: TrackingConfig, window: int, max_tracks: int = 5,
                 allow_track_mode: bool = True):
        self._settings = settings
        self._window = window
        self._max_tracks = max_tracks
        self._allow_track_mode = allow_track_mode
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._plans_since_full = 0
        self._plans: OrderedDict[int, DetectRequest] = OrderedDict()
        self._lock = threading.Lock()

    # --- the sender thread ----------------------------------------------------------------------
    def plan(self, frame_index: int) -> DetectRequest:
        """How the worker should look for faces in ``frame_index`` (asked just before sending).

        Full detection every ``tracking.full_every`` sampled frames, when no track is live, when
        a track was missed on its last frame, or when a track's detector confidence fell below
        ``tracking.redetect_confidence``; otherwise only near each live track's last box.
        """
        with self._lock:
            is_full = (
                not self._allow_track_mode
                or self._settings.full_every <= 1
                or not self._tracks
                or self._plans_since_full + 1 >= self._settings.full_every
                or any(t.is_lost or t.confidence < self._settings.redetect_confidence
                       for t in self._tracks)
            )
            if is_full:
                request = DetectRequest(FULL_DETECT)
                self._plans_since_full = 0
            else:
                request = DetectRequest(TRACK_DETECT, tuple(
                    TrackHint(t.track_id, t.box_xyxy) for t in self._tracks))
                self._plans_since_full += 1
            self._plans[frame_index] = request
            while len(self._plans) > MAX_PLANS_KEPT:
                self._plans.popitem(last=False)
            return request

    # --- the collector thread -------------------------------------------------------------------
    def update(self, frame_index: int, faces: Sequence[FaceResult],
               failed: bool = False) -> TrackUpdate:
        """Associate one frame's faces with the tracks and roll each track's score.

        Faces carrying a ``track_id`` the frame's plan hinted keep it; the others are matched
        to the remaining live tracks by IoU (≥ ``tracking.match_iou``), and unmatched faces
        start new tracks. A live track without a face on this frame is missed; after
        ``tracking.max_missed`` misses in a row it ends. A ``failed`` frame (the worker could
        not score it) changes no track.

        Returns:
            the faces with their track ids, the tracks, and the stream score.
        """
        with self._lock:
            plan = self._plans.pop(frame_index, None)
            mode = FULL_DETECT if plan is None else plan.mode
            if failed:
                return TrackUpdate(tuple(faces), self._summaries(()), self._stream_score(), mode)
            hinted = {h.track_id for h in plan.tracks} if plan is not None else set()
            by_id = {t.track_id: t for t in self._tracks}
            assigned: dict[int, int] = {}  # face position → track id
            for position, face in enumerate(faces):
                if face.track_id in hinted and face.track_id in by_id \
                        and face.track_id not in assigned.values():
                    assigned[position] = face.track_id
            free_tracks = [t for t in self._tracks if t.track_id not in assigned.values()]
            free_faces = [p for p in range(len(faces)) if p not in assigned]
            for ti, fi in greedy_matches([t.box_xyxy for t in free_tracks],
                                         [faces[p].box_xyxy for p in free_faces],
                                         self._settings.match_iou):
                assigned[free_faces[fi]] = free_tracks[ti].track_id
            for position in range(len(faces)):
                if position in assigned:
                    continue
                if len(self._tracks) >= self._max_tracks:
                    continue
                track = _Track(self._next_id, faces[position].box_xyxy,
                               faces[position].detector_confidence, RollingScore(self._window),
                               frame_index, frame_index)
                self._next_id += 1
                self._tracks.append(track)
                by_id[track.track_id] = track
                assigned[position] = track.track_id
            seen = set(assigned.values())
            ended: list[_Track] = []
            for track in self._tracks:
                if track.track_id in seen:
                    continue
                track.misses += 1
                track.is_lost = True
                track.rolling.add(frame_index, None)
                if track.misses > self._settings.max_missed:
                    ended.append(track)
            out_faces = []
            for position, face in enumerate(faces):
                track_id = assigned.get(position)
                if track_id is not None:
                    track = by_id[track_id]
                    if frame_index >= track.last_frame_index:  # a late live result keeps the newer box
                        track.box_xyxy = face.box_xyxy
                        track.confidence = face.detector_confidence
                        track.last_frame_index = frame_index
                    track.misses = 0
                    track.is_lost = False
                    track.rolling.add(frame_index, face.fake_probability)
                out_faces.append(dataclasses.replace(face, track_id=track_id))
            self._tracks = [t for t in self._tracks if t not in ended]
            return TrackUpdate(tuple(out_faces), self._summaries(ended), self._stream_score(), mode)

    def live_tracks(self) -> tuple[TrackSummary, ...]:
        with self._lock:
            return self._summaries(())

    def _summaries(self, ended: Sequence[_Track]) -> tuple[TrackSummary, ...]:
        tracks = [t.summary(LIVE) for t in self._tracks] + [t.summary(ENDED) for t in ended]
        return tuple(sorted(tracks, key=lambda s: s.track_id))

    def _stream_score(self) -> float | None:
        scores = [s for s in (t.rolling.value() for t in self._tracks) if s is not None]
        return max(scores) if scores else None
