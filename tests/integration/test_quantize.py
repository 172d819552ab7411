"""int8 LiteRT: a full-integer export calibrated on real face crops (the shipped NASA portrait,
cut like serving), its runtime against float32, the card's precision choosing it, and `quantize`;
and the float32 export run by OpenVINO in bfloat16 (where this CPU computes bfloat16)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from detector.errors import ModelError
from detector.face_detect import make_face_detector
from detector.model_card import load_model_card
from detector.runtime import (
    LiteRTRuntime,
    OpenVINORuntime,
    build_model,
    export_tflite,
    export_tflite_int8,
    float_ops,
    load_runtime,
    native_bfloat16,
)
from detector.runtime_kinds import LITERT, LITERT_INT8, OPENVINO_BF16
from detector.training.prepare import TRAIN_CONTEXT_SETTINGS, CachedFaces, cache_file, context_crop, save_cached
from detector.training.quantize import representative_crops, serving_crops
from producers.synthetic import load_face_bgr

REPO = Path(__file__).resolve().parents[2]


def _variants() -> list[np.ndarray]:
    """The NASA portrait, flipped, brighter, darker, shifted on a larger canvas: real faces."""
    face = load_face_bgr()
    out = [face, face[:, ::-1].copy(), cv2.convertScaleAbs(face, alpha=1.15, beta=10),
           cv2.convertScaleAbs(face, alpha=0.8, beta=-10)]
    for dx, dy in ((30, 10), (5, 40)):
        canvas = np.full((320, 320, 3), 90, np.uint8)
        canvas[dy:dy + 256, dx:dx + 256] = face
        out.append(canvas)
    return out


def _box(frame_bgr: np.ndarray):
    boxes = make_face_detector("haar", yunet_model=Path("unused.onnx")).detect(frame_bgr)
    assert boxes, "the shipped portrait must have a face"
    return boxes[0].box_xyxy


@pytest.fixture(scope="module")
def mesh():
    from detector.training.landmarks import LandmarkModel, fetch_landmark_model

    local = REPO / "models" / "face_landmark.tflite"
    if not local.is_file():
        try:
            local = fetch_landmark_model(local)
        except ModelError as exc:
            pytest.skip(f"face-mesh model unavailable: {exc}")
    return LandmarkModel(local)


@pytest.fixture(scope="module")
def portrait_cache(mesh, tmp_path_factory) -> Path:
    """A training context cache (`prepare --landmarks` layout) of six portrait variants."""
    cache = tmp_path_factory.mktemp("cache")
    for i, frame in enumerate(_variants()):
        box = _box(frame)
        found = mesh.find(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), box)
        crop, crop_box, points = context_crop(frame, box, TRAIN_CONTEXT_SETTINGS, found.points_xy)
        save_cached(cache_file(cache, TRAIN_CONTEXT_SETTINGS, f"train/real/portrait/v{i}.png"),
                    CachedFaces([crop], np.zeros(1, np.int32), np.zeros(1, bool), 1,
                                crop_box[None], points[None]))
    return cache


@pytest.fixture(scope="module")
def int8_models(tiny_model_dir, portrait_cache, tmp_path_factory) -> Path:
    """The tiny random-weight model with a float32 and an int8 export, precision float32."""
    folder = tmp_path_factory.mktemp("int8")
    text = (tiny_model_dir / "tiny_b0.toml").read_text()
    text = text.replace('weights = "tiny_b0.weights.h5"',
                        f'weights = "{tiny_model_dir / "tiny_b0.weights.h5"}"\n'
                        'tflite = "tiny_b0.tflite"\ntflite_int8 = "tiny_b0.int8.tflite"')
    (folder / "tiny_b0.toml").write_text(text)
    card = load_model_card(folder / "tiny_b0.toml")
    model = build_model(card)
    export_tflite(model, folder / "tiny_b0.tflite")
    crops = representative_crops(portrait_cache, card, count=12)
    export_tflite_int8(model, folder / "tiny_b0.int8.tflite", card.normalise(crops))
    return folder


def _portrait_crops(card) -> np.ndarray:
    """Serving crops of the portrait variants (card margin, rule and size)."""
    return np.stack([serving_crops(frame[..., ::-1], _box(frame), card) for frame in _variants()])


def test_the_representative_set_is_real_faces_and_their_pseudo_fakes(portrait_cache, tiny_model_dir):
    card = load_model_card(tiny_model_dir / "tiny_b0.toml")
    crops = representative_crops(portrait_cache, card, count=8)
    assert crops.shape == (8, 64, 64, 3) and crops.dtype == np.uint8
    reals, fakes = crops[:4].astype(np.int16), crops[4:].astype(np.int16)
    assert np.abs(reals - fakes).mean() > 0.5  # each fake was blended, not copied
    assert crops.std() > 20  # faces, not blank frames


def test_the_int8_export_is_integer_inside_and_small(int8_models):
    from ai_edge_litert.interpreter import Interpreter

    path = int8_models / "tiny_b0.int8.tflite"
    assert path.stat().st_size < 25 * 2**20
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    dtypes = {d["dtype"] for d in interpreter.get_tensor_details()}
    assert np.float32 not in dtypes, "a full-integer model has no float tensor"
    assert np.int8 in dtypes


def _op_layers(path: Path) -> list[tuple[str, str]]:
    """Every operator of a ``.tflite`` as ``(op name, Keras layer of its output)``."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    names = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
    out = []
    for op in interpreter._get_ops_details():
        first = names[op["outputs"][0]].split(";")[0].split("/")
        out.append((op["op_name"], first[1] if len(first) > 1 else first[0]))
    return out


