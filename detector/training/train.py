"""Fit EfficientNet-B0 on real faces and their self-blended pseudo-fakes; select and calibrate on dev.

Keras 3 only (no ``tf.*``), so the loop runs on the TensorFlow, JAX or PyTorch backend. Training
follows a resolution schedule (e.g. 128 px warm-up, then 160 px): the weights do not depend on the
input size, so each phase builds the model at its size and copies the weights over. After every
epoch the weights and a ``state.json`` are written to the run folder; a new run with the same folder
resumes after the last finished epoch (the optimizer's moments restart at that point). Every epoch
is scored on the dev cache (item AUC, used for selection) and on a fixed held-out set of real and
self-blended faces of people the model never saw; both go to ``metrics.jsonl``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import keras
import numpy as np

from detector.efficientnet import EfficientNetB0Classifier
from detector.model_card import apply_temperature
from detector.scoring import aggregate_video, frame_score
from detector.self_blend import BLEND_RECIPES, SelfBlendSettings, face_box_in_crop, self_blend
from detector.training.metrics import bootstrap_auc, roc_auc, select_threshold
from detector.face_crop import box_crop_region, cut_and_resize
from detector.training.prepare import (
    DEV_CONTEXT_SETTINGS,
    DEV_SETTINGS,
    TRAIN_CONTEXT_SETTINGS,
    TRAIN_SETTINGS,
    CacheSettings,
    cache_file,
    load_cached,
)
from detector.training.sbi import SERVING_CROP_MARGIN, make_pair_v3
from detector.training.split import SplitRow

log = logging.getLogger(__name__)

MEAN_RGB = (0.5, 0.5, 0.5)  # EfficientNet-Lite's own input scaling: pixels to [-1, 1]
STD_RGB = (0.5, 0.5, 0.5)
INITS = ("lite0", "random")
# v1/v2 blend square crops inside the face box (detector.self_blend); v3 is the published recipe
# on context crops with landmarks (detector.training.sbi), cropped with the "box" rule.
RECIPES = (*BLEND_RECIPES, "v3")
CONTEXT_RECIPES = ("v3",)
V3_EVAL_PX = 224  # v3's held-out pairs and dev crops are cut at this size, then resized


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of one run; written into ``state.json`` and the training metrics."""

    schedule: tuple[tuple[int, int], ...] = ((128, 2), (160, 10), (224, 2))  # (input_size_px, epochs)
    images_per_epoch: int = 4000
    batch_size: int = 32
    learning_rate: float = 4e-4
    min_learning_rate: float = 2e-5
    weight_decay: float = 1e-5
    init: str = "lite0"
    activation: str = "relu6"
    use_se: bool = True
    dropout_rate: float = 0.2
    drop_connect_rate: float = 0.1
    utkface_share: float = 0.4
    holdout_pairs: int = 300
    seed: int = 0
    init_weights: str | None = None  # start from these weights (a previous run) instead of init
    blend_recipe: str = "v1"  # a key of detector.self_blend.BLEND_RECIPES

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ValueError(f"expected init in {INITS}, got {self.init!r}")
        if not self.schedule or any(s % 32 or s < 32 or e < 1 for s, e in self.schedule):
            raise ValueError(
                f"expected a schedule of (size multiple of 32, epochs >= 1), got {self.schedule}"
            )
        if self.batch_size < 2 or self.batch_size % 2:
            raise ValueError(f"expected an even batch_size >= 2, got {self.batch_size}")
        if self.blend_recipe not in RECIPES:
            raise ValueError(
                f"expected blend_recipe in {sorted(RECIPES)}, got {self.blend_recipe!r}"
            )
        if not 0.0 <= self.utkface_share <= 1.0:
            raise ValueError(f"expected 0 <= utkface_share <= 1, got {self.utkface_share}")

    @property
    def uses_context(self) -> bool:
        """Whether this run's recipe blends context crops with landmarks (the v3 cache)."""
        return self.blend_recipe in CONTEXT_RECIPES

    @property
    def total_epochs(self) -> int:
        return sum(epochs for _, epochs in self.schedule)

    def size_at(self, epoch: int) -> int:
        """Input size of 0-based ``epoch``."""
        done = 0
        for size, epochs in self.schedule:
            done += epochs
            if epoch < done:
                return size
        return self.schedule[-1][0]

    def learning_rate_at(self, epoch: int) -> float:
        """Cosine decay from ``learning_rate`` to ``min_learning_rate`` over all epochs."""
        progress = epoch / max(1, self.total_epochs - 1)
        return self.min_learning_rate + 0.5 * (self.learning_rate - self.min_learning_rate) * (
            1.0 + math.cos(math.pi * progress)
        )


