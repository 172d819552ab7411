"""``evaluate``: score a labelled set of images and videos through the pipeline's scoring path.

Input is a ``labels.csv`` with ``path`` (relative to ``--root``) and ``label`` (``REAL``/``FAKE``);
optional ``dataset``, ``method`` and ``group`` columns give per-dataset metrics and group-aware
confidence intervals. Images are one frame; a video is sampled every ``stride``-th frame (``sampling.stride``, 4),
at most ``max_frames`` (32) of them, evenly spread. Frames go through
:class:`detector.frame_scorer.FrameScorer` (face detection, crop, one batched model call) and are
aggregated like the streams are: a frame's score is its most suspicious face, an item's score the
mean over frames with a face.

Tight, low-resolution face crops: when the detector finds no face in a small, near-square frame
(at most 400 px on its longer side, aspect at most 1.5), the whole frame is taken as the face box
and cropped with the card's margin, exactly as a detection would be (see
:mod:`detector.training.faces`); the report counts these frames as ``fallback_frames``.
An item the detector finds no face in gets ``score: null`` and counts under ``no_face``; an
unreadable item or a bad row gets an ``error`` and the run goes on.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detector.errors import DetectorError, SourceError
from detector.frame_scorer import FrameScorer
from detector.sampling import DEFAULT_STRIDE, sampled_indices
from detector.scoring import aggregate_video, frame_score
from detector.training.faces import FallbackPolicy, whole_image_box
from detector.training.media import is_image_path, is_video_path, read_image_bgr
from detector.training.metrics import accuracy_at, bootstrap_auc, roc_auc

log = logging.getLogger(__name__)

LABELS = ("REAL", "FAKE")
FRAME_BATCH = 16


@dataclass(frozen=True)
class LabelRow:
    """One row of ``labels.csv``; ``error`` is set when the row itself is unusable."""

    line: int
    path: str
    label: str
    dataset: str = ""
    method: str = ""
    group: str = ""
    error: str | None = None


@dataclass
class ItemResult:
    """The report entry of one row."""

    path: str
    label: str
    dataset: str
    method: str = ""
    group: str = ""
    score: float | None = None
    frames_sampled: int = 0
    frames_scored: int = 0
    fallback_frames: int = 0
    faces: int = 0
    frame_scores: list[float | None] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "label": self.label,
            "score": None if self.score is None else round(float(self.score), 6),
            "frames_sampled": self.frames_sampled,
            "frames_scored": self.frames_scored,
            "fallback_frames": self.fallback_frames,
            "faces": self.faces,
            "dataset": self.dataset,
            "method": self.method,
            "group": self.group,
            "frame_scores": [None if s is None else round(float(s), 6) for s in self.frame_scores],
            "error": self.error,
            "seconds": round(self.seconds, 3),
        }


def read_labels(path: Path) -> list[LabelRow]:
    """Read ``labels.csv``; rows with a missing path or an unknown label carry an ``error``.

    Raises:
        SourceError: the file is missing or has no ``path``/``label`` columns.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"labels file {path} not found")
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        if "path" not in columns or "label" not in columns:
            raise SourceError(f"labels file {path} needs columns path,label; got {reader.fieldnames}")
        rows = []
        for line, raw in enumerate(reader, start=2):
            record = {str(k).strip().lower(): (v or "").strip() for k, v in raw.items() if k}
            item_path = record.get("path", "")
            label = record.get("label", "").upper()
            error = None
            if not item_path:
                error = f"line {line}: empty path"
            elif label not in LABELS:
                error = f"line {line}: label must be REAL or FAKE, got {record.get('label', '')!r}"
            rows.append(LabelRow(line, item_path, label, record.get("dataset", ""),
                                 record.get("method", ""), record.get("group", ""), error))
    return rows


def sampled_video_frames(path: Path, stride: int, max_frames: int) -> list[np.ndarray]:
    """Every ``stride``-th frame of a video, at most ``max_frames`` evenly spread, read with the
    pipeline's :class:`producers.file_source.FileSource`.

    Raises:
        SourceError: the file is missing or not a decodable video.
    """
    from producers.file_source import FileSource

    source = FileSource(path)
    source.open()
    try:
        total = source.frame_count_hint
        if not total:  # no count in the container: one counting pass
            total = sum(1 for _ in source.frames())
            source.close()
            source = FileSource(path)
            source.open()
        wanted = sampled_indices(total, stride, max_frames)
        keep, last = set(wanted), max(wanted) if wanted else -1
        frames = []
        for frame in source.frames():
            if frame.frame_index in keep:
                frames.append(frame.image_bgr)
            if frame.frame_index >= last:
                break
        return frames
    finally:
        source.close()


