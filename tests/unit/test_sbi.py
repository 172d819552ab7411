"""Blend recipe v3 (the published self-blended-images recipe) on synthetic landmarks."""

from __future__ import annotations

import numpy as np
import pytest

from detector.face_crop import box_crop_region
from detector.training.landmarks import (
    CHIN,
    EYEBROWS,
    FACE_OVAL,
    FOREHEAD_TOP,
    LANDMARK_POINTS,
    LEFT_EYE_OUTER,
    RIGHT_EYE_OUTER,
)
from detector.training.sbi import (
    CROP_MARGIN_RANGE,
    HULL_TYPES,
    PAIR_DOWNSCALE_RANGE,
    apply_pair_params,
    draw_pair_params,
    flip_context,
    landmark_hull_mask,
    make_pair_v3,
    random_crop_margins,
    self_blend_v3,
    soft_blend_mask,
    without_forehead,
)


def synthetic_mesh(cx: float = 120.0, cy: float = 130.0, rx: float = 60.0,
                   ry: float = 80.0) -> np.ndarray:
    """468 points of an upright face-shaped ellipse: the oval on its outline, the forehead top
    at the top, the chin at the bottom, eyes and brows above the centre, the rest inside."""
    rng = np.random.default_rng(0)
    radius = np.sqrt(rng.uniform(0.0, 0.8, LANDMARK_POINTS))
    theta = rng.uniform(0.0, 2 * np.pi, LANDMARK_POINTS)
    points = np.stack([cx + rx * radius * np.cos(theta), cy + ry * radius * np.sin(theta)], 1)
    for k, index in enumerate(FACE_OVAL):
        angle = -np.pi / 2 + 2 * np.pi * k / len(FACE_OVAL)
        points[index] = (cx + rx * np.cos(angle), cy + ry * np.sin(angle))
    points[FOREHEAD_TOP] = (cx, cy - ry)
    points[CHIN] = (cx, cy + ry)
    points[LEFT_EYE_OUTER] = (cx - 0.5 * rx, cy - 0.2 * ry)
    points[RIGHT_EYE_OUTER] = (cx + 0.5 * rx, cy - 0.2 * ry)
    for k, index in enumerate(EYEBROWS):
        points[index] = (cx - 0.6 * rx + 1.2 * rx * (k % 10) / 9, cy - 0.35 * ry)
    return points.astype(np.float32)