def parse_schedule(text: str) -> tuple[tuple[int, int], ...]:
    """``"128:1,160:7"`` → ``((128, 1), (160, 7))``."""
    try:
        pairs = tuple(
            (int(size), int(epochs))
            for size, epochs in (part.split(":") for part in text.split(",") if part.strip())
        )
    except ValueError:
        raise ValueError(f"expected a schedule like 128:1,160:7, got {text!r}") from None
    if not pairs:
        raise ValueError(f"expected a schedule like 128:1,160:7, got {text!r}")
    return pairs


# --- data -------------------------------------------------------------------------------------
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
    missing = 0
    for row in rows:
        if row.side != side:
            continue
        path = cache_file(cache_dir, settings, row.path)
        if not path.is_file():
            missing += 1
            continue
        faces = load_cached(path)
        if faces.count == 0:
            continue
        crops.append(faces.crops_rgb)
        groups.extend([row.group] * faces.count)
        utk.extend([row.group.startswith("utkface:")] * faces.count)
    if missing:
        log.warning("%d %s files are not in the face cache: run `prepare` first", missing, side)
    size = settings.crop_px
    return FaceSet(
        np.concatenate(crops) if crops else np.zeros((0, size, size, 3), np.uint8),
        np.asarray(groups, dtype=object),
        np.asarray(utk, dtype=bool),
    )


def _load_context_set(rows: Sequence[SplitRow], side: str, cache_dir: Path,
                      settings: CacheSettings) -> FaceSet:
    crops, boxes, points, groups = [], [], [], []
    missing = without_landmarks = 0
    for row in rows:
        if row.side != side:
            continue
        path = cache_file(cache_dir, settings, row.path)
        if not path.is_file():
            missing += 1
            continue
        faces = load_cached(path)
        for i in range(faces.count):
            if not np.isfinite(faces.landmarks_xy[i]).all():
                without_landmarks += 1
                continue
            crops.append(faces.crops_rgb[i])
            boxes.append(faces.boxes_xyxy[i])
            points.append(faces.landmarks_xy[i])
            groups.append(row.group)
    if missing:
        log.warning("%d %s files are not in the context cache: run `prepare --landmarks` first",
                    missing, side)
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
            if self._blend is None:
                real, fake = make_pair_v3(self._faces.crops_rgb[i], self._faces.boxes_xyxy[i],
                                          self._faces.landmarks_xy[i], self._size, rng)
            else:
                real, fake = make_pair(self._faces.crops_rgb[i], self._size, self._margin, rng,
                                       self._blend)
            images.extend([real, fake])
            labels.extend([0.0, 1.0])
        return normalise(np.stack(images)), np.asarray(labels, np.float32)[:, None]


# --- scoring ----------------------------------------------------------------------------------
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


