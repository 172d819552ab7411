"""detector/gradcam.py: the pure heat-map maths and the overlay."""

import numpy as np
import pytest

from detector.gradcam import gradcam_map, overlay_heatmap


def test_the_region_whose_channels_raise_the_score_is_hot():
    activations = np.zeros((4, 4, 2), dtype=np.float32)
    activations[1, 2, 0] = 3.0          # channel 0 fires at (1, 2)
    activations[3, 0, 1] = 5.0          # channel 1 fires at (3, 0)
    gradients = np.zeros_like(activations)
    gradients[..., 0] = 1.0             # channel 0 pushes the score up
    gradients[..., 1] = -1.0            # channel 1 pushes it down
    cam = gradcam_map(activations, gradients)
    assert cam.shape == (4, 4) and cam.dtype == np.float32
    assert cam[1, 2] == pytest.approx(1.0)
    assert cam[3, 0] == 0.0             # negative evidence is clipped, not shown as hot
    assert cam.min() >= 0.0 and cam.max() <= 1.0


@pytest.mark.parametrize("gradients", [np.zeros((2, 2, 3)), -np.ones((2, 2, 3))])
def test_no_positive_evidence_is_an_all_zero_map(gradients):
    cam = gradcam_map(np.ones((2, 2, 3)), gradients)
    assert not cam.any()


@pytest.mark.parametrize("a_shape,g_shape", [((2, 2, 3), (2, 2, 4)), ((2, 2), (2, 2)),
                                             ((1, 2, 2, 3), (1, 2, 2, 3))])
def test_mismatched_shapes_are_refused(a_shape, g_shape):
    with pytest.raises(ValueError, match="expected two"):
        gradcam_map(np.ones(a_shape), np.ones(g_shape))


def test_overlay_keeps_the_crop_size_and_leaves_inputs_alone():
    crop = np.full((64, 64, 3), 100, dtype=np.uint8)
    cam = np.array([[0.0, 1.0], [0.0, 0.0]], dtype=np.float32)
    before_crop, before_cam = crop.copy(), cam.copy()
    out = overlay_heatmap(crop, cam)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert np.array_equal(crop, before_crop) and np.array_equal(cam, before_cam)
    # top right is hot (red in RGB), bottom left is cold (blue)
    assert out[8, 56, 0] > out[8, 56, 2]
    assert out[56, 8, 2] > out[56, 8, 0]


def test_gradcam_on_the_tiny_model_gives_a_map_and_the_models_probability(tiny_model_dir):
    from detector.gradcam import GradCam
    from detector.model_card import load_model_card
    from detector.runtime import KerasRuntime

    card = load_model_card(tiny_model_dir / "tiny_b0.toml")
    crop = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    cam, probability = GradCam(card).explain(crop)
    assert cam.shape == (2, 2) and 0.0 <= cam.min() and cam.max() <= 1.0
    expected = KerasRuntime(card).predict(card.normalise(crop[None]))[0]
    assert probability == pytest.approx(float(expected), abs=1e-5)
