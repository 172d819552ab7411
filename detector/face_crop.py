"""Pure face-crop geometry: grow a detection by a margin, cut it out, resize.

Two crop rules, named by a model card's ``crop_rule``: ``square`` grows the box to a square by a
fraction of its longer side on every edge and pads the outside of the frame with black (sbi_b0
0.1.0); ``box`` grows the box by a fraction of its own width (left/right) and height (top/bottom),
clips to the frame and stretches to the square input, as the published self-blended-images
recipe crops (recipe v3).
"""

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


CROP_RULES = ("square", "box")


def box_crop_region(
    box_xyxy: tuple[float, float, float, float],
    shape_hw: tuple[int, int],
    margins: tuple[float, float, float, float],
) -> tuple[int, int, int, int]:
    """The box grown by ``(left, top, right, bottom)`` fractions, clipped to the image.

    Left/right margins are fractions of the box width, top/bottom of its height.

    Returns:
        integer ``(x1, y1, x2, y2)`` inside the image, at least 1 px wide and tall.
    """
    height, width = shape_hw[:2]
    x1, y1, x2, y2 = box_xyxy
    box_w, box_h = x2 - x1, y2 - y1
    if box_w <= 0 or box_h <= 0:
        raise ValueError(f"expected x2 > x1 and y2 > y1, got {box_xyxy}")
    left, top, right, bottom = margins
    cx1 = int(np.clip(np.floor(x1 - left * box_w), 0, width - 1))
    cy1 = int(np.clip(np.floor(y1 - top * box_h), 0, height - 1))
    cx2 = int(np.clip(np.ceil(x2 + right * box_w), cx1 + 1, width))
    cy2 = int(np.clip(np.ceil(y2 + bottom * box_h), cy1 + 1, height))
    return cx1, cy1, cx2, cy2


def cut_and_resize(image: np.ndarray, region_xyxy: tuple[int, int, int, int],
                   size_px: int) -> np.ndarray:
    """``image[region]`` resized to ``(size_px, size_px)`` (area filter when shrinking)."""
    x1, y1, x2, y2 = region_xyxy
    inside = image[y1:y2, x1:x2]
    interpolation = cv2.INTER_AREA if max(inside.shape[:2]) > size_px else cv2.INTER_LINEAR
    return cv2.resize(inside, (size_px, size_px), interpolation=interpolation)


def crop_face(
    frame_bgr: np.ndarray,
    box_xyxy: tuple[float, float, float, float],
    margin: float,
    size_px: int,
    rule: str = "square",
) -> np.ndarray:
    """Cut a face crop with a margin and resize it to the model's input.

    Args:
        frame_bgr: ``(height, width, 3)`` uint8 BGR frame (not modified).
        box_xyxy: the face box in frame pixels.
        margin: see :func:`square_box_xyxy` (``square``) or :func:`box_crop_region` (``box``,
            the same fraction on every side).
        size_px: side of the output.
        rule: one of :data:`CROP_RULES`.
    Returns:
        ``(size_px, size_px, 3)`` uint8 RGB crop; with ``square``, parts outside the frame are
        black.
    """
    if rule == "box":
        region = box_crop_region(box_xyxy, frame_bgr.shape[:2], (margin,) * 4)
        return cv2.cvtColor(cut_and_resize(frame_bgr, region, size_px), cv2.COLOR_BGR2RGB)
    if rule != "square":
        raise ValueError(f"expected rule in {CROP_RULES}, got {rule!r}")
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
