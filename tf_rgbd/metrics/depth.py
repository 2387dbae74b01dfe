"""Depth and mask metrics of face depth estimation (pure functions, graph-safe: the trainers' ``test_step`` and the depth evaluation share them).

Conventions (the pipeline's, see ``tf_rgbd.data.pipeline``): depth maps are float32
[B, H, W, 1], per-image normalised to (0, 1] on the face (nearer = larger, the nearest face point
is 1, ``depth_range_mm`` behind it is 1/255) and exactly 0 on background / missing data.
Predictions are the generator's tanh output; :func:`to_unit_depth` clips them to [0, 1].

Metrics (each computed per image, then averaged over the images that have valid pixels):

- ``mse_255_intersection``: depth scaled to [0, 255] (``255 * normalised depth``), MSE over the
  pixels valid in both ground truth (gt > 0) and prediction (``255 * pred >= 0.5``, i.e. a
  non-zero 8-bit value). The Table 1 protocol of the DepthNet paper takes the intersection
  with EVERY compared method's prediction: pass that common ``support``
  (:func:`tf_rgbd.eval.depth.evaluate_depth_models` does), otherwise a method that predicts
  one correct pixel scores 0.
- ``mse_255``: the same error over the ground-truth face mask (non-background classes, where the
  ground truth has depth; the prediction counts wherever it is, 0 included): Table 6.
- ``rmse_mm`` and ``abs_rel`` (only when metric depth is known, i.e. each image's nearest depth
  ``near_mm``): both maps are put back in millimetres with the ground truth's reference,
  ``z = near_mm + (1 - d) * depth_range_mm``, over the intersection pixels.
- ``delta_<t>``: fraction of intersection pixels with max(pred / gt, gt / pred) < t, for
  t = 1.25, 1.25^2, 1.25^3 and the harder 1.25^(1/2), 1.25^(1/3), 1.25^(1/4), on METRIC depth
  (mm, z as above) when ``near_mm`` is known, else on the normalised scale (whose small values
  at the far face border dominate the ratios; such tables say ``delta_scale: normalized``).
- ``mask_miou`` (mean over classes present in ground truth or prediction of the dataset-level
  IoU) and ``mask_pixel_accuracy``, from the argmax of the predicted per-class probabilities,
  over examples that have a ground-truth mask.

Evaluation runs over datasets, the mean-face baseline and the tables live in
:mod:`tf_rgbd.eval.depth`.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from tf_rgbd.data import schema

DEPTH_SCALE_255 = 255.0
# A prediction pixel is "valid" when it is non-zero as an 8-bit depth value.
MIN_VALID_PREDICTION = 0.5 / DEPTH_SCALE_255
DELTA_THRESHOLDS: dict[str, float] = {
    "delta_1.25": 1.25,
    "delta_1.25^2": 1.25 ** 2,
    "delta_1.25^3": 1.25 ** 3,
    "delta_1.25^(1/2)": 1.25 ** (1 / 2),
    "delta_1.25^(1/3)": 1.25 ** (1 / 3),
    "delta_1.25^(1/4)": 1.25 ** (1 / 4),
}
DEPTH_METRICS = ("mse_255_intersection", "mse_255", *DELTA_THRESHOLDS)
METRIC_DEPTH_METRICS = ("rmse_mm", "abs_rel")
MASK_METRICS = ("mask_miou", "mask_pixel_accuracy")
TABLE_COLUMNS = ("mse_255_intersection", "mse_255", "rmse_mm", "abs_rel", "delta_1.25",
                 "delta_1.25^2", "delta_1.25^3", "delta_1.25^(1/2)", "delta_1.25^(1/3)",
                 "delta_1.25^(1/4)", "mask_miou", "mask_pixel_accuracy")


def to_unit_depth(predicted_depth: tf.Tensor) -> tf.Tensor:
    """Clips a tanh depth prediction [-1, 1] to the normalised range [0, 1] (0 = background)."""
    return tf.clip_by_value(tf.cast(predicted_depth, tf.float32), 0.0, 1.0)


def face_region_from_mask(mask: tf.Tensor) -> tf.Tensor:
    """float32 [B, H, W, 1]: 1 where a one-hot/probability mask [B, H, W, K] is not background.

    An all-zero mask (example without mask) gives an all-zero region.
    """
    mask = tf.cast(mask, tf.float32)
    not_background = tf.not_equal(tf.argmax(mask, axis=-1), 0)
    known = tf.reduce_max(mask, axis=-1) > 0
    return tf.cast(tf.logical_and(not_background, known), tf.float32)[..., None]


def _per_image_mean(values: tf.Tensor, weights: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(sum(v*w)/sum(w), sum(w)) over H, W, C for [B, H, W, C] tensors."""
    total = tf.reduce_sum(values * weights, axis=[1, 2, 3])
    count = tf.reduce_sum(weights, axis=[1, 2, 3])
    return tf.math.divide_no_nan(total, count), count


