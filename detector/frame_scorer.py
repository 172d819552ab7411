"""Detect faces, crop them and classify every crop of a batch of frames in one model call.

This is the one code path shared by the streaming workers, ``evaluate`` and the dashboard's
uploads, so that they all score a frame the same way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detector.boxes import box_iou
from detector.errors import ModelError
from detector.face_crop import crop_face
from detector.face_detect import FaceBox, FaceDetector, detect_near
from detector.model_card import ModelCard
from detector.runtime import ModelRuntime
from detector.wire import TRACK_DETECT, DetectRequest, FaceResult

SAME_FACE_IOU = 0.5  # two tracked faces overlapping this much in one frame are one face


@dataclass(frozen=True)
class BatchTimings:
    """Wall time of each stage for one batch, in seconds."""

    detect_s: float
    crop_s: float
    classify_s: float
    n_frames: int
    n_faces: int


def detect_planned(detector: FaceDetector, frame_bgr: np.ndarray, plan: DetectRequest | None,
                   roi_scale: float, roi_face_px: int,
                   full_width_px: int | None = None) -> list[FaceBox]:
    """The faces of one ``(h, w, 3)`` BGR frame as its plan asks: the whole frame (None or
    ``full``), or only near each hint of a ``track`` plan (``face_detect.detect_near``: one
    face at most per hint, tagged with its track id; a hint without a face is left out);
    ``full_width_px``: the width full detections run at (``faces.detect_width_px``)."""
    if plan is None or plan.mode != TRACK_DETECT:
        return detector.detect(frame_bgr)
    kept: list[FaceBox] = []
    for hint in plan.tracks:
        face = detect_near(detector, frame_bgr, hint.track_id, hint.box_xyxy, roi_scale,
                           roi_face_px, full_width_px)
        # Two tracks on one face (e.g. a late live result started a second one) would both
        # find it in their regions, and it would be cropped and scored twice: the first
        # (older) track keeps it, the other is reported not found, which makes the next
        # frame a full detection that leaves the face to one track.
        if face is not None and all(box_iou(face.box_xyxy, other.box_xyxy) < SAME_FACE_IOU
                                    for other in kept):
            kept.append(face)
    return kept


class FrameScorer:
    """Faces → crops → one batched classifier call.

    Args:
        card: the model card (input size, normalisation, face margin).
        detector: finds faces in a BGR frame.
        runtime: runs the classifier.
        roi_scale, roi_face_px: the region searched around a track hint, and the face width
            it is scaled to at most (``tracking.roi_scale``, ``tracking.roi_face_px``).
        full_width_px: the width full detections run at (``faces.detect_width_px``); a region
            is never searched finer than that.
    """

    def __init__(self, card: ModelCard, detector: FaceDetector, runtime: ModelRuntime,
                 roi_scale: float = 3.0, roi_face_px: int = 48, full_width_px: int | None = 640):
        self.card = card
        self.detector = detector
        self.runtime = runtime
        self.roi_scale = roi_scale
        self.roi_face_px = roi_face_px
        self.full_width_px = full_width_px

    def detect(self, frames_bgr: Sequence[np.ndarray],
               plans: Sequence[DetectRequest | None] | None = None) -> list[list[FaceBox]]:
        """Faces per frame: the whole frame, or with a ``track`` plan only near each hinted
        box (one face at most per hint, tagged with its track id; a hint left without a face
        was not found there)."""
        plans = plans or [None] * len(frames_bgr)
        return [self.detect_one(frame, plan) for frame, plan in zip(frames_bgr, plans)]

    def detect_one(self, frame_bgr: np.ndarray, plan: DetectRequest | None = None) -> list[FaceBox]:
        return detect_planned(self.detector, frame_bgr, plan, self.roi_scale, self.roi_face_px,
                              self.full_width_px)

    def crops(
        self, frames_bgr: Sequence[np.ndarray], faces: Sequence[Sequence[FaceBox]]
    ) -> np.ndarray:
        """``(total_faces, s, s, 3)`` uint8 RGB crops in frame order."""
        size = self.card.input_size_px
        crops = [
            crop_face(frame, face.box_xyxy, self.card.face_margin, size, self.card.crop_rule)
            for frame, frame_faces in zip(frames_bgr, faces)
            for face in frame_faces
        ]
        if not crops:
            return np.zeros((0, size, size, 3), dtype=np.uint8)
        return np.stack(crops)

    def classify(self, crops_rgb: np.ndarray) -> np.ndarray:
        """``(n, s, s, 3)`` uint8 RGB crops → ``(n,)`` fake probabilities."""
        if len(crops_rgb) == 0:
            return np.zeros((0,), dtype=np.float32)
        probabilities = self.runtime.predict(self.card.normalise(crops_rgb))
        if not np.all(np.isfinite(probabilities)):
            raise ModelError(f"model {self.card.name} returned non-finite probabilities")
        return self.card.calibrate(np.clip(probabilities, 0.0, 1.0))

    def score_frames(
        self, frames_bgr: Sequence[np.ndarray], faces: Sequence[Sequence[FaceBox]] | None = None,
        plans: Sequence[DetectRequest | None] | None = None,
    ) -> tuple[list[list[FaceResult]], BatchTimings]:
        """Score a batch of frames.

        Args:
            frames_bgr: ``(h, w, 3)`` uint8 BGR frames (any sizes).
            faces: already-detected faces per frame; None runs the detector.
            plans: per frame, how to detect (:meth:`detect`); None: in full.
        Returns:
            per frame, its faces with fake probabilities (empty list = no face), and timings.
        """
        started = time.perf_counter()
        if faces is None:
            faces = self.detect(frames_bgr, plans)
        detected = time.perf_counter()
        crops = self.crops(frames_bgr, faces)
        cropped = time.perf_counter()
        probabilities = self.classify(crops)
        classified = time.perf_counter()

        results: list[list[FaceResult]] = []
        cursor = 0
        for frame_faces in faces:
            frame_results = []
            for face in frame_faces:
                frame_results.append(
                    FaceResult(face.box_xyxy, face.confidence, float(probabilities[cursor]),
                               face.track_id)
                )
                cursor += 1
            results.append(frame_results)
        timings = BatchTimings(
            detect_s=detected - started,
            crop_s=cropped - detected,
            classify_s=classified - cropped,
            n_frames=len(frames_bgr),
            n_faces=len(crops),
        )
        return results, timings
