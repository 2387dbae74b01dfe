"""Depth / mask metrics on hand-made tensors against hand-computed values."""
import math

import numpy as np
import pytest
import tensorflow as tf

from tf_rgbd.eval import depth as depth_eval
from tf_rgbd.metrics import depth as depth_metrics


def _image(rows):
    return np.asarray(rows, np.float32)[None, ..., None]


def _one_hot(classes):
    return tf.one_hot(np.asarray(classes)[None], 7, dtype=tf.float32)


GT = _image([[0.5, 1.0], [0.0, 0.8]])
PRED = _image([[0.6, 1.3], [0.4, 0.0]])       # 1.3 is clipped to 1.0
GT_CLASSES = [[1, 5], [0, 1]]


def test_depth_metrics_equal_hand_computed_values():
    accumulator = depth_metrics.DepthMetricsAccumulator(depth_range_mm=200.0)
    accumulator.update(PRED, GT, _one_hot(GT_CLASSES), near_mm=np.array([500.0], np.float32))
    result = accumulator.result()
    # Intersection = the two top pixels (bottom-left has no GT, bottom-right no prediction).
    assert result["mse_255_intersection"] == pytest.approx((0.1 * 255) ** 2 / 2, rel=1e-5)
    # Face = top-left, top-right, bottom-right (bottom-left is background).
    assert result["mse_255"] == pytest.approx(((0.1 * 255) ** 2 + 0 + (0.8 * 255) ** 2) / 3,
                                              rel=1e-5)
    # Deltas on metric depth when it is known (issue 10, defect 4): z ratios 600/580 = 1.034
    # and 1.0, inside even 1.25^(1/4) = 1.057.
    assert result["delta_1.25"] == pytest.approx(1.0)
    assert result["delta_1.25^(1/4)"] == pytest.approx(1.0)
    # Without metric depth: on the normalised scale, ratios 1.2 and 1.0.
    normalised = depth_metrics.DepthMetricsAccumulator(depth_range_mm=200.0)
    normalised.update(PRED, GT, _one_hot(GT_CLASSES))
    assert normalised.result()["delta_1.25"] == pytest.approx(1.0)
    assert normalised.result()["delta_1.25^(1/2)"] == pytest.approx(0.5)     # 1.2 >= 1.118
    assert normalised.result()["delta_1.25^(1/4)"] == pytest.approx(0.5)
    # mm: z = 500 + (1 - d) * 200 -> gt 600 vs pred 580, and 500 vs 500.
    assert result["rmse_mm"] == pytest.approx(math.sqrt(20.0 ** 2 / 2), rel=1e-5)
    assert result["abs_rel"] == pytest.approx((20.0 / 600.0) / 2, rel=1e-5)
    assert "mask_miou" not in result  # no predicted mask given
    assert result["num_images"] == 1


def test_images_without_valid_pixels_or_depth_do_not_count():
    gt = np.concatenate([GT, np.zeros_like(GT), GT * 0 + 0.3])
    pred = np.concatenate([PRED, PRED, PRED])
    accumulator = depth_metrics.DepthMetricsAccumulator()
    accumulator.update(pred, gt, has_depth=np.array([True, True, False]))
    assert accumulator.result()["mse_255_intersection"] == pytest.approx((0.1 * 255) ** 2 / 2,
                                                                         rel=1e-5)
    # Without a mask the face region is where the ground truth has depth.
    assert accumulator.result()["mse_255"] == pytest.approx(
        ((0.1 * 255) ** 2 + (0.8 * 255) ** 2) / 3, rel=1e-5)


def test_per_image_average_over_batches():
    accumulator = depth_metrics.DepthMetricsAccumulator()
    accumulator.update(PRED, GT)
    accumulator.update(GT, GT)   # a perfect image
    assert accumulator.result()["mse_255_intersection"] == pytest.approx(
        (0.1 * 255) ** 2 / 2 / 2, rel=1e-5)
    assert accumulator.result()["delta_1.25^(1/4)"] == pytest.approx(0.75)


