"""int8 export of a published model and its parity (and bfloat16's) with float32, measured
through the pipeline.

The representative set is real faces from the training context cache (``prepare --landmarks``)
cut the serving way (the card's crop rule, margin and input size), each with its recipe-v3
pseudo-fake: the export's activation ranges, the logit's above all, then cover both classes.
Parity is measured by scoring labelled sets with both runtimes through
:class:`detector.frame_scorer.FrameScorer` (``evaluate``'s code path): item AUC of each, and the
distribution of ``|int8 - fp32|`` calibrated frame scores.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detector.face_crop import crop_face
from detector.model_card import ModelCard
from detector.training.prepare import TRAIN_CONTEXT_SETTINGS, CacheSettings, load_cached

log = logging.getLogger(__name__)

AUC_TOLERANCE = 0.01  # issue 11: int8 becomes the default only within this of float32


def serving_crops(context_rgb: np.ndarray, box_xyxy, card: ModelCard) -> np.ndarray:
    """The crop the pipeline would cut of this face: :func:`detector.face_crop.crop_face` with
    the card's margin, input size and crop rule, on the cached context image.

    Returns:
        ``(s, s, 3)`` uint8 RGB.
    """
    bgr = np.ascontiguousarray(context_rgb[..., ::-1])
    return crop_face(bgr, tuple(float(v) for v in box_xyxy), card.face_margin,
                     card.input_size_px, card.crop_rule)


def representative_crops(cache_dir: Path, card: ModelCard, count: int = 300, seed: int = 0,
                         settings: CacheSettings = TRAIN_CONTEXT_SETTINGS,
                         with_pseudo_fakes: bool = True) -> np.ndarray:
    """Real face crops (and their pseudo-fakes) from the training context cache.

    Args:
        cache_dir: the ``prepare`` cache folder (``--cache-dir``).
        card: the model whose serving crop is cut.
        count: crops wanted in all (half reals, half pseudo-fakes with ``with_pseudo_fakes``);
            one face per cached file, files drawn at random with ``seed``.
        settings: the cache layout to read (the training context cache).
    Returns:
        ``(n, s, s, 3)`` uint8 RGB crops, ``n <= count``.
    Raises:
        FileNotFoundError: the cache folder has no entry for these settings.
        ValueError: ``count`` is below 2, or no cached face could be used.
    """
    if count < 2:
        raise ValueError(f"expected a representative set of at least 2 crops, got {count}")
    folder = Path(cache_dir) / settings.key()
    files = sorted(folder.rglob("*.npz")) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(
            f"no cached training faces in {folder}: run `deepfake-detector prepare --landmarks "
            f"--cache-dir {cache_dir}` first (quantize needs real faces to calibrate int8)")
    from detector.training.sbi import self_blend_v3

    rng = np.random.default_rng(seed)
    wanted_reals = count // 2 if with_pseudo_fakes else count
    crops: list[np.ndarray] = []
    fakes: list[np.ndarray] = []
    for index in rng.permutation(len(files)):
        if len(crops) >= wanted_reals:
            break
        try:
            faces = load_cached(files[index])
        except (OSError, ValueError, KeyError) as exc:
            log.warning("cache entry %s unreadable (%s); skipped", files[index], exc)
            continue
        if faces.count == 0 or faces.boxes_xyxy is None:
            continue
        face = int(rng.integers(faces.count))
        image, box = faces.crops_rgb[face], faces.boxes_xyxy[face]
        points = faces.landmarks_xy[face]
        if with_pseudo_fakes:
            if not np.isfinite(points).all():
                continue
            real, fake, _ = self_blend_v3(image, points, rng)
            fakes.append(serving_crops(fake, box, card))
            image = real
        crops.append(serving_crops(image, box, card))
    if not crops:
        raise ValueError(f"no usable face in the {len(files)} cached files under {folder}")
    if len(crops) < wanted_reals:
        log.warning("representative set: only %d faces found (wanted %d)", len(crops),
                    wanted_reals)
    return np.stack(crops + fakes)


@dataclass(frozen=True)
class SetParity:
    """One labelled set scored by float32 and by a candidate runtime (int8 or bfloat16)."""

    name: str
    auc_float32: float | None
    auc_candidate: float | None
    items: int
    frame_abs_diff: np.ndarray  # |candidate - fp32| of every frame both scored

    @property
    def auc_delta(self) -> float | None:
        if self.auc_float32 is None or self.auc_candidate is None:
            return None
        return self.auc_candidate - self.auc_float32


def frame_differences(float_items: Sequence, candidate_items: Sequence) -> np.ndarray:
    """``|candidate - fp32|`` of the frames both runs scored, item by item, frame by frame.

    Args:
        float_items, candidate_items: :class:`app.evaluate.ItemResult`-like rows of the same
            labels file in the same order (``path``, ``frame_scores``).
    """
    diffs = []
    for a, b in zip(float_items, candidate_items, strict=True):
        if a.path != b.path:
            raise ValueError(f"expected the same items in the same order, got {a.path} and {b.path}")
        for x, y in zip(a.frame_scores, b.frame_scores):
            if x is not None and y is not None:
                diffs.append(abs(float(y) - float(x)))
    return np.asarray(diffs, np.float64)


def parity_summary(sets: Sequence[SetParity], candidate: str = "int8",
                   tolerance: float = AUC_TOLERANCE) -> dict:
    """A card's parity table (``int8_parity`` or ``bf16_parity``) and whether the candidate
    precision may be the default.

    It may only when every required set (dev and held-out) was measured and each item AUC is
    within ``tolerance`` of float32's.

    Args:
        candidate: the precision measured against float32 (``"int8"`` or ``"bfloat16"``); it
            names the table's AUC keys, e.g. ``dev_item_auc_int8``.
    Returns:
        ``{"precision": candidate | "float32", "parity": {...flat numbers and a note...}}``.
    """
    from detector.runtime_kinds import FLOAT32

    parity: dict = {}
    reasons = []
    for s in sets:
        parity[f"{s.name}_item_auc_float32"] = _round(s.auc_float32)
        parity[f"{s.name}_item_auc_{candidate}"] = _round(s.auc_candidate)
        parity[f"{s.name}_items"] = s.items
        if s.auc_delta is None:
            reasons.append(f"{s.name} AUC not measured")
        elif abs(s.auc_delta) > tolerance + 1e-9:  # exactly 0.01 apart is within
            reasons.append(f"{s.name} AUC differs by {s.auc_delta:+.4f} (more than {tolerance:g})")
    for needed in ("dev", "holdout"):
        if needed not in {s.name for s in sets}:
            reasons.append(f"no {needed} set given")
    diffs = np.concatenate([s.frame_abs_diff for s in sets]) if sets else np.zeros(0)
    parity["frames"] = int(len(diffs))
    if len(diffs):
        parity["frame_abs_diff_median"] = _round(float(np.median(diffs)))
        parity["frame_abs_diff_p99"] = _round(float(np.percentile(diffs, 99)))
        parity["frame_abs_diff_max"] = _round(float(diffs.max()))
    parity["auc_tolerance"] = tolerance
    precision = FLOAT32 if reasons else candidate
    parity["decision"] = (f"{candidate}: every item AUC within tolerance" if not reasons
                          else "float32: " + "; ".join(reasons))
    return {"precision": precision, "parity": parity}


def choose_precision(*decisions: str) -> str:
    """The fastest precision whose parity held: int8, then bfloat16, else float32."""
    from detector.runtime_kinds import BFLOAT16, FLOAT32, INT8

    for precision in (INT8, BFLOAT16):
        if precision in decisions:
            return precision
    return FLOAT32


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)
