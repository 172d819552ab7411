"""Pure scoring: per-face probability → per-frame score → rolling stream score → verdict.

``None`` always means "no face, no score"; it is never turned into 0.0 or 0.5.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence

from detector.stream_status import StreamStatus

REAL = "REAL"
FAKE = "FAKE"
NO_FACE = "NO_FACE"
# A stream's verdict before any of its frames was scored: not an answer about the video.
PENDING = "PENDING"
FAILED = "FAILED"


# A decision threshold lies strictly between these (scoring.threshold and a card's threshold).
THRESHOLD_ABOVE = 0.0
THRESHOLD_BELOW = 1.0


def decision_threshold(configured: float | None, card_threshold: float) -> float:
    """The FAKE/REAL threshold in force: ``scoring.threshold`` when set, else the model card's.

    Every verdict and every thumbnail box colour uses this one value.
    """
    return card_threshold if configured is None else configured


def frame_score(face_probabilities: Sequence[float]) -> float | None:
    """The most suspicious face decides the frame; no faces → None."""
    return max(face_probabilities) if face_probabilities else None


def verdict(score: float | None, threshold: float) -> str:
    """``FAKE`` at or above ``threshold``, ``REAL`` below it, ``NO_FACE`` for None."""
    if score is None:
        return NO_FACE
    return FAKE if score >= threshold else REAL


def unscored_verdict(status: str) -> str:
    """The verdict of a stream none of whose frames has been scored yet — a reconnecting
    camera, an unreadable file: ``FAILED`` for a failed stream, else ``PENDING``. Never
    ``NO_FACE``, which is an answer about frames that were seen."""
    return FAILED if status == StreamStatus.FAILED else PENDING


def stream_verdict(score: float | None, frames_scored: int, status: str, threshold: float) -> str:
    """A stream's verdict: :func:`unscored_verdict` before its first scored frame, then
    :func:`verdict` of ``score`` (rolling or whole-video)."""
    return unscored_verdict(status) if frames_scored <= 0 else verdict(score, threshold)


def aggregate_video(frame_scores: Iterable[float | None]) -> float | None:
    """A video's score: the mean of its frame scores, ignoring frames without faces."""
    scored = [s for s in frame_scores if s is not None]
    return sum(scored) / len(scored) if scored else None


class RollingScore:
    """Mean frame score over the ``window`` most recent sampled frames (by frame index).

    Results from several workers arrive slightly out of order, so frames are kept by index and
    the window always covers the highest indices seen; frames without faces occupy window slots
    but do not count toward the mean.
    """

    def __init__(self, window: int):
        if window < 1:
            raise ValueError(f"expected window >= 1, got {window}")
        self._window = window
        self._heap: list[tuple[int, float | None]] = []  # min-heap on frame index

    def add(self, frame_index: int, score: float | None) -> float | None:
        """Record a frame's score; return the rolling score (None when no frame had a face)."""
        if len(self._heap) < self._window:
            heapq.heappush(self._heap, (frame_index, score))
        elif frame_index > self._heap[0][0]:
            heapq.heapreplace(self._heap, (frame_index, score))
        return self.value()

    def value(self) -> float | None:
        return aggregate_video(score for _, score in self._heap)
