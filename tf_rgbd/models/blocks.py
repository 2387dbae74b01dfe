"""Building blocks shared by every model: the conv-norm-act unit, the UNet level arithmetic of the
depth GANs, SE, IR-SE units and the CBAM spatial attention module.

All layers are channels-last and registered (``package="tf_rgbd"``) so ``.keras`` files reload
without ``custom_objects``. Composite layers build their children explicitly in ``build()`` so
that loading a saved model recreates every variable before the weights are read.

Batch-norm defaults follow InsightFace (momentum 0.9, epsilon 2e-5).
"""
from __future__ import annotations

from typing import Optional

import keras
from keras import ops

from tf_rgbd.config.depthnet import NORM_KINDS
from tf_rgbd.config.recognizer import SAM_NORMALIZATIONS

BN_MOMENTUM = 0.9
BN_EPSILON = 2e-5
# Synchronised batch norm with Keras' defaults: the depth GANs' "batch" normalisation.
GAN_BN_MOMENTUM = 0.99
GAN_BN_EPSILON = 1e-3
ACTIVATIONS = ("prelu", "relu", "leaky_relu", "none")
LEAKY_RELU_SLOPE = 0.2


@keras.saving.register_keras_serializable(package="tf_rgbd")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` whose TRAINING pass on a 4-D channels-last tensor is
    TensorFlow's fused kernel (``FusedBatchNormV3``: one op forward, one op backward).

    Keras 3's layer normalises with separate ops (moments, rsqrt, multiply, add; under a mixed
    policy also a float32 round trip of the activations), about ten memory-bound passes per
    layer forward and more backward; the IR-SE backbones have three BNs per unit. The fused
    kernel takes the bfloat16/float16 activations directly with float32 statistics. Same
    variables, same maths (moving statistics use the biased batch variance, as Keras does);
    inference, other ranks, masks, renorm and synchronised BN use Keras' own path unchanged
    (so exported inference graphs are exactly what they were).

    Measured (``tests/training/test_rgbd_trainer.py``): the whole recognizer's loss, gradients
    and moving statistics equal Keras' path to 2e-5 of each gradient's scale; the kernel's own
    rounding is 1.7-3x Keras' two-pass moments (normalised outputs of inputs with mean/std
    10..1000). IR-SE-50 train step at 112 px, batch 32, this 2-core CPU: bfloat16 7.30 -> 5.09
    s, float32 8.52 -> 7.54 s. Under XLA (``jit_compile``) the trainers switch it off
    (:func:`set_fused_batch_norm_training`): XLA fuses Keras' ops itself, and tf2xla's lowering
    of the fused kernel's gradient gave NaN in the recognizer's mask encoder.
    """

    # Instances train through the fused kernel unless set otherwise (an execution choice, not
    # part of the model: not serialised). See set_fused_batch_norm_training.
    fused_training = True

    def _fusable(self, inputs, training, mask) -> bool:
        return (self.fused_training and bool(training) and self.trainable and mask is None
                and not self.renorm
                and not getattr(self, "synchronized", False) and keras.backend.backend() ==
                "tensorflow" and len(inputs.shape) == 4 and self.axis in (-1, 3)
                and inputs.shape[-1] is not None)

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf
        channels = int(inputs.shape[-1])
        inputs = ops.cast(inputs, self.compute_dtype)
        if inputs.dtype not in (tf.float32, tf.bfloat16, tf.float16):
            inputs = tf.cast(inputs, tf.float32)
        scale = (tf.cast(self.gamma, tf.float32) if self.scale
                 else tf.ones([channels], tf.float32))
        offset = (tf.cast(self.beta, tf.float32) if self.center
                  else tf.zeros([channels], tf.float32))
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, scale, offset, epsilon=self.epsilon, data_format="NHWC", is_training=True)
        # The fused kernel returns the Bessel-corrected variance; Keras' moving average uses
        # the biased one.
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), tf.float32)
        variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum
                                    + variance * (1.0 - momentum))
        return ops.cast(outputs, self.compute_dtype)


def set_fused_batch_norm_training(model: keras.layers.Layer, enabled: bool) -> int:
    """Sets whether every :class:`FusedBatchNormalization` inside ``model`` trains through the
    fused kernel; returns how many layers were set. The trainers call it with
    ``enabled = not jit_compile``."""
    layers = [layer for layer in model._flatten_layers(include_self=True)
              if isinstance(layer, FusedBatchNormalization)]
    for layer in layers:
        layer.fused_training = bool(enabled)
    return len(layers)


@keras.saving.register_keras_serializable(package="tf_rgbd")
class UnitNormalization(keras.layers.Layer):
    """x / ||x||_2 over the last axis, safe in float16.

    Keras' own ``UnitNormalization`` squares x first: embeddings of a few thousand (seen before
    the normalisation of an IR-SE head) overflow float16's 65504 in x * x, and an fp16 export
    (ONNX / TFLite) then outputs NaN. Dividing by max |x| first keeps every square <= 1 and
    changes nothing in exact arithmetic.

    Call: features float [..., D] -> the same shape, unit L2 norm (zero rows stay zero).
    """

    def call(self, features):
        scale = ops.max(ops.abs(features), axis=-1, keepdims=True)
        scaled = features / ops.maximum(scale, ops.cast(1e-12, features.dtype))
        norm = ops.sqrt(ops.sum(ops.square(scaled), axis=-1, keepdims=True))
        return scaled / ops.maximum(norm, ops.cast(1e-12, features.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="tf_rgbd")
class PReLU(keras.layers.PReLU):
    """``keras.layers.PReLU`` computed as ``relu(x) + alpha * (x - relu(x))``: the same
    function, gradients (x = 0 takes the alpha side, as Keras' does) and variable with four
    element-wise ops instead of Keras' six (relu, negate, relu, multiply, negate, add), which
    matters on CPU where each is a memory-bound pass over the activations. Not
    ``where(x > 0, x, alpha * x)``: TensorFlow's SelectV2 is slow in bfloat16 (forward and
    backward of [32, 56, 56, 64] on this 2-core CPU: bfloat16 39.8 ms with where, 16.8 ms with
    relu; float32 21.3 / 20.1 ms; SelectV2 was 16% of an IR-SE-50 bfloat16 train step).
    """

    def call(self, inputs):
        positive = ops.relu(inputs)
        return positive + ops.cast(self.alpha, inputs.dtype) * (inputs - positive)


def _activation_layer(activation: Optional[str], name: str) -> Optional[keras.layers.Layer]:
    activation = "none" if activation is None else activation
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation {activation!r} is not one of {ACTIVATIONS}")
    if activation == "prelu":
        # One slope per channel, shared over the spatial axes (as in InsightFace).
        return PReLU(shared_axes=[1, 2], name=name)
    if activation == "relu":
        return keras.layers.ReLU(name=name)
    if activation == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=LEAKY_RELU_SLOPE, name=name)
    return None


def make_norm(kind: str, name: str, momentum: float = BN_MOMENTUM, epsilon: float = BN_EPSILON,
              synchronized: bool = False) -> Optional[keras.layers.Layer]:
    """A normalisation layer of ``kind`` (one of ``NORM_KINDS``); None for ``none``.

    ``instance`` is GroupNormalization with one group per channel (per example, so a batch
    split over replicas trains exactly like the whole batch); ``batch`` is BatchNormalization
    (``synchronized`` across replicas when asked).
    """
    if kind == "instance":
        return keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, name=name)
    if kind == "batch":
        return FusedBatchNormalization(momentum=momentum, epsilon=epsilon,
                                       synchronized=synchronized, name=name)
    if kind == "none":
        return None
    raise ValueError(f"unknown norm {kind!r}; choose one of {NORM_KINDS}")


@keras.saving.register_keras_serializable(package="tf_rgbd")
class ConvNormAct(keras.layers.Layer):
    """Conv2D ("same" padding; bias only without normalisation) -> norm -> activation.

    The one conv unit of the project: the recognizer's units use batch norm + PReLU/ReLU with
    InsightFace's BN settings; the depth GANs use instance / synchronised batch norm + ReLU /
    LeakyReLU (:func:`gan_conv`).

    Args:
      filters, kernel_size, strides: the convolution.
      norm: one of ``NORM_KINDS`` (``batch``, ``instance``, ``none``).
      activation: one of ``ACTIVATIONS`` (``prelu``, ``relu``, ``leaky_relu`` (slope 0.2),
        ``none``; None means ``none``).
      bn_momentum, bn_epsilon, synchronized: batch-norm settings (``norm="batch"``).

    Input float32 [B, H, W, C]; output [B, H / strides, W / strides, filters].
    """

    def __init__(self, filters: int, kernel_size: int = 3, strides: int = 1,
                 activation: Optional[str] = "prelu", norm: str = "batch",
                 bn_momentum: float = BN_MOMENTUM, bn_epsilon: float = BN_EPSILON,
                 synchronized: bool = False, **kwargs):
        super().__init__(**kwargs)
        if norm not in NORM_KINDS:
            raise ValueError(f"{self.name}: norm {norm!r} is not one of {NORM_KINDS}")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.activation = "none" if activation is None else activation
        self.norm_kind = norm
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        self.synchronized = bool(synchronized)
        self.conv = keras.layers.Conv2D(self.filters, self.kernel_size, strides=self.strides,
                                        padding="same", use_bias=norm == "none", name="conv")
        self.norm = make_norm(norm, "norm", self.bn_momentum, self.bn_epsilon, self.synchronized)
        self.act = _activation_layer(self.activation, "act")

    def build(self, input_shape):
        self.conv.build(input_shape)
        output_shape = self.conv.compute_output_shape(input_shape)
        if self.norm is not None:
            self.norm.build(output_shape)
        if self.act is not None:
            self.act.build(output_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def call(self, inputs, training=None):
        outputs = self.conv(inputs)
        if self.norm is not None:
            outputs = self.norm(outputs, training=training)
        return outputs if self.act is None else self.act(outputs)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "activation": self.activation, "norm": self.norm_kind,
                "bn_momentum": self.bn_momentum, "bn_epsilon": self.bn_epsilon,
                "synchronized": self.synchronized}


def gan_conv(filters: int, kernel_size: int, strides: int, norm: str, activation: str,
             name: str) -> ConvNormAct:
    """The depth GANs' conv unit: their ``batch`` norm is synchronised BN, Keras defaults."""
    return ConvNormAct(filters, kernel_size, strides, activation=activation, norm=norm,
                       bn_momentum=GAN_BN_MOMENTUM, bn_epsilon=GAN_BN_EPSILON,
                       synchronized=True, name=name)


def unet_levels(image_size: int, min_bottleneck_size: int = 4) -> int:
    """Number of stride-2 levels of the depth UNets for an ``image_size`` input.

    The encoder halves the resolution while it stays even and >= ``min_bottleneck_size``
    (64 -> 4 levels down to 4x4, 112 -> 4 levels down to 7x7, 256 -> 6 levels down to 4x4).
    """
    if image_size < 2 * min_bottleneck_size:
        raise ValueError(f"image_size {image_size} is too small: the UNet needs at least one "
                         f"halving down to >= {min_bottleneck_size} pixels")
    levels, size = 0, image_size
    while size % 2 == 0 and size // 2 >= min_bottleneck_size:
        size //= 2
        levels += 1
    if levels == 0:
        raise ValueError(f"image_size {image_size} is odd; use an even size such as 64 or 112")
    return levels


def level_filters(level: int, base_filters: int, max_filters: int) -> int:
    """Channels at UNet level ``level`` (0 = full-resolution stem): base * 2^level, capped."""
    return min(base_filters * 2 ** level, max_filters)


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
        self.pre_norm = FusedBatchNormalization(
            momentum=self.bn_momentum, epsilon=self.bn_epsilon, name="bn_in")
        self.conv1 = ConvNormAct(self.filters, 3, 1, activation="prelu", name="conv1", **bn)
        self.conv2 = ConvNormAct(self.filters, 3, self.strides, activation=None, name="conv2", **bn)
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
            self.projection = ConvNormAct(self.filters, 1, self.strides, activation=None,
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
    """Constructor kwargs that pass batch-norm settings down to :class:`ConvNormAct`."""
    return {"bn_momentum": momentum, "bn_epsilon": epsilon}



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
        self.norms = [FusedBatchNormalization(momentum=self.bn_momentum,
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
