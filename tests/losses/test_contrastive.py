"""The contrastive loss pinned to hand-computed values (y d^2 + (1 - y) max(0, m - d)^2)."""
import numpy as np
import pytest
import tensorflow as tf

from tf_rgbd.losses import contrastive


def test_pair_distance_is_euclidean():
    first = np.array([[0.0, 0.0], [1.0, 1.0], [0.6, 0.8]], np.float32)
    second = np.array([[3.0, 4.0], [1.0, 1.0], [0.0, 0.0]], np.float32)
    # 5, 0 (+ the 1e-12 under the root), 1.
    np.testing.assert_allclose(contrastive.pair_distance(first, second).numpy(),
                               [5.0, 1e-6, 1.0], atol=1e-6)


def test_terms_and_mean_match_a_hand_computation():
    distance = np.array([0.3, 0.3, 1.5, 0.0, 0.8], np.float32)
    same = np.array([1, 0, 0, 1, 0], np.float32)
    margin = 1.0
    # genuine: d^2 = 0.09, 0; impostor: (1 - 0.3)^2 = 0.49, max(0, 1 - 1.5)^2 = 0, 0.2^2 = 0.04
    expected = np.array([0.09, 0.49, 0.0, 0.0, 0.04])
    np.testing.assert_allclose(contrastive.contrastive_terms(distance, same, margin).numpy(),
                               expected, atol=1e-6)
    assert float(contrastive.contrastive_loss(distance, same, margin)) == pytest.approx(
        0.62 / 5, abs=1e-6)
    weights = np.array([1, 0, 1, 1, 2], np.float32)
    assert float(contrastive.contrastive_loss(distance, same, margin, weights)) == pytest.approx(
        (0.09 + 0.0 + 0.0 + 2 * 0.04) / 5, abs=1e-6)
    # Another margin: impostors at 0.3 / 1.5 / 0.8 with m = 2: 1.7^2, 0.5^2, 1.2^2.
    np.testing.assert_allclose(
        contrastive.contrastive_terms(distance, same, 2.0).numpy(),
        [0.09, 2.89, 0.25, 0.0, 1.44], atol=1e-5)


def test_gradient_pulls_genuine_together_and_pushes_impostors_apart():
    distance = tf.Variable([0.5, 0.5, 1.2])
    same = tf.constant([1.0, 0.0, 0.0])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(contrastive.contrastive_terms(distance, same, 1.0))
    gradient = tape.gradient(loss, distance).numpy()
    # d/dd: 2 d = 1.0 (genuine), -2 (m - d) = -1.0 (impostor inside the margin), 0 beyond it.
    np.testing.assert_allclose(gradient, [1.0, -1.0, 0.0], atol=1e-6)
    first = tf.Variable([[1.0, 0.0]])
    with tf.GradientTape() as tape:
        value = contrastive.pair_distance(first, tf.constant([[1.0, 0.0]]))
    assert np.all(np.isfinite(tape.gradient(value, first).numpy()))   # finite at d = 0
