"""The int8 decision: parity numbers from both runtimes' scores, and when int8 may be the default."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from detector.training.quantize import SetParity, choose_precision, frame_differences, parity_summary


def _set(name: str, f32: float | None, i8: float | None, diffs=(0.01, 0.02, 0.03)) -> SetParity:
    return SetParity(name, f32, i8, 10, np.asarray(diffs, np.float64))


@pytest.mark.parametrize("sets,precision,reason", [
    ([_set("dev", 0.63, 0.625), _set("holdout", 0.93, 0.935)], "int8", "within tolerance"),
    ([_set("dev", 0.63, 0.64), _set("holdout", 0.93, 0.92)], "int8", "within tolerance"),
    ([_set("dev", 0.63, 0.615), _set("holdout", 0.93, 0.93)], "float32", "dev AUC differs by -0.0150"),
    ([_set("dev", 0.63, 0.63), _set("holdout", 0.93, 0.95)], "float32", "holdout AUC differs by +0.0200"),
    ([_set("dev", 0.63, 0.63)], "float32", "no holdout set given"),
    ([_set("dev", None, None), _set("holdout", 0.9, 0.9)], "float32", "dev AUC not measured"),
    ([], "float32", "no dev set given"),
])
def test_int8_is_chosen_only_when_both_aucs_are_within_a_hundredth(sets, precision, reason):
    summary = parity_summary(sets)
    assert summary["precision"] == precision
    assert reason in summary["parity"]["decision"]


def test_a_bfloat16_table_names_its_keys_and_decision_after_bfloat16():
    summary = parity_summary([_set("dev", 0.63, 0.632), _set("holdout", 0.93, 0.93)],
                             candidate="bfloat16")
    assert summary["precision"] == "bfloat16"
    assert summary["parity"]["dev_item_auc_bfloat16"] == 0.632
    assert "dev_item_auc_int8" not in summary["parity"]
    assert summary["parity"]["decision"].startswith("bfloat16: every item AUC within")


@pytest.mark.parametrize("decisions,expected", [
    (("int8", "bfloat16"), "int8"), (("float32", "bfloat16"), "bfloat16"),
    (("float32", "float32"), "float32"), (("float32", ""), "float32"), (("int8", ""), "int8"),
])
def test_the_fastest_precision_whose_parity_held_is_chosen(decisions, expected):
    assert choose_precision(*decisions) == expected


def test_the_frame_differences_are_summarised_over_every_set():
    summary = parity_summary([_set("dev", 0.6, 0.6, [0.0, 0.1]), _set("holdout", 0.9, 0.9, [0.2])])
    parity = summary["parity"]
    assert parity["frames"] == 3
    assert parity["frame_abs_diff_median"] == pytest.approx(0.1)
    assert parity["frame_abs_diff_max"] == pytest.approx(0.2)
    assert parity["frame_abs_diff_p99"] == pytest.approx(0.198)
    assert parity["dev_item_auc_float32"] == 0.6 and parity["holdout_items"] == 10


def _item(path: str, scores):
    return SimpleNamespace(path=path, frame_scores=scores)


def test_frame_differences_pair_frames_both_runs_scored():
    float_items = [_item("a", [0.1, None, 0.5]), _item("b", [0.9])]
    int8_items = [_item("a", [0.15, 0.3, None]), _item("b", [0.8])]
    np.testing.assert_allclose(frame_differences(float_items, int8_items), [0.05, 0.1])
    with pytest.raises(ValueError, match="same items in the same order"):
        frame_differences([_item("a", [])], [_item("b", [])])
    with pytest.raises(ValueError):
        frame_differences([_item("a", [])], [])
