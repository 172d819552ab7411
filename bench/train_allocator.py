"""Training step speed of EfficientNet-B0 under glibc's malloc and under other allocators, side by side.

    python bench/train_allocator.py [--size 224] [--batch 32] [--rounds 5] [--json bench/train_allocator.json]

An allocator is chosen when a process starts (``LD_PRELOAD``), so each variant is its own child
process: it builds and warms up the model, then times one training step each time the parent asks.
The parent asks the children in turn, round after round, so a noisy, shared machine slows all of
them alike and the ratios hold; only one child computes at a time. The user and kernel CPU seconds
of each step are reported too: glibc returns TensorFlow's large tensors to the kernel and maps them
again on every step, and on some machines the page faults that follow cost as much as the step.
Variants whose library is not installed (Debian: ``libtcmalloc-minimal4``, ``libjemalloc2``) are
skipped and listed.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ALLOCATORS = {  # name → glob of the shared library preloaded (None: the C library's own malloc)
    "glibc malloc": None,
    "tcmalloc (minimal)": "/usr/lib/*/libtcmalloc_minimal.so.4",
    "jemalloc": "/usr/lib/*/libjemalloc.so.2",
}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def child(size: int, batch: int) -> int:
    """Build the model, warm up, then time one step per line read from stdin."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from detector.efficientnet import EfficientNetB0Classifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, size, size, 3)).astype(np.float32)
    y = rng.integers(0, 2, (batch, 1)).astype(np.float32)
    model = EfficientNetB0Classifier(size, activation="relu6", use_se=True)
    model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss=keras.losses.BinaryCrossentropy(),
                  jit_compile=False)
    model.train_on_batch(x, y)  # trace and warm up
    model.train_on_batch(x, y)
    print("ready", flush=True)
    for _ in sys.stdin:
        cpu, started = os.times(), time.perf_counter()
        model.train_on_batch(x, y)
        wall, after = time.perf_counter() - started, os.times()
        print(json.dumps({"wall_s": wall, "user_s": after.user - cpu.user,
                          "system_s": after.system - cpu.system}), flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=Path("bench/train_allocator.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.size, args.batch)

    children: dict[str, subprocess.Popen] = {}
    skipped = []
    for name, pattern in ALLOCATORS.items():
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        env.pop("LD_PRELOAD", None)
        if pattern is not None:
            found = sorted(glob.glob(pattern))
            if not found:
                skipped.append(name)
                continue
            env["LD_PRELOAD"] = found[0]
        children[name] = subprocess.Popen(
            [sys.executable, __file__, "--child", "--size", str(args.size), "--batch", str(args.batch)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    for name, proc in children.items():  # they build and warm up at the same time; timing waits
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"the {name} child did not start (exit {proc.wait()})")
    steps: dict[str, list[dict]] = {name: [] for name in children}
    for _ in range(args.rounds):
        for name, proc in children.items():
            proc.stdin.write("step\n")
            proc.stdin.flush()
            steps[name].append(json.loads(proc.stdout.readline()))
    for proc in children.values():
        proc.stdin.close()
        proc.wait()

    base = float(np.median([s["wall_s"] for s in steps["glibc malloc"]]))
    print(f"B0 at {args.size} px, batch {args.batch}, {args.rounds} alternating rounds, "
          f"{cpu_name()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{'allocator':<20} {'median step s':>14} {'images/s':>9} {'kernel CPU share':>17} "
          f"{'vs glibc':>9}")
    rows = []
    for name, values in steps.items():
        median = float(np.median([s["wall_s"] for s in values]))
        system = sum(s["system_s"] for s in values)
        share = system / max(1e-9, system + sum(s["user_s"] for s in values))
        rows.append({"allocator": name, "median_step_s": median, "images_per_s": args.batch / median,
                     "kernel_cpu_share": share, "speedup_vs_glibc": base / median, "steps": values})
        print(f"{name:<20} {median:>14.2f} {args.batch / median:>9.1f} {share:>16.0%} "
              f"{base / median:>8.2f}x")
    if skipped:
        print("not installed, skipped: " + ", ".join(skipped))
    args.json.write_text(json.dumps({
        "size_px": args.size, "batch": args.batch, "rounds": args.rounds,
        "cpu": cpu_name(), "cpus": os.cpu_count(),
        "load_average_end": os.getloadavg(), "skipped": skipped, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
