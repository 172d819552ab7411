"""EfficientNet-B0 binary classifier (fake probability) written against Keras 3 layers only.

The graph follows Tan & Le (2019), B0: a 3x3 stem, sixteen MBConv blocks in seven stages, a
1x1 head to 1280 channels, global average pooling, dropout and one sigmoid unit. Padding is
explicit and symmetric (``k // 2``) so that weights trained with PyTorch-style convolutions
(EfficientNet-Lite0) map onto it one to one. The model takes images already normalised as the
model card says (see ``detector.model_card``); it holds no preprocessing layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
from keras import layers

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99


@dataclass(frozen=True)
class StageSpec:
    """One stage of the B0 block table."""

    expand_ratio: int
    kernel_size: int
    strides: int
    filters_in: int
    filters_out: int
    repeats: int


# The EfficientNet-B0 block table (width and depth multipliers 1.0).
B0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 32, 16, 1),
    StageSpec(6, 3, 2, 16, 24, 2),
    StageSpec(6, 5, 2, 24, 40, 2),
    StageSpec(6, 3, 2, 40, 80, 3),
    StageSpec(6, 5, 1, 80, 112, 3),
    StageSpec(6, 5, 2, 112, 192, 4),
    StageSpec(6, 3, 1, 192, 320, 1),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280
SE_RATIO = 0.25


def block_names() -> list[str]:
    """Names of the sixteen MBConv blocks in graph order: ``block1a``, ``block2a``, ``block2b``…"""
    names = []
    for stage_index, stage in enumerate(B0_STAGES, start=1):
        for repeat in range(stage.repeats):
            names.append(f"block{stage_index}{chr(ord('a') + repeat)}")
    return names


def _conv(x, filters: int, kernel_size: int, strides: int, name: str):
    if kernel_size > 1:
        x = layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
    return layers.Conv2D(
        filters, kernel_size, strides=strides, padding="valid", use_bias=False, name=name
    )(x)


def _batch_norm(x, name: str):
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)(x)


def _mbconv(
    x,
    *,
    name: str,
    filters_in: int,
    filters_out: int,
    expand_ratio: int,
    kernel_size: int,
    strides: int,
    activation: str,
    use_se: bool,
    drop_rate: float,
):
    inputs = x
    filters = filters_in * expand_ratio

    # Expansion.
    if expand_ratio != 1:
        x = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_expand_conv")(x)
        x = _batch_norm(x, f"{name}_expand_bn")
        x = layers.Activation(activation, name=f"{name}_expand_activation")(x)

    # Depthwise convolution.
    x = layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_dwconv_pad")(x)
    x = layers.DepthwiseConv2D(
        kernel_size, strides=strides, padding="valid", use_bias=False, name=f"{name}_dwconv"
    )(x)
    x = _batch_norm(x, f"{name}_bn")
    x = layers.Activation(activation, name=f"{name}_activation")(x)

    # Squeeze and excitation.
    if use_se:
        filters_se = max(1, int(filters_in * SE_RATIO))
        se = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_squeeze")(x)
        se = layers.Conv2D(filters_se, 1, activation=activation, name=f"{name}_se_reduce")(se)
        se = layers.Conv2D(filters, 1, activation="sigmoid", name=f"{name}_se_expand")(se)
        x = layers.Multiply(name=f"{name}_se_excite")([x, se])

    # Projection.
    x = layers.Conv2D(filters_out, 1, use_bias=False, name=f"{name}_project_conv")(x)
    x = _batch_norm(x, f"{name}_project_bn")

    # Residual with stochastic depth.
    if strides == 1 and filters_in == filters_out:
        if drop_rate > 0:
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
        x = layers.Add(name=f"{name}_add")([x, inputs])
    return x


@keras.saving.register_keras_serializable(package="deepfake_detector")
class EfficientNetB0Classifier(keras.Model):
    """EfficientNet-B0 with a one-unit sigmoid head: input ``(batch, s, s, 3)`` normalised
    float32, output ``(batch, 1)`` fake probability.

    Args:
        input_size_px: side of the square input, e.g. 224 (any multiple of 32 works; tests use 64).
        activation: ``"swish"`` as in B0, or ``"relu6"`` as in EfficientNet-Lite.
        use_se: keep the squeeze-and-excitation layers (B0) or drop them (Lite).
        dropout_rate: dropout before the classifier.
        drop_connect_rate: the largest stochastic-depth rate, reached by the last block.
    """

    def __init__(
        self,
        input_size_px: int = 224,
        activation: str = "swish",
        use_se: bool = True,
        dropout_rate: float = 0.2,
        drop_connect_rate: float = 0.2,
        **kwargs,
    ):
        # === Inputs ===
        inputs = keras.Input(shape=(input_size_px, input_size_px, 3), name="image")

        # === Stem ===
        x = _conv(inputs, STEM_FILTERS, 3, 2, name="stem_conv")
        x = _batch_norm(x, "stem_bn")
        x = layers.Activation(activation, name="stem_activation")(x)

        # === MBConv blocks ===
        total_blocks = sum(stage.repeats for stage in B0_STAGES)
        block_index = 0
        for stage_index, stage in enumerate(B0_STAGES, start=1):
            for repeat in range(stage.repeats):
                x = _mbconv(
                    x,
                    name=f"block{stage_index}{chr(ord('a') + repeat)}",
                    filters_in=stage.filters_in if repeat == 0 else stage.filters_out,
                    filters_out=stage.filters_out,
                    expand_ratio=stage.expand_ratio,
                    kernel_size=stage.kernel_size,
                    strides=stage.strides if repeat == 0 else 1,
                    activation=activation,
                    use_se=use_se,
                    drop_rate=drop_connect_rate * block_index / total_blocks,
                )
                block_index += 1

        # === Head ===
        x = layers.Conv2D(HEAD_FILTERS, 1, use_bias=False, name="top_conv")(x)
        x = _batch_norm(x, "top_bn")
        x = layers.Activation(activation, name="top_activation")(x)
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout_rate > 0:
            x = layers.Dropout(dropout_rate, name="top_dropout")(x)
        outputs = layers.Dense(1, activation="sigmoid", dtype="float32", name="fake_probability")(x)

        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.input_size_px = input_size_px
        self.activation = activation
        self.use_se = use_se
        self.dropout_rate = dropout_rate
        self.drop_connect_rate = drop_connect_rate

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "input_size_px": self.input_size_px,
            "activation": self.activation,
            "use_se": self.use_se,
            "dropout_rate": self.dropout_rate,
            "drop_connect_rate": self.drop_connect_rate,
        }

    @classmethod
    def from_config(cls, config: dict) -> EfficientNetB0Classifier:
        return cls(**config)


def count_blocks() -> int:
    """Number of MBConv blocks in B0 (16)."""
    return sum(stage.repeats for stage in B0_STAGES)


def output_stride() -> int:
    """Total downsampling of the feature map (32): the input side should be a multiple of it."""
    return int(2 * math.prod(stage.strides for stage in B0_STAGES))