def per_image_depth_metrics(predicted_depth: tf.Tensor, gt_depth: tf.Tensor,
                            face_region: Optional[tf.Tensor] = None,
                            near_mm: Optional[tf.Tensor] = None,
                            depth_range_mm: float = 200.0,
                            has_depth: Optional[tf.Tensor] = None,
                            support: Optional[tf.Tensor] = None
                            ) -> dict[str, tuple[tf.Tensor, tf.Tensor]]:
    """Per-image depth metrics (graph-safe, usable in ``test_step``).

    Args:
      predicted_depth: float32 [B, H, W, 1], raw prediction (clipped to [0, 1] here).
      gt_depth: float32 [B, H, W, 1] in [0, 1], 0 = no data.
      face_region: float32 [B, H, W, 1], 1 on face pixels (see :func:`face_region_from_mask`);
        None uses ``gt_depth > 0``.
      near_mm: float32 [B], each image's nearest ground-truth depth in mm; enables ``rmse_mm``
        and ``abs_rel``.
      depth_range_mm: the pipeline's normalisation span.
      has_depth: bool/float [B]; images without ground truth get weight 0.
      support: float/bool [B, H, W, 1], the pixels every compared method predicts (the common
        support); the intersection metrics use gt > 0 AND support. None: this prediction's
        own valid pixels (fine for one model alone, not for a comparison table).

    Returns:
      ``{metric: (values [B], weights [B])}``; a weight is 1 when the image has pixels to
      measure, else 0 (average with ``sum(v * w) / sum(w)``).
    """
    prediction = to_unit_depth(predicted_depth)
    gt = tf.cast(gt_depth, tf.float32)
    image_weight = (tf.ones(tf.shape(gt)[:1]) if has_depth is None
                    else tf.cast(has_depth, tf.float32))
    gt_valid = tf.cast(gt > 0, tf.float32)
    if support is None:
        support = prediction >= MIN_VALID_PREDICTION
    intersection = gt_valid * tf.cast(support, tf.float32)
    squared_error_255 = tf.square((prediction - gt) * DEPTH_SCALE_255)

    def weighted(values: tf.Tensor, count: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return values, image_weight * tf.cast(count > 0, tf.float32)

    metrics = {}
    mse, count = _per_image_mean(squared_error_255, intersection)
    metrics["mse_255_intersection"] = weighted(mse, count)
    region = gt_valid if face_region is None else tf.cast(face_region, tf.float32) * gt_valid
    mse_face, face_count = _per_image_mean(squared_error_255, region)
    metrics["mse_255"] = weighted(mse_face, face_count)

    def add_deltas(ratio: tf.Tensor) -> None:
        for name, threshold in DELTA_THRESHOLDS.items():
            fraction, _ = _per_image_mean(tf.cast(ratio < threshold, tf.float32), intersection)
            metrics[name] = weighted(fraction, count)

    if near_mm is not None:
        near = tf.reshape(tf.cast(near_mm, tf.float32), [-1, 1, 1, 1])
        z_gt = near + (1.0 - gt) * depth_range_mm
        z_prediction = near + (1.0 - prediction) * depth_range_mm
        mse_mm, _ = _per_image_mean(tf.square(z_prediction - z_gt), intersection)
        metrics["rmse_mm"] = weighted(tf.sqrt(mse_mm), count)
        abs_rel, _ = _per_image_mean(tf.abs(z_prediction - z_gt) / tf.maximum(z_gt, 1e-6),
                                     intersection)
        metrics["abs_rel"] = weighted(abs_rel, count)
        safe_z_prediction = tf.maximum(z_prediction, 1e-6)
        safe_z_gt = tf.maximum(z_gt, 1e-6)
        add_deltas(tf.maximum(safe_z_prediction / safe_z_gt, safe_z_gt / safe_z_prediction))
    else:
        safe_prediction = tf.maximum(prediction, MIN_VALID_PREDICTION)
        safe_gt = tf.maximum(gt, MIN_VALID_PREDICTION)
        add_deltas(tf.maximum(safe_prediction / safe_gt, safe_gt / safe_prediction))
    return metrics


def mask_confusion_matrix(gt_mask: tf.Tensor, predicted_mask: tf.Tensor,
                          has_mask: Optional[tf.Tensor] = None) -> tf.Tensor:
    """int64 [K, K] pixel counts, rows = ground-truth class, columns = predicted (argmax) class.

    Args:
      gt_mask: float32 [B, H, W, K] one-hot ground truth.
      predicted_mask: float32 [B, H, W, K] per-class probabilities.
      has_mask: bool/float [B]; examples without a ground-truth mask are skipped.
    """
    num_classes = int(gt_mask.shape[-1])
    gt_class = tf.reshape(tf.argmax(gt_mask, axis=-1), [-1])
    predicted_class = tf.reshape(tf.argmax(predicted_mask, axis=-1), [-1])
    pixels = tf.shape(gt_mask)[1] * tf.shape(gt_mask)[2]
    if has_mask is None:
        weights = tf.ones_like(gt_class, tf.int64)
    else:
        weights = tf.repeat(tf.cast(has_mask, tf.int64), pixels)
    return tf.math.confusion_matrix(gt_class, predicted_class, num_classes=num_classes,
                                    weights=weights, dtype=tf.int64)


def mask_metrics_from_confusion(confusion: np.ndarray) -> dict[str, float]:
    """mIoU over classes with a non-empty union, and pixel accuracy, from a [K, K] matrix."""
    confusion = np.asarray(confusion, np.float64)
    total = confusion.sum()
    if total == 0:
        return {"mask_miou": float("nan"), "mask_pixel_accuracy": float("nan")}
    true_positive = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positive
    present = union > 0
    return {"mask_miou": float(np.mean(true_positive[present] / union[present])),
            "mask_pixel_accuracy": float(true_positive.sum() / total)}


class DepthMetricsAccumulator:
    """Accumulates per-image depth metrics and the mask confusion matrix over batches.

    Args:
      depth_range_mm: the pipeline's normalisation span (for ``rmse_mm``/``abs_rel``).
      num_mask_classes: K.
    """

    def __init__(self, depth_range_mm: float = 200.0,
                 num_mask_classes: int = schema.NUM_MASK_CLASSES):
        self.depth_range_mm = depth_range_mm
        self.confusion = np.zeros([num_mask_classes, num_mask_classes], np.int64)
        self._sums: dict[str, float] = {}
        self._weights: dict[str, float] = {}
        self.num_images = 0

    def update(self, predicted_depth, gt_depth, gt_mask=None, predicted_mask=None,
               near_mm=None, has_depth=None, has_mask=None, support=None) -> None:
        """Adds one batch (shapes as in :func:`per_image_depth_metrics`).

        ``gt_mask`` [B, H, W, K] one-hot defines the face region for ``mse_255`` (falls back to
        gt depth > 0 for examples without a mask); with ``predicted_mask`` it feeds mIoU.
        """
        gt_depth = tf.convert_to_tensor(gt_depth, tf.float32)
        face_region = None
        if gt_mask is not None:
            gt_mask = tf.convert_to_tensor(gt_mask, tf.float32)
            mask_known = tf.cast(tf.reduce_max(gt_mask, axis=[1, 2, 3]) > 0, tf.float32)
            if has_mask is not None:
                mask_known *= tf.cast(has_mask, tf.float32)
            fallback = tf.cast(gt_depth > 0, tf.float32)
            known = tf.reshape(mask_known, [-1, 1, 1, 1])
            face_region = known * face_region_from_mask(gt_mask) + (1.0 - known) * fallback
            if predicted_mask is not None:
                self.confusion += mask_confusion_matrix(gt_mask, predicted_mask,
                                                        mask_known).numpy()
        metrics = per_image_depth_metrics(predicted_depth, gt_depth, face_region, near_mm,
                                          self.depth_range_mm, has_depth, support)
        for name, (values, weights) in metrics.items():
            values, weights = values.numpy().astype(np.float64), weights.numpy().astype(np.float64)
            self._sums[name] = self._sums.get(name, 0.0) + float(np.sum(values * weights))
            self._weights[name] = self._weights.get(name, 0.0) + float(np.sum(weights))
        self.num_images += int(gt_depth.shape[0])

    def result(self) -> dict[str, float]:
        """Metric name -> value (NaN when nothing was measurable); mask metrics only when a
        predicted mask was given."""
        results = {name: (self._sums[name] / self._weights[name] if self._weights[name] else
                          float("nan")) for name in self._sums}
        if self.confusion.sum():
            results.update(mask_metrics_from_confusion(self.confusion))
        results["num_images"] = self.num_images
        return results
