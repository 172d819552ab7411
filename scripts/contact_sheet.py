"""Contact sheet of blend recipe v3 pairs from the shipped public-domain portrait (no research data).

    python scripts/contact_sheet.py [--out docs/sbi_v3_pairs.png] [--landmark-model models/face_landmark.tflite]

Rows: the real crop, its pseudo-fake, the blend weight (white = source), for eight seeds; each
column also names its mask shape. Needs `deepfake-detector fetch-landmarks` first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from detector.face_detect import make_face_detector
from detector.training.landmarks import LandmarkModel
from detector.training.sbi import (
    HULL_TYPES,
    apply_pair_params,
    box_crop_region,
    cut_and_resize,
    draw_pair_params,
    flip_context,
    random_crop_margins,
    self_blend_v3,
)
from producers.synthetic import load_face_bgr

TILE_PX = 192


def pair_with_weight(rgb, box, points, rng, hull_type):
    """make_pair_v3's steps, keeping the weight for display."""
    if rng.random() < 0.5:
        rgb, box, points = flip_context(rgb, box, points)
    real, fake, weight = self_blend_v3(rgb, points, rng, hull_type)
    params = draw_pair_params(rng)
    real, fake = apply_pair_params(real, params), apply_pair_params(fake, params)
    region = box_crop_region(box, real.shape[:2], random_crop_margins(rng))
    weight_rgb = np.repeat((weight * 255).astype(np.uint8)[..., None], 3, axis=2)
    return [cut_and_resize(image, region, TILE_PX) for image in (real, fake, weight_rgb)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/sbi_v3_pairs.png"))
    parser.add_argument("--landmark-model", type=Path, default=Path("models/face_landmark.tflite"))
    args = parser.parse_args()
    face_bgr = load_face_bgr()
    box = make_face_detector("haar", yunet_model=Path("unused.onnx")).detect(face_bgr)[0].box_xyxy
    rgb = cv2.cvtColor(face_bgr, cv2.COLOR_BGR2RGB)
    points = LandmarkModel(args.landmark_model).find(rgb, box).points_xy
    columns = []
    for seed in range(8):
        hull_type = HULL_TYPES[seed % len(HULL_TYPES)]
        tiles = pair_with_weight(rgb, box, points, np.random.default_rng(seed), hull_type)
        column = np.concatenate(tiles, axis=0)
        cv2.putText(column, hull_type, (6, TILE_PX * 3 - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (255, 64, 64), 1, cv2.LINE_AA)
        columns.append(column)
    sheet = np.concatenate(columns, axis=1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
