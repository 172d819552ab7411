"""Faces for training and evaluation: the serving detector, plus a whole-image fallback for tight crops.

Datasets often ship faces already cropped tight and small (MTCNN crops of ~100 px, 224 px face
chips). YuNet finds most of them, but when it finds none in a small, near-square image, the image
itself is taken as the face box: it is then cropped with the card's margin exactly like a detected
face, so the crop looks like those the model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detector.face_detect import FaceBox, FaceDetector

FALLBACK_CONFIDENCE = 0.0


@dataclass(frozen=True)
class FallbackPolicy:
    """When a frame without detections is treated as one face filling the image."""

    max_side_px: int = 400
    max_aspect: float = 1.5

    def __post_init__(self) -> None:
        if self.max_side_px < 1:
            raise ValueError(f"expected max_side_px >= 1, got {self.max_side_px}")
        if self.max_aspect < 1.0:
            raise ValueError(f"expected max_aspect >= 1, got {self.max_aspect}")

    def applies_to(self, shape_hw: tuple[int, ...]) -> bool:
        height, width = shape_hw[:2]
        if height < 1 or width < 1:
            return False
        aspect = max(height, width) / min(height, width)
        return max(height, width) <= self.max_side_px and aspect <= self.max_aspect


def whole_image_box(shape_hw: tuple[int, ...]) -> FaceBox:
    """The whole image as a face box, with confidence 0 to mark it as a fallback."""
    height, width = shape_hw[:2]
    return FaceBox((0.0, 0.0, float(width), float(height)), FALLBACK_CONFIDENCE)


def faces_with_fallback(
    detector: FaceDetector, frame_bgr: np.ndarray, policy: FallbackPolicy | None
) -> tuple[list[FaceBox], bool]:
    """Detect faces; with none found and ``policy`` applying, return the whole-image box.

    Returns:
        the faces (largest first) and whether the fallback was used.
    """
    faces = detector.detect(frame_bgr)
    if faces or policy is None or not policy.applies_to(frame_bgr.shape):
        return faces, False
    return [whole_image_box(frame_bgr.shape)], True
