"""The face cache: detect and crop faces from training/dev media once, with the serving detector.

One ``.npz`` per source file under ``<cache_dir>/<settings key>/<relative path>.npz`` holds its
crops, the frame index of each crop and whether it came from the whole-image fallback. Two
layouts: ``crop`` (RGB uint8, square, the card's margin: what recipes v1/v2 train on) and
``context`` (the face with room around it at up to ``context_box_px`` per face side, the detector's
box and the 468 face-mesh landmarks in its pixels, NaN where the mesh found no face: what recipe
v3 blends and crops itself). A file that is already cached is skipped, so ``prepare`` is
idempotent and resumable; changing any setting changes the key and so starts a fresh cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from detector.errors import SourceError
from detector.face_crop import box_crop_region, crop_face
from detector.face_detect import FaceDetector
from detector.sampling import DEFAULT_STRIDE, sampled_indices
from detector.training.faces import FallbackPolicy, faces_with_fallback
from detector.training.media import (
    count_video_frames,
    is_video_path,
    read_image_bgr,
    read_video_frames,
)

log = logging.getLogger(__name__)

CACHE_VERSION = 1
LAYOUTS = ("crop", "context")


@dataclass(frozen=True)
class CacheSettings:
    """Everything that changes the crops in the cache (and therefore its key)."""

    face_margin: float = 0.25
    crop_px: int = 224
    frames_per_video: int = 32
    frame_stride: int = DEFAULT_STRIDE  # stays a field: its value is part of the cache key
    all_faces: bool = False
    detector: str = "yunet"
    detect_width_px: int = 640
    min_face_px: int = 32
    fallback: FallbackPolicy = field(default_factory=FallbackPolicy)
    layout: str = "crop"
    context_margin: float = 0.35  # context layout: box grown by this × its longer side per edge
    context_box_px: int = 200  # context layout: faces larger than this are scaled down to it

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"expected layout in {LAYOUTS}, got {self.layout!r}")
        if self.crop_px < 32:
            raise ValueError(f"expected crop_px >= 32, got {self.crop_px}")
        if self.frames_per_video < 1 or self.frame_stride < 1:
            raise ValueError(
                f"expected frames_per_video >= 1 and frame_stride >= 1, got "
                f"{self.frames_per_video} and {self.frame_stride}"
            )

    def key(self) -> str:
        """Short stable name of these settings, used as the cache sub-folder."""
        fields = asdict(self)
        if self.layout == "crop":  # keys of crop caches stay what they were before layouts
            for name in ("layout", "context_margin", "context_box_px"):
                fields.pop(name)
            text = json.dumps({"version": CACHE_VERSION, **fields}, sort_keys=True)
            return f"m{self.face_margin:g}_s{self.crop_px}_" + hashlib.sha1(text.encode()).hexdigest()[:10]
        text = json.dumps({"version": CACHE_VERSION, **fields}, sort_keys=True)
        return f"ctx{self.context_margin:g}_b{self.context_box_px}_" + hashlib.sha1(
            text.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class CachedFaces:
    """The crops of one source file."""

    crops_rgb: np.ndarray | list[np.ndarray]  # (n, s, s, 3) uint8; context: n (h, w, 3) arrays
    frame_index: np.ndarray  # (n,) int32
    is_fallback: np.ndarray  # (n,) bool
    frames_sampled: int
    boxes_xyxy: np.ndarray | None = None  # context: (n, 4) float32 detector box in crop pixels
    landmarks_xy: np.ndarray | None = None  # context: (n, 468, 2) float32, NaN = no mesh

    @property
    def count(self) -> int:
        return int(len(self.crops_rgb))


@dataclass
class PrepareSummary:
    """Counts from one ``prepare`` run."""

    cached_before: int = 0
    processed: int = 0
    crops: int = 0
    without_face: int = 0
    fallbacks: int = 0
    errors: list[str] = field(default_factory=list)


def cache_file(cache_dir: Path, settings: CacheSettings, relative_path: str) -> Path:
    return Path(cache_dir) / settings.key() / f"{relative_path}.npz"


def context_crop(frame_bgr: np.ndarray, box_xyxy, settings: CacheSettings, landmarks=None):
    """The face with room around it (clipped to the frame, never padded), scaled down so the
    box's longer side is at most ``context_box_px``.

    Args:
        frame_bgr: the frame.
        box_xyxy: the detector's box in frame pixels.
        landmarks: ``(468, 2)`` points in frame pixels, or ``None``.
    Returns:
        ``(crop_rgb, box_xyxy, landmarks_xy)`` in crop pixels (landmarks NaN when ``None``).
    """
    import cv2

    from detector.training.landmarks import LANDMARK_POINTS

    x1, y1, x2, y2 = box_xyxy
    side = max(x2 - x1, y2 - y1)
    pad_x, pad_y = settings.context_margin * side / (x2 - x1), settings.context_margin * side / (y2 - y1)
    gx1, gy1, gx2, gy2 = box_crop_region(box_xyxy, frame_bgr.shape[:2], (pad_x, pad_y, pad_x, pad_y))
    region = frame_bgr[gy1:gy2, gx1:gx2]
    scale = min(1.0, settings.context_box_px / side)
    if scale < 1.0:
        size = (max(1, int(round(region.shape[1] * scale))), max(1, int(round(region.shape[0] * scale))))
        region = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
        scale_x, scale_y = size[0] / (gx2 - gx1), size[1] / (gy2 - gy1)
    else:
        scale_x = scale_y = 1.0
    box = np.asarray([(x1 - gx1) * scale_x, (y1 - gy1) * scale_y,
                      (x2 - gx1) * scale_x, (y2 - gy1) * scale_y], np.float32)
    if landmarks is None:
        points = np.full((LANDMARK_POINTS, 2), np.nan, np.float32)
    else:
        points = ((np.asarray(landmarks, np.float32) - [gx1, gy1]) * [scale_x, scale_y]).astype(
            np.float32)
    return cv2.cvtColor(region, cv2.COLOR_BGR2RGB), box, points


def extract_faces(
    path: Path, settings: CacheSettings, detector: FaceDetector, landmark_model=None
) -> CachedFaces:
    """Detect and crop the faces of one image or video (sampled frames).

    Args:
        landmark_model: a :class:`detector.training.landmarks.LandmarkModel` for the context
            layout (``None``: landmarks are NaN).
    Raises:
        SourceError: the file cannot be read.
    """
    if settings.layout == "context":
        return _extract_context(path, settings, detector, landmark_model)
    frames = _read_frames(path, settings)
    crops, frame_index, fallback = [], [], []
    for index, frame_bgr in frames:
        faces, is_fallback = faces_with_fallback(detector, frame_bgr, settings.fallback)
        for face in faces if settings.all_faces else faces[:1]:
            crops.append(crop_face(frame_bgr, face.box_xyxy, settings.face_margin, settings.crop_px))
            frame_index.append(index)
            fallback.append(is_fallback)
    size = settings.crop_px
    return CachedFaces(
        crops_rgb=np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8),
        frame_index=np.asarray(frame_index, np.int32),
        is_fallback=np.asarray(fallback, bool),
        frames_sampled=len(frames),
    )


def _read_frames(path: Path, settings: CacheSettings):
    if is_video_path(path):
        indices = sampled_indices(
            count_video_frames(path), settings.frame_stride, settings.frames_per_video
        )
        return read_video_frames(path, indices)
    return [(0, read_image_bgr(path))]


MIN_LANDMARK_PRESENCE = 0.5


def _extract_context(path: Path, settings: CacheSettings, detector: FaceDetector,
                     landmark_model) -> CachedFaces:
    import cv2

    frames = _read_frames(path, settings)
    crops, boxes, points, frame_index, fallback = [], [], [], [], []
    for index, frame_bgr in frames:
        faces, is_fallback = faces_with_fallback(detector, frame_bgr, settings.fallback)
        frame_rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB) if faces and landmark_model else None
        for face in faces if settings.all_faces else faces[:1]:
            found = None
            if landmark_model is not None:
                mesh = landmark_model.find(frame_rgb, face.box_xyxy)
                found = mesh.points_xy if mesh.presence >= MIN_LANDMARK_PRESENCE else None
            crop, box, mesh_xy = context_crop(frame_bgr, face.box_xyxy, settings, found)
            crops.append(crop)
            boxes.append(box)
            points.append(mesh_xy)
            frame_index.append(index)
            fallback.append(is_fallback)
    from detector.training.landmarks import LANDMARK_POINTS

    return CachedFaces(
        crops_rgb=crops,
        frame_index=np.asarray(frame_index, np.int32),
        is_fallback=np.asarray(fallback, bool),
        frames_sampled=len(frames),
        boxes_xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
        landmarks_xy=np.asarray(points, np.float32).reshape(-1, LANDMARK_POINTS, 2),
    )


def save_cached(path: Path, faces: CachedFaces) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.npz")
    common = dict(frame_index=faces.frame_index, is_fallback=faces.is_fallback,
                  frames_sampled=np.int32(faces.frames_sampled))
    if faces.boxes_xyxy is None:
        np.savez(partial, crops_rgb=faces.crops_rgb, **common)
    else:  # context crops differ in size: one array each
        np.savez(partial, boxes_xyxy=faces.boxes_xyxy, landmarks_xy=faces.landmarks_xy,
                 **{f"context_{i}": crop for i, crop in enumerate(faces.crops_rgb)}, **common)
    partial.replace(path)  # atomic: an interrupted run never leaves a half-written entry


def load_cached(path: Path) -> CachedFaces:
    with np.load(path) as data:
        common = dict(frame_index=data["frame_index"], is_fallback=data["is_fallback"],
                      frames_sampled=int(data["frames_sampled"]))
        if "boxes_xyxy" not in data:
            return CachedFaces(crops_rgb=data["crops_rgb"], **common)
        boxes = data["boxes_xyxy"]
        return CachedFaces(crops_rgb=[data[f"context_{i}"] for i in range(len(boxes))],
                           boxes_xyxy=boxes, landmarks_xy=data["landmarks_xy"], **common)


def prepare_cache(
    relative_paths: Iterable[str],
    data_root: Path,
    cache_dir: Path,
    settings: CacheSettings,
    detector: FaceDetector,
    show_progress: bool = True,
    description: str = "faces",
    landmark_model=None,
) -> PrepareSummary:
    """Fill the cache for ``relative_paths`` (relative to ``data_root``); skip cached files.

    An unreadable file is logged and counted, and the run continues.
    """
    paths = list(relative_paths)
    summary = PrepareSummary()
    todo = []
    for rel in paths:
        if cache_file(cache_dir, settings, rel).is_file():
            summary.cached_before += 1
        else:
            todo.append(rel)
    log.info("%s: %d files, %d already cached, %d to do (cache %s)", description, len(paths),
             summary.cached_before, len(todo), Path(cache_dir) / settings.key())
    progress = _progress(show_progress)
    with progress:
        task = progress.add_task(description, total=len(todo))
        for rel in todo:
            try:
                faces = extract_faces(Path(data_root) / rel, settings, detector, landmark_model)
            except SourceError as exc:
                log.warning("skipping %s: %s", rel, exc)
                summary.errors.append(f"{rel}: {exc}")
                progress.advance(task)
                continue
            save_cached(cache_file(cache_dir, settings, rel), faces)
            summary.processed += 1
            summary.crops += faces.count
            summary.fallbacks += int(faces.is_fallback.sum())
            summary.without_face += int(faces.count == 0)
            progress.advance(task)
    return summary


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *args, **kwargs) -> int:
        return 0

    def advance(self, *args, **kwargs) -> None:
        pass


def _progress(show: bool):
    if not show:
        return _NoProgress()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TimeRemainingColumn,
    )

    from detector.logs import stderr_console

    # On stderr, shared with the log handler: `prepare > summary.txt` keeps only the summary.
    return Progress("[progress.description]{task.description}", BarColumn(),
                    MofNCompleteColumn(), TimeRemainingColumn(), console=stderr_console())


TRAIN_SETTINGS = CacheSettings(frames_per_video=32, all_faces=False)
# Dev crops feed model selection and threshold calibration during training: every face of a
# frame (the pipeline scores the most suspicious face) and fewer frames per video, for speed.
DEV_SETTINGS = CacheSettings(frames_per_video=8, all_faces=True)
# Recipe v3 blends on context crops with landmarks and cuts the box itself.
TRAIN_CONTEXT_SETTINGS = CacheSettings(frames_per_video=32, all_faces=False, layout="context")
DEV_CONTEXT_SETTINGS = CacheSettings(frames_per_video=8, all_faces=True, layout="context")


def read_dev_paths(labels_csv: Path) -> list[str]:
    """The ``path`` column of a ``labels.csv`` (relative to its folder)."""
    import csv

    with Path(labels_csv).open(newline="", encoding="utf-8") as file:
        return [row["path"] for row in csv.DictReader(file) if row.get("path")]


def prepare_training_data(
    data_root: Path,
    cache_dir: Path,
    split_path: Path,
    detector: FaceDetector,
    *,
    holdout_fraction: float = 0.12,
    include_dev: bool = True,
    show_progress: bool = True,
    landmark_model=None,
    layouts: tuple[str, ...] = ("crop",),
) -> dict[str, PrepareSummary]:
    """Write the split file if it is missing, then cache the faces of the training and dev media.

    Args:
        data_root: the shared data folder holding ``train/real`` and ``dev/labels.csv``.
        cache_dir: where the face cache lives (git-ignored, e.g. ``.cache/faces``).
        split_path: the committed split CSV (created from the data when absent).
        detector: the serving face detector.
        landmark_model: the face mesh, needed by the ``context`` layout.
        layouts: which caches to fill (``"crop"`` for recipes v1/v2, ``"context"`` for v3).
    Returns:
        a summary per part (``"train"``, ``"dev"``, and ``"train context"``, ``"dev context"``).
    """
    from detector.training.split import (
        build_split,
        list_training_media,
        read_split,
        write_split,
    )

    if Path(split_path).is_file():
        rows = read_split(split_path)
    else:
        rows = build_split(list_training_media(data_root), holdout_fraction)
        write_split(rows, split_path)
        log.info("wrote split %s (%d files)", split_path, len(rows))
    present = [r.path for r in rows if (Path(data_root) / r.path).is_file()]
    if len(present) < len(rows):
        log.warning("%d files of the split are missing under %s", len(rows) - len(present), data_root)
    dev_labels = Path(data_root) / "dev" / "labels.csv"
    with_dev = include_dev and dev_labels.is_file()
    summaries = {}
    for layout in layouts:
        train_settings, dev_settings, suffix = (
            (TRAIN_SETTINGS, DEV_SETTINGS, "") if layout == "crop"
            else (TRAIN_CONTEXT_SETTINGS, DEV_CONTEXT_SETTINGS, " context"))
        summaries["train" + suffix] = prepare_cache(
            present, data_root, cache_dir, train_settings, detector, show_progress,
            "train faces" + suffix, landmark_model)
        if with_dev:
            summaries["dev" + suffix] = prepare_cache(
                read_dev_paths(dev_labels), dev_labels.parent, cache_dir, dev_settings, detector,
                show_progress, "dev faces" + suffix, landmark_model)
    return summaries


def write_holdout_eval_set(
    data_root: Path,
    split_path: Path,
    out_dir: Path,
    detector: FaceDetector,
    *,
    max_utkface: int = 200,
    frames_per_video: int = 2,
    seed: int = 7,
    show_progress: bool = True,
    landmark_model=None,
) -> int:
    """Write a labelled set of held-out people for ``evaluate``: each held-out image (and a few
    frames of each held-out video) as a REAL PNG, plus a self-blended copy of it as a FAKE PNG.

    The pseudo-fake is blended inside the detected face of the full image, so ``evaluate`` sees
    it through its own detection and crop: with recipe v1 inside the face box, with a
    ``landmark_model`` by recipe v3 on the face's landmarks (where the mesh finds the face).
    ``out_dir`` must not be committed (it holds data).

    Returns:
        the number of rows written to ``<out_dir>/labels.csv``.
    """
    import csv

    import cv2

    from detector.training.sbi import self_blend_v3
    from detector.training.self_blend import self_blend
    from detector.training.split import read_split

    rows = [r for r in read_split(split_path) if r.side == "holdout"]
    utk = [r for r in rows if r.group.startswith("utkface:")]
    keep = {r.path for r in utk[:: max(1, len(utk) // max_utkface)][:max_utkface]}
    rows = [r for r in rows if not r.group.startswith("utkface:") or r.path in keep]
    out_dir = Path(out_dir)
    (out_dir / "real").mkdir(parents=True, exist_ok=True)
    (out_dir / "fake").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = []
    progress = _progress(show_progress)
    with progress:
        task = progress.add_task("held-out set", total=len(rows))
        for row in rows:
            path = Path(data_root) / row.path
            try:
                if is_video_path(path):
                    indices = sampled_indices(count_video_frames(path), 1, frames_per_video + 2)
                    frames = read_video_frames(path, indices[1:-1] or indices)
                else:
                    frames = [(0, read_image_bgr(path))]
            except SourceError as exc:
                log.warning("held-out set: skipping %s: %s", row.path, exc)
                progress.advance(task)
                continue
            for index, frame_bgr in frames:
                faces = detector.detect(frame_bgr)
                if not faces:
                    continue
                stem = row.path.replace("/", "__").rsplit(".", 1)[0] + f"_{index:05d}"
                rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
                if landmark_model is None:
                    fake_rgb, _ = self_blend(rgb, faces[0].box_xyxy, rng)
                else:  # recipe v3, blended in the whole frame on the face's landmarks
                    mesh = landmark_model.find(rgb, faces[0].box_xyxy)
                    if mesh.presence < MIN_LANDMARK_PRESENCE:
                        continue
                    # the real of the pair: it may carry the recipe's jitter (then the fake's
                    # target did), so the two differ only where the blend is
                    real_rgb, fake_rgb, _ = self_blend_v3(rgb, mesh.points_xy, rng)
                    frame_bgr = cv2.cvtColor(real_rgb, cv2.COLOR_RGB2BGR)
                cv2.imwrite(str(out_dir / "real" / f"{stem}.png"), frame_bgr)
                cv2.imwrite(str(out_dir / "fake" / f"{stem}.png"),
                            cv2.cvtColor(fake_rgb, cv2.COLOR_RGB2BGR))
                source = row.group.split(":")[0]
                written.append((f"real/{stem}.png", "REAL", f"held-out {source}", "", row.group))
                written.append((f"fake/{stem}.png", "FAKE", f"held-out {source}",
                                "self-blended", row.group))
            progress.advance(task)
    with (out_dir / "labels.csv").open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["path", "label", "dataset", "method", "group"])
        writer.writerows(written)
    return len(written)
