"""Losses of the segmentation-guided RGB-D recognizer (equation numbers are the paper's).

For a branch m in {RGB, D} with partner n:

* L_cls^m = CE(C_id(f_id^m), y) + CE(C_style(f_style^m), style_m)       (margin logits for C_id)
  With ONE image branch there is no second style: C_style would learn a constant label, so
  L_cls is the identity CE alone and L_dis (which needs two styles) is not used either.
* (8-9)  L_CMFL^{m,n} = -alpha (1 - w(m_t, n_t))^gamma log m_t,
         w(m_t, n_t) = n_t * 2 m_t n_t / (m_t + n_t); m_t / n_t = true-class probability of
         C_id in branch m / n (per sample, softmax of the margin logits the identity loss uses);
         optional stop-gradient through n_t (on by default).
* (10-11) L_SA^{m,n} = rho^{m,n} (1 - cos(f_id^m, f_id^n)),
         rho^{m,n} = exp(beta (L_id^m - L_id^n)) - 1 if L_id^m > L_id^n else 0,
         rho is a constant (stop-gradient) and f_id^n is the target (stop-gradient by default),
         so only the weaker branch is pulled towards the stronger one. A configurable cap on
         L_id^m - L_id^n inside the exponential (``sa_max_loss_gap``, default 1, ``inf`` = as
         printed) keeps ArcFace-sized loss gaps from overflowing rho.
* (12-13) L_dis^m = -(1/N) sum_k log softmax(C_id(f_style^m))_k
                    -(1/M) sum_j log softmax(C_style(f_id^m))_j
         (cross-entropy against the uniform distribution; the printed formula lacks the minus
         sign), on margin-free logits computed with the classifier weights held fixed — the
         caller computes those logits with ``freeze_weights=True``.
* (14-15) L_total^m = lambda0 L_cls^m + lambda1 L_CMFL^{m,n} + lambda2 L_SA^{m,n}
                     + lambda3 L_dis^m   (0.5, 0.5, 0.05, 0.5).

Every function takes logits/features for a batch (cast to float32 first, so a model under a
mixed dtype policy may hand over float16/bfloat16 tensors) and returns batch means (float32
scalars);
``branch_losses`` evaluates the switched set of terms for every enabled branch.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Sequence

import tensorflow as tf

from tf_rgbd.config.recognizer import LOSS_TERMS, RecognizerLossConfig

__all__ = ["LOSS_TERMS", "BranchOutputs", "branch_losses", "classification_loss",
           "identity_loss", "cross_modal_focal_loss", "alignment_weight",
           "semantic_alignment_loss", "uniform_cross_entropy", "disentanglement_loss"]

_EPSILON = 1e-12


def _per_sample_cross_entropy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32),
                                                          logits=tf.cast(logits, tf.float32))


def classification_loss(id_logits: tf.Tensor, labels: tf.Tensor, style_logits: tf.Tensor,
                        style_label: int) -> tf.Tensor:
    """L_cls^m: identity CE + style CE.

    Args:
      id_logits: float32 [B, C] margin logits of C_id on f_id^m.
      labels: int [B] identities.
      style_logits: float32 [B, 2] logits of C_style on f_style^m.
      style_label: 0 (RGB) or 1 (depth), the style of every sample of this branch.
    """
    identity = tf.reduce_mean(_per_sample_cross_entropy(id_logits, labels))
    style_labels = tf.fill(tf.shape(labels), tf.cast(style_label, tf.int32))
    style = tf.reduce_mean(_per_sample_cross_entropy(style_logits, style_labels))
    return identity + style


def identity_loss(id_logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """L_id^m: batch-mean identity cross-entropy (used by rho in eq. 11)."""
    return tf.reduce_mean(_per_sample_cross_entropy(id_logits, labels))


def true_class_log_probability(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """log softmax(logits)[y] per sample: float32 [B]."""
    return -_per_sample_cross_entropy(logits, labels)


def cross_modal_focal_loss(logits_m: tf.Tensor, logits_n: tf.Tensor, labels: tf.Tensor,
                           alpha: float = 1.0, gamma: float = 3.0,
                           stop_gradient_partner: bool = True) -> tf.Tensor:
    """L_CMFL^{m,n} (eq. 8-9), batch mean.

    Args:
      logits_m, logits_n: float32 [B, C] identity logits of branch m and its partner n.
      labels: int [B].
      stop_gradient_partner: treat n_t as a constant (no gradient into branch n).
    """
    log_m_t = true_class_log_probability(logits_m, labels)
    m_t = tf.exp(log_m_t)
    n_t = tf.exp(true_class_log_probability(logits_n, labels))
    if stop_gradient_partner:
        n_t = tf.stop_gradient(n_t)
    weight = n_t * 2.0 * m_t * n_t / (m_t + n_t + _EPSILON)
    return tf.reduce_mean(-alpha * tf.pow(1.0 - weight, gamma) * log_m_t)


def alignment_weight(identity_loss_m: tf.Tensor, identity_loss_n: tf.Tensor,
                     beta: float = 2.0, max_loss_gap: float = float("inf")) -> tf.Tensor:
    """rho^{m,n} (eq. 11): exp(beta (L_m - L_n)) - 1 when L_m > L_n, else 0; no gradient.

    ``max_loss_gap`` caps L_m - L_n inside the exponential (a numerical guard; ``inf`` = the
    printed formula).
    """
    difference = tf.stop_gradient(tf.cast(identity_loss_m - identity_loss_n, tf.float32))
    capped = tf.minimum(difference, max_loss_gap)
    return tf.where(difference > 0.0, tf.exp(beta * capped) - 1.0, tf.zeros_like(difference))


def semantic_alignment_loss(features_m: tf.Tensor, features_n: tf.Tensor,
                            identity_loss_m: tf.Tensor, identity_loss_n: tf.Tensor,
                            beta: float = 2.0, stop_gradient_target: bool = True,
                            max_loss_gap: float = float("inf")) -> tf.Tensor:
    """L_SA^{m,n} (eq. 10): rho^{m,n} * mean_b (1 - cos(f_id^m_b, f_id^n_b)).

    Args:
      features_m, features_n: float32 [B, D] identity features of the two branches.
      identity_loss_m, identity_loss_n: scalar L_id of the branches (batch means).
      stop_gradient_target: f_id^n is the (constant) target the weaker branch moves towards.
      max_loss_gap: see :func:`alignment_weight`.
    """
    features_m, features_n = tf.cast(features_m, tf.float32), tf.cast(features_n, tf.float32)
    if stop_gradient_target:
        features_n = tf.stop_gradient(features_n)
    cosine = tf.reduce_sum(tf.math.l2_normalize(features_m, axis=-1)
                           * tf.math.l2_normalize(features_n, axis=-1), axis=-1)
    rho = alignment_weight(identity_loss_m, identity_loss_n, beta, max_loss_gap)
    return rho * tf.reduce_mean(1.0 - cosine)


def uniform_cross_entropy(logits: tf.Tensor) -> tf.Tensor:
    """Batch mean of -(1/K) sum_k log softmax(logits)_k; minimum log K at uniform outputs."""
    log_probabilities = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    return tf.reduce_mean(-tf.reduce_mean(log_probabilities, axis=-1))


def disentanglement_loss(identity_logits_of_style: tf.Tensor,
                         style_logits_of_identity: tf.Tensor) -> tf.Tensor:
    """L_dis^m (eq. 12-13).

    Args:
      identity_logits_of_style: float32 [B, N] margin-free C_id logits of f_style^m, computed
        with C_id's weights frozen.
      style_logits_of_identity: float32 [B, M] C_style logits of f_id^m, weights frozen.
    Returns log N + log M at the optimum (both distributions uniform).
    """
    return (uniform_cross_entropy(identity_logits_of_style)
            + uniform_cross_entropy(style_logits_of_identity))


@dataclasses.dataclass
class BranchOutputs:
    """What the losses need from one branch (all float32; B = batch, C = identities).

    Attributes:
      id_logits: [B, C] C_id margin logits of f_id (labels applied).
      style_logits: [B, 2] C_style logits of f_style (trainable weights); None with one
        branch (no style to classify).
      identity_features: [B, D] f_id.
      dis_identity_logits: [B, C] margin-free C_id logits of f_style, frozen weights.
      dis_style_logits: [B, 2] C_style logits of f_id, frozen weights.
    """

    id_logits: tf.Tensor
    style_logits: Optional[tf.Tensor]
    identity_features: tf.Tensor
    dis_identity_logits: Optional[tf.Tensor] = None
    dis_style_logits: Optional[tf.Tensor] = None


def branch_losses(outputs: Mapping[str, BranchOutputs], labels: tf.Tensor,
                  style_labels: Mapping[str, int], settings: RecognizerLossConfig) -> dict:
    """L_total^m and its terms for every branch in ``outputs`` (1 or 2 branches).

    Cross-modal terms (``cmfl``, ``sa``) need two branches and are skipped with one; so are
    the style half of ``cls`` (a one-label style classifier learns nothing) and ``dis``.
    Returns a dict of float32 scalars: ``total_<m>``, ``cls_<m>``, ``cmfl_<m>``, ``sa_<m>``,
    ``dis_<m>``, ``id_<m>`` (L_id, for logging) and ``rho_<m>``; switched-off terms are absent.
    """
    branches: Sequence[str] = tuple(outputs)
    if len(branches) not in (1, 2):
        raise ValueError(f"branch_losses needs 1 or 2 branches, got {branches}")
    identity = {name: identity_loss(outputs[name].id_logits, labels) for name in branches}
    results = {}
    for name in branches:
        mine = outputs[name]
        partner = next((other for other in branches if other != name), None)
        total = tf.constant(0.0)
        results[f"id_{name}"] = identity[name]
        if "cls" in settings.losses:
            term = (classification_loss(mine.id_logits, labels, mine.style_logits,
                                        style_labels[name])
                    if partner is not None else identity[name])
            results[f"cls_{name}"] = term
            total += settings.lambda_cls * term
        if partner is not None and "cmfl" in settings.losses:
            term = cross_modal_focal_loss(mine.id_logits, outputs[partner].id_logits, labels,
                                          settings.cmfl_alpha, settings.cmfl_gamma,
                                          settings.cmfl_stop_gradient)
            results[f"cmfl_{name}"] = term
            total += settings.lambda_cmfl * term
        if partner is not None and "sa" in settings.losses:
            term = semantic_alignment_loss(mine.identity_features,
                                           outputs[partner].identity_features, identity[name],
                                           identity[partner], settings.sa_beta,
                                           settings.sa_stop_gradient_target,
                                           settings.sa_max_loss_gap)
            results[f"sa_{name}"] = term
            results[f"rho_{name}"] = alignment_weight(identity[name], identity[partner],
                                                      settings.sa_beta, settings.sa_max_loss_gap)
            total += settings.lambda_sa * term
        if partner is not None and "dis" in settings.losses:
            if mine.dis_identity_logits is None or mine.dis_style_logits is None:
                raise ValueError(f"branch {name!r}: the 'dis' term needs dis_identity_logits "
                                 "and dis_style_logits (computed with frozen classifiers)")
            term = disentanglement_loss(mine.dis_identity_logits, mine.dis_style_logits)
            results[f"dis_{name}"] = term
            total += settings.lambda_dis * term
        results[f"total_{name}"] = total
    return results