def test_a_mixed_export_keeps_exactly_the_listed_blocks_float(int8_models, portrait_cache, tmp_path):
    import dataclasses

    card = load_model_card(int8_models / "tiny_b0.toml")
    model = build_model(card)
    crops = card.normalise(representative_crops(portrait_cache, card, count=12))
    mixed = export_tflite_int8(model, tmp_path / "mixed.tflite", crops, ("stem", "block1a"))
    full = int8_models / "tiny_b0.int8.tflite"
    listed = sorted((op, layer) for op, layer in _op_layers(full)
                    if layer.startswith(("stem_", "block1a_")) and op not in ("QUANTIZE", "DEQUANTIZE"))
    assert listed and {layer.split("_")[0] for _, layer in listed} == {"stem", "block1a"}
    assert sorted(float_ops(mixed)) == listed  # those operators, and no other, compute in float
    assert float_ops(full) == []
    runtime = LiteRTRuntime(dataclasses.replace(card, tflite_int8_path=mixed), precision="int8")
    assert runtime.input_dtype == np.int8  # same interface as the full-integer file
    batch = card.normalise(_portrait_crops(card))
    np.testing.assert_allclose(runtime.predict(batch), LiteRTRuntime(card).predict(batch), atol=0.05)
    with pytest.raises(ModelError, match="block9z"):
        export_tflite_int8(model, tmp_path / "bad.tflite", crops, ("stem", "block9z"))
    assert not (tmp_path / "bad.tflite").exists()


def test_int8_probabilities_are_close_to_float32_on_real_crops(int8_models):
    card = load_model_card(int8_models / "tiny_b0.toml")
    float_rt, int8_rt = LiteRTRuntime(card), LiteRTRuntime(card, precision="int8")
    assert int8_rt.input_dtype == np.int8
    batch = card.normalise(_portrait_crops(card))
    for n in (len(batch), 1, 3):  # the batch dimension is dynamic in both files
        expected, got = float_rt.predict(batch[:n]), int8_rt.predict(batch[:n])
        assert got.shape == (n,) and np.all((got >= 0) & (got <= 1))
        np.testing.assert_allclose(got, expected, atol=0.05)
    assert int8_rt.predict(np.zeros((0, 64, 64, 3), np.float32)).shape == (0,)


