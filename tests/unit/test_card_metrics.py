"""scripts/card_metrics.py: a new version's reports become current, the old ones move down."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "card_metrics.py"


def report(version: str, auc: float) -> dict:
    return {"model": {"name": "m", "version": version}, "settings": {}, "elapsed_s": 1.0,
            "metrics": {"item_auc": auc},
            "items": [{"path": "media/x.jpg", "label": "FAKE", "score": 0.9}]}


def run(tmp_path: Path, metrics: Path, dev: dict, holdout: dict) -> subprocess.CompletedProcess:
    (tmp_path / "dev.json").write_text(json.dumps(dev))
    (tmp_path / "holdout.json").write_text(json.dumps(holdout))
    return subprocess.run([sys.executable, str(SCRIPT), str(metrics),
                           "--dev", str(tmp_path / "dev.json"),
                           "--holdout", str(tmp_path / "holdout.json")],
                          capture_output=True, text=True, timeout=60)


def test_versions_stack_newest_first_without_items(tmp_path):
    metrics = tmp_path / "m.metrics.json"
    assert run(tmp_path, metrics, report("0.1.0", 0.6), report("0.1.0", 0.9)).returncode == 0
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "commands": ["x"]}))
    done = run(tmp_path, metrics, report("0.2.0", 0.7), report("0.2.0", 0.95))
    assert done.returncode == 0, done.stderr
    assert "version 0.2.0, dev item AUC 0.7000" in done.stdout
    data = json.loads(metrics.read_text())
    assert list(data) == ["dev", "holdout_people_v3_pseudo_fakes", "previous_0_1_0", "commands"]
    assert data["dev"]["metrics"]["item_auc"] == 0.7
    assert data["previous_0_1_0"]["dev"]["metrics"]["item_auc"] == 0.6
    assert data["previous_0_1_0"]["holdout_people_v3_pseudo_fakes"]["metrics"]["item_auc"] == 0.9
    assert "items" not in data["dev"] and "items" not in data["previous_0_1_0"]["dev"]


def test_refuses_a_version_twice_or_mismatched_reports(tmp_path):
    metrics = tmp_path / "m.metrics.json"
    assert run(tmp_path, metrics, report("0.1.0", 0.6), report("0.1.0", 0.9)).returncode == 0
    before = metrics.read_text()
    again = run(tmp_path, metrics, report("0.1.0", 0.8), report("0.1.0", 0.9))
    assert again.returncode == 2 and "already in the metrics file" in again.stderr
    mixed = run(tmp_path, metrics, report("0.2.0", 0.8), report("0.3.0", 0.9))
    assert mixed.returncode == 2 and "holdout report for 0.3.0" in mixed.stderr
    assert metrics.read_text() == before
