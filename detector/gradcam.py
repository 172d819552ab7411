"""Grad-CAM (Selvaraju et al., 2017) over a face crop: which regions drove the fake score."""

from __future__ import annotations

import cv2
import numpy as np

from detector.model_card import ModelCard

TARGET_LAYER = "top_activation"   # the last convolutional activation of EfficientNet-B0


def gradcam_map(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Combine a conv layer's activations and the score's gradients into a heat map.

    Args:
        activations: ``(h, w, c)`` feature map of the target layer.
        gradients: ``(h, w, c)`` d(fake probability)/d(activations), same shape.
    Returns:
        ``(h, w)`` float32 in [0, 1]; all zeros when no region raises the score.
    Raises:
        ValueError: the shapes differ or are not 3-D.
    """
    if activations.ndim != 3 or activations.shape != gradients.shape:
        raise ValueError(f"expected two (h, w, c) arrays of one shape, got "
                         f"{activations.shape} and {gradients.shape}")
    weights = gradients.mean(axis=(0, 1))                       # (c,) channel importance
    cam = np.maximum((activations * weights).sum(axis=-1), 0.0)  # only what pushes towards FAKE
    peak = float(cam.max())
    if peak <= 0.0 or not np.isfinite(peak):
        return np.zeros(cam.shape, dtype=np.float32)
    return (cam / peak).astype(np.float32)


def overlay_heatmap(crop_rgb: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a heat map (jet colours, red = drove the score) over a crop.

    Args:
        crop_rgb: ``(s, s, 3)`` uint8 RGB.
        cam: ``(h, w)`` float in [0, 1], any size; resized to the crop.
        alpha: weight of the heat map.
    Returns:
        ``(s, s, 3)`` uint8 RGB; the inputs are not modified.
    """
    height, width = crop_rgb.shape[:2]
    resized = cv2.resize(np.clip(cam, 0.0, 1.0).astype(np.float32), (width, height),
                         interpolation=cv2.INTER_CUBIC)
    heat_bgr = cv2.applyColorMap(np.uint8(np.clip(resized, 0.0, 1.0) * 255), cv2.COLORMAP_JET)
    heat_rgb = cv2.cvtColor(heat_bgr, cv2.COLOR_BGR2RGB)
    blended = (1.0 - alpha) * crop_rgb.astype(np.float32) + alpha * heat_rgb.astype(np.float32)
    return np.clip(blended, 0, 255).astype(np.uint8)


class GradCam:
    """Grad-CAM for the card's Keras model (built from the same weights as the workers').

    Args:
        card: the model card (input size, normalisation, weights).
        layer_name: the convolutional layer to explain.
    """

    def __init__(self, card: ModelCard, layer_name: str = TARGET_LAYER):
        import keras

        from detector.runtime import build_model

        self.card = card
        model = build_model(card)
        self._model = keras.Model(model.inputs, [model.get_layer(layer_name).output, model.output])

    def explain(self, crop_rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """Heat map of one face crop.

        Args:
            crop_rgb: ``(s, s, 3)`` uint8 RGB, ``s == card.input_size_px``.
        Returns:
            ``(h, w)`` float32 heat map in [0, 1] (h = w = s / 32) and the fake probability.
        """
        import tensorflow as tf

        batch = tf.convert_to_tensor(self.card.normalise(crop_rgb[None]))
        with tf.GradientTape() as tape:
            activations, probability = self._model(batch, training=False)
            target = probability[:, 0]
        gradients = tape.gradient(target, activations)
        cam = gradcam_map(np.asarray(activations[0]), np.asarray(gradients[0]))
        return cam, float(np.asarray(target)[0])