# --- the loop ---------------------------------------------------------------------------------
def build_model(settings: TrainSettings, size_px: int, weights: list | None = None):
    """A B0 at ``size_px``: from ``weights`` when given, else from the run's initialisation."""
    kwargs = dict(activation=settings.activation, use_se=settings.use_se,
                  dropout_rate=settings.dropout_rate, drop_connect_rate=settings.drop_connect_rate)
    if weights is not None:
        model = EfficientNetB0Classifier(size_px, **kwargs)
        model.set_weights(weights)
        return model
    keras.utils.set_random_seed(settings.seed)
    if settings.init_weights:
        model = EfficientNetB0Classifier(size_px, **kwargs)
        model.load_weights(settings.init_weights)
        log.info("initialised from %s", settings.init_weights)
        return model
    if settings.init == "lite0":
        from detector.lite0_weights import build_lite0_initialised_b0

        model, report = build_lite0_initialised_b0(size_px, **kwargs)
        log.info("%s", report.summary())
        _near_identity_se(model)
        return model
    return EfficientNetB0Classifier(size_px, **kwargs)


def _near_identity_se(model) -> None:
    """Start fresh SE gates near 1 so they barely disturb the pretrained features at first."""
    for layer in model.layers:
        if layer.name.endswith("_se_expand"):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel * 0.1, np.full_like(bias, 2.5)])


def _compile(model, settings: TrainSettings, learning_rate: float) -> None:
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=learning_rate,
                                         weight_decay=settings.weight_decay),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
        jit_compile=False,  # XLA on CPU was ~10x slower here
    )


@dataclass
class RunState:
    """What ``state.json`` keeps between epochs."""

    settings: dict
    epochs_done: int = 0
    history: list[dict] = field(default_factory=list)

    def save(self, path: Path) -> None:
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(asdict(self), indent=2))
        partial.replace(path)


