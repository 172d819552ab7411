"""`evaluate` end to end on synthetic items with a tiny random model, and on a hand-made AUC case."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.evaluate import ItemResult, compute_metrics, read_labels, run_evaluate
from detector.face_detect import FaceBox
from detector.frame_scorer import FrameScorer
from detector.model_card import load_model_card
from detector.training.metrics import roc_auc

pytestmark = pytest.mark.timeout(120)


def _write_labels(folder: Path, rows: list[str]) -> Path:
    path = folder / "labels.csv"
    path.write_text("path,label,dataset,method,group\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory):
    """Images and a video with a face, a tight crop, a face-less frame, and bad rows."""
    from producers.synthetic import load_face_bgr, write_video

    root = tmp_path_factory.mktemp("eval_set")
    face = load_face_bgr()
    cv2.imwrite(str(root / "face.png"), face)
    frame = np.full((360, 640, 3), 90, np.uint8)
    frame[60:316, 200:456] = face
    cv2.imwrite(str(root / "frame.jpg"), frame)
    cv2.imwrite(str(root / "tight.png"), cv2.resize(face[60:200, 70:190], (96, 112)))
    cv2.imwrite(str(root / "blank_big.png"), np.full((480, 960, 3), 128, np.uint8))
    write_video(root / "clip.mp4", 24, width=320, height=240)
    (root / "corrupt.png").write_bytes(b"this is not a png")
    (root / "notes.txt").write_text("hello")
    labels = _write_labels(root, [
        "face.png,REAL,synthetic,,a",
        "frame.jpg,FAKE,synthetic,,b",
        "tight.png,FAKE,crops,,c",
        "blank_big.png,REAL,synthetic,,d",
        "clip.mp4,REAL,video,,e",
        "missing.png,FAKE,synthetic,,f",
        "corrupt.png,REAL,synthetic,,g",
        "notes.txt,REAL,synthetic,,h",
        "face.png,MAYBE,synthetic,,i",
        ",FAKE,synthetic,,j",
    ])
    return root, labels


def test_report_shape_and_bad_rows(make_config, synthetic_set, tmp_path):
    from detector.worker import build_frame_scorer

    root, labels = synthetic_set
    scorer = build_frame_scorer(make_config(), threads=1)
    report_path = tmp_path / "report.json"
    report = run_evaluate(scorer, labels, root, report_path, max_frames=4, stride=4, resamples=50)

    on_disk = json.loads(report_path.read_text())
    assert on_disk["metrics"] == json.loads(json.dumps(report["metrics"]))
    items = {(i["path"], i["label"]): i for i in on_disk["items"]}
    assert len(on_disk["items"]) == 10
    for item in on_disk["items"]:
        assert {"path", "label", "score", "frames_scored", "dataset", "error"} <= set(item)

    assert items[("face.png", "REAL")]["score"] is not None
    assert items[("clip.mp4", "REAL")]["frames_sampled"] == 4  # 24 frames, every 4th, capped at 4
    assert 0 <= items[("clip.mp4", "REAL")]["frames_scored"] <= 4
    tight = items[("tight.png", "FAKE")]
    assert tight["score"] is not None and tight["frames_scored"] == 1  # detected or fallback
    blank = items[("blank_big.png", "REAL")]
    assert blank["score"] is None and blank["error"] is None and blank["fallback_frames"] == 0
    for key in [("missing.png", "FAKE"), ("corrupt.png", "REAL"), ("notes.txt", "REAL"),
                ("face.png", "MAYBE"), ("", "FAKE")]:
        assert items[key]["error"], key
        assert items[key]["score"] is None

    metrics = on_disk["metrics"]
    assert metrics["counts"]["items"] == 10
    assert metrics["counts"]["errors"] == 5
    assert metrics["counts"]["no_face"] >= 1
    assert metrics["counts"]["scored"] + metrics["counts"]["no_face"] + metrics["counts"]["errors"] == 10
    assert set(metrics["per_dataset"]) == {"synthetic", "crops", "video"}
    for key in ("item_auc", "item_auc_ci95", "frame_auc", "frame_auc_ci95", "accuracy", "threshold"):
        assert key in metrics


class _WholeImageDetector:
    name = "whole-image"

    def detect(self, frame_bgr):
        height, width = frame_bgr.shape[:2]
        return [FaceBox((0.0, 0.0, float(width), float(height)), 1.0)]


class _BrightnessRuntime:
    """Fake probability = a monotone function of the crop's mean brightness."""

    name = "brightness"

    def predict(self, batch):
        return np.clip((batch.reshape(len(batch), -1).mean(axis=1) + 3.0) / 6.0, 0, 1).astype(np.float32)