def test_auto_follows_the_cards_precision_and_explicit_kinds_need_their_file(int8_models,
                                                                               tiny_model_dir):
    text = (int8_models / "tiny_b0.toml").read_text()
    assert load_runtime(load_model_card(int8_models / "tiny_b0.toml"), "auto").name == LITERT
    (int8_models / "int8.toml").write_text(text + 'precision = "int8"\n')
    int8_card = load_model_card(int8_models / "int8.toml")
    assert load_runtime(int8_card, "auto").name == LITERT_INT8
    assert load_runtime(int8_card, "litert").name == LITERT
    plain = load_model_card(tiny_model_dir / "tiny_b0.toml")
    with pytest.raises(ModelError, match="no int8 .tflite file.*quantize"):
        load_runtime(plain, "litert-int8")
    (int8_models / "gone.toml").write_text(
        text.replace("tiny_b0.int8.tflite", "missing.int8.tflite") + 'precision = "int8"\n')
    with pytest.raises(ModelError, match="missing.int8.tflite is missing"):
        load_runtime(load_model_card(int8_models / "gone.toml"), "auto")


def test_workers_runtime_litert_int8_scores_a_real_face_through_the_frame_scorer(int8_models,
                                                                                  make_config):
    from detector.worker import build_frame_scorer

    config = make_config(model={"dir": str(int8_models)}, workers={"runtime": "litert-int8"})
    scorer = build_frame_scorer(config)
    assert scorer.runtime.name == LITERT_INT8
    results, timings = scorer.score_frames([load_face_bgr()])
    assert timings.n_faces == len(results[0]) >= 1
    assert all(0.0 <= face.fake_probability <= 1.0 for face in results[0])
    auto = build_frame_scorer(make_config(model={"dir": str(int8_models)}))
    assert auto.runtime.name == LITERT  # the card's precision is float32


needs_bf16 = pytest.mark.skipif(native_bfloat16() is not None,
                                reason=f"no bfloat16 here: {native_bfloat16()}")


@needs_bf16
def test_bfloat16_probabilities_are_close_to_float32_on_real_crops(int8_models):
    card = load_model_card(int8_models / "tiny_b0.toml")
    float_rt, bf16_rt = LiteRTRuntime(card, threads=1), OpenVINORuntime(card, threads=1)
    assert bf16_rt.name == OPENVINO_BF16
    batch = card.normalise(_portrait_crops(card))
    for n in (len(batch), 1, 3):  # the batch dimension is dynamic
        expected, got = float_rt.predict(batch[:n]), bf16_rt.predict(batch[:n])
        assert got.shape == (n,) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=0.02)
    # bfloat16 really runs: the compiled graph computes its convolutions in it
    ran = [op.get_rt_info()["runtimePrecision"].astype(str)
           for op in bf16_rt.compiled(len(batch)).get_runtime_model().get_ordered_ops()]
    assert ran.count("bf16") >= 20, sorted(set(ran))
    assert bf16_rt.predict(np.zeros((0, 64, 64, 3), np.float32)).shape == (0,)


@needs_bf16
def test_auto_runs_bfloat16_when_the_card_says_so(int8_models):
    text = (int8_models / "tiny_b0.toml").read_text()
    (int8_models / "bf16.toml").write_text(text + 'precision = "bfloat16"\n')
    card = load_model_card(int8_models / "bf16.toml")
    assert load_runtime(card, "auto").name == OPENVINO_BF16
    assert load_runtime(card, "litert").name == LITERT


def test_without_bfloat16_auto_runs_float32_and_the_explicit_runtime_says_why(int8_models,
                                                                               monkeypatch):
    import detector.runtime as runtime

    # A CPU without bfloat16 cannot be had here: the capability probe is replaced.
    monkeypatch.setattr(runtime, "native_bfloat16", lambda: "this CPU computes no bfloat16")
    text = (int8_models / "tiny_b0.toml").read_text()
    (int8_models / "bf16.toml").write_text(text + 'precision = "bfloat16"\n')
    card = load_model_card(int8_models / "bf16.toml")
    assert load_runtime(card, "auto").name == LITERT
    with pytest.raises(ModelError, match="openvino-bf16 cannot run here: this CPU computes no"):
        load_runtime(card, "openvino-bf16")


