"""Scoring during training: dev items as the pipeline scores them, calibration (temperature, threshold)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detector.model_card import apply_temperature
from detector.scoring import aggregate_video, frame_score
from detector.training.data import normalise, resize_crops, serving_crop
from detector.training.metrics import roc_auc, select_threshold
from detector.training.prepare import (
    DEV_SETTINGS,
    CacheSettings,
    cache_file,
    load_cached,
)
from detector.training.settings import V3_EVAL_PX


def predict(model, batch_rgb: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Fake probabilities of uint8 RGB crops already at the model's size."""
    out = []
    for start in range(0, len(batch_rgb), batch_size):
        chunk = normalise(batch_rgb[start:start + batch_size])
        count = len(chunk)
        if count < batch_size:  # one fixed batch shape: no re-tracing for the last chunk
            chunk = np.concatenate([chunk, np.zeros((batch_size - count, *chunk.shape[1:]),
                                                    np.float32)])
        out.append(np.asarray(model.predict_on_batch(chunk)).reshape(-1)[:count])
    return np.concatenate(out) if out else np.zeros((0,), np.float32)



@dataclass(frozen=True)
class DevItem:
    path: str
    label: int
    group: str
    dataset: str
    crops_rgb: np.ndarray
    frame_index: np.ndarray


def load_dev_items(labels_csv: Path, cache_dir: Path,
                   settings: CacheSettings = DEV_SETTINGS) -> list[DevItem]:
    """Dev rows with their cached crops (rows missing from the cache are skipped).

    From a ``context`` cache the crops are cut as the pipeline cuts them for a v3 model.
    """
    items = []
    with Path(labels_csv).open(newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            label = str(row.get("label", "")).strip().upper()
            if label not in ("REAL", "FAKE"):
                continue
            path = cache_file(cache_dir, settings, row["path"])
            if not path.is_file():
                continue
            faces = load_cached(path)
            crops = faces.crops_rgb
            if settings.layout == "context":
                crops = np.stack([serving_crop(c, b, V3_EVAL_PX)
                                  for c, b in zip(faces.crops_rgb, faces.boxes_xyxy)]) \
                    if faces.count else np.zeros((0, V3_EVAL_PX, V3_EVAL_PX, 3), np.uint8)
            items.append(DevItem(row["path"], int(label == "FAKE"), row.get("group") or row["path"],
                                 row.get("dataset") or "", crops, faces.frame_index))
    return items


def _face_probabilities(model, items: Sequence[DevItem], size_px: int) -> np.ndarray:
    counts = [len(item.crops_rgb) for item in items]
    all_crops = np.concatenate([resize_crops(item.crops_rgb, size_px) for item in items if len(item.crops_rgb)]) \
        if any(counts) else np.zeros((0, size_px, size_px, 3), np.uint8)
    return predict(model, all_crops)


def score_dev_items(model, items: Sequence[DevItem], size_px: int,
                    temperature: float = 1.0) -> list[float | None]:
    """Item scores as the pipeline computes them: max over a frame's faces, mean over frames."""
    if not items:
        return []
    return _item_scores(items, apply_temperature(_face_probabilities(model, items, size_px),
                                                 temperature))


def _item_scores(items: Sequence[DevItem], probabilities: np.ndarray) -> list[float | None]:
    counts = [len(item.crops_rgb) for item in items]
    scores: list[float | None] = []
    cursor = 0
    for item, count in zip(items, counts):
        item_probs = probabilities[cursor:cursor + count]
        cursor += count
        per_frame: dict[int, list[float]] = {}
        for frame, p in zip(item.frame_index.tolist(), item_probs.tolist()):
            per_frame.setdefault(frame, []).append(p)
        scores.append(aggregate_video(frame_score(v) for v in per_frame.values()))
    return scores


def dev_auc(items: Sequence[DevItem], scores: Sequence[float | None]) -> tuple[float | None, int]:
    pairs = [(item.label, s) for item, s in zip(items, scores) if s is not None]
    if not pairs:
        return None, 0
    labels, values = zip(*pairs)
    return roc_auc(labels, values), len(pairs)



def calibrate_on_dev(model, dev_labels: Path, cache_dir: Path, size_px: int,
                     settings: CacheSettings = DEV_SETTINGS, fit_temperature: bool = False) -> dict:
    """Calibrate on dev item scores (from the dev cache): optionally a temperature (the one
    that minimises the log loss of item scores), then the threshold that maximises balanced
    accuracy on the calibrated scores."""
    items = load_dev_items(dev_labels, cache_dir, settings)
    temperature = 1.0
    scores = score_dev_items(model, items, size_px)
    if fit_temperature:
        temperature = fit_item_temperature(model, items, size_px)
        scores = score_dev_items(model, items, size_px, temperature)
    pairs = [(item.label, s) for item, s in zip(items, scores) if s is not None]
    labels, values = zip(*pairs) if pairs else ((), ())
    threshold = select_threshold(labels, values)
    return {"threshold": threshold, "temperature": temperature, "items": len(pairs),
            "dev_item_auc_cache": roc_auc(labels, values)}


def fit_item_temperature(model, items: Sequence[DevItem], size_px: int) -> float:
    """The temperature in [0.2, 10] whose item scores have the smallest log loss on ``items``."""
    labels = np.asarray([item.label for item in items], np.float64)
    best, best_loss = 1.0, np.inf
    raw = _face_probabilities(model, items, size_px)
    for temperature in np.geomspace(0.2, 10.0, 61):
        scores = _item_scores(items, apply_temperature(raw, float(temperature)))
        keep = np.asarray([s is not None for s in scores])
        if not keep.any():
            return 1.0
        s = np.clip(np.asarray([v for v in scores if v is not None], np.float64), 1e-6, 1 - 1e-6)
        y = labels[keep]
        loss = float(-np.mean(y * np.log(s) + (1 - y) * np.log(1 - s)))
        if loss < best_loss - 1e-12:
            best, best_loss = float(temperature), loss
    return round(best, 4)
