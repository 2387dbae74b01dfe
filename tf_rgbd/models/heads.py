"""Margin classification heads: one ``CombinedMargin`` layer for ArcFace, CosFace and SphereFace.

The target-class logit is ``s * (cos(m1 * theta + m2) - m3)`` and every other logit is
``s * cos(theta)``, with ``theta`` the angle between the L2-normalised embedding and the
L2-normalised class weight (InsightFace's ``CombinedMarginLoss``):

* ArcFace: m1 = 1, m2 = 0.5, m3 = 0 (the paper's identity classifier, s = 64)
* CosFace: m1 = 1, m2 = 0,   m3 = 0.35
* SphereFace-like: m1 > 1

When ``m1 * theta + m2`` passes pi the cosine stops being monotonic in theta; there the
target logit falls back to ``cos(theta) - m3 - sin(pi - m2) * m2`` (InsightFace's ``th``/``mm``
trick), which keeps the penalty monotonic.

These heads are training-only: the exported inference graph never contains them.
"""
from __future__ import annotations

import math

import keras
from keras import ops

_COS_CLIP = 1.0 - 1e-7


@keras.saving.register_keras_serializable(package="tf_rgbd")
class CombinedMargin(keras.layers.Layer):
    """Cosine classifier with a combined angular/additive margin on the true class.

    Args:
      num_classes: number of identities.
      s: logit scale (64 in ArcFace).
      m1: multiplicative angular margin (1 = none).
      m2: additive angular margin in radians (ArcFace 0.5).
      m3: additive cosine margin (CosFace 0.35).

    Call:
      features: float32 [B, D] embeddings (any norm; they are L2-normalised here).
      labels: int [B] true classes, or None (then no margin is applied).
      freeze_weights: if True, the class weights are read through ``stop_gradient`` so a loss
        on these logits only trains the features (the disentanglement term uses this).

    Returns a dict:
      ``logits``: float32 [B, num_classes], margin on the true class (= ``cos_logits`` when
        ``labels`` is None).
      ``cos_logits``: float32 [B, num_classes], margin-free ``s * cos(theta)``.
    """

    def __init__(self, num_classes: int, s: float = 64.0, m1: float = 1.0, m2: float = 0.5,
                 m3: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if num_classes < 2:
            raise ValueError(f"{self.name}: num_classes must be >= 2, got {num_classes}")
        if m1 < 1.0 or m2 < 0.0 or m3 < 0.0:
            raise ValueError(f"{self.name}: margins must be m1 >= 1, m2 >= 0, m3 >= 0; "
                             f"got m1={m1}, m2={m2}, m3={m3}")
        self.num_classes = int(num_classes)
        self.s = float(s)
        self.m1 = float(m1)
        self.m2 = float(m2)
        self.m3 = float(m3)
        self.class_weights = None

    def build(self, input_shape):
        self.class_weights = self.add_weight(
            name="class_weights", shape=(int(input_shape[-1]), self.num_classes),
            initializer=keras.initializers.RandomNormal(stddev=0.01), trainable=True)
        self.built = True

    def cosine(self, features, freeze_weights: bool = False):
        """cos(theta) [B, num_classes] between normalised features and normalised class weights."""
        weights = self.class_weights
        if freeze_weights:
            weights = ops.stop_gradient(weights)
        normalised_features = features / ops.sqrt(
            ops.maximum(ops.sum(ops.square(features), axis=-1, keepdims=True), 1e-12))
        normalised_weights = weights / ops.sqrt(
            ops.maximum(ops.sum(ops.square(weights), axis=0, keepdims=True), 1e-12))
        return ops.matmul(normalised_features, normalised_weights)

    def margin_cosine(self, cosine, labels):
        """Applies the margin to the true-class cosine: [B, C] -> [B, C] (before scaling)."""
        cosine = ops.clip(cosine, -_COS_CLIP, _COS_CLIP)
        one_hot = ops.one_hot(ops.cast(labels, "int32"), self.num_classes, dtype=cosine.dtype)
        if self.m1 == 1.0 and self.m2 == 0.0:
            target = cosine - self.m3
        else:
            theta = ops.arccos(cosine)
            margin_angle = self.m1 * theta + self.m2
            fallback = cosine - self.m3 - math.sin(math.pi - self.m2) * self.m2
            target = ops.where(margin_angle <= math.pi, ops.cos(margin_angle) - self.m3, fallback)
        return cosine * (1.0 - one_hot) + target * one_hot

    def call(self, features, labels=None, freeze_weights: bool = False):
        cosine = self.cosine(features, freeze_weights=freeze_weights)
        cos_logits = self.s * cosine
        if labels is None:
            return {"logits": cos_logits, "cos_logits": cos_logits}
        return {"logits": self.s * self.margin_cosine(cosine, labels), "cos_logits": cos_logits}

    def compute_output_shape(self, input_shape):
        shape = (input_shape[0], self.num_classes)
        return {"logits": shape, "cos_logits": shape}

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "s": self.s,
                "m1": self.m1, "m2": self.m2, "m3": self.m3}


@keras.saving.register_keras_serializable(package="tf_rgbd")
class LinearClassifier(keras.layers.Layer):
    """Plain softmax classifier ``features @ W + b`` (the style classifier C_style).

    Call: features float32 [B, D] -> logits float32 [B, num_classes]. With
    ``freeze_weights=True`` W and b are read through ``stop_gradient``.
    """

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.kernel = None
        self.bias = None

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(int(input_shape[-1]),
                                                            self.num_classes),
                                      initializer="glorot_uniform", trainable=True)
        self.bias = self.add_weight(name="bias", shape=(self.num_classes,), initializer="zeros",
                                    trainable=True)
        self.built = True

    def call(self, features, freeze_weights: bool = False):
        kernel, bias = self.kernel, self.bias
        if freeze_weights:
            kernel, bias = ops.stop_gradient(kernel), ops.stop_gradient(bias)
        return ops.matmul(features, kernel) + bias

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


def identity_accuracy(cos_logits, labels):
    """Fraction of rows whose arg-max class equals ``labels`` (float32 scalar)."""
    predictions = ops.cast(ops.argmax(cos_logits, axis=-1), "int32")
    return ops.mean(ops.cast(ops.equal(predictions, ops.cast(labels, "int32")), "float32"))
