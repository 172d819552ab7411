"""Long versions of issue 13's soak and worker-loss tests, with numbers.

  * soak: N attach → finish → detach cycles of a short H.264 file through one service; the
    service's native threads (FFmpeg decoder threads included) and RSS before and after;
  * worker loss: a replay of 3 files through 2 worker processes, one SIGKILLed (or SIGSTOPped)
    mid-run; frames lost, frames scored twice, frames sent again, wall time.

A random-weight 64-px model (speed and correctness of delivery do not depend on the weights).
Numbers are reported, never asserted.

    python bench/hostile.py --cycles 300 --fault kill --fault stop --json bench/hostile.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def native_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_model(folder: Path) -> None:
    import keras

    from detector.efficientnet import EfficientNetB0Classifier

    keras.utils.set_random_seed(0)
    EfficientNetB0Classifier(64).save_weights(str(folder / "bench_b0.weights.h5"))
    (folder / "bench_b0.toml").write_text(
        'name = "bench_b0"\nversion = "bench"\narchitecture = "efficientnet_b0"\n'
        'weights = "bench_b0.weights.h5"\ninput_size_px = 64\n'
        'mean_rgb = [0.485, 0.456, 0.406]\nstd_rgb = [0.229, 0.224, 0.225]\n'
        'face_detector = "haar"\nface_margin = 0.25\nthreshold = 0.5\n'
        'trained = false  # random weights: for the benchmark only\n')


def config_for(folder: Path, workers: int, **extra):
    from detector.config import config_from_dict

    raw = {"model": {"name": "bench_b0", "dir": str(folder)}, "faces": {"detector": "haar"},
           "workers": {"count": workers, "max_batch": 4, "max_wait_ms": 10, **extra},
           "redis": {"embedded_port": 0}, "metrics": {"enabled": False}}
    return config_from_dict(raw)


def soak(folder: Path, cycles: int) -> dict:
    from app.service import Service
    from producers.file_source import FileSource
    from producers.synthetic import write_video

    video = write_video(folder / "short.mp4", 12, 640, 360)
    service = Service(config_for(folder, 1)).start()
    try:
        service.wait_ready(180)

        def run(first: int, count: int) -> None:
            for i in range(first, first + count):
                state = service.add_source(FileSource(video, f"soak{i}"))
                state.done.wait(60)
                service.remove_stream(f"soak{i}")

        run(0, 10)
        gc.collect()
        threads_before, rss_before = native_threads(), rss_mb()
        started = time.monotonic()
        run(10, cycles)
        elapsed_s = time.monotonic() - started
        gc.collect()
        time.sleep(1)
        return {"cycles": cycles, "threads_before": threads_before,
                "threads_after": native_threads(), "rss_before_mb": round(rss_before, 1),
                "rss_after_mb": round(rss_mb(), 1), "seconds_per_cycle": round(elapsed_s / cycles, 3)}
    finally:
        service.stop()


def worker_loss(folder: Path, fault: str, frames_per_file: int) -> dict:
    from app.service import Service
    from producers.file_source import FileSource
    from producers.synthetic import write_video

    stride = 4
    files = [write_video(folder / f"clip{i}.mp4", frames_per_file, 320, 240) for i in range(3)]
    service = Service(config_for(folder, 2, result_timeout_s=5.0), keep_frames=True).start()
    try:
        deadline = time.monotonic() + 180
        while service.workers_ready() < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        started = time.monotonic()
        states = [service.add_source(FileSource(path, f"{fault}{path.stem}")) for path in files]
        while sum(s.frames_scored for s in states) < 10:
            time.sleep(0.05)
        victim = service.worker_pids()["w0"]
        os.kill(victim, signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
        for state in states:
            state.done.wait(600)
        elapsed_s = time.monotonic() - started
        if fault == "stop":
            os.kill(victim, signal.SIGCONT)
        expected = len(range(0, frames_per_file, stride))
        scored = [[r.frame_index for r in s.frames] for s in states]
        return {"fault": fault, "files": 3, "sampled_frames": 3 * expected,
                "scored": sum(len(set(indices)) for indices in scored),
                "lost": sum(expected - len(set(indices)) for indices in scored),
                "scored_twice": sum(len(indices) - len(set(indices)) for indices in scored),
                "statuses": [s.status for s in states], "frames_resent": service.ledger.resent,
                "duplicates_dropped": service.collector.results_rejected,
                "seconds": round(elapsed_s, 1)}
    finally:
        service.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--fault", action="append", choices=("kill", "stop"))
    parser.add_argument("--frames", type=int, default=680, help="frames per replayed file")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        folder = Path(tmp)
        make_model(folder)
        if args.cycles:
            results["soak"] = soak(folder, args.cycles)
            print(json.dumps(results["soak"]))
        results["worker_loss"] = []
        for fault in args.fault or []:
            results["worker_loss"].append(worker_loss(folder, fault, args.frames))
            print(json.dumps(results["worker_loss"][-1]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
