"""Losses of joint 3D face reconstruction and recognition (Liu et al., CVPR 2018).

Shapes are [B, N, C]: N points (mesh vertices with C = 3 coordinates, or depth-map cells with
C = 1), in any length unit. ``weights`` [B, N] (1 = valid point, 0 = none: background depth
cells) make the Euclidean terms skip missing data instead of pulling them to zero.

* ``shape_loss`` (L_R): mean over valid points of the squared Euclidean point distance,
  ``sum_bn w_bn ||s_hat_bn - s_bn||^2 / sum_bn w_bn``.
* ``latent_loss`` (phase I): mean over the batch of the squared Euclidean latent distance,
  ``mean_b ||c_hat_b - c_b||^2``.
* ``classification_loss`` (L_C): softmax cross-entropy of the logits on c_Id (margin heads
  put their margin into the logits before this).
* ``joint_loss``: ``L = lambda_r L_R + L_C``.
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf


def per_example_squared_error(predicted, target, weights: Optional[tf.Tensor] = None):
    """(sum of weighted squared point distances [B], sum of weights [B])."""
    predicted = tf.cast(predicted, tf.float32)
    target = tf.cast(target, tf.float32)
    distance = tf.reduce_sum(tf.square(predicted - target), axis=-1)  # [B, N]
    if weights is None:
        weights = tf.ones_like(distance)
    weights = tf.cast(weights, tf.float32)
    return tf.reduce_sum(weights * distance, axis=-1), tf.reduce_sum(weights, axis=-1)


def shape_loss(predicted, target, weights: Optional[tf.Tensor] = None) -> tf.Tensor:
    """L_R: float32 scalar, mean squared point distance over valid points (see module)."""
    squared, counts = per_example_squared_error(predicted, target, weights)
    return tf.reduce_sum(squared) / tf.maximum(tf.reduce_sum(counts), 1.0)


def per_example_rmse(predicted, target, weights: Optional[tf.Tensor] = None) -> tf.Tensor:
    """float32 [B]: sqrt(mean over valid points of the squared point distance) per example
    (in the shapes' unit); NaN for an example without a valid point."""
    squared, counts = per_example_squared_error(predicted, target, weights)
    return tf.where(counts > 0, tf.sqrt(squared / tf.maximum(counts, 1.0)),
                    tf.fill(tf.shape(counts), float("nan")))


def latent_loss(predicted, target) -> tf.Tensor:
    """Phase I: float32 scalar ``mean_b ||c_hat_b - c_b||^2`` ([B, K] latents)."""
    difference = tf.cast(predicted, tf.float32) - tf.cast(target, tf.float32)
    return tf.reduce_mean(tf.reduce_sum(tf.square(difference), axis=-1))


def classification_loss(logits, labels) -> tf.Tensor:
    """L_C: float32 scalar mean softmax cross-entropy of logits [B, K] and int labels [B]."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32)))


def joint_loss(reconstruction, classification, lambda_r: float) -> tf.Tensor:
    """``L = lambda_r * L_R + L_C`` (pass ``classification = 0`` without L_C)."""
    return lambda_r * tf.cast(reconstruction, tf.float32) + tf.cast(classification, tf.float32)
