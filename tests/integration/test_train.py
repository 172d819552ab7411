"""`train` on a tiny synthetic face cache: per-epoch checkpoints, resume, publish a loadable card."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from detector.model_card import load_model_card
from detector.training.data import make_pair
from detector.training.prepare import (
    TRAIN_CONTEXT_SETTINGS,
    TRAIN_SETTINGS,
    CachedFaces,
    cache_file,
    save_cached,
)
from detector.training.publish import publish_model
from detector.training.self_blend import BLEND_RECIPES
from detector.training.settings import TrainSettings, parse_schedule
from detector.training.split import SplitRow
from detector.training.train import RunState, train_model

SIZE = TRAIN_SETTINGS.crop_px


def _crops(count: int, seed: int) -> np.ndarray:
    """Face-like crops: a skin-toned ellipse with two dark eyes on a textured background."""
    import cv2

    rng = np.random.default_rng(seed)
    out = np.empty((count, SIZE, SIZE, 3), np.uint8)
    for i in range(count):
        image = rng.integers(40, 120, (SIZE, SIZE, 3), dtype=np.uint8)
        tone = tuple(int(v) for v in rng.integers(120, 230, 3))
        cv2.ellipse(image, (SIZE // 2, SIZE // 2), (SIZE // 5, SIZE // 4), 0, 0, 360, tone, -1)
        for dx in (-SIZE // 12, SIZE // 12):
            cv2.circle(image, (SIZE // 2 + dx, SIZE // 2 - SIZE // 16), SIZE // 40, (20, 20, 20), -1)
        out[i] = image
    return out


@pytest.fixture()
def tiny_cache(tmp_path: Path) -> tuple[list[SplitRow], Path]:
    cache = tmp_path / "cache"
    rows = []
    for n, side in enumerate(("train", "train", "train", "holdout")):
        path = f"train/real/synthetic/person{n}.png"
        rows.append(SplitRow(path, f"synthetic:person{n}", side))
        save_cached(cache_file(cache, TRAIN_SETTINGS, path),
                    CachedFaces(_crops(3, n), np.zeros(3, np.int32), np.zeros(3, bool), 1))
    return rows, cache


def _settings(**changes) -> TrainSettings:
    base = dict(schedule=((32, 1), (64, 1)), images_per_epoch=4, batch_size=2, holdout_pairs=3,
                init="random", utkface_share=0.0, dropout_rate=0.0, drop_connect_rate=0.0)
    return TrainSettings(**{**base, **changes})


def test_a_run_checkpoints_each_epoch_resumes_and_publishes_a_card(tiny_cache, tmp_path):
    rows, cache = tiny_cache
    run = tmp_path / "run"
    first = train_model(rows, cache, run, _settings(), dev_labels=None, workers=1,
                        stop_after_epochs=1)
    assert first.epochs_done == 1
    assert (run / "epoch_1.weights.h5").is_file() and (run / "last.weights.h5").is_file()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    saved = json.loads((run / "state.json").read_text())
    assert saved["epochs_done"] == 1 and saved["settings"]["blend_recipe"] == "v1"

    resumed = train_model(rows, cache, run, _settings(), dev_labels=None, workers=1)
    assert resumed.epochs_done == 2
    assert [h["input_size_px"] for h in resumed.history] == [32, 64]
    assert resumed.history[0] == first.history[0]  # the finished epoch was not redone
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    record = resumed.history[1]
    assert 0.0 <= record["holdout_auc"]["value"] <= 1.0 and record["dev_item_auc"] is None

    models = tmp_path / "models"
    card_path = publish_model(resumed, run, models, "tiny", dev_labels=None, cache_dir=cache,
                              version="9.9.9")
    card = load_model_card(card_path)
    assert card.input_size_px == 64 and card.threshold == 0.5 and card.version == "9.9.9"
    assert card.weights_path.is_file()
    summary = json.loads((models / "tiny.train_metrics.json").read_text())
    assert summary["chosen_epoch"] == 2 and len(summary["history"]) == 2


def test_publishing_the_mean_of_the_last_epochs_averages_their_weights_and_one_epoch_as_is(tiny_cache, tmp_path):
    from detector.efficientnet import EfficientNetB0Classifier

    rows, cache = tiny_cache
    run = tmp_path / "run"
    state = train_model(rows, cache, run, _settings(schedule=((32, 3),)), dev_labels=None,
                        workers=1)
    models = tmp_path / "models"
    card = load_model_card(publish_model(state, run, models, "avg", dev_labels=None,
                                         cache_dir=cache, average_last=2))
    summary = json.loads((models / "avg.train_metrics.json").read_text())
    assert summary["averaged_epochs"] == [2, 3]

    model = EfficientNetB0Classifier(32)
    per_epoch = []
    for epoch in (2, 3):
        model.load_weights(str(run / f"epoch_{epoch}.weights.h5"))
        per_epoch.append(model.get_weights())
    model.load_weights(str(card.weights_path))
    published = model.get_weights()
    moved = 0
    for a, b, mean in zip(*per_epoch, published):
        if a.dtype.kind == "f":
            np.testing.assert_allclose(mean, (a.astype(np.float64) + b) / 2, rtol=1e-5, atol=1e-6)
            moved += int(not np.array_equal(a, b))
    assert moved > 0  # the two epochs differ, so the mean is neither of them

    named = load_model_card(publish_model(state, run, tmp_path / "named", "one", dev_labels=None,
                                          cache_dir=cache, epoch=2))
    assert json.loads((tmp_path / "named" / "one.train_metrics.json").read_text())[
        "chosen_epoch"] == 2
    model.load_weights(str(named.weights_path))
    for a, b in zip(per_epoch[0], model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="no finished epoch 7 .finished: 1, 2, 3"):
        publish_model(state, run, tmp_path / "none", "x", dev_labels=None, cache_dir=cache,
                      epoch=7)
    with pytest.raises(ValueError, match="not both"):
        publish_model(state, run, tmp_path / "none", "x", dev_labels=None, cache_dir=cache,
                      epoch=2, average_last=2)
    assert not (tmp_path / "none").exists()


def test_a_soup_averages_one_epoch_of_runs_that_differ_only_in_their_seed(tiny_cache, tmp_path):
    from detector.efficientnet import EfficientNetB0Classifier

    rows, cache = tiny_cache
    runs = {}
    for seed in (1, 2):
        runs[seed] = tmp_path / f"seed{seed}"
        state = train_model(rows, cache, runs[seed], _settings(schedule=((32, 2),), seed=seed),
                            dev_labels=None, workers=1)
    models = tmp_path / "models"
    card = load_model_card(publish_model(state, runs[2], models, "soup", dev_labels=None,
                                         cache_dir=cache, epoch=2, soup_with=(runs[1],)))
    summary = json.loads((models / "soup.train_metrics.json").read_text())
    assert summary["chosen_epoch"] == 2
    assert [(p["run"], p["seed"], p["epoch"]) for p in summary["soup_with"]] == [("seed1", 1, 2)]

    model = EfficientNetB0Classifier(32)
    parents = []
    for seed in (1, 2):
        model.load_weights(str(runs[seed] / "epoch_2.weights.h5"))
        parents.append(model.get_weights())
    model.load_weights(str(card.weights_path))
    moved = 0
    for a, b, mean in zip(*parents, model.get_weights()):
        if a.dtype.kind == "f":
            np.testing.assert_allclose(mean, (a.astype(np.float64) + b) / 2, rtol=1e-5, atol=1e-6)
            moved += int(not np.array_equal(a, b))
    assert moved > 0  # the seeds trained apart, so the soup is neither parent

    other = tmp_path / "other"
    train_model(rows, cache, other, _settings(schedule=((32, 2),), seed=3, learning_rate=1e-4),
                dev_labels=None, workers=1)
    with pytest.raises(ValueError, match="other settings .learning_rate."):
        publish_model(state, runs[2], tmp_path / "none", "x", dev_labels=None, cache_dir=cache,
                      epoch=2, soup_with=(other,))
    with pytest.raises(ValueError, match="same seed"):
        publish_model(state, runs[2], tmp_path / "none", "x", dev_labels=None, cache_dir=cache,
                      epoch=2, soup_with=(runs[2],))
    with pytest.raises(ValueError, match="same seed"):
        publish_model(state, runs[2], tmp_path / "none", "x", dev_labels=None, cache_dir=cache,
                      epoch=2, soup_with=(runs[1], runs[1]))
    with pytest.raises(ValueError, match="no finished epoch 3"):
        publish_model(state, runs[2], tmp_path / "none", "x", dev_labels=None, cache_dir=cache,
                      epoch=3, soup_with=(runs[1],))
    with pytest.raises(ValueError, match="give --epoch"):
        publish_model(state, runs[2], tmp_path / "none", "x", dev_labels=None, cache_dir=cache,
                      soup_with=(runs[1],))
    assert not (tmp_path / "none").exists()


def test_a_run_folder_refuses_other_settings(tiny_cache, tmp_path):
    rows, cache = tiny_cache
    run = tmp_path / "run"
    run.mkdir()
    RunState(settings=json.loads(json.dumps(asdict(_settings())))).save(run / "state.json")
    with pytest.raises(ValueError, match="other settings"):
        train_model(rows, cache, run, _settings(blend_recipe="v2"), dev_labels=None, workers=1)


def test_an_empty_cache_says_to_run_prepare(tmp_path):
    rows = [SplitRow("train/real/x/a.png", "x:a", "train")]
    with pytest.raises(ValueError, match="run `prepare` first"):
        train_model(rows, tmp_path / "nothing", tmp_path / "run", _settings(), dev_labels=None)


@pytest.mark.parametrize("recipe", sorted(BLEND_RECIPES))
def test_a_pair_is_a_real_and_a_different_fake_at_the_asked_size(recipe):
    crop = _crops(1, 7)[0]
    real, fake = make_pair(crop, 96, TRAIN_SETTINGS.face_margin, np.random.default_rng(0),
                           BLEND_RECIPES[recipe])
    assert real.shape == fake.shape == (96, 96, 3)
    assert real.dtype == fake.dtype == np.uint8
    assert np.abs(real.astype(int) - fake.astype(int)).mean() > 0.5


@pytest.mark.parametrize("text,expected", [
    ("128:1,160:7", ((128, 1), (160, 7))),
    ("224:3", ((224, 3),)),
])
def test_parse_schedule(text, expected):
    assert parse_schedule(text) == expected


@pytest.mark.parametrize("text", ["", "128", "a:b", "128:1,"])
def test_parse_schedule_rejects_junk(text):
    if text == "128:1,":  # a trailing comma is harmless
        assert parse_schedule(text) == ((128, 1),)
        return
    with pytest.raises(ValueError, match="expected a schedule"):
        parse_schedule(text)


@pytest.mark.parametrize("changes,message", [
    ({"schedule": ((100, 1),)}, "multiple of 32"),
    ({"batch_size": 3}, "even batch_size"),
    ({"init": "imagenet"}, "init"),
    ({"blend_recipe": "v9"}, "blend_recipe"),
    ({"utkface_share": 1.5}, "utkface_share"),
])
def test_bad_settings_are_rejected(changes, message):
    with pytest.raises(ValueError, match=message):
        _settings(**changes)


def test_learning_rate_follows_a_cosine_from_max_to_min():
    settings = _settings(schedule=((32, 5),), learning_rate=1e-3, min_learning_rate=1e-5)
    rates = [settings.learning_rate_at(e) for e in range(5)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-5)
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert [settings.size_at(e) for e in range(5)] == [32] * 5


# --- recipe v3: context crops with landmarks ---------------------------------------------------
@pytest.fixture()
def tiny_context_cache(tmp_path: Path) -> tuple[list[SplitRow], Path]:
    """Context-layout entries (crop, box, 468 landmarks) of synthetic faces, one without a mesh."""
    from tests.unit.test_sbi import synthetic_mesh

    cache = tmp_path / "cache"
    rows = []
    for n, side in enumerate(("train", "train", "train", "holdout")):
        path = f"train/real/synthetic/person{n}.png"
        rows.append(SplitRow(path, f"synthetic:person{n}", side))
        crops = [_crops(1, n)[0] for _ in range(3)]
        mesh = synthetic_mesh(cx=SIZE / 2, cy=SIZE / 2, rx=SIZE / 5, ry=SIZE / 4)
        points = np.stack([mesh, mesh, np.full_like(mesh, np.nan)])
        boxes = np.tile(np.asarray([[SIZE * 0.3, SIZE * 0.25, SIZE * 0.7, SIZE * 0.75]], np.float32),
                        (3, 1))
        save_cached(cache_file(cache, TRAIN_CONTEXT_SETTINGS, path),
                    CachedFaces(crops, np.zeros(3, np.int32), np.zeros(3, bool), 1, boxes, points))
    return rows, cache


def test_a_v3_run_trains_on_context_crops_and_publishes_a_box_crop_card(tiny_context_cache, tmp_path):
    rows, cache = tiny_context_cache
    run = tmp_path / "run"
    state = train_model(rows, cache, run, _settings(blend_recipe="v3"), dev_labels=None, workers=1)
    assert state.epochs_done == 2 and state.settings["blend_recipe"] == "v3"
    assert 0.0 <= state.history[-1]["holdout_auc"]["value"] <= 1.0
    card = load_model_card(publish_model(state, run, tmp_path / "models", "tiny3", dev_labels=None,
                                         cache_dir=cache))
    assert card.crop_rule == "box" and card.face_margin == pytest.approx(0.125)


def test_pair_downscale_reaches_the_batches_of_both_pseudo_fake_families(tiny_context_cache):
    from detector.training.data import SelfBlendBatches, load_face_set

    rows, cache = tiny_context_cache
    faces = load_face_set(rows, "train", cache, TRAIN_CONTEXT_SETTINGS)
    for recipe in ("v3", "v3x"):
        batches = {share: SelfBlendBatches(faces, _settings(blend_recipe=recipe, schedule=((64, 1),),
                                                             batch_size=8, pair_downscale=share),
                                           0, 1, 0.125)[0][0]
                   for share in (0.0, 1.0)}
        plain, smaller = batches[0.0], batches[1.0]
        assert plain.shape == smaller.shape == (8, 64, 64, 3)
        detail = [np.abs(np.diff(b, axis=2)).mean() for b in (plain, smaller)]
        assert detail[1] < 0.9 * detail[0], recipe  # every pair lost fine detail


def test_the_cross_identity_share_of_each_context_recipe_is_the_share_of_cross_pairs(
        tiny_context_cache, monkeypatch):
    import detector.training.data as data
    from detector.training.settings import CROSS_IDENTITY_SHARE

    rows, cache = tiny_context_cache
    faces = data.load_face_set(rows, "train", cache, TRAIN_CONTEXT_SETTINGS)
    calls = {"cross": 0, "self": 0}

    def counting(kind, make):
        def wrapped(*args, **kwargs):
            calls[kind] += 1
            return make(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(data, "make_cross_pair", counting("cross", data.make_cross_pair))
    monkeypatch.setattr(data, "make_pair_v3", counting("self", data.make_pair_v3))
    steps, batch_size = 6, 8
    pairs = steps * batch_size // 2  # each batch: half reals, half their pseudo-fakes
    shares = {}
    for recipe in ("v3", "v3x", "v3x100"):
        calls.update(cross=0, self=0)
        batches = data.SelfBlendBatches(faces, _settings(blend_recipe=recipe, schedule=((64, 1),),
                                                         batch_size=batch_size), 0, steps, 0.125)
        for step in range(len(batches)):
            batches[step]
        assert calls["cross"] + calls["self"] == pairs, recipe
        shares[recipe] = calls["cross"] / pairs
    assert shares["v3"] == CROSS_IDENTITY_SHARE["v3"] == 0.0
    assert shares["v3x100"] == CROSS_IDENTITY_SHARE["v3x100"] == 1.0  # no self-blend at all
    assert 0.2 < shares["v3x"] < 0.8


def test_more_cross_candidates_pick_a_source_whose_landmarks_are_nearer():
    """With every face among the candidates the source is the nearest other person; with one
    candidate it is a random other person, on average farther."""
    from detector.training.data import FaceSet, SelfBlendBatches
    from detector.training.sbi import normalised_shape
    from tests.unit.test_sbi import synthetic_mesh

    rng = np.random.default_rng(3)
    count = 30
    meshes = [synthetic_mesh(rx=rng.uniform(40, 80), ry=rng.uniform(60, 110)) for _ in range(count)]
    faces = FaceSet([np.zeros((SIZE, SIZE, 3), np.uint8)] * count,
                    np.asarray([f"person{n // 2}" for n in range(count)], dtype=object),  # pairs
                    np.zeros(count, bool), np.zeros((count, 4), np.float32), np.stack(meshes))
    shapes = np.stack([normalised_shape(m) for m in meshes])

    def nearest_other(target):
        others = np.flatnonzero(faces.groups != faces.groups[target])
        return int(others[np.argmin(np.linalg.norm(shapes[others] - shapes[target], axis=1))])

    def sources(candidates):
        batches = SelfBlendBatches(faces, _settings(blend_recipe="v3x100", batch_size=8,
                                                    cross_candidates=candidates), 0, 1, 0.125)
        draw = np.random.default_rng(0)
        return [batches._cross_source(t, draw) for t in range(count)]

    everyone = sources(20 * count)  # every face drawn, with near certainty
    assert everyone == [nearest_other(t) for t in range(count)]
    one = sources(1)
    assert all(faces.groups[s] != faces.groups[t] for t, s in enumerate(one) if s is not None)
    distance = {name: np.mean([np.linalg.norm(shapes[s] - shapes[t]) for t, s in enumerate(picks)
                               if s is not None]) for name, picks in (("one", one), ("all", everyone))}
    assert distance["all"] < 0.8 * distance["one"]


def test_a_v3_run_without_a_context_cache_says_to_prepare_landmarks(tiny_cache, tmp_path):
    rows, cache = tiny_cache  # a crop-layout cache only
    with pytest.raises(ValueError, match="prepare --landmarks"):
        train_model(rows, cache, tmp_path / "run", _settings(blend_recipe="v3"), dev_labels=None)


def test_a_killed_training_process_resumes_from_its_last_checkpoint(tiny_context_cache, tmp_path):
    """SIGKILL in the middle of epoch 2 (no clean shutdown), then a new process finishes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    rows, cache = tiny_context_cache
    run = tmp_path / "run"
    script = tmp_path / "train_once.py"
    script.write_text(
        "import sys, time\n"
        "from pathlib import Path\n"
        "from detector.training.split import SplitRow\n"
        "from detector.training.settings import TrainSettings\n"
        "from detector.training.train import train_model\n"
        f"rows = {[(r.path, r.group, r.side) for r in rows]!r}\n"
        "rows = [SplitRow(*r) for r in rows]\n"
        "settings = TrainSettings(schedule=((32, 2), (64, 1)), images_per_epoch=4, batch_size=2,\n"
        "    holdout_pairs=3, init='random', utkface_share=0.0, dropout_rate=0.0,\n"
        "    drop_connect_rate=0.0, blend_recipe='v3')\n"
        "if sys.argv[1] == 'slow':  # slow epoch 2 down so the kill lands inside it\n"
        "    import detector.training.data as t\n"
        "    make = t.make_pair_v3\n"
        "    def slow(*a, **k):\n"
        "        if Path(sys.argv[3]).joinpath('epoch_1.weights.h5').exists():\n"
        "            time.sleep(30)\n"
        "        return make(*a, **k)\n"
        "    t.make_pair_v3 = slow\n"
        f"train_model(rows, Path({str(cache)!r}), Path(sys.argv[3]), settings, None, workers=1)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    first = subprocess.Popen([sys.executable, str(script), "slow", "x", str(run)], env=env)
    deadline = time.monotonic() + 240
    while not (run / "state.json").is_file() and time.monotonic() < deadline:
        assert first.poll() is None, "training exited before its first checkpoint"
        time.sleep(0.5)
    time.sleep(2)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    saved = json.loads((run / "state.json").read_text())
    assert saved["epochs_done"] == 1 and not (run / "epoch_2.weights.h5").exists()

    second = subprocess.run([sys.executable, str(script), "fast", "x", str(run)], env=env,
                            timeout=400)
    assert second.returncode == 0
    final = json.loads((run / "state.json").read_text())
    assert final["epochs_done"] == 3 and final["history"][0] == saved["history"][0]
    assert [h["input_size_px"] for h in final["history"]] == [32, 32, 64]


def test_frozen_stages_keep_their_weights_until_the_last_epochs_unfreeze_them(tiny_cache, tmp_path):
    from detector.training.train import build_model

    rows, cache = tiny_cache
    settings = _settings(frozen_stages=2, unfreeze_last_epochs=1)
    assert settings.frozen_prefixes_at(0) == ("stem_", "block1", "block2")
    assert settings.frozen_prefixes_at(1) == ()
    initial = build_model(settings, 32)
    run = tmp_path / "run"
    train_model(rows, cache, run, settings, dev_labels=None, workers=1)

    def layer_weights(epoch: int, name: str) -> list[np.ndarray]:
        model = build_model(settings, 32)
        model.load_weights(str(run / f"epoch_{epoch}.weights.h5"))
        return model.get_layer(name).get_weights()

    for name in ("stem_conv", "stem_bn", "block2a_project_bn"):  # frozen in epoch 1
        assert all(np.array_equal(a, b) for a, b in
                   zip(initial.get_layer(name).get_weights(), layer_weights(1, name))), name
    assert not all(np.array_equal(a, b) for a, b in  # a later stage trained in epoch 1
                   zip(initial.get_layer("block3a_project_conv").get_weights(),
                       layer_weights(1, "block3a_project_conv")))
    assert not np.array_equal(layer_weights(1, "stem_conv")[0], layer_weights(2, "stem_conv")[0])


def test_the_deepest_freeze_leaves_the_last_stage_and_the_head_training():
    from detector.training.settings import MAX_FROZEN_STAGES
    from detector.training.train import build_model, freeze

    settings = _settings(frozen_stages=MAX_FROZEN_STAGES)
    model = build_model(settings, 32)
    freeze(model, settings.frozen_prefixes_at(0))
    trainable = {layer.name for layer in model.layers if layer.trainable}
    assert not any(name.startswith(("stem_", "block1", "block6")) for name in trainable)
    assert {"block7a_project_conv", "top_conv"} <= trainable
    assert model.get_layer("top_conv").trainable_weights and model.layers[-1].trainable_weights


def test_a_sam_run_trains_keeps_its_radius_and_resumes_only_with_it(tiny_cache, tmp_path):
    from detector.training.train import build_model

    rows, cache = tiny_cache
    settings = _settings(sam_rho=0.05)
    initial = build_model(settings, 32).get_weights()
    run = tmp_path / "run"
    state = train_model(rows, cache, run, settings, dev_labels=None, workers=1, stop_after_epochs=1)
    assert json.loads((run / "state.json").read_text())["settings"]["sam_rho"] == 0.05
    assert np.isfinite(state.history[0]["loss"])
    model = build_model(settings, 32)
    model.load_weights(str(run / "epoch_1.weights.h5"))
    assert not all(np.array_equal(a, b) for a, b in zip(initial, model.get_weights()))
    with pytest.raises(ValueError, match="other settings"):
        train_model(rows, cache, run, _settings(), dev_labels=None, workers=1)
    assert train_model(rows, cache, run, settings, dev_labels=None, workers=1).epochs_done == 2


def test_the_anchor_pulls_trained_weights_back_to_the_initial_ones(tiny_cache, tmp_path):
    from detector.training.train import build_model

    rows, cache = tiny_cache
    start = tmp_path / "start.weights.h5"
    build_model(_settings(), 32).save_weights(str(start))
    initial = build_model(_settings(init_weights=str(start)), 32).get_weights()

    def moved(anchor_strength: float) -> tuple[float, float]:
        """How far the trained weights and the batch-norm statistics moved from the start."""
        settings = _settings(init_weights=str(start), anchor_strength=anchor_strength,
                             learning_rate=1e-3, schedule=((32, 1),))
        run = tmp_path / f"run{anchor_strength}"
        train_model(rows, cache, run, settings, dev_labels=None, workers=1)
        model = build_model(settings, 32)
        model.load_weights(str(run / "last.weights.h5"))
        distances = [np.abs(w.numpy() - w0).max() for w, w0 in zip(model.weights, initial)]
        statistics = ["moving" in w.path for w in model.weights]
        return (max(d for d, s in zip(distances, statistics) if not s),
                max(d for d, s in zip(distances, statistics) if s))

    free_weights, _ = moved(0.0)
    # learning rate x strength = 1: every step ends back on the initial weights, while the
    # batch-norm statistics (not trained by the optimiser) still follow the data
    pulled_weights, pulled_statistics = moved(1000.0)
    assert free_weights > 1e-4
    assert pulled_weights < 1e-6 and pulled_statistics > 1e-4


def test_train_options_default_to_the_settings_defaults_and_reach_the_settings():
    from app.cli import build_parser
    from app.model_commands import train_settings

    parser = build_parser()
    assert train_settings(parser.parse_args(["train"])) == TrainSettings()
    asked = train_settings(parser.parse_args([
        "train", "--schedule", "224:37", "--images-per-epoch", "800", "--batch-size", "16",
        "--learning-rate", "5e-5", "--init", "random", "--seed", "7", "--utkface-share", "0.2",
        "--init-weights", "w.h5", "--blend-recipe", "v3x100", "--frozen-stages", "5",
        "--unfreeze-last", "2", "--sam-rho", "0.05", "--pair-downscale", "0.3",
        "--cross-candidates", "96", "--anchor-strength", "80"]))
    assert asked == TrainSettings(
        schedule=((224, 37),), images_per_epoch=800, batch_size=16, learning_rate=5e-5,
        init="random", seed=7, utkface_share=0.2, init_weights="w.h5", blend_recipe="v3x100",
        frozen_stages=5, unfreeze_last_epochs=2, sam_rho=0.05, pair_downscale=0.3,
        cross_candidates=96, anchor_strength=80.0)


@pytest.mark.parametrize("changes,message", [
    ({"anchor_strength": -1.0, "init_weights": "w.h5"}, "anchor_strength"),
    ({"anchor_strength": 10.0}, "needs them"),
    ({"anchor_strength": 1e5, "init_weights": "w.h5"}, "at most 1"),
    ({"frozen_stages": 7}, "frozen_stages"),
    ({"unfreeze_last_epochs": -1}, "unfreeze_last_epochs"),
    ({"sam_rho": 1.5}, "sam_rho"),
    ({"pair_downscale": 0.3}, "pair_downscale applies to the context recipes"),
    ({"pair_downscale": 1.5, "blend_recipe": "v3"}, "pair_downscale"),
    ({"cross_candidates": 0}, "cross_candidates"),
])
def test_bad_freeze_settings_are_rejected(changes, message):
    with pytest.raises(ValueError, match=message):
        _settings(**changes)
