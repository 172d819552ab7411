"""Model runtimes behind one Protocol: Keras on TensorFlow (compiled), and LiteRT/TFLite."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from detector.errors import ModelError
from detector.model_card import ModelCard

log = logging.getLogger(__name__)


class ModelRuntime(Protocol):
    """Runs the classifier on a batch of normalised crops."""

    name: str

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """``(n, s, s, 3)`` float32 → ``(n,)`` float32 fake probabilities in [0, 1]."""
        ...


@contextlib.contextmanager
def native_stderr_silenced(enabled: bool = True):
    """Silence file descriptor 2 (TensorFlow's C++ start-up chatter, which ignores
    TF_CPP_MIN_LOG_LEVEL); Python exceptions still propagate and are logged after."""
    if not enabled:
        yield
        return
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def warm_up(runtime: ModelRuntime, input_size_px: int) -> None:
    """Run one tiny batch so the first real batch does not pay for tracing/allocation."""
    runtime.predict(np.zeros((1, input_size_px, input_size_px, 3), dtype=np.float32))


def set_threads(threads: int) -> None:
    """Limit TensorFlow's thread pools; must run before TensorFlow executes anything."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
    except RuntimeError:
        log.debug("TensorFlow already initialised; thread settings unchanged")


def build_model(card: ModelCard):
    """Build the card's architecture and load its weights."""
    from detector.efficientnet import EfficientNetB0Classifier

    if not card.weights_path.is_file():
        raise ModelError(f"weights {card.weights_path} of model {card.name} not found")
    model = EfficientNetB0Classifier(
        card.input_size_px, activation=card.activation, use_se=card.use_se
    )
    try:
        model.load_weights(str(card.weights_path))
    except (ValueError, OSError) as exc:
        raise ModelError(f"weights {card.weights_path} do not fit model {card.name}: {exc}") from None
    return model


class KerasRuntime:
    """The Keras model wrapped in one compiled ``tf.function`` with a dynamic batch dimension."""

    name = "keras"

    def __init__(self, card: ModelCard, threads: int = 0):
        import tensorflow as tf

        if threads:
            set_threads(threads)
        self._model = build_model(card)
        size = card.input_size_px
        spec = tf.TensorSpec([None, size, size, 3], tf.float32)
        model = self._model
        self._predict = tf.function(lambda x: model(x, training=False), input_signature=[spec])

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0,), dtype=np.float32)
        return np.asarray(self._predict(batch)).reshape(-1).astype(np.float32)


class LiteRTRuntime:
    """A ``.tflite`` export run by LiteRT (``ai-edge-litert``) or TensorFlow's own interpreter."""

    name = "litert"

    def __init__(self, card: ModelCard, threads: int = 0):
        if card.tflite_path is None or not card.tflite_path.is_file():
            raise ModelError(
                f"model {card.name} has no .tflite file (card key 'tflite'); "
                "use workers.runtime = \"keras\" or export one"
            )
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            from tensorflow.lite import Interpreter  # type: ignore[no-redef]
        self._interpreter = Interpreter(
            model_path=str(card.tflite_path), num_threads=threads or None
        )
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._batch_size = -1

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0,), dtype=np.float32)
        if len(batch) != self._batch_size:
            self._interpreter.resize_tensor_input(self._input["index"], list(batch.shape))
            self._interpreter.allocate_tensors()
            self._batch_size = len(batch)
        self._interpreter.set_tensor(self._input["index"], np.ascontiguousarray(batch, np.float32))
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output["index"]).reshape(-1).astype(np.float32)


def load_runtime(card: ModelCard, kind: str = "auto", threads: int = 0) -> ModelRuntime:
    """Pick a runtime: ``auto`` = LiteRT when the card has a .tflite file, else Keras."""
    if kind == "auto":
        kind = "litert" if card.tflite_path is not None and card.tflite_path.is_file() else "keras"
    factories: dict[str, Callable[[], ModelRuntime]] = {
        "keras": lambda: KerasRuntime(card, threads),
        "litert": lambda: LiteRTRuntime(card, threads),
    }
    if kind not in factories:
        raise ModelError(f"runtime must be one of {sorted(factories)}, got {kind!r}")
    return factories[kind]()


def export_tflite(model, path: Path) -> Path:
    """Convert a Keras classifier to a float32 ``.tflite`` file with a dynamic batch size.

    Goes through a SavedModel export: converting a bare concrete function produced NaNs with
    TensorFlow 2.21 (seen here), the SavedModel route matches Keras to float precision.
    """
    import tempfile

    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="tflite-export-") as folder:
        model.export(folder, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        Path(path).write_bytes(converter.convert())
    return Path(path)
