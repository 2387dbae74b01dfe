"""Depth evaluation runs: depth generators and the mean-face baseline over a dataset split,
with the metrics of :mod:`tf_rgbd.metrics.depth`, and the depth table.

The **mean-face baseline** predicts, for every image, the training set's mean aligned depth
(:func:`mean_face_depth`), so every table has a reference.
"""
from __future__ import annotations

import math
import os
from typing import Callable, Iterable, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from tf_rgbd import io_utils
from tf_rgbd.config.depthnet import DepthEvalConfig
from tf_rgbd.data import pipeline, schema
from tf_rgbd.models.loading import load_depth_generator
from tf_rgbd.metrics.depth import (DELTA_THRESHOLDS, MIN_VALID_PREDICTION,  # noqa: F401
                                   TABLE_COLUMNS, DepthMetricsAccumulator, to_unit_depth)


def mean_face_depth(batches: Iterable[Mapping[str, tf.Tensor]],
                    min_valid_fraction: float = 0.5) -> np.ndarray:
    """The mean aligned face depth of a dataset (the mean-face baseline's prediction).

    Args:
      batches: pipeline batches with ``depth`` [B, S, S, 1] and ``has_depth`` [B].
      min_valid_fraction: a pixel is face in the mean map when at least this fraction of the
        images have depth there (otherwise background, 0).

    Returns:
      float32 [S, S, 1] in [0, 1]: per pixel, the mean depth over the images valid there.
    """
    total = valid_count = None
    images = 0
    for batch in batches:
        depth = np.asarray(batch["depth"], np.float64)
        weight = np.asarray(batch["has_depth"], np.float64).reshape(-1, 1, 1, 1)
        valid = (depth > 0) * weight
        total = (depth * valid).sum(0) + (0 if total is None else total)
        valid_count = valid.sum(0) + (0 if valid_count is None else valid_count)
        images += int(weight.sum())
    if not images:
        raise ValueError("mean_face_depth: no image with depth in the given batches; the "
                         "training split needs ground-truth depth")
    mean = np.where(valid_count >= min_valid_fraction * images,
                    total / np.maximum(valid_count, 1), 0.0)
    return mean.astype(np.float32)


def nearest_depth_mm_by_example(shard_paths: Sequence[str]) -> dict[str, float]:
    """example_id -> nearest valid ground-truth depth (mm) for records whose depth is metric.

    This is the reference the pipeline normalises against (its ``near_mm``), so normalised depth
    maps can be put back in millimetres. Records without depth or with normalised depth are
    left out.
    """
    nearest = {}
    for path in shard_paths:
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            example = schema.decode_example_numpy(record)
            if example.depth is None or example.depth_units != "mm":
                continue
            valid = example.depth[example.depth > 0]
            if valid.size:
                nearest[example.example_id] = float(valid.min())
    return nearest


def evaluate_depth_predictor(predict_fn: Callable[[Mapping[str, tf.Tensor]], Mapping[str, tf.Tensor]],
                             batches: Iterable[Mapping[str, tf.Tensor]],
                             depth_range_mm: float = 200.0,
                             near_mm_by_example: Optional[Mapping[str, float]] = None
                             ) -> dict[str, float]:
    """Runs ``predict_fn`` over ``batches`` and returns every metric of this module.

    Args:
      predict_fn: ``batch -> {"depth": [B, S, S, 1] (raw, clipped here), optional "mask":
        [B, S, S, K] probabilities}``.
      batches: pipeline batches with ``rgb``, ``depth``, ``mask``, ``has_depth``, ``has_mask``
        (and ``example_id`` when ``near_mm_by_example`` is given).
      near_mm_by_example: from :func:`nearest_depth_mm_by_example`; enables ``rmse_mm`` and
        ``abs_rel`` (only if every image of the batches has an entry).
    """
    accumulator = DepthMetricsAccumulator(depth_range_mm)
    for batch in batches:
        outputs = predict_fn(batch)
        near_mm = None
        if near_mm_by_example is not None and "example_id" in batch:
            ids = [value.decode() if isinstance(value, bytes) else str(value)
                   for value in np.asarray(batch["example_id"]).tolist()]
            if all(example_id in near_mm_by_example for example_id in ids):
                near_mm = np.asarray([near_mm_by_example[i] for i in ids], np.float32)
        accumulator.update(outputs["depth"], batch["depth"], batch.get("mask"),
                           outputs.get("mask"), near_mm, batch.get("has_depth"),
                           batch.get("has_mask"))
    return accumulator.result()


