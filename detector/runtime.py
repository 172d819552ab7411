"""Model runtimes behind one Protocol: Keras on TensorFlow (compiled), LiteRT/TFLite
(the float32 export, or the int8 export with its logit output: full-integer, or with a few
blocks kept float), and OpenVINO running the float32 export in bfloat16 on CPUs that compute
bfloat16 natively."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from detector.errors import ModelError
from detector.model_card import ModelCard
from detector.runtime_kinds import AUTO, BFLOAT16, INT8, KERAS, LITERT, LITERT_INT8, OPENVINO_BF16

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

    name = KERAS

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


def quantize_input(batch: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    """Float model input → the integer input tensor: ``round(x / scale) + zero_point``, clipped.

    Args:
        batch: ``(n, s, s, 3)`` float32 normalised crops.
        scale, zero_point: the interpreter's quantization parameters of the input tensor.
        dtype: ``np.int8`` or ``np.uint8``.
    """
    info = np.iinfo(dtype)
    q = np.rint(np.asarray(batch, np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_output(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """An integer output tensor → float32: ``(q - zero_point) * scale``."""
    return ((np.asarray(values, np.float32) - np.float32(zero_point)) * np.float32(scale))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` in float64, returned as float32 (no overflow warnings)."""
    x = np.clip(np.asarray(logits, np.float64), -60.0, 60.0)
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


class LiteRTRuntime:
    """A ``.tflite`` export run by LiteRT (``ai-edge-litert``) or TensorFlow's own interpreter.

    ``precision = "float32"`` runs the card's ``tflite`` (float in, probability out);
    ``"int8"`` runs its ``tflite_int8``: the input is quantized and the output dequantized with
    the interpreter's own quantization parameters, and the output is the logit (an int8 sigmoid
    would round probabilities to steps of 1/256, which the card's temperature then stretches),
    so the sigmoid is applied here in float.
    """

    def __init__(self, card: ModelCard, threads: int = 0, precision: str = "float32"):
        is_int8 = precision == INT8
        path, key = (card.tflite_int8_path, "tflite_int8") if is_int8 else (card.tflite_path, "tflite")
        if path is None or not path.is_file():
            hint = ("run `deepfake-detector quantize` to make one" if is_int8
                    else 'use workers.runtime = "keras" or export one')
            where = "" if path is None else f" ({path} is missing)"
            raise ModelError(f"model {card.name} has no {'int8 ' if is_int8 else ''}.tflite file "
                             f"(card key '{key}'){where}; {hint}")
        self.name = LITERT_INT8 if is_int8 else LITERT
        self.path = path
        self._outputs_logit = is_int8
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            from tensorflow.lite import Interpreter  # type: ignore[no-redef]
        self._interpreter = Interpreter(model_path=str(path), num_threads=threads or None)
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._batch_size = -1

    @property
    def input_dtype(self) -> type:
        """The input tensor's dtype (``np.float32``, or ``np.int8`` for the int8 export)."""
        return self._input["dtype"]

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0,), dtype=np.float32)
        if len(batch) != self._batch_size:
            self._interpreter.resize_tensor_input(self._input["index"], list(batch.shape))
            self._interpreter.allocate_tensors()
            self._batch_size = len(batch)
        dtype = self._input["dtype"]
        if np.issubdtype(dtype, np.integer):
            scale, zero_point = self._input["quantization"]
            tensor = quantize_input(batch, scale, zero_point, dtype)
        else:
            tensor = np.ascontiguousarray(batch, np.float32)
        self._interpreter.set_tensor(self._input["index"], tensor)
        self._interpreter.invoke()
        out = self._interpreter.get_tensor(self._output["index"]).reshape(-1)
        if np.issubdtype(out.dtype, np.integer):
            scale, zero_point = self._output["quantization"]
            out = dequantize_output(out, scale, zero_point)
        out = out.astype(np.float32)
        return sigmoid(out) if self._outputs_logit else out


@functools.cache
def native_bfloat16() -> str | None:
    """Why this machine cannot run :class:`OpenVINORuntime`, or ``None`` when it can (OpenVINO
    is installed and reports native bfloat16 on this CPU: AVX512_BF16 or AMX)."""
    from detector.openvino_cpu import core

    try:
        capabilities = core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except ImportError:
        return "the openvino package is not installed (pip install 'deepfake-detector[openvino]')"
    if "BF16" not in capabilities:
        return "this CPU computes no bfloat16 natively (it needs AVX512_BF16 or AMX)"
    return None


