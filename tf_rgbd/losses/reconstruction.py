"""Pixel losses: L1 (image / depth reconstruction), per-class binary cross-entropy (masks), MSE.

Every function takes [B, H, W, C] tensors and returns the per-replica mean as a float32 scalar.
``sample_weight`` (float32 [B], e.g. ``has_depth`` / ``has_mask``) restricts the mean to the
weighted examples (0 when the batch has none).
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf

from tf_rgbd.losses.gan import weighted_example_mean

# Probabilities are clipped to [eps, 1 - eps] before the log (sigmoid outputs saturate).
BCE_EPSILON = 1e-6


def l1_loss(target: tf.Tensor, prediction: tf.Tensor,
            sample_weight: Optional[tf.Tensor] = None) -> tf.Tensor:
    """E|target - prediction| over all pixels and channels."""
    difference = tf.cast(target, tf.float32) - tf.cast(prediction, tf.float32)
    return weighted_example_mean(tf.abs(difference), sample_weight)


def mse_loss(target: tf.Tensor, prediction: tf.Tensor,
             sample_weight: Optional[tf.Tensor] = None) -> tf.Tensor:
    """E(target - prediction)^2 over all pixels and channels."""
    difference = tf.cast(target, tf.float32) - tf.cast(prediction, tf.float32)
    return weighted_example_mean(tf.square(difference), sample_weight)


def mask_bce_loss(target_mask: tf.Tensor, predicted_probabilities: tf.Tensor,
                  sample_weight: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Per-class binary cross-entropy, averaged over pixels and classes.

    Args:
      target_mask: float32 [B, H, W, K] one-hot (or soft) targets in [0, 1].
      predicted_probabilities: float32 [B, H, W, K] per-class sigmoid outputs in [0, 1].
    """
    target = tf.cast(target_mask, tf.float32)
    probability = tf.clip_by_value(tf.cast(predicted_probabilities, tf.float32), BCE_EPSILON,
                                   1.0 - BCE_EPSILON)
    per_element = -(target * tf.math.log(probability)
                    + (1.0 - target) * tf.math.log(1.0 - probability))
    return weighted_example_mean(per_element, sample_weight)
