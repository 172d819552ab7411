"""Training data: cached faces, the real / pseudo-fake pairs of every recipe, batches, held-out pairs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import keras
import numpy as np

from detector.face_crop import box_crop_region, cut_and_resize
from detector.training.prepare import (
    TRAIN_SETTINGS,
    CacheSettings,
    cache_file,
    load_cached,
)
from detector.training.sbi import (
    SERVING_CROP_MARGIN,
    make_cross_pair,
    make_pair_v3,
    normalised_shape,
)
from detector.training.self_blend import (
    BLEND_RECIPES,
    SelfBlendSettings,
    face_box_in_crop,
    self_blend,
)
from detector.training.settings import (
    CROSS_IDENTITY_SHARE,
    MEAN_RGB,
    STD_RGB,
    V3_EVAL_PX,
    TrainSettings,
)
from detector.training.split import SplitRow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceSet:
    """Cached crops of one side of the split, with each crop's group and whether it is UTKFace."""

    crops_rgb: np.ndarray | list[np.ndarray]  # (n, s, s, 3) uint8; context: n (h, w, 3) arrays
    groups: np.ndarray  # (n,) str
    is_utkface: np.ndarray  # (n,) bool
    boxes_xyxy: np.ndarray | None = None  # context: (n, 4) detector box in crop pixels
    landmarks_xy: np.ndarray | None = None  # context: (n, 468, 2)

    def __len__(self) -> int:
        return int(len(self.crops_rgb))


def load_face_set(rows: Sequence[SplitRow], side: str, cache_dir: Path,
                  settings: CacheSettings = TRAIN_SETTINGS) -> FaceSet:
    """Gather the cached crops of ``side``; files missing from the cache are skipped.

    From a ``context`` cache, faces whose landmarks were not found are left out (recipe v3
    cannot blend them).
    """
    if settings.layout == "context":
        return _load_context_set(rows, side, cache_dir, settings)
    crops, groups, utk = [], [], []
    for row, faces in _cached_files(rows, side, cache_dir, settings, "prepare"):
        if faces.count == 0:
            continue
        crops.append(faces.crops_rgb)
        groups.extend([row.group] * faces.count)
        utk.extend([row.group.startswith("utkface:")] * faces.count)
    size = settings.crop_px
    return FaceSet(
        np.concatenate(crops) if crops else np.zeros((0, size, size, 3), np.uint8),
        np.asarray(groups, dtype=object),
        np.asarray(utk, dtype=bool),
    )


def _cached_files(rows: Sequence[SplitRow], side: str, cache_dir: Path, settings: CacheSettings,
                  prepare_command: str):
    """``(row, cached faces)`` of every file of ``side`` in the cache; the missing are counted
    and reported once, with the command that fills the cache."""
    missing = 0
    for row in rows:
        if row.side != side:
            continue
        path = cache_file(cache_dir, settings, row.path)
        if not path.is_file():
            missing += 1
            continue
        yield row, load_cached(path)
    if missing:
        log.warning("%d %s files are not in the face cache: run `%s` first", missing, side,
                    prepare_command)


def _load_context_set(rows: Sequence[SplitRow], side: str, cache_dir: Path,
                      settings: CacheSettings) -> FaceSet:
    crops, boxes, points, groups = [], [], [], []
    without_landmarks = 0
    for row, faces in _cached_files(rows, side, cache_dir, settings, "prepare --landmarks"):
        for i in range(faces.count):
            if not np.isfinite(faces.landmarks_xy[i]).all():
                without_landmarks += 1
                continue
            crops.append(faces.crops_rgb[i])
            boxes.append(faces.boxes_xyxy[i])
            points.append(faces.landmarks_xy[i])
            groups.append(row.group)
    if without_landmarks:
        log.info("%s: %d faces without landmarks left out", side, without_landmarks)
    return FaceSet(
        crops,
        np.asarray(groups, dtype=object),
        np.asarray([g.startswith("utkface:") for g in groups], dtype=bool),
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(points, np.float32).reshape(-1, 468, 2),
    )