class OpenVINORuntime:
    """The card's float32 ``.tflite`` run by OpenVINO's CPU plugin with bfloat16 inference.

    bfloat16 keeps float32's exponent range with an 8-bit mantissa; on CPUs with AVX512_BF16
    or AMX, OpenVINO computes the convolutions in it at about twice LiteRT float32's speed. The
    graph is cut before its final sigmoid and the sigmoid applied here in float, as for int8: a
    bfloat16 probability has steps of 1/256 near 1, which the card's temperature would
    stretch. One static graph is compiled per batch size (:mod:`detector.openvino_cpu`).

    Raises:
        ModelError: no float32 ``.tflite``, OpenVINO missing, no native bfloat16 on this CPU,
            or a graph whose output is not a sigmoid.
    """

    name = OPENVINO_BF16

    def __init__(self, card: ModelCard, threads: int = 0):
        path = card.tflite_path
        if path is None or not path.is_file():
            where = "" if path is None else f" ({path} is missing)"
            raise ModelError(f"model {card.name} has no .tflite file (card key 'tflite'){where}; "
                             f"runtime {OPENVINO_BF16} runs that file")
        unavailable = native_bfloat16()
        if unavailable:
            raise ModelError(f"runtime {OPENVINO_BF16} cannot run here: {unavailable}; "
                             'use workers.runtime = "litert"')
        import openvino

        from detector.openvino_cpu import core

        graph = core().read_model(str(path))
        results = graph.get_results()
        last = results[0].input_value(0).get_node() if len(results) == 1 else None
        if last is None or last.get_type_name() != "Sigmoid":
            raise ModelError(f"{path} does not end in one sigmoid; runtime {OPENVINO_BF16} "
                             "needs the logit before it")
        self.path = path
        self._logit = openvino.Model([last.input_value(0)], graph.get_parameters(),
                                     f"{card.name}_logit")
        self._size = card.input_size_px
        self._threads = threads
        self._compiled: dict[int, tuple[object, object]] = {}

    def compiled(self, batch_size: int):
        """The ``openvino.CompiledModel`` for this batch size, compiled on first use
        (:func:`detector.openvino_cpu.compile_static`)."""
        return self._compiled_and_request(batch_size)[0]

    def _compiled_and_request(self, batch_size: int):
        from detector.openvino_cpu import compile_static

        found = self._compiled.get(batch_size)
        if found is None:
            compiled = compile_static(self._logit, [batch_size, self._size, self._size, 3],
                                      "bf16", self._threads)
            found = self._compiled[batch_size] = (compiled, compiled.create_infer_request())
        return found

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0,), dtype=np.float32)
        request = self._compiled_and_request(len(batch))[1]
        request.infer({0: np.ascontiguousarray(batch, np.float32)})
        return sigmoid(np.asarray(request.get_output_tensor(0).data).reshape(-1))


