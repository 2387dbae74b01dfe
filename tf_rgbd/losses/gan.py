"""Adversarial losses: least-squares GAN (DepthNet) and binary cross-entropy (the cGAN baseline).

All functions return the per-replica mean as a float32 scalar; under a distribution strategy
scale the total with ``tf_rgbd.training.strategy.replica_scaled`` inside the tape.

Optional ``sample_weight`` (float32 [B], e.g. ``has_depth``) averages only over weighted
examples (a batch with zero total weight gives 0), so examples without ground truth never count
as "real".
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf


def weighted_example_mean(per_element: tf.Tensor,
                          sample_weight: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Mean of ``per_element`` [B, ...] over all axes, examples weighted by ``sample_weight`` [B].

    Returns:
      float32 scalar: sum(w_b * mean_b) / max(sum(w_b), tiny), or the plain mean without weights.
    """
    per_element = tf.cast(per_element, tf.float32)
    if sample_weight is None:
        return tf.reduce_mean(per_element)
    per_example = tf.reduce_mean(tf.reshape(per_element, [tf.shape(per_element)[0], -1]), axis=1)
    weight = tf.cast(sample_weight, tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(weight * per_example), tf.reduce_sum(weight))


def lsgan_generator_loss(fake_scores: tf.Tensor) -> tf.Tensor:
    """E[(D(G(x)) - 1)^2]: the generator wants its outputs scored as real (1)."""
    return tf.reduce_mean(tf.square(tf.cast(fake_scores, tf.float32) - 1.0))


def lsgan_discriminator_loss(real_scores: tf.Tensor, fake_scores: tf.Tensor,
                             real_weight: Optional[tf.Tensor] = None) -> tf.Tensor:
    """E[(D(y) - 1)^2] + E[D(G(x))^2] (real -> 1, fake -> 0)."""
    real_term = weighted_example_mean(tf.square(tf.cast(real_scores, tf.float32) - 1.0),
                                      real_weight)
    return real_term + tf.reduce_mean(tf.square(tf.cast(fake_scores, tf.float32)))


def bce_generator_loss(fake_logits: tf.Tensor) -> tf.Tensor:
    """-E[log sigmoid(D(G(x)))] (non-saturating generator loss)."""
    fake_logits = tf.cast(fake_logits, tf.float32)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.ones_like(fake_logits), logits=fake_logits))


def bce_discriminator_loss(real_logits: tf.Tensor, fake_logits: tf.Tensor,
                           real_weight: Optional[tf.Tensor] = None) -> tf.Tensor:
    """-E[log sigmoid(D(y))] - E[log(1 - sigmoid(D(G(x))))]."""
    real_logits = tf.cast(real_logits, tf.float32)
    fake_logits = tf.cast(fake_logits, tf.float32)
    real_term = weighted_example_mean(tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.ones_like(real_logits), logits=real_logits), real_weight)
    fake_term = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.zeros_like(fake_logits), logits=fake_logits))
    return real_term + fake_term
