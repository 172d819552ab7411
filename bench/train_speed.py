"""Training step speed of EfficientNet-B0 with its early stages frozen or not, with and without SAM,
measured side by side.

    python bench/train_speed.py [--size 224] [--batch 32] [--rounds 6] [--json bench/train_speed.json]

Each variant is compiled once; the rounds alternate between variants (one timed step each per
round, after a warm-up step), so a noisy, shared machine slows all of them alike and the ratios
hold. Frozen layers skip their weight gradients; their batch-norm statistics stay fixed too. A SAM
step (``train --sam-rho``, detector/training/sam.py) takes two forward and backward passes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

STAGES_1_3 = ("stem_", "block1", "block2", "block3")
VARIANTS = {  # name → (prefixes of the layers that stay frozen, SAM radius or 0)
    "all trainable": ((), 0.0),
    "stem + stage 1 frozen": (STAGES_1_3[:2], 0.0),
    "stem + stages 1-2 frozen": (STAGES_1_3[:3], 0.0),
    "stem + stages 1-3 frozen": (STAGES_1_3, 0.0),
    "all trainable, SAM": ((), 0.05),
    "stem + stages 1-3 frozen, SAM": (STAGES_1_3, 0.05),
}


def build(size: int, frozen: tuple[str, ...], sam_rho: float):
    import keras

    from detector.efficientnet import EfficientNetB0Classifier
    from detector.training.sam import use_sam

    model = EfficientNetB0Classifier(size, activation="relu6", use_se=True)
    for layer in model.layers:
        if frozen and layer.name.startswith(frozen):
            layer.trainable = False
    model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss=keras.losses.BinaryCrossentropy(),
                  jit_compile=False)
    if sam_rho:
        use_sam(model, sam_rho)
    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--json", type=Path, default=Path("bench/train_speed.json"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, args.size, args.size, 3)).astype(np.float32)
    y = rng.integers(0, 2, (args.batch, 1)).astype(np.float32)
    models = {name: build(args.size, *variant) for name, variant in VARIANTS.items()}
    for model in models.values():
        model.train_on_batch(x, y)  # trace and warm up
    times = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            started = time.perf_counter()
            model.train_on_batch(x, y)
            times[name].append(time.perf_counter() - started)
    base = float(np.median(times["all trainable"]))
    rows = []
    print(f"B0 at {args.size} px, batch {args.batch}, {args.rounds} alternating rounds, "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{'variant':<31} {'median step s':>14} {'images/s':>9} {'vs all':>7}")
    for name, values in times.items():
        median = float(np.median(values))
        rows.append({"variant": name, "median_step_s": median,
                     "images_per_s": args.batch / median, "speedup_vs_all": base / median,
                     "steps_s": values})
        print(f"{name:<31} {median:>14.2f} {args.batch / median:>9.1f} {base / median:>6.2f}x")
    args.json.write_text(json.dumps({"size_px": args.size, "batch": args.batch,
                                     "rounds": args.rounds, "load_average_end": os.getloadavg(),
                                     "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
