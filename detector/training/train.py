"""Fit EfficientNet-B0 on real faces and their self-blended pseudo-fakes, epoch by epoch, resumable.

Keras 3 only (no ``tf.*``), so the loop runs on the TensorFlow, JAX or PyTorch backend (the SAM
step of ``--sam-rho`` is TensorFlow's: ``detector.training.sam``). Training
follows a resolution schedule (e.g. 128 px warm-up, then 160 px): the weights do not depend on the
input size, so each phase builds the model at its size and copies the weights over. After every
epoch the weights and a ``state.json`` are written to the run folder; a new run with the same folder
resumes after the last finished epoch (the optimizer's moments restart at that point). Every epoch
is scored on the dev cache (item AUC, used for selection) and on a fixed held-out set of real and
self-blended faces of people the model never saw; both go to ``metrics.jsonl``. The pieces live
beside it: ``settings`` (the run's hyper-parameters), ``data`` (pairs and batches),
``evaluation`` (dev scoring and calibration) and ``publish`` (weights and card).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

from detector.efficientnet import EfficientNetB0Classifier
from detector.training.data import (
    SelfBlendBatches,
    build_holdout_set,
    load_face_set,
    resize_crops,
)
from detector.training.evaluation import (
    dev_auc,
    load_dev_items,
    predict,
    score_dev_items,
)
from detector.training.metrics import bootstrap_auc
from detector.training.prepare import (
    DEV_CONTEXT_SETTINGS,
    DEV_SETTINGS,
    TRAIN_CONTEXT_SETTINGS,
    TRAIN_SETTINGS,
)
from detector.training.sam import use_sam
from detector.training.self_blend import BLEND_RECIPES
from detector.training.settings import TrainSettings, jsonable
from detector.training.split import SplitRow

log = logging.getLogger(__name__)


def _architecture_options(settings: TrainSettings) -> dict:
    """The run's B0 options (everything but the input size)."""
    return dict(activation=settings.activation, use_se=settings.use_se,
                dropout_rate=settings.dropout_rate, drop_connect_rate=settings.drop_connect_rate)


def architecture(settings: TrainSettings, size_px: int):
    """An untrained B0 at ``size_px`` with the run's architecture options."""
    return EfficientNetB0Classifier(size_px, **_architecture_options(settings))


def build_model(settings: TrainSettings, size_px: int, weights: list | None = None):
    """A B0 at ``size_px``: from ``weights`` when given, else from the run's initialisation."""
    if weights is not None:
        model = architecture(settings, size_px)
        model.set_weights(weights)
        return model
    keras.utils.set_random_seed(settings.seed)
    if settings.init_weights:
        model = architecture(settings, size_px)
        model.load_weights(settings.init_weights)
        log.info("initialised from %s", settings.init_weights)
        return model
    if settings.init == "lite0":
        from detector.training.lite0_weights import build_lite0_initialised_b0

        model, report = build_lite0_initialised_b0(size_px, **_architecture_options(settings))
        log.info("%s", report.summary())
        _near_identity_se(model)
        return model
    return architecture(settings, size_px)


def _near_identity_se(model) -> None:
    """Start fresh SE gates near 1 so they barely disturb the pretrained features at first."""
    for layer in model.layers:
        if layer.name.endswith("_se_expand"):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel * 0.1, np.full_like(bias, 2.5)])


def freeze(model, prefixes: tuple[str, ...]) -> int:
    """Make the layers whose names start with ``prefixes`` untrainable (their batch-norm
    statistics stay fixed too), every other layer trainable; returns how many are frozen.
    The model must be compiled again for it to take effect."""
    count = 0
    for layer in model.layers:
        layer.trainable = not (prefixes and layer.name.startswith(prefixes))
        count += not layer.trainable
    return count


def _compile(model, settings: TrainSettings, learning_rate: float) -> None:
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=learning_rate,
                                         weight_decay=settings.weight_decay),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
        jit_compile=False,  # XLA on CPU was ~10x slower here
    )
    if settings.sam_rho:
        use_sam(model, settings.sam_rho)


