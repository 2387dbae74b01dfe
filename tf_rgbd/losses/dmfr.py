"""Losses of demodalizing face recognition (DMFR; Zhai et al., AAAI 2021).

* :func:`margin_softmax_loss`: softmax cross-entropy on the margin logits of a
  :class:`~tf_rgbd.models.heads.CombinedMargin` head evaluated with ANY prototypes (the head's
  own class weights ``w`` or the meta-updated ``w'``); CosFace is ``CombinedMargin(s=64, m1=1,
  m2=0, m3=0.4)``.
* :func:`meta_objective`: the meta mode's step, ``lambda_meta * L_tr(theta, w) +
  (1 - lambda_meta) * L_te(theta, w')`` with the inner update on the prototypes
  ``w' = w - alpha * dL_tr/dw``. The inner gradient is taken under its own tape, so when the
  objective is itself differentiated (the trainer's outer tape) the meta-gradient reaches the
  encoder theta through ``w'`` too (second order: ``dw'/dtheta = -alpha * d2 L_tr / dw dtheta``).
* :func:`mean_l2_distance`: ``mean_b ||a_b - b_b||_2`` over the batch, the paper's
  ``L_recons = ||M_recons - M||_2`` (feature maps flattened per example) and
  ``L_flt = ||F(H(x_gen)) - H(x_real)||_2``.
"""
from __future__ import annotations

import tensorflow as tf

# Inside the square root of the L2 distance: its gradient stays finite at a zero difference.
_SQRT_EPSILON = 1e-12


def prototype_cosine(features: tf.Tensor, prototypes: tf.Tensor) -> tf.Tensor:
    """cos(theta) [B, C] between L2-normalised features [B, D] and normalised prototype
    columns [D, C] (the same normalisation as ``CombinedMargin.cosine``)."""
    features = features / tf.sqrt(tf.maximum(
        tf.reduce_sum(tf.square(features), axis=-1, keepdims=True), 1e-12))
    prototypes = prototypes / tf.sqrt(tf.maximum(
        tf.reduce_sum(tf.square(prototypes), axis=0, keepdims=True), 1e-12))
    return tf.matmul(features, prototypes)


def margin_logits(features: tf.Tensor, prototypes: tf.Tensor, labels: tf.Tensor,
                  head) -> tf.Tensor:
    """``s * margin(cos)`` [B, C] with ``head``'s margins (a ``CombinedMargin``) and the given
    prototypes [D, C] instead of its own class weights."""
    cosine = prototype_cosine(features, tf.cast(prototypes, features.dtype))
    return head.s * head.margin_cosine(cosine, labels)


def margin_softmax_loss(features: tf.Tensor, prototypes: tf.Tensor, labels: tf.Tensor,
                        head) -> tf.Tensor:
    """Mean softmax cross-entropy of :func:`margin_logits` (scalar).

    Args:
      features: float [B, D] embeddings (any norm).
      prototypes: float [D, C] class prototypes (e.g. ``head.class_weights`` or ``w'``).
      labels: int [B] classes in 0..C-1.
      head: a ``CombinedMargin`` (its s, m1, m2, m3).
    """
    logits = margin_logits(features, prototypes, labels, head)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=logits))


def inner_update(loss_train: tf.Tensor, prototypes: tf.Tensor, alpha: float,
                 tape: tf.GradientTape) -> tf.Tensor:
    """``w' = w - alpha * dL_tr/dw`` with ``tape`` (which watched ``prototypes`` while
    ``loss_train`` was computed). Call it inside the outer tape to keep the second order."""
    gradient = tape.gradient(loss_train, prototypes)
    if gradient is None:
        raise ValueError("L_tr does not depend on the prototypes: nothing to update")
    return tf.convert_to_tensor(prototypes) - alpha * gradient


def meta_objective(train_features: tf.Tensor, train_labels: tf.Tensor,
                   test_features_fn, test_labels: tf.Tensor, prototypes: tf.Tensor, head,
                   alpha: float, lambda_meta: float = 0.5) -> dict:
    """The meta mode's objective for one step.

    Args:
      train_features: float [Btr, D] encoder features of the meta-train domains (real + the
        other source domains), computed from theta.
      train_labels: int [Btr].
      test_features_fn: zero-argument callable returning float [Bte, D] features of the
        held-out (meta-test) domain, computed from theta (called after the inner update).
      test_labels: int [Bte].
      prototypes: the classifier prototypes w [D, C] (a variable or tensor).
      head: the ``CombinedMargin`` giving s and the margins.
      alpha: inner learning rate of the prototype update.
      lambda_meta: weight of L_tr (the paper's 0.5).

    Returns:
      dict: ``objective`` (scalar), ``loss_train`` = L_tr(theta, w), ``loss_test`` =
      L_te(theta, w'), ``updated_prototypes`` = w' [D, C].
    """
    with tf.GradientTape(watch_accessed_variables=False) as inner:
        inner.watch(prototypes)
        loss_train = margin_softmax_loss(train_features, prototypes, train_labels, head)
    updated = inner_update(loss_train, prototypes, alpha, inner)
    loss_test = margin_softmax_loss(test_features_fn(), updated, test_labels, head)
    objective = lambda_meta * loss_train + (1.0 - lambda_meta) * loss_test
    return {"objective": objective, "loss_train": loss_train, "loss_test": loss_test,
            "updated_prototypes": updated}


def mean_l2_distance(first: tf.Tensor, second: tf.Tensor) -> tf.Tensor:
    """``mean_b || first_b - second_b ||_2`` (scalar); each example's tensors are flattened.

    Args:
      first, second: float [B, ...] of equal shapes (feature vectors or feature maps).
    """
    difference = tf.reshape(first - tf.cast(second, first.dtype), [tf.shape(first)[0], -1])
    return tf.reduce_mean(tf.sqrt(tf.reduce_sum(tf.square(difference), axis=-1)
                                  + _SQRT_EPSILON))


def reconstruction_loss(reconstructed_map: tf.Tensor, feature_map: tf.Tensor) -> tf.Tensor:
    """L_recons = ||M_recons - M||_2, batch mean (disentangle mode); maps float [B, h, w, c]."""
    return mean_l2_distance(reconstructed_map, feature_map)


def filter_loss(filtered_generated: tf.Tensor, real_features: tf.Tensor) -> tf.Tensor:
    """L_flt = ||F(H(x_gen)) - H(x_real)||_2, batch mean (filter mode); float [B, D] each, row b
    of both the same source image under the same conditions."""
    return mean_l2_distance(filtered_generated, real_features)
