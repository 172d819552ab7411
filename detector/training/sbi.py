"""Blend recipe v3: the published self-blended-images recipe (Shiohara & Yamasaki, CVPR 2022), on landmarks.

A training pair is made from one *context* crop (the face with room around it, at full
resolution) and its 468 face-mesh landmarks:

1. the whole context is flipped (p 0.5) before anything else;
2. a mask is the convex hull of the landmarks (without the forehead points in a random 25 %), in
   one of four shapes: the whole face, the face below the brows with the brows raised
   ("extended"), the facial parts (eyes and brows, nose, mouth) or the face hull;
3. one copy gets the colour / frequency jitter (with p 0.5 the *target* gets it instead, so
   the real of the pair carries it too); the source and the mask get the same small affine
   shift (±3 % x, ±1.5 % y, scale 0.95–1/0.95), the mask an elastic warp (alpha 50, sigma 7);
4. the mask is resized to a random 192–256 px, blurred, eroded to where it was 1, blurred again,
   normalised and resized back, then scaled by a blend ratio; ``fake = src·m + tgt·(1 − m)``;
5. the real and the fake get the same augmentation (RGB shift, brightness/contrast, JPEG 40–100,
   one set of parameters for both); optionally (``downscale_share``, not in the published recipe)
   some pairs are first scaled down together and back up, as a face filmed at a lower
   resolution would be;
6. both are cut at the detector's box grown by an independent random 5–20 % per side (clipped to
   the context, never padded) and resized — serving uses the middle of that range (12.5 %).

The mask follows the landmarks, not the detector's box, so it is never cut off by the box.
Pure numpy/cv2: every random choice comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from detector.face_crop import box_crop_region, cut_and_resize
from detector.training.landmarks import (
    CHIN,
    EYEBROWS,
    FACE_OVAL,
    LEFT_EYE_OUTER,
    LEFT_EYE_REGION,
    MOUTH_REGION,
    NOSE_REGION,
    RIGHT_EYE_OUTER,
    RIGHT_EYE_REGION,
)

BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
HULL_TYPES = ("face", "extended", "parts", "hull")
CROP_MARGIN_RANGE = (0.05, 0.20)  # per side, as a fraction of the box's width / height
SERVING_CROP_MARGIN = 0.125  # the middle of CROP_MARGIN_RANGE


@dataclass(frozen=True)
class PairParams:
    """The parameters shared by a real and its fake in the paired augmentation (step 5)."""

    rgb_shift: tuple[float, float, float] | None
    brightness: float | None  # fraction of 255 added
    contrast: float | None  # gain is 1 + contrast
    jpeg_quality: int | None
    downscale: float | None = None  # both scaled by this, then back up, before the JPEG


PAIR_DOWNSCALE_RANGE = (0.4, 0.9)  # of the context's size: a 200 px face box becomes 80–180 px


# --- masks ------------------------------------------------------------------------------------
def _face_axis(points_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The face's up direction (unit vector from chin to eyes) and the eye midpoint."""
    eyes = (points_xy[LEFT_EYE_OUTER] + points_xy[RIGHT_EYE_OUTER]) / 2.0
    up = eyes - points_xy[CHIN]
    norm = float(np.linalg.norm(up))
    if norm < 1e-6:
        return np.array([0.0, -1.0]), eyes
    return up / norm, eyes


def without_forehead(points_xy: np.ndarray) -> np.ndarray:
    """The landmarks no higher than the top of the brows (dlib's 68 points, in mesh terms)."""
    up, eyes = _face_axis(points_xy)
    height = (points_xy - eyes) @ up
    brow_top = float(height[list(EYEBROWS)].max())
    return points_xy[height <= brow_top + 1e-3]


def _fill_hull(mask: np.ndarray, points_xy: np.ndarray) -> None:
    if len(points_xy) >= 3:
        hull = cv2.convexHull(np.round(points_xy).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1)


