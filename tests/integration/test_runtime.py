"""The two model runtimes agree: Keras (compiled tf.function) and the LiteRT export."""

import numpy as np
import pytest

from detector.model_card import load_model_card
from detector.runtime import KerasRuntime, LiteRTRuntime, build_model, export_tflite, load_runtime


@pytest.fixture(scope="module")
def tiny_card_with_tflite(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tflite")
    card_text = (tiny_model_dir / "tiny_b0.toml").read_text()
    card_text = card_text.replace('weights = "tiny_b0.weights.h5"',
                                  f'weights = "{tiny_model_dir / "tiny_b0.weights.h5"}"\ntflite = "tiny_b0.tflite"')
    (folder / "tiny_b0.toml").write_text(card_text)
    card = load_model_card(folder / "tiny_b0.toml")
    export_tflite(build_model(card), folder / "tiny_b0.tflite")
    return card


def test_litert_matches_keras_on_varying_batch_sizes(tiny_card_with_tflite):
    keras_rt = KerasRuntime(tiny_card_with_tflite)
    lite_rt = LiteRTRuntime(tiny_card_with_tflite)
    rng = np.random.default_rng(0)
    for n in (1, 5, 3):
        batch = rng.normal(size=(n, 64, 64, 3)).astype(np.float32)
        expected = keras_rt.predict(batch)
        got = lite_rt.predict(batch)
        assert got.shape == (n,) and np.all(np.isfinite(got))
        np.testing.assert_allclose(got, expected, atol=1e-4)
    assert keras_rt.predict(np.zeros((0, 64, 64, 3), np.float32)).shape == (0,)


def test_auto_prefers_litert_when_the_card_has_a_tflite(tiny_card_with_tflite, tiny_model_dir):
    assert load_runtime(tiny_card_with_tflite, "auto").name == "litert"
    plain = load_model_card(tiny_model_dir / "tiny_b0.toml")
    assert load_runtime(plain, "auto").name == "keras"