def score_item_frames(
    scorer: FrameScorer, frames_bgr: Sequence[np.ndarray], fallback: FallbackPolicy | None
) -> tuple[list[float | None], int, int]:
    """Score frames in batches; returns per-frame scores, fallback frames and faces scored."""
    scores: list[float | None] = []
    fallbacks = faces_total = 0
    for start in range(0, len(frames_bgr), FRAME_BATCH):
        batch = list(frames_bgr[start:start + FRAME_BATCH])
        faces = scorer.detect(batch)
        for i, (frame, frame_faces) in enumerate(zip(batch, faces)):
            if not frame_faces and fallback is not None and fallback.applies_to(frame.shape):
                faces[i] = [whole_image_box(frame.shape)]
                fallbacks += 1
        results, _ = scorer.score_frames(batch, faces=faces)
        for frame_results in results:
            faces_total += len(frame_results)
            scores.append(frame_score([r.fake_probability for r in frame_results]))
    return scores, fallbacks, faces_total


def evaluate_items(
    scorer: FrameScorer,
    rows: Sequence[LabelRow],
    root: Path,
    max_frames: int = 32,
    stride: int = DEFAULT_STRIDE,
    fallback: FallbackPolicy | None = FallbackPolicy(),
    on_item: Callable[[int, int], None] | None = None,
) -> list[ItemResult]:
    """Score every row; errors are recorded per item and never stop the run.

    ``on_item(done, total)`` is called after each row (progress output of long runs).
    """
    results = []
    for number, row in enumerate(rows, start=1):
        item = ItemResult(row.path, row.label, row.dataset, row.method, row.group, error=row.error)
        started = time.perf_counter()
        if row.error is None:
            path = Path(root) / row.path
            try:
                if is_video_path(path):
                    frames = sampled_video_frames(path, stride, max_frames)
                elif is_image_path(path):
                    frames = [read_image_bgr(path)]
                else:
                    raise SourceError(f"{row.path}: not an image or video (by extension)")
                if not frames:
                    raise SourceError(f"{row.path}: no frame could be read")
                scores, fallbacks, faces = score_item_frames(scorer, frames, fallback)
                item.frames_sampled = len(frames)
                item.frame_scores = scores
                item.frames_scored = sum(s is not None for s in scores)
                item.fallback_frames = fallbacks
                item.faces = faces
                item.score = aggregate_video(scores)
            except (DetectorError, OSError, ValueError, cv2.error) as exc:
                item.error = str(exc)
                log.warning("item %s: %s", row.path, exc)
        item.seconds = time.perf_counter() - started
        log.info("[%d/%d] %s %s → %s", number, len(rows), row.label, row.path,
                 item.error or ("no face" if item.score is None else f"{item.score:.3f}"))
        results.append(item)
        if on_item is not None:
            on_item(number, len(rows))
    return results


def _binary(label: str) -> int:
    return int(label == "FAKE")


def compute_metrics(items: Sequence[ItemResult], threshold: float, resamples: int = 2000) -> dict:
    """Item and frame AUC, accuracy at ``threshold``, per-dataset AUC, counts.

    Items with an error or without a score are left out of AUC and accuracy and counted.
    The interval resamples whole groups when the labels file has a ``group`` column.
    """
    scored = [i for i in items if i.error is None and i.score is not None]
    labels = [_binary(i.label) for i in scored]
    values = [float(i.score) for i in scored]
    has_groups = any(i.group for i in scored)
    groups = [i.group or i.path for i in scored] if has_groups else None
    item_auc = bootstrap_auc(labels, values, groups, resamples=resamples)
    frame_labels, frame_values, frame_groups = [], [], []
    for i in scored:
        for s in i.frame_scores:
            if s is not None:
                frame_labels.append(_binary(i.label))
                frame_values.append(float(s))
                frame_groups.append((i.group or i.path) if has_groups else i.path)
    # A video's frames move together (with its group's other items when there are groups).
    frame_auc = bootstrap_auc(frame_labels, frame_values, frame_groups, resamples=resamples)
    per_dataset = {}
    for name in sorted({i.dataset for i in items}):
        members = [i for i in scored if i.dataset == name]
        d_labels = [_binary(i.label) for i in members]
        d_values = [float(i.score) for i in members]
        per_dataset[name or "(none)"] = {
            "items": sum(1 for i in items if i.dataset == name),
            "scored": len(members),
            "real": d_labels.count(0),
            "fake": d_labels.count(1),
            "item_auc": roc_auc(d_labels, d_values),
            "accuracy": accuracy_at(d_labels, d_values, threshold),
        }
    return {
        "item_auc": item_auc.value,
        "item_auc_ci95": [item_auc.low, item_auc.high],
        "item_auc_ci_method": ("bootstrap over groups" if has_groups else "bootstrap over items")
                              + f", {item_auc.resamples} resamples",
        "frame_auc": frame_auc.value,
        "frame_auc_ci95": [frame_auc.low, frame_auc.high],
        "threshold": threshold,
        "accuracy": accuracy_at(labels, values, threshold),
        "per_dataset": per_dataset,
        "counts": {
            "items": len(items),
            "real": sum(1 for i in items if i.label == "REAL"),
            "fake": sum(1 for i in items if i.label == "FAKE"),
            "scored": len(scored),
            "no_face": sum(1 for i in items if i.error is None and i.score is None),
            "errors": sum(1 for i in items if i.error is not None),
            "frames_scored": len(frame_values),
            "fallback_frames": sum(i.fallback_frames for i in items),
        },
    }