def landmark_hull_mask(shape_hw: tuple[int, int], points_xy: np.ndarray,
                       rng: np.random.Generator, hull_type: str | None = None) -> np.ndarray:
    """A hard ``{0, 1}`` mask from the landmarks, in one of :data:`HULL_TYPES`.

    Args:
        shape_hw: ``(height, width)`` of the image the points are in.
        points_xy: ``(468, 2)`` face-mesh points in that image's pixels.
        rng: random generator (forehead drop p 0.25, hull type, extension).
        hull_type: force one type (tests); ``None`` draws one uniformly.
    Returns:
        ``(height, width)`` uint8 mask; pixels outside the image are simply not there.
    """
    points = np.asarray(points_xy, np.float32)
    drop_forehead = rng.random() < 0.25
    kind = hull_type if hull_type is not None else HULL_TYPES[int(rng.integers(len(HULL_TYPES)))]
    if kind not in HULL_TYPES:
        raise ValueError(f"expected hull_type in {HULL_TYPES}, got {kind!r}")
    mask = np.zeros(shape_hw, np.uint8)
    if kind == "face":
        _fill_hull(mask, without_forehead(points))
    elif kind == "extended":
        lower = without_forehead(points)
        up, eyes = _face_axis(points)
        brows = points[list(EYEBROWS)]
        lift = float(np.linalg.norm(eyes - points[CHIN])) * rng.uniform(0.1, 0.4)
        _fill_hull(mask, np.concatenate([lower, brows + up[None] * lift]))
    elif kind == "parts":
        # Face X-ray's "components": each part's hull fanned down to the chin, plus the jaw
        chin = points[[CHIN]]
        for region in (LEFT_EYE_REGION, RIGHT_EYE_REGION, NOSE_REGION, MOUTH_REGION):
            _fill_hull(mask, np.concatenate([points[list(region)], chin]))
        up, eyes = _face_axis(points)
        oval = points[list(FACE_OVAL)]
        _fill_hull(mask, oval[(oval - eyes) @ up <= 0])
    else:
        _fill_hull(mask, without_forehead(points) if drop_forehead else points)
    return mask


def elastic_warp(mask: np.ndarray, rng: np.random.Generator, alpha: float = 50.0,
                 sigma: float = 7.0) -> np.ndarray:
    """Per-pixel elastic deformation (Simard et al.; albumentations' ``ElasticTransform``)."""
    height, width = mask.shape
    field = rng.uniform(-1.0, 1.0, (2, height, width)).astype(np.float32)
    dx = cv2.GaussianBlur(field[0], (0, 0), sigma) * alpha
    dy = cv2.GaussianBlur(field[1], (0, 0), sigma) * alpha
    xx, yy = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(mask, xx + dx, yy + dy, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=0)


def _odd(rng: np.random.Generator, low: int, high: int) -> int:
    return int(rng.choice(np.arange(low, high + 1, 2)))


def soft_blend_mask(hard_mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The published ``get_blend_mask``: resize to 192–256 px, blur, erode to the inside, blur.

    Returns:
        ``(height, width)`` float32 in ``[0, 1]`` (all zero when the hard mask is empty).
    """
    height, width = hard_mask.shape
    mask = cv2.resize(hard_mask.astype(np.float32),
                      (int(rng.integers(192, 257)), int(rng.integers(192, 257))))
    first, second = _odd(rng, 5, 25), _odd(rng, 5, 25)
    mask = cv2.GaussianBlur(mask, (first, first), 0)
    if mask.max() <= 0:
        return np.zeros((height, width), np.float32)
    mask = mask / mask.max()
    mask[mask < 1] = 0  # keep only what the blur left at full strength: an erosion
    mask = cv2.GaussianBlur(mask, (second, second), float(rng.integers(5, 46)))
    if mask.max() <= 0:
        return np.zeros((height, width), np.float32)
    mask = mask / mask.max()
    return cv2.resize(mask, (width, height)).astype(np.float32)


# --- the source transform ----------------------------------------------------------------------
def _brightness_contrast(image: np.ndarray, brightness: float, contrast: float) -> np.ndarray:
    return image * (1.0 + contrast) + brightness * 255.0


def _downscale(image: np.ndarray, factor: int) -> np.ndarray:
    height, width = image.shape[:2]
    small = cv2.resize(image, (max(1, width // factor), max(1, height // factor)),
                       interpolation=cv2.INTER_NEAREST)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _sharpen(image: np.ndarray, alpha: float, lightness: float) -> np.ndarray:
    identity = np.zeros((3, 3), np.float32)
    identity[1, 1] = 1.0
    edges = np.full((3, 3), -1.0, np.float32)
    edges[1, 1] = 8.0 + lightness
    kernel = (1.0 - alpha) * identity + alpha * edges
    return cv2.filter2D(image, -1, kernel)


def source_transform(image_rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour then frequency jitter of one copy: RGB shift ±20 (p 0.3), brightness/contrast ±0.1,
    then down-scaling ×2 or ×4 or sharpening. (The published HSV jitter of ±0.3 units on uint8
    images changes less than one grey level, so it is left out.)

    Returns:
        float32 image, same shape, not clipped.
    """
    out = image_rgb.astype(np.float32)
    if rng.random() < 0.3:
        out = out + rng.uniform(-20.0, 20.0, 3).astype(np.float32)
    out = _brightness_contrast(out, rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1))
    out = np.clip(out, 0, 255)
    if rng.random() < 0.5:
        return _downscale(out, int(rng.choice((2, 4))))
    return _sharpen(out, rng.uniform(0.2, 0.5), rng.uniform(0.5, 1.0))


