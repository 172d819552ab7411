"""Small annotated JPEG of a scored frame, for the dashboard (``deepfake:thumb:<id>``)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from detector.face_crop import scale_to_width
from detector.wire import FaceResult

_RED_BGR = (40, 40, 230)
_GREEN_BGR = (60, 200, 60)


def render_thumbnail(
    frame_bgr: np.ndarray,
    faces: Sequence[FaceResult],
    threshold: float,
    width_px: int = 320,
    quality: int = 80,
) -> bytes:
    """Downscale ``frame_bgr`` to ``width_px`` and draw each face box, red at or above the
    threshold and green below it, with its fake probability. Returns JPEG bytes."""
    small, factor = scale_to_width(frame_bgr, width_px)
    canvas = small.copy()
    for face in faces:
        x1, y1, x2, y2 = (int(round(v / factor)) for v in face.box_xyxy)
        colour = _RED_BGR if face.fake_probability >= threshold else _GREEN_BGR
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 2)
        cv2.putText(canvas, f"{face.fake_probability:.2f}", (x1, max(12, y1 - 4)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    return _jpeg(canvas, quality)


def encode_frame_jpeg(frame_bgr: np.ndarray, width_px: int = 1280, quality: int = 90) -> bytes:
    """The frame itself, unannotated, at most ``width_px`` wide: what the dashboard needs to
    detect and explain its faces again (``deepfake:frame:<id>``)."""
    small, _ = scale_to_width(frame_bgr, width_px)
    return _jpeg(small, quality)


def _jpeg(image_bgr: np.ndarray, quality: int) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return encoded.tobytes()
