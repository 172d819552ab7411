"""Self-blended images (Shiohara & Yamasaki, CVPR 2022): a face blended with a jittered copy of itself.

A pseudo-fake is ``out = source * m + target * (1 - m)`` where ``target`` is the untouched crop,
``source`` is the same crop after colour, frequency and small geometric jitter, and ``m`` is a
blurred mask inside the face scaled by a blend ratio. The model learns the blending boundary and
the statistical mismatch it leaves, not one generator's artefacts. Pure numpy/cv2; every random
choice comes from the ``numpy.random.Generator`` passed in, so a seed reproduces an image.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)


@dataclass(frozen=True)
class SelfBlendSettings:
    """Ranges of the random jitter, as fractions of the face box unless named otherwise."""

    max_shift: float = 0.03
    max_scale_change: float = 0.05
    hue_shift_deg: float = 8.0
    saturation_shift: float = 0.15
    value_shift: float = 0.15
    rgb_shift: float = 20.0
    rgb_shift_probability: float = 1.0
    contrast_range: tuple[float, float] = (0.85, 1.15)
    hull_probability: float = 0.5
    mask_warp: float = 0.0  # elastic warp of the mask outline, as a fraction of the face box

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_shift < 0.5:
            raise ValueError(f"expected 0 <= max_shift < 0.5, got {self.max_shift}")
        if not 0.0 <= self.max_scale_change < 0.5:
            raise ValueError(f"expected 0 <= max_scale_change < 0.5, got {self.max_scale_change}")
        if not 0.0 <= self.hull_probability <= 1.0:
            raise ValueError(f"expected 0 <= hull_probability <= 1, got {self.hull_probability}")
        if not 0.0 <= self.rgb_shift_probability <= 1.0:
            raise ValueError(
                f"expected 0 <= rgb_shift_probability <= 1, got {self.rgb_shift_probability}"
            )
        if not 0.0 <= self.mask_warp < 0.25:
            raise ValueError(f"expected 0 <= mask_warp < 0.25, got {self.mask_warp}")


# Recipes by name, so a training run records which one made its pseudo-fakes. "v1" (the
# defaults) made sbi_b0 0.1.0: colour shifts on every source and a smooth mask outline. "v2" moves
# toward the published recipe: the RGB shift on 30 % of sources, milder HSV and contrast changes,
# and an elastically warped mask outline (face-swap masks follow landmarks, not ellipses). It was
# tried and not adopted (models/sbi_b0.history.md).
BLEND_RECIPES = {
    "v1": SelfBlendSettings(),
    "v2": SelfBlendSettings(hue_shift_deg=4.0, saturation_shift=0.1, value_shift=0.1,
                            rgb_shift_probability=0.3, contrast_range=(0.9, 1.1), mask_warp=0.04),
}


def face_box_in_crop(size_px: int, margin: float) -> tuple[float, float, float, float]:
    """Where the detector's face box sits inside a square crop made with ``margin``.

    ``detector.face_crop.square_box_xyxy`` grows the longer side by ``margin`` on every edge, so
    the face spans the central ``1 / (1 + 2 margin)`` of the crop.
    """
    inset = size_px * margin / (1.0 + 2.0 * margin)
    return inset, inset, size_px - inset, size_px - inset


def _box_indicator(shape_hw: tuple[int, int], box_xyxy) -> np.ndarray:
    height, width = shape_hw
    x1, y1, x2, y2 = box_xyxy
    indicator = np.zeros((height, width), np.float32)
    indicator[max(0, int(np.ceil(y1))):min(height, int(y2)),
              max(0, int(np.ceil(x1))):min(width, int(x2))] = 1.0
    return indicator


def random_face_mask(
    shape_hw: tuple[int, int],
    face_box_xyxy: tuple[float, float, float, float],
    rng: np.random.Generator,
    hull_probability: float = 0.5,
    warp: float = 0.0,
) -> np.ndarray:
    """A soft mask in ``[0, 1]`` that is zero outside the face box.

    Either an ellipse over the inner face (random centre, axes and tilt) or the convex hull of
    random points drawn in that ellipse (a stand-in for a landmark hull), then eroded or dilated
    and Gaussian-blurred so the boundary is soft.

    Args:
        shape_hw: ``(height, width)`` of the crop.
        face_box_xyxy: the face box in crop pixels.
        rng: the random generator.
        hull_probability: chance of the hull shape instead of the ellipse.
        warp: largest displacement of the outline by a smooth random field, as a fraction of
            the face box's shorter side (0 = none).
    Returns:
        ``(height, width)`` float32 mask.
    """
    height, width = shape_hw
    x1, y1, x2, y2 = face_box_xyxy
    box_w, box_h = x2 - x1, y2 - y1
    if box_w <= 2 or box_h <= 2:
        raise ValueError(f"expected a face box wider and taller than 2 px, got {face_box_xyxy}")
    cx = (x1 + x2) / 2.0 + rng.uniform(-0.04, 0.04) * box_w
    cy = (y1 + y2) / 2.0 + rng.uniform(0.0, 0.08) * box_h  # faces sit low in detector boxes
    ax = box_w * rng.uniform(0.30, 0.42)
    ay = box_h * rng.uniform(0.36, 0.46)
    angle = rng.uniform(-12.0, 12.0)
    hard = np.zeros((height, width), np.uint8)
    if rng.random() < hull_probability:
        count = int(rng.integers(12, 30))
        radius = np.sqrt(rng.uniform(0.55, 1.0, count))
        theta = rng.uniform(0.0, 2.0 * np.pi, count)
        rad = np.deg2rad(angle)
        px = radius * ax * np.cos(theta)
        py = radius * ay * np.sin(theta)
        points = np.stack(
            [cx + px * np.cos(rad) - py * np.sin(rad), cy + px * np.sin(rad) + py * np.cos(rad)],
            axis=1,
        )
        hull = cv2.convexHull(np.round(points).astype(np.int32))
        cv2.fillConvexPoly(hard, hull, 1)
    else:
        cv2.ellipse(hard, (int(round(cx)), int(round(cy))), (int(round(ax)), int(round(ay))),
                    angle, 0, 360, 1, thickness=-1)
    if warp > 0:
        hard = _warp_mask(hard, min(box_w, box_h) * warp, rng)
    side = max(3, int(min(box_w, box_h) * rng.uniform(0.02, 0.08)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    hard = cv2.erode(hard, kernel) if rng.random() < 0.5 else cv2.dilate(hard, kernel)
    mask = hard.astype(np.float32)
    blur = max(3, int(min(box_w, box_h) * rng.uniform(0.05, 0.25)) | 1)
    mask = cv2.GaussianBlur(mask, (blur, blur), 0)
    if rng.random() < 0.5:  # a second, sharper blur keeps some boundaries crisp
        mask = cv2.GaussianBlur(mask, (3, 3), 0)
    peak = float(mask.max())
    if peak > 0:
        mask = mask / peak
    return mask * _box_indicator((height, width), face_box_xyxy)


def _warp_mask(hard: np.ndarray, amplitude_px: float, rng: np.random.Generator) -> np.ndarray:
    """Displace a binary mask by a smooth random field (a coarse grid of offsets, upsampled)."""
    height, width = hard.shape
    grid = rng.uniform(-1.0, 1.0, (2, 4, 4)).astype(np.float32) * amplitude_px
    dx = cv2.resize(grid[0], (width, height), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(grid[1], (width, height), interpolation=cv2.INTER_CUBIC)
    xx, yy = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(hard, xx + dx, yy + dy, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=0)


def _colour_jitter(image_rgb: np.ndarray, rng: np.random.Generator,
                   settings: SelfBlendSettings) -> np.ndarray:
    out = image_rgb.astype(np.float32)
    shift = rng.uniform(-settings.rgb_shift, settings.rgb_shift, 3).astype(np.float32)
    # No draw at probability 1, so v1 keeps the random stream (and the samples) it had.
    if settings.rgb_shift_probability >= 1.0 or rng.random() < settings.rgb_shift_probability:
        out += shift
    hsv = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-1, 1) * settings.hue_shift_deg / 2.0) % 180.0
    hsv[..., 1] *= 1.0 + rng.uniform(-settings.saturation_shift, settings.saturation_shift)
    hsv[..., 2] *= 1.0 + rng.uniform(-settings.value_shift, settings.value_shift)
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    contrast = rng.uniform(*settings.contrast_range)
    mean = out.mean()
    return (out - mean) * contrast + mean


def _frequency_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    choice = int(rng.integers(0, 4))
    if choice == 0:  # blur
        sigma = rng.uniform(0.5, 1.5)
        return cv2.GaussianBlur(image, (0, 0), sigma)
    if choice == 1:  # down- and up-sampling, as face-swap pipelines do
        height, width = image.shape[:2]
        factor = rng.uniform(0.4, 0.8)
        small = cv2.resize(image, (max(1, int(width * factor)), max(1, int(height * factor))),
                           interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    if choice == 2:  # sharpen
        blurred = cv2.GaussianBlur(image, (0, 0), 1.0)
        amount = rng.uniform(0.3, 1.0)
        return image + amount * (image - blurred)
    return image


def _geometric_jitter(image: np.ndarray, face_box_xyxy, rng: np.random.Generator,
                      settings: SelfBlendSettings) -> np.ndarray:
    height, width = image.shape[:2]
    x1, y1, x2, y2 = face_box_xyxy
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    scale = 1.0 + rng.uniform(-settings.max_scale_change, settings.max_scale_change)
    matrix = cv2.getRotationMatrix2D((cx, cy), 0.0, scale)
    matrix[0, 2] += rng.uniform(-settings.max_shift, settings.max_shift) * (x2 - x1)
    matrix[1, 2] += rng.uniform(-settings.max_shift, settings.max_shift) * (y2 - y1)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def self_blend(
    image_rgb: np.ndarray,
    face_box_xyxy: tuple[float, float, float, float],
    rng: np.random.Generator,
    settings: SelfBlendSettings = SelfBlendSettings(),
) -> tuple[np.ndarray, np.ndarray]:
    """Make one self-blended pseudo-fake from a real face crop.

    Args:
        image_rgb: ``(height, width, 3)`` uint8 RGB face crop (not modified).
        face_box_xyxy: the face box in crop pixels (see :func:`face_box_in_crop`).
        rng: random generator; the same seed gives the same output.
        settings: jitter ranges.
    Returns:
        ``(blended, mask)``: ``(height, width, 3)`` uint8 image and ``(height, width)`` float32
        blend weight in ``[0, 1]``; the image equals the input wherever the weight is 0, and the
        weight is 0 outside the face box.
    Raises:
        ValueError: the image is not ``(h, w, 3)`` uint8.
    """
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(
            f"expected an (h, w, 3) uint8 image, got {image_rgb.shape} {image_rgb.dtype}"
        )
    target = image_rgb.astype(np.float32)
    source = _colour_jitter(image_rgb, rng, settings)
    source = _frequency_jitter(source, rng)
    source = _geometric_jitter(source, face_box_xyxy, rng, settings)
    mask = random_face_mask(image_rgb.shape[:2], face_box_xyxy, rng, settings.hull_probability,
                            settings.mask_warp)
    ratio = float(rng.choice(BLEND_RATIOS))
    weight = (mask * ratio).astype(np.float32)
    blended = source * weight[..., None] + target * (1.0 - weight[..., None])
    out = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    # Rounding can move a pixel by one where the weight is tiny; keep the untouched area exact.
    untouched = weight <= 0.0
    out[untouched] = image_rgb[untouched]
    return out, weight