def serving_crop(context_rgb: np.ndarray, box_xyxy, size_px: int) -> np.ndarray:
    """The crop the pipeline makes for a v3 model (``crop_rule = "box"``, 12.5 % per side)."""
    region = box_crop_region(box_xyxy, context_rgb.shape[:2], (SERVING_CROP_MARGIN,) * 4)
    return cut_and_resize(context_rgb, region, size_px)


def resize_crops(crops_rgb: np.ndarray, size_px: int) -> np.ndarray:
    """Resize ``(n, s, s, 3)`` crops to ``size_px`` the way ``crop_face`` would have."""
    if crops_rgb.shape[1] == size_px:
        return crops_rgb
    interpolation = cv2.INTER_AREA if crops_rgb.shape[1] > size_px else cv2.INTER_LINEAR
    out = np.empty((len(crops_rgb), size_px, size_px, 3), np.uint8)
    for i, crop in enumerate(crops_rgb):
        out[i] = cv2.resize(crop, (size_px, size_px), interpolation=interpolation)
    return out


def normalise(crops_rgb: np.ndarray) -> np.ndarray:
    mean = np.asarray(MEAN_RGB, np.float32)
    std = np.asarray(STD_RGB, np.float32)
    return (crops_rgb.astype(np.float32) / 255.0 - mean) / std


