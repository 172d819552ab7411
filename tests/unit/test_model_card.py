from pathlib import Path

import numpy as np
import pytest

from detector.errors import ModelError
from detector.model_card import load_model_card

CARD = """\
name = "m"
version = "1"
architecture = "efficientnet_b0"
weights = "m.weights.h5"
input_size_px = 224
mean_rgb = [0.5, 0.5, 0.5]
std_rgb = [0.5, 0.5, 0.5]
face_detector = "yunet"
face_margin = 0.25
threshold = 0.4
trained = true
"""


def test_card_loads_and_normalises(tmp_path: Path):
    (tmp_path / "m.toml").write_text(CARD)
    card = load_model_card(tmp_path / "m.toml")
    assert card.weights_path == (tmp_path / "m.weights.h5").resolve()
    out = card.normalise(np.array([[[[0, 255, 127]]]], dtype=np.uint8))
    np.testing.assert_allclose(out[0, 0, 0], [-1.0, 1.0, 127 / 255 * 2 - 1], atol=1e-6)


@pytest.mark.parametrize("change,message", [
    (("threshold = 0.4", "threshold = 1.4"), "threshold"),
    (("input_size_px = 224", "input_size_px = 100"), "multiple of 32"),
    (("face_detector = \"yunet\"", "face_detector = \"mtcnn\""), "face_detector"),
    (("architecture = \"efficientnet_b0\"", "architecture = \"vit\""), "architecture"),
    (("trained = true\n", ""), "lacks required key"),
    (("[", "["), "not valid TOML"),
])
def test_bad_cards_are_rejected(tmp_path: Path, change, message):
    old, new = change
    text = CARD.replace(old, new) if old != "[" else CARD + "[\n"
    (tmp_path / "m.toml").write_text(text)
    with pytest.raises(ModelError, match=message):
        load_model_card(tmp_path / "m.toml")


def test_missing_card(tmp_path: Path):
    with pytest.raises(ModelError, match="not found"):
        load_model_card(tmp_path / "nope.toml")