def textured_image(height: int = 260, width: int = 240) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(30, 220, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("hull_type", HULL_TYPES)
def test_every_hull_type_covers_part_of_the_face_and_stays_in_the_image(hull_type):
    mesh = synthetic_mesh()
    for seed in range(10):
        mask = landmark_hull_mask((260, 240), mesh, np.random.default_rng(seed), hull_type)
        assert mask.shape == (260, 240) and set(np.unique(mask)) <= {0, 1}
        assert mask.sum() > 500
        ys, xs = np.nonzero(mask)
        assert xs.min() >= mesh[:, 0].min() - 1 and xs.max() <= mesh[:, 0].max() + 1


def test_the_mask_is_never_cut_by_the_detector_box():
    # A detector box that ends above the chin and below the forehead, as YuNet's often does:
    # a v1 mask stops at the box, the landmark hull goes on to the chin and forehead.
    mesh = synthetic_mesh()
    box = (70.0, 80.0, 170.0, 190.0)
    reaches_below = reaches_above = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        mask = landmark_hull_mask((260, 240), mesh, rng, "hull")
        ys, _ = np.nonzero(mask)
        reaches_below += ys.max() > box[3] + 10
        reaches_above += ys.min() < box[1] - 10
    assert reaches_below == 20  # the chin is always in
    assert 0 < reaches_above < 20  # the forehead, except when it is dropped (p 0.25)


def test_a_face_near_the_image_edge_gives_a_mask_inside_the_image():
    mesh = synthetic_mesh(cx=20.0, cy=30.0)
    mask = landmark_hull_mask((100, 100), mesh, np.random.default_rng(0), "hull")
    assert mask.shape == (100, 100) and mask.sum() > 0


def test_without_forehead_drops_the_points_above_the_brows():
    mesh = synthetic_mesh()
    kept = without_forehead(mesh)
    brow_top = mesh[list(EYEBROWS), 1].min()
    assert len(kept) < len(mesh)
    assert kept[:, 1].min() >= brow_top - 1e-3
    assert mesh[FOREHEAD_TOP, 1] < brow_top


def test_the_soft_mask_is_normalised_and_zero_far_from_the_hull():
    hard = np.zeros((260, 240), np.uint8)
    hard[80:180, 70:170] = 1
    soft = soft_blend_mask(hard, np.random.default_rng(0))
    assert soft.dtype == np.float32 and soft.max() == pytest.approx(1.0, abs=1e-3)
    assert soft.min() >= 0.0
    assert soft[:20].max() == 0.0 and soft[:, :20].max() == 0.0
    assert soft_blend_mask(np.zeros((50, 50), np.uint8), np.random.default_rng(0)).max() == 0.0


def test_a_blend_changes_only_where_its_weight_is_positive():
    image, mesh = textured_image(), synthetic_mesh()
    for seed in range(6):
        real, fake, weight = self_blend_v3(image, mesh, np.random.default_rng(seed))
        assert real.shape == fake.shape == image.shape and weight.shape == image.shape[:2]
        assert 0.0 <= weight.min() and weight.max() <= 1.0 and weight.max() > 0.2
        assert np.array_equal(fake[weight <= 0], real[weight <= 0])
        assert np.abs(fake.astype(int) - real.astype(int))[weight > 0.5 * weight.max()].mean() > 0.5


def test_a_seed_reproduces_a_pair():
    image, mesh, box = textured_image(), synthetic_mesh(), (70.0, 60.0, 170.0, 200.0)
    first = make_pair_v3(image, box, mesh, 96, np.random.default_rng(5))
    second = make_pair_v3(image, box, mesh, 96, np.random.default_rng(5))
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_the_paired_augmentation_uses_one_set_of_parameters_for_both():
    image = textured_image()
    for seed in range(30):
        params = draw_pair_params(np.random.default_rng(seed))
        assert np.array_equal(apply_pair_params(image, params), apply_pair_params(image.copy(), params))
    # In a whole pair, pixels far from the mask (whole JPEG blocks away) stay identical in the
    # real and the fake: they got the same RGB shift, contrast and JPEG quality.
    mesh = synthetic_mesh(cx=80, cy=110, rx=30, ry=40)
    box = (20.0, 20.0, 200.0, 230.0)  # a box much larger than the face: its top rows are far
    for seed in range(20):
        real, fake = make_pair_v3(image, box, mesh, 224, np.random.default_rng(seed))
        assert np.array_equal(real[:20], fake[:20]), seed  # rows above the face, flipped or not


def test_pair_downscale_off_draws_exactly_what_the_published_recipe_draws():
    for seed in range(20):
        plain_rng, off_rng = np.random.default_rng(seed), np.random.default_rng(seed)
        params = draw_pair_params(off_rng, 0.0)
        assert params == draw_pair_params(plain_rng) and params.downscale is None
        assert plain_rng.random() == off_rng.random()  # the same stream afterwards


def test_pair_downscale_takes_its_share_of_pairs_in_range_and_blurs_both_alike():
    rng = np.random.default_rng(3)
    factors = [draw_pair_params(rng, 0.3).downscale for _ in range(2000)]
    drawn = [f for f in factors if f is not None]
    assert 0.26 < len(drawn) / len(factors) < 0.34
    low, high = PAIR_DOWNSCALE_RANGE
    assert all(low <= f <= high for f in drawn)

    image = textured_image()
    params = draw_pair_params(np.random.default_rng(0), 1.0)
    params = type(params)(None, None, None, None, params.downscale)  # the downscale alone
    out = apply_pair_params(image, params)
    assert out.shape == image.shape and out.dtype == np.uint8
    detail = np.abs(np.diff(image.astype(float), axis=1)).mean()
    assert np.abs(np.diff(out.astype(float), axis=1)).mean() < 0.7 * detail
    mesh = synthetic_mesh(cx=80, cy=110, rx=30, ry=40)
    box = (20.0, 20.0, 200.0, 230.0)
    for seed in range(10):
        real, fake = make_pair_v3(image, box, mesh, 224, np.random.default_rng(seed), 1.0)
        assert np.array_equal(real[:20], fake[:20]), seed  # far from the face: the same pixels


def test_flip_mirrors_the_box_and_the_landmarks():
    image, mesh = textured_image(), synthetic_mesh()
    flipped, box, points = flip_context(image, (10.0, 20.0, 50.0, 80.0), mesh)
    assert np.array_equal(flipped, image[:, ::-1])
    assert box == (190.0, 20.0, 230.0, 80.0)
    assert np.allclose(points[:, 0], 240 - mesh[:, 0]) and np.allclose(points[:, 1], mesh[:, 1])


def test_random_crop_margins_stay_in_the_published_range():
    low, high = CROP_MARGIN_RANGE
    rng = np.random.default_rng(0)
    margins = np.asarray([random_crop_margins(rng) for _ in range(500)])
    assert margins.min() >= low and margins.max() <= high
    assert margins.min() < low + 0.01 and margins.max() > high - 0.01


@pytest.mark.parametrize("box,shape,margins,expected", [
    ((100, 100, 200, 240), (480, 640), (0.1, 0.1, 0.1, 0.1), (90, 86, 210, 254)),
    ((100, 100, 200, 240), (480, 640), (0.2, 0.05, 0.05, 0.2), (80, 93, 205, 268)),
    ((5, 5, 100, 100), (120, 110), (0.2, 0.2, 0.2, 0.2), (0, 0, 110, 119)),  # clipped
])
def test_box_crop_region_grows_each_side_by_its_own_share_and_clips(box, shape, margins, expected):
    assert box_crop_region(box, shape, margins) == expected


def test_crop_jitter_keeps_the_whole_box_inside_the_crop():
    rng = np.random.default_rng(3)
    for _ in range(200):
        box = (60.0, 50.0, 160.0, 190.0)
        x1, y1, x2, y2 = box_crop_region(box, (260, 240), random_crop_margins(rng))
        assert x1 <= 55 and y1 <= 43 and x2 >= 165 and y2 >= 197  # at least 5 % per side
        assert x1 >= 40 and y1 >= 22 and x2 <= 180 and y2 <= 218  # at most 20 % per side


def test_a_cross_identity_blend_puts_another_face_inside_the_target_hull_only():
    from detector.training.sbi import cross_blend

    target, mesh = textured_image(), synthetic_mesh()
    source = np.full_like(target, 200)
    source[::2] = 40  # a striped "other person"
    moved = mesh * 0.9 + 10  # their landmarks: another size and place
    for seed in range(5):
        real, fake, weight = cross_blend(target, mesh, source, moved, np.random.default_rng(seed))
        assert np.array_equal(real, target)
        assert np.array_equal(fake[weight <= 0], target[weight <= 0])
        inside = weight > 0.9 * weight.max()
        # the stripes of the source show through inside the mask
        rows = fake[inside].astype(int)
        assert rows.std() > 20


def test_normalised_shapes_ignore_position_rotation_and_scale():
    import cv2

    from detector.training.sbi import normalised_shape

    mesh = synthetic_mesh()
    matrix = cv2.getRotationMatrix2D((100.0, 100.0), 20.0, 1.7)
    moved = mesh @ matrix[:, :2].T + matrix[:, 2]
    assert np.allclose(normalised_shape(mesh), normalised_shape(moved), atol=1e-3)
    other = synthetic_mesh(rx=40.0)  # a narrower face is another shape
    assert np.abs(normalised_shape(mesh) - normalised_shape(other)).max() > 0.05