def test_bfloat16_needs_the_float32_export(tiny_model_dir, tmp_path):
    text = (tiny_model_dir / "tiny_b0.toml").read_text().replace(
        'weights = "tiny_b0.weights.h5"', f'weights = "{tiny_model_dir / "tiny_b0.weights.h5"}"')
    (tmp_path / "a.toml").write_text(text)
    with pytest.raises(ModelError, match="has no .tflite file"):
        OpenVINORuntime(load_model_card(tmp_path / "a.toml"))
    (tmp_path / "b.toml").write_text(text + 'precision = "bfloat16"\n')
    with pytest.raises(ModelError, match='precision = "bfloat16" needs a tflite file'):
        load_model_card(tmp_path / "b.toml")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def test_quantize_without_a_cache_says_so_in_one_sentence(int8_models, tmp_path):
    result = _cli("quantize", "--models-dir", str(int8_models), "--model", "tiny_b0",
                  "--cache-dir", str(tmp_path / "empty"), cwd=tmp_path)
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()
    assert len(message) == 1 and "prepare --landmarks" in message[0], result.stderr
    assert "Traceback" not in result.stderr


def test_quantize_refuses_a_float_block_that_is_not_a_name(tmp_path):
    result = _cli("quantize", "--float-blocks", "stem,block1a;rm", cwd=tmp_path)
    assert result.returncode == 2 and "expected block names like stem,block1a" in result.stderr
    assert "Traceback" not in result.stderr


