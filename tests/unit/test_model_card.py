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



def test_normalise_by_table_is_bit_identical_to_the_float_formula(tmp_path: Path):
    (tmp_path / "m.toml").write_text(CARD.replace("mean_rgb = [0.5, 0.5, 0.5]",
                                                  "mean_rgb = [0.485, 0.456, 0.406]")
                                     .replace("std_rgb = [0.5, 0.5, 0.5]",
                                              "std_rgb = [0.229, 0.224, 0.225]"))
    card = load_model_card(tmp_path / "m.toml")
    every_byte = np.stack([np.arange(256, dtype=np.uint8)] * 3, axis=-1)  # (256, 3)
    random = np.random.default_rng(3).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    all_levels = every_byte.reshape(1, 16, 16, 3).repeat(2, axis=1).repeat(2, axis=2)
    crops = np.concatenate([random, all_levels])
    mean = np.asarray(card.mean_rgb, np.float32)
    std = np.asarray(card.std_rgb, np.float32)
    expected = (crops.astype(np.float32) / 255.0 - mean) / std
    out = card.normalise(crops)
    assert out.dtype == np.float32 and out.shape == crops.shape
    assert np.array_equal(out, expected)
    strided = crops[:, ::2, ::2]  # not contiguous
    assert np.array_equal(card.normalise(strided), expected[:, ::2, ::2])
    assert card.normalise(crops[:0]).shape == (0, 32, 32, 3)

@pytest.mark.parametrize("change,message", [
    (("threshold = 0.4", "threshold = 1.4"), "threshold"),
    (("threshold = 0.4", "threshold = 1.0"), r"threshold must be in \(0, 1\)"),
    (("threshold = 0.4", "threshold = 0.0"), r"threshold must be in \(0, 1\)"),
    (("input_size_px = 224", "input_size_px = 100"), "multiple of 32"),
    (("face_detector = \"yunet\"", "face_detector = \"mtcnn\""), "face_detector"),
    (("architecture = \"efficientnet_b0\"", "architecture = \"vit\""), "architecture"),
    (("trained = true\n", ""), "lacks required key"),
    (("[", "["), "not valid TOML"),
    (("trained = true\n", 'trained = true\nprecision = "fp16"\n'), "precision must be one of"),
    (("trained = true\n", 'trained = true\nprecision = "int8"\n'), "needs a tflite_int8 file"),
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


def test_a_written_card_reads_back_to_the_same_settings(tmp_path):
    from detector.model_card import write_model_card

    values = {"name": "m", "version": "1.2.3", "architecture": "efficientnet_b0",
              "weights": "m.weights.h5", "tflite": None, "input_size_px": 224,
              "mean_rgb": [0.5, 0.5, 0.5], "std_rgb": [0.5, 0.5, 0.5], "face_detector": "yunet",
              "face_margin": 0.125, "crop_rule": "box", "temperature": 1.7, "threshold": 0.4321,
              "trained": True, "activation": "relu6", "use_se": True,
              "training_data": 'research "only"'}
    path = write_model_card(tmp_path / "m.toml", values)
    card = load_model_card(path)
    assert (card.name, card.version, card.input_size_px, card.face_margin, card.crop_rule,
            card.temperature, card.threshold, card.activation) == \
        ("m", "1.2.3", 224, 0.125, "box", 1.7, 0.4321, "relu6")
    assert card.tflite_path is None and card.extra["training_data"] == 'research "only"'
    default = write_model_card(tmp_path / "d.toml", {**values, "crop_rule": "square",
                                                       "temperature": 1.0})
    assert "crop_rule" not in default.read_text() and "temperature" not in default.read_text()
    with pytest.raises(ModelError, match="missing required"):
        write_model_card(tmp_path / "x.toml", {"name": "x"})


def test_int8_keys_and_the_parity_table_read_back(tmp_path):
    from detector.model_card import write_model_card

    parity = {"dev_item_auc_float32": 0.6325, "dev_item_auc_int8": 0.6301, "dev_items": 161,
              "frame_abs_diff_p99": 0.0412, "float_runtime": "litert",
              "decision": 'int8: "every" item AUC within tolerance'}
    values = {"name": "m", "version": "1", "architecture": "efficientnet_b0",
              "weights": "m.weights.h5", "tflite": "m.tflite", "tflite_int8": "m.int8.tflite",
              "precision": "int8", "input_size_px": 224, "mean_rgb": [0.5, 0.5, 0.5],
              "std_rgb": [0.5, 0.5, 0.5], "face_detector": "yunet", "face_margin": 0.125,
              "threshold": 0.48, "trained": True, "int8_parity": parity}
    card = load_model_card(write_model_card(tmp_path / "m.toml", values))
    assert card.precision == "int8"
    assert card.tflite_int8_path == (tmp_path / "m.int8.tflite").resolve()
    assert card.extra["int8_parity"] == parity
    plain = load_model_card(write_model_card(tmp_path / "p.toml", {
        **values, "precision": "float32", "tflite_int8": None, "int8_parity": None}))
    assert plain.precision == "float32" and plain.tflite_int8_path is None
    assert "precision" not in (tmp_path / "p.toml").read_text()
    with pytest.raises(ModelError, match="cannot write table keys"):
        write_model_card(tmp_path / "x.toml", {**values, "int8_parity": {"a b": 1}})


def test_a_temperature_keeps_the_order_and_moves_probabilities_toward_a_half():
    from detector.model_card import apply_temperature

    p = np.asarray([0.01, 0.2, 0.5, 0.9, 0.999], np.float32)
    assert np.array_equal(apply_temperature(p, 1.0), p)
    softer = apply_temperature(p, 2.0)
    assert np.all(np.diff(softer) > 0) and softer[2] == pytest.approx(0.5)
    assert np.all(np.abs(softer - 0.5) < np.abs(p - 0.5) + 1e-7)


def test_every_face_detector_name_has_an_implementation(tmp_path):
    from detector.config import config_from_dict
    from detector.face_detect import make_face_detector
    from detector.face_detector_kinds import FACE_DETECTORS

    for name in FACE_DETECTORS:
        config_from_dict({"faces": {"detector": name}})   # a valid faces.detector
        try:
            detector = make_face_detector(name, yunet_model=tmp_path / "missing.onnx")
        except ModelError as exc:   # YuNet without its file: refused for that reason only
            assert "not found" in str(exc), exc
        else:
            assert detector.name == name
    with pytest.raises(ModelError, match="must be one of"):
        make_face_detector("mtcnn", yunet_model=tmp_path / "x.onnx")