def test_mask_miou_and_pixel_accuracy():
    predicted = _one_hot([[1, 1], [0, 1]]) * 0.8 + 0.1   # probabilities, argmax = classes
    accumulator = depth_metrics.DepthMetricsAccumulator()
    accumulator.update(PRED, GT, _one_hot(GT_CLASSES), predicted)
    result = accumulator.result()
    # IoU: background 1/1, skin 2/3, nose 0/1; other classes absent from both.
    assert result["mask_miou"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert result["mask_pixel_accuracy"] == pytest.approx(3 / 4)
    assert depth_metrics.mask_metrics_from_confusion(np.zeros([7, 7]))["mask_miou"] != 0  # NaN


def test_examples_without_a_mask_are_left_out_of_mask_metrics():
    predicted = _one_hot([[1, 1], [0, 1]])
    gt = tf.concat([_one_hot(GT_CLASSES), tf.zeros([1, 2, 2, 7])], 0)
    accumulator = depth_metrics.DepthMetricsAccumulator()
    accumulator.update(np.concatenate([PRED, PRED]), np.concatenate([GT, GT]), gt,
                       tf.concat([predicted, predicted], 0))
    assert accumulator.confusion.sum() == 4
    assert accumulator.result()["mask_pixel_accuracy"] == pytest.approx(3 / 4)


def test_per_image_metrics_run_in_a_graph():
    @tf.function
    def mse(prediction, gt):
        values, weights = depth_metrics.per_image_depth_metrics(prediction, gt)["mse_255_intersection"]
        return values, weights

    values, weights = mse(tf.constant(PRED), tf.constant(GT))
    assert float(values[0]) == pytest.approx((0.1 * 255) ** 2 / 2, rel=1e-5)
    assert float(weights[0]) == 1.0


def test_mean_face_depth_averages_valid_pixels():
    batches = [
        {"depth": np.stack([_image([[0.5, 0.0], [0.2, 0.0]])[0],
                            _image([[0.7, 0.4], [0.0, 0.0]])[0]]),
         "has_depth": np.array([True, True])},
        {"depth": _image([[9.0, 9.0], [9.0, 9.0]]), "has_depth": np.array([False])},
    ]
    mean = depth_eval.mean_face_depth(batches, min_valid_fraction=0.5)
    np.testing.assert_allclose(mean[..., 0], [[0.6, 0.4], [0.2, 0.0]], rtol=1e-6)
    strict = depth_eval.mean_face_depth(batches, min_valid_fraction=1.0)
    np.testing.assert_allclose(strict[..., 0], [[0.6, 0.0], [0.0, 0.0]], rtol=1e-6)
    predict = depth_eval.mean_face_predictor(mean)
    assert tuple(predict({"rgb": tf.zeros([3, 2, 2, 3])})["depth"].shape) == (3, 2, 2, 1)
    with pytest.raises(ValueError, match="no image with depth"):
        depth_eval.mean_face_depth([batches[1]])


def test_table_lists_methods_and_marks_missing_metrics():
    table = depth_eval.format_depth_table({
        "mean-face": {"mse_255_intersection": 123.456, "mse_255": 200.0},
        "DepthNet": {"mse_255_intersection": 50.0, "mse_255": 80.0, "mask_miou": 0.61234}})
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["method", "mse_255_intersection", "mse_255"]
    assert "123.46" in lines[2] and lines[2].rstrip().endswith("-")
    assert "0.6123" in lines[3]
    assert "rmse_mm" not in table  # a column nobody measured is left out


def test_masked_prediction_zeroes_predicted_background():
    outputs = {"depth": tf.constant(PRED), "mask": _one_hot([[0, 1], [1, 0]])}
    masked = depth_eval.masked_by_predicted_face(outputs)
    np.testing.assert_allclose(masked["depth"].numpy()[0, ..., 0], [[0.0, 1.0], [0.4, 0.0]])
    assert depth_eval.masked_by_predicted_face({"depth": PRED})["depth"] is PRED