def test_quantize_exports_measures_and_writes_the_card(int8_models, portrait_cache, tmp_path):
    import shutil

    from app.quantize import weights_digest
    from detector.training.sbi import self_blend_v3

    models = tmp_path / "models"
    shutil.copytree(int8_models, models)
    (models / "tiny_b0.int8.tflite").unlink()
    # A labelled set: the portrait variants (REAL) and pseudo-fakes of them (FAKE), as files.
    data = tmp_path / "set"
    data.mkdir()
    rows = []
    rng = np.random.default_rng(1)
    for i, npz in enumerate(sorted(portrait_cache.rglob("*.npz"))):
        with np.load(npz) as cached:
            crop, points = cached["context_0"], cached["landmarks_xy"][0]
        real, fake, _ = self_blend_v3(crop, points, rng)
        for label, image in (("REAL", real), ("FAKE", fake)):
            name = f"{label.lower()}{i}.png"
            cv2.imwrite(str(data / name), image[..., ::-1])
            rows.append({"path": name, "label": label, "dataset": "portrait"})
    with (data / "labels.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["path", "label", "dataset"])
        writer.writeheader()
        writer.writerows(rows)

    result = _cli("quantize", "--models-dir", str(models), "--model", "tiny_b0",
                  "--cache-dir", str(portrait_cache), "--samples", "12",
                  "--dev-labels", str(data / "labels.csv"),
                  "--holdout-labels", str(data / "labels.csv"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "[2/4] int8 export" in result.stdout and "precision = " in result.stdout
    card = load_model_card(models / "tiny_b0.toml")
    parity = card.extra["int8_parity"]
    assert card.tflite_int8_path == (models / "tiny_b0.int8.tflite").resolve()
    assert card.tflite_int8_path.stat().st_size < 25 * 2**20
    assert parity["weights_sha256"] == weights_digest(card.weights_path)
    assert parity["float_blocks"] == [] and parity["float_ops"] == 0  # full-integer by default
    assert parity["dev_items"] == parity["holdout_items"] == len(rows)
    assert parity["frames"] == 2 * len(rows)
    assert 0 <= parity["frame_abs_diff_median"] <= parity["frame_abs_diff_p99"] \
        <= parity["frame_abs_diff_max"] <= 1
    within = all(abs(parity[f"{s}_item_auc_int8"] - parity[f"{s}_item_auc_float32"]) <= 0.01 + 1e-9
                 for s in ("dev", "holdout"))
    bf16 = card.extra.get("bf16_parity")
    if native_bfloat16() is None:
        assert bf16 is not None and bf16["runtime"] == OPENVINO_BF16
        assert bf16["weights_sha256"] == parity["weights_sha256"]
        assert bf16["frames"] == 2 * len(rows) and bf16["dev_items"] == len(rows)
        assert bf16["frame_abs_diff_max"] <= 0.05  # bfloat16 is far closer than int8's 0.01 bar
        assert "bfloat16" in result.stdout
    else:
        assert bf16 is None and "bfloat16: not measured" in result.stdout
    bf16_within = bf16 is not None and all(
        abs(bf16[f"{s}_item_auc_bfloat16"] - bf16[f"{s}_item_auc_float32"]) <= 0.01 + 1e-9
        for s in ("dev", "holdout"))
    expected = "int8" if within else "bfloat16" if bf16_within else "float32"
    assert card.precision == expected, (parity["decision"], bf16 and bf16["decision"])
    assert card.name == "tiny_b0" and card.input_size_px == 64 and card.trained is False


def test_a_quantize_run_that_fails_after_the_export_leaves_the_card_as_it_was(int8_models,
                                                                              portrait_cache,
                                                                              tmp_path):
    import shutil

    models = tmp_path / "models"
    shutil.copytree(int8_models, models)
    card_before = (models / "tiny_b0.toml").read_text()
    int8_before = (models / "tiny_b0.int8.tflite").read_bytes()
    bad = tmp_path / "labels.csv"
    bad.write_text("file,verdict\nx.png,REAL\n")
    result = _cli("quantize", "--models-dir", str(models), "--model", "tiny_b0",
                  "--cache-dir", str(portrait_cache), "--samples", "4", "--seed", "3",
                  "--dev-labels", str(bad), cwd=tmp_path)
    assert result.returncode != 0 and "needs columns path,label" in result.stderr
    assert "[2/4] int8 export" in result.stdout  # it failed after exporting
    assert (models / "tiny_b0.toml").read_text() == card_before
    assert (models / "tiny_b0.int8.tflite").read_bytes() == int8_before
    assert sorted(p.name for p in models.iterdir()) == sorted(p.name for p in int8_models.iterdir())


SHIPPED = REPO / "models" / "sbi_b0.toml"


def test_a_shipped_bfloat16_precision_was_measured_on_the_shipped_weights():
    from app.quantize import weights_digest

    card = load_model_card(SHIPPED)
    if card.precision != "bfloat16":
        pytest.skip(f"the shipped card's precision is {card.precision}")
    parity = card.extra["bf16_parity"]
    assert parity["weights_sha256"] == weights_digest(card.weights_path), \
        "the bfloat16 parity was measured on other weights: run `deepfake-detector quantize` again"
    for name in ("dev", "holdout"):
        delta = parity[f"{name}_item_auc_bfloat16"] - parity[f"{name}_item_auc_float32"]
        assert abs(delta) <= parity["auc_tolerance"] + 1e-9


@needs_bf16
def test_the_shipped_model_in_bfloat16_matches_float32_on_the_portrait():
    card = load_model_card(SHIPPED)
    float_rt, bf16_rt = LiteRTRuntime(card, threads=1), OpenVINORuntime(card, threads=1)
    batch = card.normalise(_portrait_crops(card))
    expected = card.calibrate(float_rt.predict(batch))
    got = card.calibrate(bf16_rt.predict(batch))
    np.testing.assert_allclose(got, expected, atol=0.02)
    assert np.abs(got - expected).max() > 1e-6  # computed in bfloat16, not float32


def test_the_shipped_int8_export_matches_its_weights_and_float32_on_the_portrait():
    card = load_model_card(SHIPPED)
    if card.tflite_int8_path is None:
        pytest.skip("the shipped card has no int8 export (run `deepfake-detector quantize`)")
    from app.quantize import weights_digest

    parity = card.extra["int8_parity"]
    assert parity["weights_sha256"] == weights_digest(card.weights_path), \
        "the int8 parity was measured on other weights: run `deepfake-detector quantize` again"
    assert card.tflite_int8_path.stat().st_size < 25 * 2**20
    float_rt, int8_rt = LiteRTRuntime(card), LiteRTRuntime(card, precision="int8")
    batch = card.normalise(_portrait_crops(card))
    expected = card.calibrate(float_rt.predict(batch))
    got = card.calibrate(int8_rt.predict(batch))
    # Bounded by what `quantize` measured for this very file over the dev and held-out frames
    # (the p99 of |int8 - fp32|; 0.10 for 0.3.0; 0.26 for 0.6.0, 0.32 for 0.7.0, 0.36 for 0.8.0
    # and 0.31 for 0.9.0, whose int8 exports fail parity and are not the default), never
    # tighter than 0.05.
    np.testing.assert_allclose(got, expected, atol=max(0.05, parity["frame_abs_diff_p99"]))
    assert np.abs(got - expected).max() > 1e-6  # computed in int8, not float32
