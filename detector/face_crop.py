"""Pure face-crop geometry: grow a detection to a square with a margin, cut it out, resize."""

from __future__ import annotations

import cv2
import numpy as np


def square_box_xyxy(
    box_xyxy: tuple[float, float, float, float], margin: float
) -> tuple[int, int, int, int]:
    """Grow a face box into a square around its centre.

    Args:
        box_xyxy: ``(x1, y1, x2, y2)`` in pixels, ``x2 > x1``, ``y2 > y1``.
        margin: fraction of the longer side added on every edge (0.25 → side × 1.5).
    Returns:
        integer ``(x1, y1, x2, y2)`` of the square; it may extend past the frame.
    """
    x1, y1, x2, y2 = box_xyxy
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"expected x2 > x1 and y2 > y1, got {box_xyxy}")
    side = max(x2 - x1, y2 - y1) * (1.0 + 2.0 * margin)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    left = int(round(cx - side / 2.0))
    top = int(round(cy - side / 2.0))
    side_px = max(1, int(round(side)))
    return left, top, left + side_px, top + side_px


def crop_face(
    frame_bgr: np.ndarray,
    box_xyxy: tuple[float, float, float, float],
    margin: float,
    size_px: int,
) -> np.ndarray:
    """Cut a square face crop with a margin and resize it to the model's input.

    Args:
        frame_bgr: ``(height, width, 3)`` uint8 BGR frame (not modified).
        box_xyxy: the face box in frame pixels.
        margin: see :func:`square_box_xyxy`.
        size_px: side of the output.
    Returns:
        ``(size_px, size_px, 3)`` uint8 RGB crop; parts outside the frame are black.
    """
    height, width = frame_bgr.shape[:2]
    x1, y1, x2, y2 = square_box_xyxy(box_xyxy, margin)
    pad_left, pad_top = max(0, -x1), max(0, -y1)
    pad_right, pad_bottom = max(0, x2 - width), max(0, y2 - height)
    inside = frame_bgr[max(0, y1):min(height, y2), max(0, x1):min(width, x2)]
    if pad_left or pad_top or pad_right or pad_bottom:
        inside = cv2.copyMakeBorder(
            inside, pad_top, pad_bottom, pad_left, pad_right, cv2.BORDER_CONSTANT, value=0
        )
    side = inside.shape[0]
    interpolation = cv2.INTER_AREA if side > size_px else cv2.INTER_LINEAR
    resized = cv2.resize(inside, (size_px, size_px), interpolation=interpolation)
    return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)


def scale_to_width(frame_bgr: np.ndarray, width_px: int) -> tuple[np.ndarray, float]:
    """Downscale a frame so it is at most ``width_px`` wide (never upscales).

    Returns:
        the (possibly) smaller frame and the factor that maps its coordinates back
        to the original (``original = small * factor``).
    """
    width = frame_bgr.shape[1]
    if width <= width_px:
        return frame_bgr, 1.0
    factor = width / float(width_px)
    height_px = max(1, int(round(frame_bgr.shape[0] / factor)))
    small = cv2.resize(frame_bgr, (width_px, height_px), interpolation=cv2.INTER_AREA)
    return small, factor
