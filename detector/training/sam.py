"""Sharpness-aware minimisation (Foret et al., ICLR 2021): the optimiser of the published SBI recipe.

The self-blended-images paper trains with SAM around SGD; this project keeps AdamW as the base
optimiser and adds the SAM step around it. One step on a batch:

1. the gradient ``g`` at the weights ``w`` (this pass's loss, predictions and batch-norm
   statistics are the ones recorded);
2. the weights moved uphill to ``w + rho * g / ||g||`` (``||·||`` over all trainable weights);
3. the gradient ``g'`` there; the batch-norm statistics of this second pass are undone;
4. the weights back to ``w``, and the base optimiser applies ``g'``.

So a step seeks weights whose whole neighbourhood has a low loss, at the price of two forward and
backward passes per batch (about twice a plain step). The step needs the backend's gradients, so
this module works on the TensorFlow backend, which is what training runs on here.
"""

from __future__ import annotations

import keras


def check_backend() -> None:
    """Raise ``ValueError`` unless Keras runs on TensorFlow (the only backend written here)."""
    if keras.backend.backend() != "tensorflow":
        raise ValueError("--sam-rho needs the TensorFlow Keras backend, "
                         f"but KERAS_BACKEND is {keras.backend.backend()!r}")


def use_sam(model: keras.Model, rho: float) -> None:
    """Make ``model.fit`` take SAM steps of radius ``rho`` (call after ``compile``)."""
    check_backend()
    if rho <= 0:
        raise ValueError(f"expected a SAM radius rho > 0, got {rho}")
    model.train_step = lambda data: sam_train_step(model, data, rho)
    model.train_function = None  # built anew from the step above on the next fit


def _loss(model: keras.Model, x, y, sample_weight):
    y_pred = model(x, training=True)
    return y_pred, model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                       training=True)


def sam_train_step(model: keras.Model, data, rho: float) -> dict:
    """One SAM step on ``data`` (Keras' ``train_step`` contract: returns the metrics)."""
    import tensorflow as tf

    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    weights = model.trainable_weights
    with tf.GradientTape() as tape:
        y_pred, loss = _loss(model, x, y, sample_weight)
    model._loss_tracker.update_state(loss, sample_weight=tf.shape(x)[0])
    gradients = tape.gradient(loss, weights)
    scale = rho / (tf.linalg.global_norm(gradients) + 1e-12)
    ascent = [g * scale for g in gradients]
    statistics = [tf.identity(v.value) for v in model.non_trainable_weights]
    for weight, step in zip(weights, ascent):
        weight.assign_add(step)
    with tf.GradientTape() as tape:
        _, sharp_loss = _loss(model, x, y, sample_weight)
    sharp_gradients = tape.gradient(sharp_loss, weights)
    for weight, step in zip(weights, ascent):
        weight.assign_sub(step)
    for variable, value in zip(model.non_trainable_weights, statistics):
        variable.assign(value)
    model.optimizer.apply_gradients(zip(sharp_gradients, weights))
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
