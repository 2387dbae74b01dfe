"""Building blocks shared by the recognition backbones: conv units, SE, IR-SE units, CBAM SAM.

All layers are channels-last and registered (``package="tf_rgbd"``) so ``.keras`` files reload
without ``custom_objects``. Composite layers build their children explicitly in ``build()`` so
that loading a saved model recreates every variable before the weights are read.

Batch-norm defaults follow InsightFace (momentum 0.9, epsilon 2e-5).
"""
from __future__ import annotations

from typing import Optional

import keras
from keras import ops

BN_MOMENTUM = 0.9
BN_EPSILON = 2e-5
ACTIVATIONS = ("prelu", "relu", None)


def _activation_layer(activation: Optional[str], name: str) -> Optional[keras.layers.Layer]:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation {activation!r} is not one of {ACTIVATIONS}")
    if activation == "prelu":
        # One slope per channel, shared over the spatial axes (as in InsightFace).
        return keras.layers.PReLU(shared_axes=[1, 2], name=name)
    if activation == "relu":
        return keras.layers.ReLU(name=name)
    return None


@keras.saving.register_keras_serializable(package="tf_rgbd")
class ConvBNAct(keras.layers.Layer):
    """Conv2D (no bias) -> BatchNorm -> optional PReLU/ReLU.

    Input float32 [B, H, W, C]; output [B, H / strides, W / strides, filters] ("same" padding).
    """

    def __init__(self, filters: int, kernel_size: int = 3, strides: int = 1,
                 activation: Optional[str] = "prelu", bn_momentum: float = BN_MOMENTUM,
                 bn_epsilon: float = BN_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.activation = activation
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        self.conv = keras.layers.Conv2D(self.filters, self.kernel_size, strides=self.strides,
                                        padding="same", use_bias=False, name="conv")
        self.norm = keras.layers.BatchNormalization(momentum=self.bn_momentum,
                                                    epsilon=self.bn_epsilon, name="bn")
        self.act = _activation_layer(activation, "act")

    def build(self, input_shape):
        self.conv.build(input_shape)
        output_shape = self.conv.compute_output_shape(input_shape)
        self.norm.build(output_shape)
        if self.act is not None:
            self.act.build(output_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def call(self, inputs, training=None):
        outputs = self.norm(self.conv(inputs), training=training)
        return outputs if self.act is None else self.act(outputs)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "activation": self.activation,
                "bn_momentum": self.bn_momentum, "bn_epsilon": self.bn_epsilon}


@keras.saving.register_keras_serializable(package="tf_rgbd")
class SqueezeExcitation(keras.layers.Layer):
    """Squeeze-and-excitation channel gate (Hu et al.): GAP -> FC C/r -> ReLU -> FC C -> sigmoid.

    The FC layers are 1x1 convolutions without bias (InsightFace's SEModule). The bottleneck
    has ``max(1, C // reduction)`` channels so tiny test widths still work.
    Input/output float32 [B, H, W, C].
    """

    def __init__(self, reduction: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.reduction = int(reduction)
        self.squeeze = None
        self.excite = None

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.squeeze = keras.layers.Conv2D(max(1, channels // self.reduction), 1, use_bias=False,
                                           activation="relu", name="squeeze")
        self.excite = keras.layers.Conv2D(channels, 1, use_bias=False, activation="sigmoid",
                                          name="excite")
        pooled_shape = (input_shape[0], 1, 1, channels)
        self.squeeze.build(pooled_shape)
        self.excite.build(self.squeeze.compute_output_shape(pooled_shape))
        self.built = True

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, inputs):
        gate = self.excite(self.squeeze(ops.mean(inputs, axis=(1, 2), keepdims=True)))
        return inputs * gate

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction}


@keras.saving.register_keras_serializable(package="tf_rgbd")
class IRSEUnit(keras.layers.Layer):
    """Improved-residual unit with SE (InsightFace ``bottleneck_IR_SE``).

    residual: BN -> 3x3 conv (stride 1) -> BN -> PReLU -> 3x3 conv (``strides``) -> BN -> SE
    shortcut: identity (subsampled when ``strides`` > 1) if the width is unchanged, otherwise
    1x1 conv (``strides``) -> BN.  Output = residual + shortcut.

    Input float32 [B, H, W, C]; output [B, H / strides, W / strides, filters].
    """

    def __init__(self, filters: int, strides: int = 1, se_reduction: int = 16,
                 bn_momentum: float = BN_MOMENTUM, bn_epsilon: float = BN_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.strides = int(strides)
        self.se_reduction = int(se_reduction)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        bn = bn_kwargs(self.bn_momentum, self.bn_epsilon)
        self.pre_norm = keras.layers.BatchNormalization(
            momentum=self.bn_momentum, epsilon=self.bn_epsilon, name="bn_in")
        self.conv1 = ConvBNAct(self.filters, 3, 1, activation="prelu", name="conv1", **bn)
        self.conv2 = ConvBNAct(self.filters, 3, self.strides, activation=None, name="conv2", **bn)
        self.se = SqueezeExcitation(self.se_reduction, name="se")
        self.projection = None

    def build(self, input_shape):
        in_channels = int(input_shape[-1])
        self.pre_norm.build(input_shape)
        self.conv1.build(input_shape)
        hidden_shape = self.conv1.compute_output_shape(input_shape)
        self.conv2.build(hidden_shape)
        output_shape = self.conv2.compute_output_shape(hidden_shape)
        self.se.build(output_shape)
        if in_channels != self.filters:
            self.projection = ConvBNAct(self.filters, 1, self.strides, activation=None,
                                        name="projection",
                                        **bn_kwargs(self.bn_momentum, self.bn_epsilon))
            self.projection.build(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        return self.conv2.compute_output_shape(tuple(input_shape[:-1]) + (self.filters,))

    def call(self, inputs, training=None):
        residual = self.pre_norm(inputs, training=training)
        residual = self.conv1(residual, training=training)
        residual = self.se(self.conv2(residual, training=training))
        if self.projection is not None:
            shortcut = self.projection(inputs, training=training)
        elif self.strides > 1:
            shortcut = inputs[:, ::self.strides, ::self.strides, :]  # = MaxPool(kernel 1, stride s)
        else:
            shortcut = inputs
        return residual + shortcut

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides,
                "se_reduction": self.se_reduction, "bn_momentum": self.bn_momentum,
                "bn_epsilon": self.bn_epsilon}


def bn_kwargs(momentum: float, epsilon: float) -> dict:
    """Constructor kwargs that pass batch-norm settings down to :class:`ConvBNAct`."""
    return {"bn_momentum": momentum, "bn_epsilon": epsilon}


SAM_NORMALIZATIONS = ("none", "batch")


@keras.saving.register_keras_serializable(package="tf_rgbd")
class SpatialAttention(keras.layers.Layer):
    """CBAM spatial attention module (Woo et al. 2018).

    Channel-wise mean and max -> concat [B, H, W, 2] -> k x k conv -> [BN] -> sigmoid.
    Input float32 [B, H, W, C] (any C: the conv only sees the 2 pooled channels, so one module
    serves feature maps of different widths). Output: attention map float32 [B, H, W, 1] in (0, 1).

    Args:
      kernel_size: k (7 in CBAM).
      normalization: ``"none"`` (the formula as printed, sigma(conv + bias)) or ``"batch"``
        (the CBAM reference code's SpatialGate: conv without bias -> BatchNorm -> sigmoid). The
        un-normalised logit is an unbounded linear function of the pooled maps; with SGD at a
        face-recognition learning rate it is pushed into saturation (A = 1 everywhere, zero
        gradient) within a few steps. BN keeps the logit at zero mean / unit variance over the
        batch, so the map stays a spatial contrast around sigmoid(beta).
      num_inputs: how many different feature maps share the conv (e.g. 2 stages). With
        ``normalization="batch"`` each gets its own BN (statistics of stage-1 and stage-3 maps
        differ, and one BN's moving averages would mix them); call with ``input_index``.
    """

    def __init__(self, kernel_size: int = 7, normalization: str = "none", num_inputs: int = 1,
                 bn_momentum: float = BN_MOMENTUM, bn_epsilon: float = BN_EPSILON, **kwargs):
        super().__init__(**kwargs)
        if normalization not in SAM_NORMALIZATIONS:
            raise ValueError(f"{self.name}: normalization {normalization!r} is not one of "
                             f"{SAM_NORMALIZATIONS}")
        if num_inputs < 1:
            raise ValueError(f"{self.name}: num_inputs must be >= 1, got {num_inputs}")
        self.kernel_size = int(kernel_size)
        self.normalization = normalization
        self.num_inputs = int(num_inputs)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        normalized = normalization == "batch"
        self.conv = keras.layers.Conv2D(1, self.kernel_size, padding="same",
                                        use_bias=not normalized,
                                        activation=None if normalized else "sigmoid",
                                        name="conv")
        self.norms = [keras.layers.BatchNormalization(momentum=self.bn_momentum,
                                                      epsilon=self.bn_epsilon, name=f"bn{index}")
                      for index in range(self.num_inputs)] if normalized else []

    def build(self, input_shape):
        pooled_shape = tuple(input_shape[:-1]) + (2,)
        self.conv.build(pooled_shape)
        for norm in self.norms:
            norm.build(tuple(input_shape[:-1]) + (1,))
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (1,)

    def call(self, inputs, training=None, input_index: int = 0):
        if not 0 <= input_index < self.num_inputs:
            raise ValueError(f"{self.name}: input_index {input_index} out of range "
                             f"(num_inputs={self.num_inputs})")
        pooled = ops.concatenate([ops.mean(inputs, axis=-1, keepdims=True),
                                  ops.max(inputs, axis=-1, keepdims=True)], axis=-1)
        if not self.norms:
            return self.conv(pooled)
        return ops.sigmoid(self.norms[input_index](self.conv(pooled), training=training))

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size,
                "normalization": self.normalization, "num_inputs": self.num_inputs,
                "bn_momentum": self.bn_momentum, "bn_epsilon": self.bn_epsilon}