class PullTowardInit(keras.callbacks.Callback):
    """L2-SP (Li, Grandvalet & Davoine, ICML 2018) in AdamW's decoupled form: after every step,
    each trainable weight ``w`` moves toward its initial value ``w0`` by
    ``learning_rate * strength * (w - w0)``. With Adam's normalised steps a weight's distance from
    ``w0`` then settles near what about ``1 / (learning_rate * strength)`` steps of training alone
    would reach, however long the run: a long run keeps seeing new pseudo-fakes without wandering
    as far from the initial weights as its plain counterpart."""

    def __init__(self, initial: list[np.ndarray], strength: float):
        super().__init__()
        self._initial = initial  # in the order of ``model.weights``
        self._strength = strength
        self._pairs: list = []

    def on_train_begin(self, logs=None) -> None:
        index = {id(variable): i for i, variable in enumerate(self.model.weights)}
        self._pairs = [(w, keras.ops.convert_to_tensor(self._initial[index[id(w)]]))
                       for w in self.model.trainable_weights]

    def on_train_batch_end(self, batch, logs=None) -> None:
        rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)) * self._strength
        for weight, initial in self._pairs:
            weight.assign(weight - rate * (weight - initial))


def _initial_weights(settings: TrainSettings) -> list[np.ndarray]:
    """The weights of ``settings.init_weights`` in the order of ``model.weights``."""
    model = architecture(settings, settings.size_at(0))
    model.load_weights(settings.init_weights)
    return model.get_weights()


@dataclass
class RunState:
    """What ``state.json`` keeps between epochs."""

    settings: dict
    epochs_done: int = 0
    history: list[dict] = field(default_factory=list)

    @classmethod
    def load(cls, run_dir: Path) -> RunState:
        """The state of the run in ``run_dir``.

        Raises:
            ValueError: the folder holds no finished epoch.
        """
        path = Path(run_dir) / "state.json"
        if not path.is_file():
            raise ValueError(f"{run_dir} holds no training run (no state.json)")
        state = cls(**json.loads(path.read_text()))
        if not state.history:
            raise ValueError(f"{run_dir} has no finished epoch yet")
        return state

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
    state = RunState(settings=jsonable(settings))
    if state_path.is_file():
        saved = json.loads(state_path.read_text())
        # Settings added after a run started take their defaults (runs from before blend
        # recipes had names used "v1", the default).
        saved["settings"] = {**jsonable(TrainSettings()), **saved["settings"]}
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
        model = architecture(settings, size)
        model.load_weights(str(run_dir / "last.weights.h5"))
        _compile(model, settings, settings.learning_rate_at(state.epochs_done))
    steps = max(1, settings.images_per_epoch // settings.batch_size)
    metrics_log = run_dir / "metrics.jsonl"
    last_epoch = settings.total_epochs if stop_after_epochs is None else min(
        settings.total_epochs, stop_after_epochs)
    frozen: tuple[str, ...] = ()
    callbacks = ([PullTowardInit(_initial_weights(settings), settings.anchor_strength)]
                 if settings.anchor_strength else [])
    for epoch in range(state.epochs_done, last_epoch):
        epoch_size = settings.size_at(epoch)
        if model is None:
            model = build_model(settings, epoch_size)
            _compile(model, settings, settings.learning_rate_at(epoch))
        elif epoch_size != size:
            log.info("switching input size %d → %d px", size, epoch_size)
            freeze(model, ())  # the weights' order must not depend on what is frozen
            model = build_model(settings, epoch_size, weights=model.get_weights())
            frozen = ()
            _compile(model, settings, settings.learning_rate_at(epoch))
        if settings.frozen_prefixes_at(epoch) != frozen:
            frozen = settings.frozen_prefixes_at(epoch)
            log.info("epoch %d: %s", epoch + 1,
                     f"frozen {', '.join(frozen)}" if frozen else "every layer trains")
            freeze(model, frozen)
            _compile(model, settings, settings.learning_rate_at(epoch))
        size = epoch_size
        learning_rate = settings.learning_rate_at(epoch)
        model.optimizer.learning_rate.assign(learning_rate)
        batches = SelfBlendBatches(train, settings, epoch, steps, face_margin,
                                   workers=workers, use_multiprocessing=False, max_queue_size=8)
        started = time.perf_counter()
        fitted = model.fit(batches, epochs=1, verbose=2, callbacks=callbacks)
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
