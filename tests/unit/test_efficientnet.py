"""EfficientNet-B0 builder: shapes, layer names, get_config round trip (tiny inputs)."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from detector.efficientnet import EfficientNetB0Classifier, block_names, count_blocks, output_stride  # noqa: E402


@pytest.fixture(scope="module")
def tiny_b0():
    keras.utils.set_random_seed(0)
    return EfficientNetB0Classifier(64, activation="relu6", dropout_rate=0.0, drop_connect_rate=0.0)


def test_block_table():
    names = block_names()
    assert count_blocks() == 16 == len(names)
    assert names[:3] == ["block1a", "block2a", "block2b"] and names[-1] == "block7a"
    assert output_stride() == 32


def test_output_is_probability_per_image(tiny_b0):
    x = np.random.default_rng(0).normal(size=(3, 64, 64, 3)).astype("float32")
    y = np.asarray(tiny_b0.predict_on_batch(x))
    assert y.shape == (3, 1)
    assert np.all((y >= 0) & (y <= 1))


@pytest.mark.parametrize("layer", ["stem_conv", "stem_bn", "block1a_dwconv", "block2a_expand_conv",
                                   "block6d_se_reduce", "block7a_project_bn", "top_conv",
                                   "fake_probability"])
def test_named_layers_exist(tiny_b0, layer):
    assert tiny_b0.get_layer(layer) is not None


def test_get_config_round_trip(tiny_b0):
    config = tiny_b0.get_config()
    clone = EfficientNetB0Classifier.from_config(config)
    assert clone.get_config() == config
    clone.set_weights(tiny_b0.get_weights())
    x = np.zeros((1, 64, 64, 3), "float32")
    np.testing.assert_allclose(clone.predict_on_batch(x), tiny_b0.predict_on_batch(x), atol=1e-6)


def test_without_se_has_no_se_layers():
    model = EfficientNetB0Classifier(32, use_se=False)
    assert not [layer.name for layer in model.layers if "_se_" in layer.name]


def test_weights_transfer_between_input_sizes(tiny_b0):
    # Training changes resolution by copying weights: they must not depend on the input size.
    bigger = EfficientNetB0Classifier(96, activation="relu6", dropout_rate=0.0, drop_connect_rate=0.0)
    bigger.set_weights(tiny_b0.get_weights())
    assert len(bigger.get_weights()) == len(tiny_b0.get_weights())