def train_model(
    rows: Sequence[SplitRow],
    cache_dir: Path,
    run_dir: Path,
    settings: TrainSettings,
    dev_labels: Path | None,
    face_margin: float = TRAIN_SETTINGS.face_margin,
    workers: int = 2,
    stop_after_epochs: int | None = None,
) -> RunState:
    """Train (or resume) a run in ``run_dir``; returns its state with per-epoch history.

    Each epoch writes ``last.weights.h5``, ``epoch_<n>.weights.h5``, ``state.json`` and a line of
    ``metrics.jsonl``. ``stop_after_epochs`` ends the run early (a short comparison run) without
    changing its settings, so the learning-rate schedule matches a full run's first epochs.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state_path = run_dir / "state.json"
    state = RunState(settings=_jsonable(settings))
    if state_path.is_file():
        saved = json.loads(state_path.read_text())
        # Settings added after a run started take their defaults (runs from before blend
        # recipes had names used "v1", the default).
        saved["settings"] = {**_jsonable(TrainSettings()), **saved["settings"]}
        if saved["settings"] != state.settings:
            raise ValueError(f"{run_dir} holds a run with other settings; use a new --run-dir")
        state = RunState(**saved)
        log.info("resuming %s after epoch %d", run_dir, state.epochs_done)
    if state.epochs_done >= settings.total_epochs:
        return state

    train_cache, dev_cache = ((TRAIN_CONTEXT_SETTINGS, DEV_CONTEXT_SETTINGS) if settings.uses_context
                              else (TRAIN_SETTINGS, DEV_SETTINGS))
    train = load_face_set(rows, "train", cache_dir, train_cache)
    holdout_faces = load_face_set(rows, "holdout", cache_dir, train_cache)
    if len(train) == 0:
        hint = "prepare --landmarks" if settings.uses_context else "prepare"
        raise ValueError(f"no cached training faces in {cache_dir}: run `{hint}` first")
    holdout = build_holdout_set(holdout_faces, settings.holdout_pairs, face_margin, seed=1234,
                                blend=BLEND_RECIPES.get(settings.blend_recipe))
    dev_items = load_dev_items(dev_labels, cache_dir, dev_cache) if dev_labels else []
    log.info("train crops %d (UTKFace %d), holdout pairs %d, dev items %d", len(train),
             int(train.is_utkface.sum()), len(holdout.labels) // 2, len(dev_items))

    model, size = None, None
    if state.epochs_done:
        size = settings.size_at(state.epochs_done)
        model = EfficientNetB0Classifier(size, activation=settings.activation, use_se=settings.use_se,
                                         dropout_rate=settings.dropout_rate,
                                         drop_connect_rate=settings.drop_connect_rate)
        model.load_weights(str(run_dir / "last.weights.h5"))
        _compile(model, settings, settings.learning_rate_at(state.epochs_done))
    steps = max(1, settings.images_per_epoch // settings.batch_size)
    metrics_log = run_dir / "metrics.jsonl"
    last_epoch = settings.total_epochs if stop_after_epochs is None else min(
        settings.total_epochs, stop_after_epochs)
    for epoch in range(state.epochs_done, last_epoch):
        epoch_size = settings.size_at(epoch)
        if model is None:
            model = build_model(settings, epoch_size)
            _compile(model, settings, settings.learning_rate_at(epoch))
        elif epoch_size != size:
            log.info("switching input size %d → %d px", size, epoch_size)
            model = build_model(settings, epoch_size, weights=model.get_weights())
            _compile(model, settings, settings.learning_rate_at(epoch))
        size = epoch_size
        learning_rate = settings.learning_rate_at(epoch)
        model.optimizer.learning_rate.assign(learning_rate)
        batches = SelfBlendBatches(train, settings, epoch, steps, face_margin,
                                   workers=workers, use_multiprocessing=False, max_queue_size=8)
        started = time.perf_counter()
        fitted = model.fit(batches, epochs=1, verbose=2)
        train_s = time.perf_counter() - started
        started = time.perf_counter()
        holdout_scores = predict(model, resize_crops(holdout.crops_rgb, size))
        holdout_auc = bootstrap_auc(holdout.labels, holdout_scores, holdout.groups, resamples=300)
        dev_scores = score_dev_items(model, dev_items, size)
        dev_value, dev_scored = dev_auc(dev_items, dev_scores)
        eval_s = time.perf_counter() - started
        record = {
            "epoch": epoch + 1,
            "input_size_px": size,
            "learning_rate": learning_rate,
            "loss": float(fitted.history["loss"][-1]),
            "train_accuracy": float(fitted.history["accuracy"][-1]),
            "train_auc": float(fitted.history["auc"][-1]),
            "images": steps * settings.batch_size,
            "images_per_s": steps * settings.batch_size / train_s,
            "holdout_auc": holdout_auc.as_dict(),
            "dev_item_auc": dev_value,
            "dev_items_scored": dev_scored,
            "eval_s": eval_s,
        }
        log.info("epoch %d/%d %dpx loss %.4f acc %.3f | %.1f img/s | holdout AUC %s | dev AUC %s",
                 epoch + 1, settings.total_epochs, size, record["loss"], record["train_accuracy"],
                 record["images_per_s"], holdout_auc.text(),
                 "n/a" if dev_value is None else f"{dev_value:.3f}")
        model.save_weights(str(run_dir / f"epoch_{epoch + 1}.weights.h5"))
        model.save_weights(str(run_dir / "last.weights.h5"))
        with metrics_log.open("a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")
        state.history.append(record)
        state.epochs_done = epoch + 1
        state.save(state_path)
    return state


def choose_epoch(state: RunState, final_size_only: bool = True) -> dict:
    """The epoch with the best dev item AUC (ties → later), among epochs at the final size."""
    final_size = state.history[-1]["input_size_px"]
    candidates = [h for h in state.history
                  if h["dev_item_auc"] is not None
                  and (not final_size_only or h["input_size_px"] == final_size)]
    if not candidates:
        return state.history[-1]
    return max(candidates, key=lambda h: (h["dev_item_auc"], h["epoch"]))


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


def _jsonable(settings: TrainSettings) -> dict:
    return json.loads(json.dumps(asdict(settings)))


def write_card_toml(path: Path, *, name: str, version: str, weights: str, tflite: str | None,
                    input_size_px: int, face_margin: float, threshold: float,
                    activation: str, use_se: bool, initialisation: str,
                    crop_rule: str = "square", temperature: float = 1.0) -> None:
    """Write ``models/<name>.toml`` (see :mod:`detector.model_card` for the keys)."""
    lines = [
        f'name = "{name}"',
        f'version = "{version}"',
        'architecture = "efficientnet_b0"',
        f'weights = "{weights}"',
        *([f'tflite = "{tflite}"'] if tflite else []),
        f"input_size_px = {input_size_px}",
        f"mean_rgb = [{', '.join(f'{v:g}' for v in MEAN_RGB)}]",
        f"std_rgb = [{', '.join(f'{v:g}' for v in STD_RGB)}]",
        'face_detector = "yunet"',
        f"face_margin = {face_margin:g}",
        *([f'crop_rule = "{crop_rule}"'] if crop_rule != "square" else []),
        *([f"temperature = {temperature:g}"] if temperature != 1.0 else []),
        f"threshold = {threshold:.4f}",
        "trained = true",
        f'activation = "{activation}"',
        f"use_se = {'true' if use_se else 'false'}",
        f'initialisation = "{initialisation}"',
        'training_data = "../shared/data/train/real (research / non-commercial terms)"',
    ]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def publish_model(
    state: RunState,
    run_dir: Path,
    models_dir: Path,
    name: str,
    dev_labels: Path | None,
    cache_dir: Path,
    version: str = "0.1.0",
    face_margin: float = TRAIN_SETTINGS.face_margin,
    export_litert: bool = False,
) -> Path:
    """Copy the chosen epoch's weights to ``models/<name>.weights.h5``, calibrate the threshold on
    dev, write the card ``models/<name>.toml`` and ``models/<name>.train_metrics.json``.

    Returns:
        the card path.
    """
    settings = TrainSettings(**{**state.settings,
                                "schedule": tuple(tuple(p) for p in state.settings["schedule"])})
    chosen = choose_epoch(state)
    size = chosen["input_size_px"]
    model = EfficientNetB0Classifier(size, activation=settings.activation, use_se=settings.use_se)
    model.load_weights(str(Path(run_dir) / f"epoch_{chosen['epoch']}.weights.h5"))
    dev_cache = DEV_CONTEXT_SETTINGS if settings.uses_context else DEV_SETTINGS
    calibration = (calibrate_on_dev(model, dev_labels, cache_dir, size, dev_cache,
                                    fit_temperature=settings.uses_context)
                   if dev_labels else {"threshold": 0.5, "temperature": 1.0, "items": 0,
                                       "dev_item_auc_cache": None})
    if settings.uses_context:  # v3 is cropped like the published recipe's test crops
        face_margin, crop_rule = SERVING_CROP_MARGIN, "box"
    else:
        crop_rule = "square"
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    weights_name = f"{name}.weights.h5"
    model.save_weights(str(models_dir / weights_name))
    tflite_name = None
    if export_litert:
        from detector.runtime import export_tflite

        tflite_name = f"{name}.tflite"
        export_tflite(model, models_dir / tflite_name)
    card_path = models_dir / f"{name}.toml"
    write_card_toml(card_path, name=name, version=version, weights=weights_name, tflite=tflite_name,
                    input_size_px=size, face_margin=face_margin,
                    threshold=calibration["threshold"], activation=settings.activation,
                    use_se=settings.use_se, initialisation=settings.init, crop_rule=crop_rule,
                    temperature=calibration["temperature"])
    summary = {"settings": state.settings, "chosen_epoch": chosen["epoch"],
               "calibration": calibration, "history": state.history}
    (models_dir / f"{name}.train_metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("published %s (epoch %d, %d px, threshold %.3f)", card_path, chosen["epoch"], size,
             calibration["threshold"])
    return card_path