def augment(image_rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Label-independent augmentation, applied alike to reals and pseudo-fakes: flip, colour,
    loss of resolution (tight, low-resolution dataset crops) and JPEG re-compression."""
    out = image_rgb
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if rng.random() < 0.3:
        alpha = rng.uniform(0.85, 1.15)
        beta = rng.uniform(-15, 15)
        out = np.clip(out.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)
    size = out.shape[0]
    if rng.random() < 0.25:
        small = max(24, int(size * rng.uniform(0.35, 0.8)))
        out = cv2.resize(cv2.resize(np.ascontiguousarray(out), (small, small),
                                    interpolation=cv2.INTER_AREA),
                         (size, size), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        quality = int(rng.integers(40, 96))
        ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(out),
                                   [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            out = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    return np.ascontiguousarray(out)


def make_pair(crop_rgb: np.ndarray, size_px: int, margin: float, rng: np.random.Generator,
              blend: SelfBlendSettings = BLEND_RECIPES["v1"]) -> tuple[np.ndarray, np.ndarray]:
    """One real and its self-blended pseudo-fake, both augmented, at ``size_px``."""
    real = resize_crops(crop_rgb[None], size_px)[0]
    fake, _ = self_blend(real, face_box_in_crop(size_px, margin), rng, blend)
    return augment(real, rng), augment(fake, rng)


class SelfBlendBatches(keras.utils.PyDataset):
    """Batches of half reals, half their self-blended copies (label 1 = FAKE)."""

    def __init__(self, faces: FaceSet, settings: TrainSettings, epoch: int, steps: int,
                 margin: float, **kwargs):
        super().__init__(**kwargs)
        self._faces = faces
        self._settings = settings
        self._epoch = epoch
        self._steps = steps
        self._margin = margin
        self._size = settings.size_at(epoch)
        self._blend = None if settings.uses_context else BLEND_RECIPES[settings.blend_recipe]
        utk = np.flatnonzero(faces.is_utkface)
        other = np.flatnonzero(~faces.is_utkface)
        self._pools = [(pool, share) for pool, share in
                       ((utk, settings.utkface_share), (other, 1.0 - settings.utkface_share))
                       if len(pool) and share > 0]
        self._cross_share = CROSS_IDENTITY_SHARE.get(settings.blend_recipe, 0.0)
        self._shapes = (np.stack([normalised_shape(p) for p in faces.landmarks_xy])
                        if self._cross_share > 0 and len(faces) else None)

    def __len__(self) -> int:
        return self._steps

    def _pick(self, rng: np.random.Generator, count: int) -> np.ndarray:
        shares = np.asarray([share for _, share in self._pools])
        which = rng.choice(len(self._pools), size=count, p=shares / shares.sum())
        return np.asarray([self._pools[w][0][rng.integers(len(self._pools[w][0]))] for w in which])

    def __getitem__(self, index: int):
        rng = np.random.default_rng((self._settings.seed, self._epoch, index))
        half = self._settings.batch_size // 2
        images, labels = [], []
        for i in self._pick(rng, half):
            source = self._cross_source(i, rng) if self._cross_share > 0 else None
            if source is not None:
                real, fake = make_cross_pair(
                    self._faces.crops_rgb[i], self._faces.boxes_xyxy[i],
                    self._faces.landmarks_xy[i], self._faces.crops_rgb[source],
                    self._faces.landmarks_xy[source], self._size, rng,
                    self._settings.pair_downscale)
            elif self._blend is None:
                real, fake = make_pair_v3(self._faces.crops_rgb[i], self._faces.boxes_xyxy[i],
                                          self._faces.landmarks_xy[i], self._size, rng,
                                          self._settings.pair_downscale)
            else:
                real, fake = make_pair(self._faces.crops_rgb[i], self._size, self._margin, rng,
                                       self._blend)
            images.extend([real, fake])
            labels.extend([0.0, 1.0])
        return normalise(np.stack(images)), np.asarray(labels, np.float32)[:, None]

    def _cross_source(self, target: int, rng: np.random.Generator):
        """With the recipe's share, another person's face whose landmarks are nearest the
        target's among ``cross_candidates`` drawn at random (pose and expression alike);
        else ``None``."""
        if rng.random() >= self._cross_share:
            return None
        pool = rng.integers(len(self._faces), size=self._settings.cross_candidates)
        pool = pool[self._faces.groups[pool] != self._faces.groups[target]]
        if not len(pool):
            return None
        distances = np.linalg.norm(self._shapes[pool] - self._shapes[target], axis=1)
        return int(pool[int(np.argmin(distances))])



@dataclass(frozen=True)
class HoldoutSet:
    """Fixed real/self-blended crops of held-out people (built once per run, seeded)."""

    crops_rgb: np.ndarray  # at the cache size
    labels: np.ndarray
    groups: np.ndarray


def build_holdout_set(faces: FaceSet, pairs: int, margin: float, seed: int,
                      blend: SelfBlendSettings | None = BLEND_RECIPES["v1"]) -> HoldoutSet:
    """Up to ``pairs`` held-out crops spread over the set, each with one self-blended copy.

    ``blend=None`` makes recipe-v3 pairs from a context set, at :data:`V3_EVAL_PX`.
    """
    size = V3_EVAL_PX if blend is None else (
        faces.crops_rgb.shape[1] if len(faces) else TRAIN_SETTINGS.crop_px)
    if len(faces) == 0:
        return HoldoutSet(np.zeros((0, size, size, 3), np.uint8), np.zeros(0, int), np.zeros(0, object))
    picks = np.unique(np.linspace(0, len(faces) - 1, min(pairs, len(faces))).round().astype(int))
    rng = np.random.default_rng(seed)
    crops, labels, groups = [], [], []
    for i in picks:
        if blend is None:
            real, fake = make_pair_v3(faces.crops_rgb[i], faces.boxes_xyxy[i],
                                      faces.landmarks_xy[i], size, rng)
        else:
            real = faces.crops_rgb[i]
            fake, _ = self_blend(real, face_box_in_crop(size, margin), rng, blend)
        crops.extend([real, fake])
        labels.extend([0, 1])
        groups.extend([faces.groups[i]] * 2)
    return HoldoutSet(np.stack(crops), np.asarray(labels), np.asarray(groups, dtype=object))