def load_runtime(card: ModelCard, kind: str = AUTO, threads: int = 0) -> ModelRuntime:
    """Pick a runtime.

    ``auto`` follows the card: ``litert-int8`` when its ``precision`` is ``"int8"``;
    ``openvino-bf16`` when it is ``"bfloat16"`` and this machine computes bfloat16 natively;
    else ``litert`` when it has a float32 ``.tflite`` file, else ``keras``.

    Raises:
        ModelError: an unknown kind, or the file the kind needs is missing.
    """
    if kind == AUTO:
        unavailable = native_bfloat16() if card.precision == BFLOAT16 else None
        if unavailable:
            log.info("model %s: precision bfloat16, but %s; running float32", card.name,
                     unavailable)
        if card.precision == INT8:
            kind = LITERT_INT8
        elif card.precision == BFLOAT16 and not unavailable:
            kind = OPENVINO_BF16
        elif card.tflite_path is not None and card.tflite_path.is_file():
            kind = LITERT
        else:
            kind = KERAS
    factories: dict[str, Callable[[], ModelRuntime]] = {
        KERAS: lambda: KerasRuntime(card, threads),
        LITERT: lambda: LiteRTRuntime(card, threads),
        LITERT_INT8: lambda: LiteRTRuntime(card, threads, precision=INT8),
        OPENVINO_BF16: lambda: OpenVINORuntime(card, threads),
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


INT8_MAX_BYTES = 25 * 1024 * 1024  # issue 11: the int8 file stays small (B0 is about 5 MB)


def logit_model(model):
    """The classifier with its final sigmoid removed: same input, ``(batch, 1)`` logit out.

    Args:
        model: an :class:`detector.efficientnet.EfficientNetB0Classifier` (functional, with the
            one-unit head named ``fake_probability``).
    """
    import keras

    head = model.get_layer("fake_probability")
    logit = keras.layers.Dense(1, dtype="float32", name="fake_logit")
    outputs = logit(head.input)
    logit.set_weights(head.get_weights())
    return keras.Model(model.inputs, outputs, name=f"{model.name}_logit")


def export_tflite_int8(model, path: Path, representative: Iterable[np.ndarray],
                       float_blocks: Sequence[str] = ()) -> Path:
    """Convert a Keras classifier to a full-integer int8 ``.tflite`` (dynamic batch size).

    Every operator is int8 (``TFLITE_BUILTINS_INT8``); the input is int8 (the runtime quantizes
    with the file's own scale and zero point: ``pixel / 127.5 - 1`` has no exact uint8 form with
    an integer zero point, so uint8 crops cannot go in directly) and the output is the int8
    *logit* (see :class:`LiteRTRuntime`). Activation ranges come from ``representative``.

    With ``float_blocks`` the file is *mixed*, not full-integer: every operator of those Keras
    blocks (matched by layer-name prefix, e.g. ``"stem"``, ``"block1a"``) stays float32 (the
    converter's selective quantization, ``QuantizationDebugOptions.denylisted_nodes``, with
    dequantize/quantize operators at their edges), everything else is int8, and the input and
    the output logit stay int8 as in the full-integer file, so the runtime is the same.
    :func:`float_ops` lists what stayed float.

    Args:
        model: the float classifier.
        path: the ``.tflite`` to write (replaced atomically).
        representative: normalised float32 crops ``(s, s, 3)`` or ``(1, s, s, 3)``, as the
            runtime's input; a few hundred real faces, cut the serving way.
        float_blocks: block name prefixes kept float32; empty = full integer.
    Returns:
        ``path``.
    Raises:
        ModelError: ``representative`` is empty, a float block matches no operator, or the file
            comes out larger than 25 MB.
    """
    import tempfile

    import tensorflow as tf

    samples = [np.asarray(x, np.float32).reshape((1, *np.shape(x)[-3:])) for x in representative]
    if not samples:
        raise ModelError("int8 export needs at least one representative crop, got none")
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="tflite-int8-export-") as folder:
        logit_model(model).export(folder, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([sample] for sample in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        data = (_convert_mixed(converter, float_blocks, model.name) if float_blocks
                else converter.convert())
    if len(data) >= INT8_MAX_BYTES:
        raise ModelError(f"int8 export of {model.name} is {len(data) / 2**20:.1f} MB, expected "
                         f"under {INT8_MAX_BYTES / 2**20:.0f} MB")
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)
    return path


def _node_block(tensor_name: str) -> str:
    """The Keras layer of a converted operator's output tensor:
    ``"model/block2a_expand_conv_1/convolution;..."`` → ``"block2a_expand_conv_1"``."""
    first = tensor_name.split(";")[0].split("/")
    return first[1] if len(first) > 1 else first[0]


def _convert_mixed(converter, float_blocks: Sequence[str], model_name: str) -> bytes:
    """Calibrate once, then quantize every operator but those of ``float_blocks``."""
    import tensorflow as tf

    # The debugger is TensorFlow's public route to selective quantization: it calibrates with
    # the converter's representative set and re-quantizes with a denylist. Its debug dataset
    # is only used by run(), which is not called here.
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=lambda: iter(()))
    names = {d["name"] for d in _interpreter(model_content=debugger.calibrated_model)
             .get_tensor_details()}
    prefixes = tuple(f"{b}_" for b in float_blocks)
    nodes = sorted(n for n in names if _node_block(n).startswith(prefixes))
    missing = [b for b in float_blocks if not any(_node_block(n).startswith(f"{b}_") for n in nodes)]
    if missing:
        raise ModelError(f"int8 export of {model_name}: float block(s) {missing} match no "
                         "operator of the converted model")
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=nodes, fully_quantize=True)
    return debugger.get_nondebug_quantized_model()


def float_ops(path: Path) -> list[tuple[str, str]]:
    """The operators of a ``.tflite`` file that compute in float32 (quantize/dequantize
    boundaries excluded), as ``(op name, Keras layer)`` in graph order."""
    interpreter = _interpreter(model_path=str(path))
    tensors = {d["index"]: d for d in interpreter.get_tensor_details()}
    found = []
    for op in interpreter._get_ops_details():  # no public per-op listing
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        outputs = [tensors[i] for i in op["outputs"] if i in tensors]
        if any(t["dtype"] == np.float32 for t in outputs):
            found.append((op["op_name"], _node_block(outputs[0]["name"])))
    return found


def _interpreter(**source):
    """A LiteRT interpreter (TensorFlow's own where ``ai-edge-litert`` is missing)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from tensorflow.lite import Interpreter  # type: ignore[no-redef]
    return Interpreter(**source)