def random_affine(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator):
    """The same small shift and scale of the source and its mask (about the image centre)."""
    height, width = mask.shape
    scale = rng.uniform(0.95, 1.0 / 0.95)
    matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), 0.0, scale)
    matrix[0, 2] += rng.uniform(-0.03, 0.03) * width
    matrix[1, 2] += rng.uniform(-0.015, 0.015) * height
    moved = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)
    moved_mask = cv2.warpAffine(mask, matrix, (width, height), flags=cv2.INTER_NEAREST,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return moved, moved_mask


# --- one pair ---------------------------------------------------------------------------------
def flip_context(image_rgb: np.ndarray, box_xyxy, points_xy: np.ndarray):
    """Mirror an image with its box and landmarks (x → width − x)."""
    width = image_rgb.shape[1]
    x1, y1, x2, y2 = box_xyxy
    points = np.asarray(points_xy, np.float32).copy()
    points[:, 0] = width - points[:, 0]
    return np.ascontiguousarray(image_rgb[:, ::-1]), (width - x2, y1, width - x1, y2), points


def self_blend_v3(image_rgb: np.ndarray, points_xy: np.ndarray, rng: np.random.Generator,
                  hull_type: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 2–4 on one (already flipped or not) context image.

    Args:
        image_rgb: ``(h, w, 3)`` uint8 context crop (not modified).
        points_xy: ``(468, 2)`` landmarks in its pixels.
        rng: random generator.
        hull_type: force a mask shape (tests).
    Returns:
        ``(real, fake, weight)``: uint8 images and the float32 blend weight in ``[0, 1]``. The
        fake equals the real wherever the weight is 0.
    """
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"expected an (h, w, 3) uint8 image, got {image_rgb.shape} {image_rgb.dtype}")
    hard = landmark_hull_mask(image_rgb.shape[:2], points_xy, rng, hull_type)
    target = image_rgb.astype(np.float32)
    source = target.copy()
    if rng.random() < 0.5:
        source = source_transform(image_rgb, rng)
    else:
        target = source_transform(image_rgb, rng)
    source, hard = random_affine(source, hard, rng)
    hard = elastic_warp(hard, rng)
    weight = soft_blend_mask(hard, rng) * float(rng.choice(BLEND_RATIOS))
    real = np.clip(np.round(target), 0, 255).astype(np.uint8)
    fake = np.clip(np.round(source * weight[..., None] + target * (1.0 - weight[..., None])),
                   0, 255).astype(np.uint8)
    untouched = weight <= 0.0
    fake[untouched] = real[untouched]
    return real, fake, weight.astype(np.float32)


def draw_pair_params(rng: np.random.Generator, downscale_share: float = 0.0) -> PairParams:
    """Step 5's parameters, drawn once for a real and its fake; with ``downscale_share`` that
    share of pairs is also scaled down (drawn last, so the other draws do not depend on it)."""
    rgb = tuple(float(v) for v in rng.uniform(-20.0, 20.0, 3)) if rng.random() < 0.3 else None
    if rng.random() < 0.3:
        brightness, contrast = float(rng.uniform(-0.3, 0.3)), float(rng.uniform(-0.3, 0.3))
    else:
        brightness = contrast = None
    quality = int(rng.integers(40, 101)) if rng.random() < 0.5 else None
    downscale = None
    if downscale_share > 0 and rng.random() < downscale_share:
        downscale = float(rng.uniform(*PAIR_DOWNSCALE_RANGE))
    return PairParams(rgb, brightness, contrast, quality, downscale)


def apply_pair_params(image_rgb: np.ndarray, params: PairParams) -> np.ndarray:
    """Apply one :class:`PairParams` (the same call for the real and the fake)."""
    out = image_rgb
    if params.rgb_shift is not None or params.brightness is not None:
        work = out.astype(np.float32)
        if params.rgb_shift is not None:
            work = work + np.asarray(params.rgb_shift, np.float32)
        if params.brightness is not None:
            work = _brightness_contrast(work, params.brightness, params.contrast)
        out = np.clip(np.round(work), 0, 255).astype(np.uint8)
    if params.downscale is not None:
        height, width = out.shape[:2]
        small = (max(8, round(width * params.downscale)), max(8, round(height * params.downscale)))
        out = cv2.resize(cv2.resize(np.ascontiguousarray(out), small, interpolation=cv2.INTER_AREA),
                         (width, height), interpolation=cv2.INTER_LINEAR)
    if params.jpeg_quality is not None:
        ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(out),
                                   [cv2.IMWRITE_JPEG_QUALITY, params.jpeg_quality])
        if ok:
            out = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    return np.ascontiguousarray(out)


def random_crop_margins(rng: np.random.Generator) -> tuple[float, float, float, float]:
    low, high = CROP_MARGIN_RANGE
    return tuple(float(v) for v in rng.uniform(low, high, 4))


def make_pair_v3(context_rgb: np.ndarray, box_xyxy, points_xy: np.ndarray, size_px: int,
                 rng: np.random.Generator, downscale_share: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One real and its pseudo-fake at ``size_px``, steps 1–6."""
    image, box, points = context_rgb, box_xyxy, points_xy
    if rng.random() < 0.5:
        image, box, points = flip_context(image, box, points)
    real, fake, _ = self_blend_v3(image, points, rng)
    params = draw_pair_params(rng, downscale_share)
    real, fake = apply_pair_params(real, params), apply_pair_params(fake, params)
    region = box_crop_region(box, real.shape[:2], random_crop_margins(rng))
    return cut_and_resize(real, region, size_px), cut_and_resize(fake, region, size_px)


# --- the second family: cross-identity blends (Face X-ray / I2G style) ------------------------
def normalised_shape(points_xy: np.ndarray) -> np.ndarray:
    """Landmarks with position, in-plane rotation and scale removed (eyes level, unit eye
    distance), flattened: neighbours in this space have similar pose and expression."""
    points = np.asarray(points_xy, np.float64)
    left, right = points[LEFT_EYE_OUTER], points[RIGHT_EYE_OUTER]
    axis = right - left
    distance = float(np.linalg.norm(axis)) or 1.0
    cos, sin = axis / distance
    rotation = np.array([[cos, sin], [-sin, cos]])
    centred = (points - points.mean(axis=0)) @ rotation.T / distance
    return centred.reshape(-1).astype(np.float32)


def _colour_transfer(source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Match the source's per-channel mean and spread to the target's inside ``mask``."""
    inside = mask > 0
    if inside.sum() < 16:
        return source
    out = source.astype(np.float32).copy()
    for c in range(3):
        s, t = out[..., c][inside], target[..., c][inside].astype(np.float32)
        out[..., c] = (out[..., c] - s.mean()) * (t.std() / max(float(s.std()), 1.0)) + t.mean()
    return out


def cross_blend(target_rgb: np.ndarray, target_points: np.ndarray, source_rgb: np.ndarray,
                source_points: np.ndarray, rng: np.random.Generator,
                hull_type: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Another person's face, aligned to the target by its landmarks (similarity transform),
    colour-matched inside the mask, blended through the same landmark-hull mask as v3.

    Returns:
        ``(real, fake, weight)`` as :func:`self_blend_v3` does.
    """
    height, width = target_rgb.shape[:2]
    matrix, _ = cv2.estimateAffinePartial2D(np.asarray(source_points, np.float32),
                                            np.asarray(target_points, np.float32))
    if matrix is None:  # degenerate landmarks: fall back to a self-blend
        return self_blend_v3(target_rgb, target_points, rng, hull_type)
    warped = cv2.warpAffine(source_rgb, matrix, (width, height), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT)
    covered = cv2.warpAffine(np.ones(source_rgb.shape[:2], np.uint8), matrix, (width, height),
                             flags=cv2.INTER_NEAREST, borderValue=0)
    hard = landmark_hull_mask((height, width), target_points, rng, hull_type) * covered
    source = _colour_transfer(warped, target_rgb, hard)
    if rng.random() < 0.5:  # the source transform of v3, so the two families differ in one way
        source = source_transform(np.clip(source, 0, 255).astype(np.uint8), rng)
    hard = elastic_warp(hard, rng)
    weight = soft_blend_mask(hard, rng) * float(rng.choice(BLEND_RATIOS))
    target = target_rgb.astype(np.float32)
    real = target_rgb.copy()
    fake = np.clip(np.round(source * weight[..., None] + target * (1.0 - weight[..., None])),
                   0, 255).astype(np.uint8)
    untouched = weight <= 0.0
    fake[untouched] = real[untouched]
    return real, fake, weight.astype(np.float32)


def make_cross_pair(context_rgb: np.ndarray, box_xyxy, points_xy: np.ndarray,
                    source_rgb: np.ndarray, source_points: np.ndarray, size_px: int,
                    rng: np.random.Generator, downscale_share: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`make_pair_v3` with a cross-identity blend instead of a self-blend."""
    image, box, points = context_rgb, box_xyxy, points_xy
    if rng.random() < 0.5:
        image, box, points = flip_context(image, box, points)
        source_rgb, _, source_points = flip_context(source_rgb, (0, 0, 1, 1), source_points)
    real, fake, _ = cross_blend(image, points, source_rgb, source_points, rng)
    params = draw_pair_params(rng, downscale_share)
    real, fake = apply_pair_params(real, params), apply_pair_params(fake, params)
    region = box_crop_region(box, real.shape[:2], random_crop_margins(rng))
    return cut_and_resize(real, region, size_px), cut_and_resize(fake, region, size_px)
