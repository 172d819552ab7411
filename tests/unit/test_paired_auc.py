"""Paired AUC differences: detector.training.metrics.bootstrap_auc_difference and dev_table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from detector.training.metrics import bootstrap_auc, bootstrap_auc_difference, roc_auc

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "dev_table.py"


def two_models(seed: int = 0, n: int = 60):
    """Labels, a model's scores, and a second model's: the first plus a small nudge."""
    rng = np.random.default_rng(seed)
    labels = [0] * n + [1] * n
    shared = np.concatenate([rng.normal(0, 1, n), rng.normal(0.8, 1, n)])  # hard items are shared
    a = shared + rng.normal(0, 0.2, 2 * n)
    b = shared + rng.normal(0, 0.2, 2 * n) + 0.3 * np.asarray(labels)
    groups = [f"g{i // 4}" for i in range(2 * n)]
    return labels, list(a), list(b), groups


def test_the_difference_is_the_difference_of_the_aucs_and_the_interval_holds_it():
    labels, a, b, groups = two_models()
    diff = bootstrap_auc_difference(labels, a, b, groups, resamples=400)
    assert diff.value == pytest.approx(roc_auc(labels, b) - roc_auc(labels, a))
    assert diff.value > 0 and diff.low <= diff.value <= diff.high
    assert diff.resamples == 400
    swapped = bootstrap_auc_difference(labels, b, a, groups, resamples=400)
    assert swapped.value == pytest.approx(-diff.value)
    assert swapped.low == pytest.approx(-diff.high) and swapped.high == pytest.approx(-diff.low)


def test_pairing_narrows_the_interval_below_the_models_own():
    labels, a, b, groups = two_models(seed=1)
    diff = bootstrap_auc_difference(labels, a, b, groups, resamples=400)
    own = bootstrap_auc(labels, a, groups, resamples=400)
    assert diff.high - diff.low < (own.high - own.low) / 2


def test_a_model_against_itself_differs_by_exactly_nothing():
    labels, a, _, groups = two_models()
    same = bootstrap_auc_difference(labels, a, a, groups, resamples=100)
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0)


def test_one_class_or_mismatched_lengths():
    assert bootstrap_auc_difference([1, 1], [0.1, 0.2], [0.3, 0.4]).value is None
    with pytest.raises(ValueError, match="one length"):
        bootstrap_auc_difference([0, 1], [0.1, 0.2], [0.3])


def report(scores: dict[str, float], labels: dict[str, str]) -> dict:
    return {"items": [{"path": path, "label": labels[path], "dataset": "DFDC", "group": path,
                       "score": score} for path, score in scores.items()]}


def test_dev_table_prints_each_report_minus_the_first_on_the_items_both_scored(tmp_path):
    labels = {f"media/{i}.jpg": ("FAKE" if i % 2 else "REAL") for i in range(20)}
    first = {p: (0.6 if lab == "FAKE" else 0.4) + 0.01 * i
             for i, (p, lab) in enumerate(labels.items())}  # separates: AUC 1
    worse = {p: 0.5 + 0.01 * i for i, p in enumerate(labels)}  # the label-free ramp
    worse["media/19.jpg"] = None  # unscored: left out of the pairing
    paths = []
    for name, scores in (("first", first), ("worse", worse)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(report(scores, labels)))
    done = subprocess.run([sys.executable, str(SCRIPT), f"a={paths[0]}", f"b={paths[1]}",
                           "--json", str(tmp_path / "t.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "| minus a |" in done.stdout
    table = json.loads((tmp_path / "t.json").read_text())
    row = table["minus_first"]["b"]["all"]
    assert row["items"] == 19
    kept = [p for p in labels if p != "media/19.jpg"]
    expected = roc_auc([int(labels[p] == "FAKE") for p in kept], [worse[p] for p in kept]) - 1.0
    assert row["difference"] == pytest.approx(expected) and expected < 0
    assert table["reports"]["a"]["all"]["auc"] == 1.0