def _fmt(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:6.3f}"


def format_table(metrics: dict, model: str) -> str:
    """The metrics as a plain-text table."""
    counts = metrics["counts"]
    low, high = metrics["item_auc_ci95"]
    ci = "" if low is None else f"  (95% CI {low:.3f}–{high:.3f}, {metrics['item_auc_ci_method']})"
    f_low, f_high = metrics["frame_auc_ci95"]
    frame_ci = "" if f_low is None else (f"  (95% CI {f_low:.3f}–{f_high:.3f}, each item's frames "
                                         "resampled with their item and its group)")
    lines = [
        f"model {model}, threshold {metrics['threshold']:.3f}",
        f"items {counts['items']} (REAL {counts['real']}, FAKE {counts['fake']}): scored "
        f"{counts['scored']}, no face {counts['no_face']}, errors {counts['errors']}, "
        f"frames {counts['frames_scored']} (whole-image fallback {counts['fallback_frames']})",
        f"item AUC  {_fmt(metrics['item_auc'])}{ci}",
        f"frame AUC {_fmt(metrics['frame_auc'])}{frame_ci}",
        f"accuracy  {_fmt(metrics['accuracy'])}",
        "",
        f"{'dataset':<48} {'items':>5} {'REAL':>4} {'FAKE':>4} {'AUC':>6} {'acc':>6}",
    ]
    for name, d in metrics["per_dataset"].items():
        lines.append(f"{name[:48]:<48} {d['items']:>5} {d['real']:>4} {d['fake']:>4} "
                     f"{_fmt(d['item_auc'])} {_fmt(d['accuracy'])}")
    return "\n".join(lines)


def run_evaluate(
    scorer: FrameScorer,
    labels_csv: Path,
    root: Path,
    report_path: Path | None,
    max_frames: int = 32,
    stride: int = DEFAULT_STRIDE,
    fallback: FallbackPolicy | None = FallbackPolicy(),
    resamples: int = 2000,
) -> dict:
    """Score a labelled set, write the JSON report (when a path is given), print the table.

    Returns:
        the report (``model``, ``settings``, ``metrics``, ``items``).
    Raises:
        SourceError: the labels file is missing or malformed.
    """
    if max_frames < 1 or stride < 1:
        raise ValueError(f"expected max_frames >= 1 and stride >= 1, got {max_frames}, {stride}")
    rows = read_labels(labels_csv)
    started = time.perf_counter()
    items = evaluate_items(scorer, rows, root, max_frames, stride, fallback)
    elapsed = time.perf_counter() - started
    card = scorer.card
    metrics = compute_metrics(items, card.threshold, resamples)
    report = {
        "model": {"name": card.name, "version": card.version,
                  "input_size_px": card.input_size_px, "threshold": card.threshold,
                  "runtime": getattr(scorer.runtime, "name", "?"),
                  "face_detector": getattr(scorer.detector, "name", "?")},
        "settings": {"labels": str(labels_csv), "root": str(root), "max_frames": max_frames,
                     "stride": stride, "whole_image_fallback":
                         None if fallback is None else {"max_side_px": fallback.max_side_px,
                                                        "max_aspect": fallback.max_aspect}},
        "elapsed_s": round(elapsed, 2),
        "metrics": metrics,
        "items": [i.to_json() for i in items],
    }
    if report_path is not None:
        from app.outputs import write_output

        report_path = Path(report_path)
        report_path.parent.mkdir(parents=True, exist_ok=True)
        # A folder that vanished or filled up keeps the results, in a named fallback file.
        report_path = write_output(report_path, json.dumps(report, indent=2) + "\n", "report")
    print(format_table(metrics, f"{card.name} {card.version}"))
    print(f"{len(items)} items in {elapsed:.1f} s" +
          (f"; report written to {report_path}" if report_path else ""))
    return report
