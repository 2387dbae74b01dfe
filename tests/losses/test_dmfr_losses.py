"""DMFR losses pinned to hand computations (NumPy, float64): CosFace through CombinedMargin,
L_recons / L_flt, and the meta step's inner update w' and meta-gradient."""
import numpy as np
import pytest
import tensorflow as tf

from tf_rgbd.losses import dmfr as dmfr_losses
from tf_rgbd.models.heads import CombinedMargin

S, M = 64.0, 0.4
ALPHA, LAMBDA = 0.05, 0.5


def _head(num_classes=3):
    return CombinedMargin(num_classes, s=S, m1=1.0, m2=0.0, m3=M)


def np_cosface(features, weights, labels):
    """(loss, dL/dw) of CosFace by hand: cos = f^ . w^, z = s (cos - m [c = y]),
    L = mean_b -log softmax(z)_y; dL/dw_c = (I - w^_c w^_c^T) / |w_c| * f^^T dL/dcos."""
    f_hat = features / np.linalg.norm(features, axis=1, keepdims=True)
    w_norm = np.linalg.norm(weights, axis=0, keepdims=True)
    w_hat = weights / w_norm
    cosine = f_hat @ w_hat
    one_hot = np.eye(weights.shape[1])[labels]
    logits = S * (cosine - M * one_hot)
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(probabilities[np.arange(len(labels)), labels]))
    d_cos = S * (probabilities - one_hot) / len(labels)
    d_w_hat = f_hat.T @ d_cos
    d_w = (d_w_hat - w_hat * np.sum(w_hat * d_w_hat, axis=0, keepdims=True)) / w_norm
    return loss, d_w


# A tiny case: 2-D inputs, a linear encoder theta [2, 2], 3 classes.
X_TRAIN = np.array([[1.0, 0.2], [0.3, 1.0], [-0.8, 0.5], [0.9, -0.4]])
Y_TRAIN = np.array([0, 1, 2, 0])
X_TEST = np.array([[0.7, 0.6], [-0.5, 0.9]])
Y_TEST = np.array([1, 2])
THETA = np.array([[0.9, -0.3], [0.2, 1.1]])
W = np.array([[1.0, -0.2, -0.7], [0.1, 0.9, -0.6]])


def np_meta_objective(theta, weights):
    loss_train, grad_w = np_cosface(X_TRAIN @ theta, weights, Y_TRAIN)
    updated = weights - ALPHA * grad_w
    loss_test, _ = np_cosface(X_TEST @ theta, updated, Y_TEST)
    return LAMBDA * loss_train + (1 - LAMBDA) * loss_test, updated


def numeric_gradient(function, value, step=1e-6):
    gradient = np.zeros_like(value)
    for index in np.ndindex(value.shape):
        plus, minus = value.copy(), value.copy()
        plus[index] += step
        minus[index] -= step
        gradient[index] = (function(plus) - function(minus)) / (2 * step)
    return gradient


def test_cosface_loss_through_combined_margin_matches_hand_computation():
    features = X_TRAIN @ THETA
    loss = dmfr_losses.margin_softmax_loss(tf.constant(features), tf.constant(W),
                                           tf.constant(Y_TRAIN), _head())
    expected, _ = np_cosface(features, W, Y_TRAIN)
    assert float(loss) == pytest.approx(expected, rel=1e-9)
    # The head's own class weights give the same loss as passing them explicitly.
    head = _head()
    head.build((None, 2))
    head.class_weights.assign(W.astype(np.float32))
    own = head(tf.constant(features, tf.float32), tf.constant(Y_TRAIN))["logits"]
    np.testing.assert_allclose(
        own, dmfr_losses.margin_logits(tf.constant(features, tf.float32), head.class_weights,
                                       tf.constant(Y_TRAIN), head), rtol=1e-5, atol=1e-4)


def test_reconstruction_and_filter_losses_are_mean_euclidean_distances():
    maps = np.zeros([2, 2, 2, 1])
    maps[0, 0, 0, 0], maps[0, 1, 1, 0] = 3.0, 4.0          # |diff| = 5 for example 0, 0 for 1
    target = np.zeros_like(maps)
    assert float(dmfr_losses.reconstruction_loss(tf.constant(maps), tf.constant(target))) == \
        pytest.approx((5.0 + 0.0) / 2, abs=1e-5)
    filtered = np.array([[1.0, 2.0, 2.0], [0.0, 0.0, 1.0]])
    real = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    assert float(dmfr_losses.filter_loss(tf.constant(filtered), tf.constant(real))) == \
        pytest.approx((3.0 + 2.0) / 2, abs=1e-5)
    with tf.GradientTape() as tape:
        same = tf.constant(real)
        tape.watch(same)
        value = dmfr_losses.filter_loss(same, tf.constant(real))
    assert np.all(np.isfinite(tape.gradient(value, same)))   # finite at a zero distance


def test_meta_inner_update_matches_hand_computation():
    head = _head()
    weights = tf.Variable(W)
    theta = tf.constant(THETA)
    result = dmfr_losses.meta_objective(
        tf.constant(X_TRAIN) @ theta, tf.constant(Y_TRAIN), lambda: tf.constant(X_TEST) @ theta,
        tf.constant(Y_TEST), weights, head, ALPHA, LAMBDA)
    expected_objective, expected_updated = np_meta_objective(THETA, W)
    _, grad_w = np_cosface(X_TRAIN @ THETA, W, Y_TRAIN)
    assert np.abs(grad_w).max() > 1e-3                     # the update is not trivial
    np.testing.assert_allclose(result["updated_prototypes"], expected_updated, rtol=1e-9,
                               atol=1e-12)
    assert float(result["objective"]) == pytest.approx(expected_objective, rel=1e-9)


def test_meta_gradient_reaches_theta_through_the_updated_prototypes():
    head = _head()
    weights = tf.Variable(W)
    theta = tf.Variable(THETA)
    with tf.GradientTape() as tape:
        objective = dmfr_losses.meta_objective(
            tf.constant(X_TRAIN) @ theta, tf.constant(Y_TRAIN),
            lambda: tf.constant(X_TEST) @ theta, tf.constant(Y_TEST), weights, head, ALPHA,
            LAMBDA)["objective"]
    grad_theta, grad_w = tape.gradient(objective, [theta, weights])
    expected_theta = numeric_gradient(lambda t: np_meta_objective(t, W)[0], THETA)
    expected_w = numeric_gradient(lambda w: np_meta_objective(THETA, w)[0], W)
    np.testing.assert_allclose(grad_theta, expected_theta, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(grad_w, expected_w, rtol=1e-5, atol=1e-8)

    # First order only (w' held constant w.r.t. theta) differs: the second-order path through
    # w' = w - alpha dL_tr/dw(theta) is really there.
    def first_order(t):
        _, updated = np_meta_objective(THETA, W)
        loss_train, _ = np_cosface(X_TRAIN @ t, W, Y_TRAIN)
        loss_test, _ = np_cosface(X_TEST @ t, updated, Y_TEST)
        return LAMBDA * loss_train + (1 - LAMBDA) * loss_test

    first = numeric_gradient(first_order, THETA)
    assert np.abs(first - expected_theta).max() > 1e3 * 1e-8 + 1e-5 * np.abs(expected_theta).max()