def test_hand_made_auc(tiny_model_dir, tmp_path, capsys):
    card = load_model_card(tiny_model_dir / "tiny_b0.toml")
    scorer = FrameScorer(card, _WholeImageDetector(), _BrightnessRuntime())
    real_levels, fake_levels = [10, 50, 90], [70, 110, 130]
    rows = []
    for label, levels in (("REAL", real_levels), ("FAKE", fake_levels)):
        for level in levels:
            name = f"{label.lower()}_{level}.png"
            cv2.imwrite(str(tmp_path / name), np.full((64, 64, 3), level, np.uint8))
            rows.append(f"{name},{label},grey,,{name}")
    labels = _write_labels(tmp_path, rows)
    report = run_evaluate(scorer, labels, tmp_path, None, resamples=200)
    # Fake 70 beats reals 10 and 50 but not 90; 110 and 130 beat all three: 8 of 9 pairs.
    assert report["metrics"]["item_auc"] == pytest.approx(8 / 9)
    assert report["metrics"]["frame_auc"] == pytest.approx(8 / 9)
    low, high = report["metrics"]["item_auc_ci95"]
    assert low <= 8 / 9 <= high
    # One frame per item, each item its own group: the frames resample exactly as the items do.
    assert report["metrics"]["frame_auc_ci95"] == [low, high]
    scores = {i["path"]: i["score"] for i in report["items"]}
    assert scores["real_10.png"] < scores["real_90.png"] < scores["fake_110.png"]
    assert "item AUC" in capsys.readouterr().out


@pytest.mark.parametrize("labels,scores,expected", [
    ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 1.0),
    ([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1], 0.0),
    ([0, 1], [0.5, 0.5], 0.5),
    ([0, 0, 1], [0.3, 0.6, 0.6], 0.75),
    ([1, 1], [0.1, 0.2], None),
    ([], [], None),
])
def test_roc_auc_table(labels, scores, expected):
    assert roc_auc(labels, scores) == (pytest.approx(expected) if expected is not None else None)


def test_metrics_accuracy_and_exclusions():
    items = [
        ItemResult("a", "REAL", "d1", score=0.2, frame_scores=[0.2]),
        ItemResult("b", "FAKE", "d1", score=0.7, frame_scores=[0.6, 0.8]),
        ItemResult("c", "FAKE", "d2", score=0.4, frame_scores=[0.4]),
        ItemResult("d", "REAL", "d2", score=None),
        ItemResult("e", "FAKE", "d2", error="unreadable"),
    ]
    metrics = compute_metrics(items, threshold=0.5, resamples=20)
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["item_auc"] == pytest.approx(1.0)
    assert metrics["counts"] == {"items": 5, "real": 2, "fake": 3, "scored": 3, "no_face": 1,
                                 "errors": 1, "frames_scored": 4, "fallback_frames": 0}
    assert metrics["per_dataset"]["d1"]["item_auc"] == pytest.approx(1.0)
    assert metrics["per_dataset"]["d2"]["item_auc"] is None  # one class only


def test_read_labels_requires_columns(tmp_path):
    from detector.errors import SourceError

    path = tmp_path / "labels.csv"
    path.write_text("file,truth\na.png,REAL\n")
    with pytest.raises(SourceError, match="path,label"):
        read_labels(path)
    with pytest.raises(SourceError, match="not found"):
        read_labels(tmp_path / "nope.csv")


@pytest.mark.parametrize("labels,scores,low,high", [
    ([0, 0, 1, 1], [0.1, 0.3, 0.6, 0.9], 0.3, 0.6),   # separable: anywhere between the classes
    ([0, 1, 0, 1], [0.2, 0.4, 0.6, 0.8], 0.2, 0.8),
    ([1, 1], [0.3, 0.4], 0.5, 0.5),                   # one class only: the neutral 0.5
])
def test_select_threshold(labels, scores, low, high):
    from detector.training.metrics import balanced_accuracy_at, select_threshold

    threshold = select_threshold(labels, scores)
    assert low <= threshold <= high
    if len(set(labels)) == 2 and labels == [0, 0, 1, 1]:
        assert balanced_accuracy_at(labels, scores, threshold) == 1.0


def test_bootstrap_interval_contains_the_estimate_and_groups_widen_it():
    from detector.training.metrics import bootstrap_auc

    rng = np.random.default_rng(0)
    labels = [0] * 40 + [1] * 40
    scores = list(rng.normal(0, 1, 40)) + list(rng.normal(1, 1, 40))
    by_item = bootstrap_auc(labels, scores, resamples=300)
    groups = [f"g{i // 10}" for i in range(80)]  # eight groups of ten items
    by_group = bootstrap_auc(labels, scores, groups, resamples=300)
    assert by_item.low <= by_item.value <= by_item.high
    assert by_item.value == by_group.value
    assert (by_group.high - by_group.low) >= (by_item.high - by_item.low) * 0.8


def test_the_frame_auc_interval_resamples_each_video_with_all_its_frames():
    """Ten identical frames per video add no evidence: the frame interval must stay as wide as
    the item interval, which it would not if frames were resampled one by one."""
    rng = np.random.default_rng(3)
    items = []
    for n in range(16):
        label = "FAKE" if n % 2 else "REAL"
        score = float(np.clip(rng.normal(0.6 if label == "FAKE" else 0.4, 0.15), 0, 1))
        items.append(ItemResult(path=f"v{n}.mp4", label=label, dataset="video", score=score,
                                frame_scores=[score] * 10))
    metrics = compute_metrics(items, threshold=0.5, resamples=300)
    assert metrics["frame_auc"] == pytest.approx(metrics["item_auc"])
    assert metrics["frame_auc_ci95"] == pytest.approx(metrics["item_auc_ci95"])
    low, high = metrics["frame_auc_ci95"]
    assert high - low > 0.1
