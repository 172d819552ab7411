"""Self-blended images: mask inside the face, changes only where blended, seeded determinism."""

from __future__ import annotations

import numpy as np
import pytest

from detector.training.self_blend import (
    BLEND_RECIPES,
    SelfBlendSettings,
    face_box_in_crop,
    random_face_mask,
    self_blend,
)


def _face_image(size: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.stack([xx * 255 / size, yy * 255 / size, (xx + yy) * 127 / size], axis=-1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("warp", [0.0, 0.04, 0.2])
def test_mask_is_zero_outside_the_face_box(seed, warp):
    box = (30.0, 20.0, 100.0, 110.0)
    mask = random_face_mask((128, 128), box, np.random.default_rng(seed), warp=warp)
    outside = np.ones((128, 128), bool)
    outside[20:110, 30:100] = False
    assert mask.dtype == np.float32
    assert mask.max() <= 1.0 and mask.min() >= 0.0
    assert mask[outside].max() == 0.0
    assert mask.max() > 0.5  # something is actually blended


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("recipe", sorted(BLEND_RECIPES))
def test_output_differs_from_input_only_inside_the_blended_region(seed, recipe):
    image = _face_image()
    box = face_box_in_crop(128, 0.25)
    out, weight = self_blend(image, box, np.random.default_rng(seed), BLEND_RECIPES[recipe])
    assert out.shape == image.shape and out.dtype == np.uint8
    untouched = weight == 0
    np.testing.assert_array_equal(out[untouched], image[untouched])
    assert np.any(out[~untouched] != image[~untouched])
    x1, y1, x2, y2 = box
    assert not weight[: int(y1)].any() and not weight[int(np.ceil(y2)):].any()


def test_the_mask_warp_moves_the_outline():
    box = (30.0, 20.0, 100.0, 110.0)
    plain = random_face_mask((128, 128), box, np.random.default_rng(5), warp=0.0)
    warped = random_face_mask((128, 128), box, np.random.default_rng(5), warp=0.1)
    assert np.abs(plain - warped).max() > 0.2


def test_same_seed_same_output_and_different_seed_differs():
    image = _face_image()
    box = face_box_in_crop(128, 0.25)
    a, mask_a = self_blend(image, box, np.random.default_rng(42))
    b, mask_b = self_blend(image, box, np.random.default_rng(42))
    c, _ = self_blend(image, box, np.random.default_rng(43))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(mask_a, mask_b)
    assert np.any(a != c)


def test_input_is_not_modified():
    image = _face_image()
    copy = image.copy()
    self_blend(image, face_box_in_crop(128, 0.25), np.random.default_rng(0))
    np.testing.assert_array_equal(image, copy)


@pytest.mark.parametrize("size,margin,expected", [
    (150, 0.25, (25.0, 25.0, 125.0, 125.0)),
    (100, 0.0, (0.0, 0.0, 100.0, 100.0)),
])
def test_face_box_in_crop(size, margin, expected):
    assert face_box_in_crop(size, margin) == pytest.approx(expected)


@pytest.mark.parametrize("bad", [
    np.zeros((64, 64), np.uint8),
    np.zeros((64, 64, 3), np.float32),
    np.zeros((64, 64, 4), np.uint8),
])
def test_rejects_bad_images(bad):
    with pytest.raises(ValueError, match="expected an"):
        self_blend(bad, (10, 10, 50, 50), np.random.default_rng(0))


def test_rejects_degenerate_box():
    with pytest.raises(ValueError, match="face box"):
        random_face_mask((64, 64), (10, 10, 11, 40), np.random.default_rng(0))


@pytest.mark.parametrize("kwargs", [{"max_shift": 0.6}, {"max_scale_change": -0.1},
                                    {"hull_probability": 1.5}, {"rgb_shift_probability": -0.1},
                                    {"mask_warp": 0.3}])
def test_settings_validate(kwargs):
    with pytest.raises(ValueError):
        SelfBlendSettings(**kwargs)
