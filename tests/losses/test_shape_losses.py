"""Losses of joint reconstruction + recognition pinned to values computed by hand."""
import math

import numpy as np
import pytest

from tf_rgbd.losses import shape as shape_losses

# Two examples of two 3D points. Squared point distances, by hand:
#   example 0: (1,2,2)-(0,0,0) -> 1+4+4 = 9;  (0,0,0)-(3,4,0) -> 9+16 = 25
#   example 1: (1,1,1)-(1,1,1) -> 0;          (2,2,2)-(0,0,0) -> 4+4+4 = 12
PREDICTED = np.array([[[1, 2, 2], [0, 0, 0]], [[1, 1, 1], [2, 2, 2]]], np.float32)
TARGET = np.array([[[0, 0, 0], [3, 4, 0]], [[1, 1, 1], [0, 0, 0]]], np.float32)


def test_shape_loss_is_the_mean_squared_point_distance():
    assert float(shape_losses.shape_loss(PREDICTED, TARGET)) == pytest.approx(46 / 4)


def test_shape_loss_skips_points_without_data():
    weights = np.array([[1, 0], [1, 1]], np.float32)  # (9 + 0 + 12) / 3
    assert float(shape_losses.shape_loss(PREDICTED, TARGET, weights)) == pytest.approx(7.0)


def test_per_example_rmse_and_empty_examples():
    rmse = shape_losses.per_example_rmse(PREDICTED, TARGET).numpy()
    np.testing.assert_allclose(rmse, [math.sqrt(34 / 2), math.sqrt(12 / 2)], rtol=1e-6)
    rmse = shape_losses.per_example_rmse(PREDICTED, TARGET,
                                         np.array([[0, 0], [1, 1]], np.float32)).numpy()
    assert math.isnan(rmse[0]) and rmse[1] == pytest.approx(math.sqrt(6))


def test_latent_loss_is_the_mean_squared_euclidean_distance():
    predicted = np.array([[1, 2], [0, 0]], np.float32)
    target = np.array([[0, 0], [3, 4]], np.float32)  # (1 + 4 + 9 + 16) / 2 examples
    assert float(shape_losses.latent_loss(predicted, target)) == pytest.approx(15.0)


def test_classification_and_joint_loss():
    logits = np.array([[2, 0, 0], [0, 0, 0]], np.float32)
    labels = np.array([0, 2])
    # -log softmax: log(1 + 2 e^-2) for example 0, log 3 for example 1.
    expected_c = (math.log(1 + 2 * math.exp(-2)) + math.log(3)) / 2
    loss_c = shape_losses.classification_loss(logits, labels)
    assert float(loss_c) == pytest.approx(expected_c, rel=1e-6)
    loss_r = shape_losses.shape_loss(PREDICTED, TARGET)
    assert float(shape_losses.joint_loss(loss_r, loss_c, 0.5)) == pytest.approx(
        0.5 * 11.5 + expected_c, rel=1e-6)
    assert float(shape_losses.joint_loss(loss_r, 0.0, 2.0)) == pytest.approx(23.0)
