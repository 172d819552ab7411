"""bench/live.py end to end on one real RTSP camera, and bench/live_compare.py on its output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.rtsp_server import rtsp_server_missing_reason

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_the_live_benchmark_measures_a_camera_and_compares_two_runs(tmp_path):
    reason = rtsp_server_missing_reason()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "live.json"
    run = subprocess.run(
        [sys.executable, "bench/live.py", "--streams", "1", "--duration", "4", "--warmup", "1",
         "--width", "320", "--height", "240", "--random-model", "64", "--workers", "1",
         "--detector", "haar", "--label", "smoke", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(out.read_text())
    assert result["label"] == "smoke" and len(result["machine"]["load_avg_at_start"]) == 3
    (step,) = result["steps"]
    assert step["streams"] == 1 and step["read_fps_total"] > 0 and step["scored_fps"] > 0
    assert step["workers_cpu_ms_per_scored_frame"] > 0 and step["service_cpu_ms_per_read_frame"] > 0
    assert step["cpu"]["other_cores"] >= 0
    assert step["stage_mean_ms"]["detect"] > 0
    assert "svc cpu ms/read" in run.stdout  # the per-stage table is printed

    compared = tmp_path / "compare.json"
    table = subprocess.run([sys.executable, "bench/live_compare.py", str(out), str(out),
                            "--json", str(compared)], cwd=ROOT, capture_output=True, text=True)
    assert table.returncode == 0, table.stderr
    (row,) = json.loads(compared.read_text())["rows"]
    assert row["metrics"]["scored_fps"]["ratio"] == pytest.approx(1.0)
    assert "after/before" in table.stdout


def test_comparing_runs_without_a_common_stream_count_fails_clearly(tmp_path):
    def run_file(name: str, streams: int) -> Path:
        path = tmp_path / name
        path.write_text(json.dumps({"machine": {}, "max_streams_within_limits": 0,
                                    "steps": [{"streams": streams}]}))
        return path

    table = subprocess.run([sys.executable, "bench/live_compare.py", str(run_file("a.json", 1)),
                            str(run_file("b.json", 2))], cwd=ROOT, capture_output=True, text=True)
    assert table.returncode == 2 and "share no stream count" in table.stderr
