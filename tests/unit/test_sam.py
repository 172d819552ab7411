"""The SAM step against the same step worked out by hand on a model small enough to check."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from detector.training.sam import use_sam
from detector.training.settings import TrainSettings


def _linear_model(with_batch_norm: bool = False) -> keras.Model:
    inputs = keras.Input(shape=(3,))
    x = keras.layers.BatchNormalization(name="bn")(inputs) if with_batch_norm else inputs
    outputs = keras.layers.Dense(1, name="dense")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("dense").set_weights([np.array([[0.5], [-0.25], [1.0]], np.float32),
                                          np.array([0.1], np.float32)])
    return model


def _mse_gradient(kernel: np.ndarray, bias: float, x: np.ndarray, y: np.ndarray):
    residual = x @ kernel + bias - y  # (n, 1)
    return 2.0 * x.T @ residual / len(x), float(2.0 * residual.mean())


def test_sam_step_is_sgd_on_the_gradient_at_the_perturbed_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype(np.float32)
    y = rng.normal(size=(8, 1)).astype(np.float32)
    rho, lr = 0.2, 0.1
    model = _linear_model()
    kernel, bias = (w.copy() for w in model.get_layer("dense").get_weights())
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse")
    use_sam(model, rho)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)

    g_kernel, g_bias = _mse_gradient(kernel, float(bias[0]), x, y)
    norm = np.sqrt((g_kernel ** 2).sum() + g_bias ** 2)
    k_up, b_up = kernel + rho * g_kernel / norm, float(bias[0]) + rho * g_bias / norm
    s_kernel, s_bias = _mse_gradient(k_up, b_up, x, y)
    new_kernel, new_bias = model.get_layer("dense").get_weights()
    np.testing.assert_allclose(new_kernel, kernel - lr * s_kernel, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(new_bias, bias - lr * s_bias, rtol=1e-4, atol=1e-6)
    # and it is not the plain step
    assert not np.allclose(new_kernel, kernel - lr * g_kernel, rtol=1e-4, atol=1e-6)


def test_loss_and_batch_norm_statistics_come_from_the_first_pass():
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(16, 3)) * 3 + 2).astype(np.float32)
    y = rng.normal(size=(16, 1)).astype(np.float32)
    plain, sam = _linear_model(True), _linear_model(True)
    for model in (plain, sam):
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    use_sam(sam, 0.5)
    plain_history = plain.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    sam_history = sam.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    # the reported loss is the one at the unperturbed weights, as a plain step reports it
    assert sam_history.history["loss"][0] == pytest.approx(plain_history.history["loss"][0], rel=1e-5)
    # batch norm's moving statistics moved once, by the first pass (the input does not depend
    # on any weight, so the plain model's statistics are the same)
    for a, b in zip(plain.get_layer("bn").non_trainable_weights, sam.get_layer("bn").non_trainable_weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    assert not np.allclose(np.asarray(sam.get_layer("bn").moving_mean), 0.0)


def test_radius_is_checked():
    with pytest.raises(ValueError, match="sam_rho"):
        TrainSettings(sam_rho=-0.1)
    model = _linear_model()
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="rho > 0"):
        use_sam(model, 0.0)