def mean_face_predictor(mean_depth: np.ndarray
                        ) -> Callable[[Mapping[str, tf.Tensor]], dict[str, tf.Tensor]]:
    """``predict_fn`` of the mean-face baseline: the same [S, S, 1] map for every image."""
    mean_depth = tf.constant(mean_depth, tf.float32)

    def predict(batch: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        batch_size = tf.shape(batch["rgb"])[0]
        return {"depth": tf.tile(mean_depth[None], tf.stack([batch_size, 1, 1, 1]))}

    return predict


MEAN_FACE = "mean-face baseline"


def masked_by_predicted_face(outputs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """D*: the depth zeroed where the predicted mask's argmax is background (what
    ``training/augment_dataset.py`` stores). Outputs without a mask are returned unchanged."""
    outputs = dict(outputs)
    if "mask" in outputs:
        face = tf.not_equal(tf.argmax(outputs["mask"], axis=-1), 0)[..., None]
        outputs["depth"] = tf.where(face, to_unit_depth(outputs["depth"]), 0.0)
    return outputs


def generator_predictor(generator, mask_background: bool = False
                        ) -> Callable[[Mapping[str, tf.Tensor]], Mapping[str, tf.Tensor]]:
    """``predict_fn`` of a depth generator (DepthNet or cGAN): one compiled inference call.

    Args:
      mask_background: evaluate D* (:func:`masked_by_predicted_face`) instead of the raw depth
        head.
    """
    def run(rgb):
        outputs = generator(rgb, training=False)
        return masked_by_predicted_face(outputs) if mask_background else outputs

    forward = tf.function(run, reduce_retracing=True)
    return lambda batch: forward(batch["rgb"])


# Columns measured on the common support (the pixels every compared method predicts).
SUPPORT_COLUMNS = ("mse_255_intersection", "rmse_mm", "abs_rel", *DELTA_THRESHOLDS)
DEFAULT_MIN_COVERAGE = 0.5


def _prediction_valid(outputs: Mapping[str, tf.Tensor]) -> tf.Tensor:
    return to_unit_depth(outputs["depth"]) >= MIN_VALID_PREDICTION


def evaluate_depth_models(data_dir: str, predictors: Mapping[str, Callable],
                          split: str = "test", train_split: str = "train",
                          image_size: int = 64, batch_size: int = 16,
                          depth_range_mm: float = 200.0,
                          include_mean_face: bool = True,
                          min_coverage: float = DEFAULT_MIN_COVERAGE
                          ) -> dict[str, dict[str, float]]:
    """Every metric of this module for each model (and the mean-face baseline) on a split, on
    ONE common support so the rows are comparable (the DepthNet paper's Table 1 protocol).

    The support-based columns (``SUPPORT_COLUMNS``: MSE on the intersection, RMSE/AbsRel in mm,
    the deltas) are measured on the pixels where the ground truth AND every compared method
    predict depth. A method that covers less than ``min_coverage`` of the ground-truth face
    pixels would shrink that support to nearly nothing (a predictor of one correct pixel would
    score MSE 0 and delta 1): it is left out of the common support and its support-based
    columns are NaN (not comparable); its ``mse_255`` (whole face, missing pixels count as 0)
    is still reported. The deltas are on metric depth (mm) when every evaluated example has
    metric ground truth, else on the normalised scale (``delta_scale``).

    Args:
      data_dir: dataset directory (``python -m datasets.build`` output).
      predictors: method name -> ``predict_fn`` (see :func:`generator_predictor`).
      split: evaluated split; ``train_split`` gives the mean face.
      image_size: S the models take.
      include_mean_face: add the :data:`MEAN_FACE` row (first).
      min_coverage: smallest fraction of ground-truth face pixels a method must predict to
        take part in the common support.

    Returns:
      ``{method: {metric: value, "coverage": fraction of ground-truth face pixels it predicts,
      "support_coverage": fraction of them in the common support, "in_common_support": 1.0 /
      0.0, "delta_scale_mm": 1.0 / 0.0}}`` (``rmse_mm``/``abs_rel`` only for metric-depth
      datasets).
    """
    manifest = pipeline.read_manifest(data_dir)
    near_mm = nearest_depth_mm_by_example(pipeline.list_shards(data_dir, split))
    with_depth = manifest["splits"][split]["histograms"].get("has_depth", {}).get("True", 0)
    metric_depth = bool(near_mm) and len(near_mm) >= with_depth

    def batches(which: str, with_metadata: bool = True):
        return pipeline.make_dataset(data_dir, which, batch_size=batch_size,
                                     image_size=image_size, deterministic=True,
                                     with_metadata=with_metadata, depth_range_mm=depth_range_mm,
                                     zero_fill=("depth", "mask"))  # weighted by has_depth/mask

    methods: dict[str, Callable] = {}
    if include_mean_face:
        mean_depth = mean_face_depth(batches(train_split, with_metadata=False).as_numpy_iterator())
        methods[MEAN_FACE] = mean_face_predictor(mean_depth)
    methods.update(predictors)

    excluded: set[str] = set()
    while True:
        results, coverage = _evaluate_on_common_support(
            methods, batches(split), excluded, depth_range_mm,
            near_mm if metric_depth else None)
        too_small = {name for name in methods if name not in excluded
                     and not coverage[name] >= min_coverage}
        if not too_small:
            break
        excluded |= too_small
    for name in excluded:
        for column in SUPPORT_COLUMNS:
            if column in results[name]:
                results[name][column] = float("nan")
    return results


def _evaluate_on_common_support(methods: Mapping[str, Callable], batches, excluded,
                                depth_range_mm: float, near_mm_by_example
                                ) -> tuple[dict, dict]:
    """One pass over ``batches``: every method's metrics on the support common to the methods
    not in ``excluded`` (excluded ones: their own support). Returns (results, coverage)."""
    accumulators = {name: DepthMetricsAccumulator(depth_range_mm) for name in methods}
    covered = {name: 0.0 for name in methods}
    gt_pixels = support_pixels = 0.0
    for batch in batches:
        outputs = {name: predict(batch) for name, predict in methods.items()}
        has_depth = tf.reshape(tf.cast(batch["has_depth"], tf.bool), [-1, 1, 1, 1])
        gt_valid = tf.logical_and(batch["depth"] > 0, has_depth)
        valid = {name: _prediction_valid(output) for name, output in outputs.items()}
        support = gt_valid
        for name, mask in valid.items():
            if name not in excluded:
                support = tf.logical_and(support, mask)
        gt_pixels += float(tf.reduce_sum(tf.cast(gt_valid, tf.float32)))
        support_pixels += float(tf.reduce_sum(tf.cast(support, tf.float32)))
        near_mm = None
        if near_mm_by_example is not None:
            ids = [value.decode() if isinstance(value, bytes) else str(value)
                   for value in np.asarray(batch["example_id"]).tolist()]
            # Examples without depth have no reference; their weight is 0 anyway.
            near_mm = np.asarray([near_mm_by_example.get(i, 1.0) for i in ids], np.float32)
        for name, output in outputs.items():
            covered[name] += float(tf.reduce_sum(tf.cast(
                tf.logical_and(gt_valid, valid[name]), tf.float32)))
            accumulators[name].update(
                output["depth"], batch["depth"], batch.get("mask"), output.get("mask"), near_mm,
                batch.get("has_depth"), batch.get("has_mask"),
                support=valid[name] if name in excluded else support)
    coverage = {name: covered[name] / gt_pixels if gt_pixels else float("nan")
                for name in methods}
    results = {}
    for name, accumulator in accumulators.items():
        results[name] = {**accumulator.result(), "coverage": coverage[name],
                         "support_coverage": (support_pixels / gt_pixels if gt_pixels
                                              else float("nan")),
                         "in_common_support": 0.0 if name in excluded else 1.0,
                         "delta_scale_mm": 0.0 if near_mm_by_example is None else 1.0}
    return results, coverage


def format_depth_table(results: Mapping[str, Mapping[str, float]],
                       columns: Sequence[str] = TABLE_COLUMNS) -> str:
    """A plain-text table, rows = methods, columns = metrics (``-`` where not measured)."""
    columns = [column for column in columns
               if any(column in row and not _is_nan(row[column]) for row in results.values())]
    short = {name: name.replace("delta_", "d").replace("mask_", "m_") for name in columns}
    name_width = max([len("method")] + [len(name) for name in results])
    widths = [max(len(short[column]), 8) for column in columns]
    lines = ["  ".join(["method".ljust(name_width)]
                       + [short[c].rjust(w) for c, w in zip(columns, widths)])]
    lines.append("-" * len(lines[0]))
    for method, row in results.items():
        cells = []
        for column, width in zip(columns, widths):
            value = row.get(column)
            cells.append(("-" if value is None or _is_nan(value) else _format(value)).rjust(width))
        lines.append("  ".join([method.ljust(name_width)] + cells))
    return "\n".join(lines)


def _is_nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _format(value: float) -> str:
    return f"{value:.2f}" if abs(value) >= 10 else f"{value:.4f}"


DEPTH_METRICS_FILE = "depth_metrics.json"


def parse_generator_entries(entries: Sequence[str]) -> dict[str, str]:
    """``["name=path", "path"]`` -> ``{name: path}`` (a bare path is named after its folder)."""
    named = {}
    for entry in entries:
        name, _, path = entry.partition("=") if "=" in entry else ("", "", entry)
        name = name or os.path.basename(os.path.dirname(os.path.abspath(path))) or path
        if not os.path.exists(path):
            raise FileNotFoundError(f"--generators: {path} does not exist (train one with "
                                    "python -m training.train_depthnet)")
        named[name] = path
    return named


def evaluate_depth_generators(config: DepthEvalConfig) -> dict:
    """The library side of ``training/evaluate_depth.py``: loads the generators, evaluates them
    (and the mean face) and writes ``depth_metrics.json`` into ``config.output_dir``.

    Returns ``{"path": written file, "metrics": {method: {metric: value}}, ...}``.
    """
    paths = parse_generator_entries(config.generators)
    generators = {name: load_depth_generator(path) for name, path in paths.items()}
    image_size = config.image_size or next(
        (model.get_config().get("image_size") for model in generators.values()), None) or 64
    predictors = {}
    for name, model in generators.items():
        predictors[name] = generator_predictor(model)
        if config.masked and getattr(model, "use_mask_branch", False):
            predictors[f"{name} D*"] = generator_predictor(model, mask_background=True)
    results = evaluate_depth_models(
        config.data_dir, predictors, split=config.eval_split, train_split=config.train_split,
        image_size=image_size, batch_size=config.batch_size,
        depth_range_mm=config.depth_range_mm, include_mean_face=config.mean_face)
    output_dir = config.output_dir or (
        os.path.dirname(os.path.abspath(next(iter(paths.values())))) if paths
        else config.data_dir)
    path = os.path.join(output_dir, DEPTH_METRICS_FILE)
    report = {"data_dir": config.data_dir, "split": config.eval_split, "image_size": image_size,
              "generators": paths, "metrics": results}
    io_utils.atomic_write_json(path, report)
    return {"path": path, **report}
