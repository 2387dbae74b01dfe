"""The contrastive loss of a Siamese verifier (Hadsell, Chopra and LeCun, "Dimensionality
Reduction by Learning an Invariant Mapping", CVPR 2006), with y = 1 for a genuine pair::

    L(d, y) = y d^2 + (1 - y) max(0, m - d)^2

d the Euclidean distance of the pair's embeddings, m the margin. (Hadsell et al. write
Y = 0 for similar pairs and a factor 1/2 on both terms; the factor only rescales the gradient.)
The paper this experiment follows (Pini et al., "Learning to Generate Facial Depth Maps") does
not print its verifier's loss; this is the standard Siamese formulation.
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf

# Added under the square root: the gradient of sqrt at 0 (identical embeddings) is infinite.
DISTANCE_EPSILON = 1e-12


def pair_distance(first: tf.Tensor, second: tf.Tensor) -> tf.Tensor:
    """Euclidean distance per pair: float [B, D] x [B, D] -> float32 [B]
    (``sqrt(sum (a - b)^2 + 1e-12)``, finite gradient at 0)."""
    first = tf.cast(first, tf.float32)
    second = tf.cast(second, tf.float32)
    return tf.sqrt(tf.reduce_sum(tf.square(first - second), axis=-1) + DISTANCE_EPSILON)


def contrastive_terms(distance: tf.Tensor, same: tf.Tensor, margin: float) -> tf.Tensor:
    """Per-pair loss float32 [B]: ``y d^2 + (1 - y) max(0, m - d)^2``.

    Args:
      distance: float [B] Euclidean distances (>= 0).
      same: [B] 1 / True for a genuine pair, 0 / False for an impostor pair.
      margin: m > 0.
    """
    distance = tf.cast(distance, tf.float32)
    same = tf.cast(same, tf.float32)
    return (same * tf.square(distance)
            + (1.0 - same) * tf.square(tf.nn.relu(margin - distance)))


def contrastive_loss(distance: tf.Tensor, same: tf.Tensor, margin: float = 1.0,
                     sample_weight: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Mean of :func:`contrastive_terms` over the pairs (weighted by ``sample_weight`` [B] when
    given: sum(w * L) / max(sum(w), 1e-12)); float32 scalar."""
    terms = contrastive_terms(distance, same, margin)
    if sample_weight is None:
        return tf.reduce_mean(terms)
    weight = tf.cast(sample_weight, tf.float32)
    return tf.reduce_sum(weight * terms) / tf.maximum(tf.reduce_sum(weight), 1e-12)
