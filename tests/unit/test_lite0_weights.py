"""Lite0 ``.pth`` reader (no torch) and its mapping onto B0."""

from __future__ import annotations

import pickle
import struct
from collections import OrderedDict

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from detector.efficientnet import EfficientNetB0Classifier  # noqa: E402
from detector.errors import ModelError  # noqa: E402
from detector.training.lite0_weights import (  # noqa: E402
    default_lite0_path,
    lite0_to_b0_layer_map,
    load_lite0_into_b0,
    read_legacy_state_dict,
)


def _fake_torch(monkeypatch):
    """Stand-ins for ``torch.FloatStorage`` and ``torch._utils._rebuild_tensor_v2`` so that a
    legacy checkpoint can be pickled here by reference (torch itself is not installed)."""
    import sys
    import types

    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    float_storage = type("FloatStorage", (), {"__module__": "torch"})

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called when writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch.FloatStorage = float_storage
    torch._utils = utils
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return float_storage, _rebuild_tensor_v2


def write_legacy_checkpoint(path, tensors: dict[str, np.ndarray], float_storage, rebuild) -> None:
    """PyTorch's legacy layout: magic, protocol, sys info, state dict, storage keys, raw storages."""

    class Storage:
        def __init__(self, key, array):
            self.key, self.array = key, np.ascontiguousarray(array, np.float32)

    class Tensor:
        def __init__(self, storage):
            self.storage = storage

    storages = {name: Storage(str(i), a) for i, (name, a) in enumerate(tensors.items())}

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return ("storage", float_storage, obj.key, "cpu", obj.array.size, None)
            return None

        def reducer_override(self, obj):
            if isinstance(obj, Tensor):
                array = obj.storage.array
                strides = tuple(s // array.itemsize for s in array.strides)
                return rebuild, (obj.storage, 0, array.shape, strides, False, OrderedDict())
            return NotImplemented

    state = OrderedDict((name, Tensor(storages[name])) for name in tensors)
    with open(path, "wb") as file:
        pickle.dump(0x1950A86A20F9469CFC6C, file, protocol=2)
        pickle.dump(1001, file, protocol=2)
        pickle.dump({"little_endian": True}, file, protocol=2)
        Pickler(file, protocol=2).dump(state)
        pickle.dump([s.key for s in storages.values()], file, protocol=2)
        for storage in storages.values():
            file.write(struct.pack("<q", storage.array.size))
            file.write(storage.array.tobytes())


def test_reads_a_hand_written_legacy_file(tmp_path, monkeypatch):
    float_storage, rebuild = _fake_torch(monkeypatch)
    tensors = {"a.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
               "a.bias": np.array([1.5, -2.0], np.float32)}
    path = tmp_path / "tiny.pth"
    write_legacy_checkpoint(path, tensors, float_storage, rebuild)
    monkeypatch.delitem(__import__("sys").modules, "torch")  # the reader must not need it
    state = read_legacy_state_dict(path)
    assert set(state) == set(tensors)
    for name, array in tensors.items():
        np.testing.assert_array_equal(state[name], array)


@pytest.mark.parametrize("content", [b"", b"not a pickle at all", pickle.dumps(123)])
def test_rejects_files_that_are_not_legacy_checkpoints(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(ModelError):
        read_legacy_state_dict(path)


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        read_legacy_state_dict(tmp_path / "nope.pth")


def test_mapping_covers_every_conv_and_bn_of_b0():
    model = EfficientNetB0Classifier(32)
    mapping = lite0_to_b0_layer_map()
    weighted = {layer.name for layer in model.layers if layer.weights}
    fresh = weighted - set(mapping)
    assert set(mapping) <= weighted
    assert all("_se_" in name or name == "fake_probability" for name in fresh)
    assert len(mapping) == 98


def test_synthetic_state_loads_every_expected_tensor():
    model = EfficientNetB0Classifier(32, activation="relu6")
    state = {}
    for layer_name, (prefix, kind) in lite0_to_b0_layer_map().items():
        shapes = [w.shape for w in model.get_layer(layer_name).get_weights()]
        if kind == "conv":
            kh, kw, cin, cout = shapes[0]
            state[f"{prefix}.weight"] = np.full((cout, cin, kh, kw), 0.01, np.float32)
        elif kind == "dwconv":
            kh, kw, c, _ = shapes[0]
            state[f"{prefix}.weight"] = np.full((c, 1, kh, kw), 0.02, np.float32)
        else:
            for p in ("weight", "bias", "running_mean", "running_var"):
                state[f"{prefix}.{p}"] = np.full(shapes[0], 0.5, np.float32)
    state["_fc.weight"] = np.zeros((1000, 1280), np.float32)
    report = load_lite0_into_b0(model, state)
    assert len(report.loaded_layers) == 98
    assert report.skipped_tensors == ("_fc.weight",)
    assert np.allclose(model.get_layer("top_bn").get_weights()[3], 0.5)


def test_missing_tensor_is_a_model_error():
    model = EfficientNetB0Classifier(32)
    with pytest.raises(ModelError, match="lack tensor _bn0.weight"):
        load_lite0_into_b0(model, {"_conv_stem.weight": np.zeros((32, 3, 3, 3), np.float32)})


def test_shape_mismatch_is_a_model_error():
    model = EfficientNetB0Classifier(32)
    with pytest.raises(ModelError, match="stem_conv: expected shapes"):
        load_lite0_into_b0(model, {"_conv_stem.weight": np.zeros((16, 3, 3, 3), np.float32)})


def test_packaged_lite0_weights_load_every_tensor():
    try:
        path = default_lite0_path()
    except ModelError as exc:
        pytest.skip(str(exc))
    state = read_legacy_state_dict(path)
    model = EfficientNetB0Classifier(32, activation="relu6")
    report = load_lite0_into_b0(model, state)
    assert len(report.loaded_layers) == 98
    assert len(report.used_tensors) == 245
    assert set(report.skipped_tensors) == {k for k in state if k.endswith("num_batches_tracked")} | {
        "_fc.weight", "_fc.bias"}
    np.testing.assert_array_equal(model.get_layer("stem_conv").get_weights()[0],
                                  state["_conv_stem.weight"].transpose(2, 3, 1, 0))
