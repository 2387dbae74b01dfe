"""Evaluation of joint 3D face reconstruction and recognition (Liu et al., CVPR 2018).

* Shape: per-example RMSE in mm (``sqrt`` of the mean squared point distance over the valid
  points of the predicted vs the target shape), reported per yaw bin as in the paper's
  BU-3DFE table: bins centred at 0, +-10, ..., +-90 degrees (a yaw goes to the nearest centre,
  halves away from 0, beyond +-90 to +-90). A bin without examples is ``None`` (empty), never
  0. ``mean`` is the mean over the non-empty bins (the table's mean column),
  ``mean_examples`` the mean over all examples.
* Recognition with c_Id (L2-normalised) on the dataset's protocol, scored by the project's
  tools (``tf_rgbd.eval.recognition.score_protocol``: rank-1, TAR@FAR, EER).
* The same RMSE table for s_bar alone (every face predicted as the mean neutral shape): the
  baseline that shows what the reconstruction adds.
* Inference time: milliseconds per image of the whole model (encoder + decoders + head) at
  batch 1, after warm-up, on this machine.

::

    metrics = evaluate_joint_model(model, config, split="test", protocol="lock3dface_style")
"""
from __future__ import annotations

import logging
import time
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from tf_rgbd.data import protocol as protocol_lib
from tf_rgbd.eval import embeddings as embeddings_lib
from tf_rgbd.eval import recognition
from tf_rgbd.losses import shape as shape_losses
from tf_rgbd.training import joint_reconstruction_training as training

YAW_BIN_STEP_DEG = 10
YAW_BINS = tuple(range(-90, 91, YAW_BIN_STEP_DEG))
FAR_TARGETS = (1e-2, 1e-3)
FEATURES_KEY = "c_id"


def yaw_bin(yaw_deg: float) -> int:
    """The centre (degrees) of the yaw bin of ``yaw_deg`` (nearest, halves away from 0)."""
    magnitude = np.floor(abs(float(yaw_deg)) / YAW_BIN_STEP_DEG + 0.5) * YAW_BIN_STEP_DEG
    return int(np.sign(yaw_deg) * min(magnitude, 90))


def rmse_per_yaw_bin(rmse_mm: Sequence[float], yaw_deg: Sequence[float],
                     bins: Sequence[int] = YAW_BINS) -> dict:
    """Per-bin mean RMSE (mm) of examples.

    Returns ``{"bins": {"-90": value | None, ...}, "counts": {"-90": n, ...}, "mean": mean over
    non-empty bins | None, "mean_examples": mean over examples | None}`` (keys are the bin
    centres as strings, in ``bins`` order). Examples with a NaN RMSE (no valid point) are left
    out and counted in ``"no_valid_points"``.
    """
    rmse = np.asarray(rmse_mm, np.float64).reshape(-1)
    yaw = np.asarray(yaw_deg, np.float64).reshape(-1)
    if rmse.shape != yaw.shape:
        raise ValueError(f"rmse {rmse.shape} and yaw {yaw.shape} differ")
    finite = np.isfinite(rmse)
    centres = np.array([yaw_bin(value) for value in yaw], np.int64)
    values, counts = {}, {}
    for centre in bins:
        chosen = finite & (centres == centre)
        counts[str(centre)] = int(chosen.sum())
        values[str(centre)] = float(rmse[chosen].mean()) if chosen.any() else None
    filled = [value for value in values.values() if value is not None]
    return {"bins": values, "counts": counts,
            "mean": float(np.mean(filled)) if filled else None,
            "mean_examples": float(rmse[finite].mean()) if finite.any() else None,
            "no_valid_points": int((~finite).sum())}


def predict_split(model, dataset: tf.data.Dataset, shape_unit_mm: float) -> dict:
    """Runs ``model`` over batches of ``make_joint_dataset`` (not training).

    Returns ``example_ids`` str [M], ``labels`` int [M], ``yaw_deg`` [M], ``rmse_mm`` [M],
    ``features`` float32 [M, D] (c_Id, not normalised), ``mean_shape_rmse_mm`` [M] (the
    RMSE of predicting s_bar for every face: the baseline a reconstruction must beat).
    """
    ids, labels, yaws, rmse, features, baseline = [], [], [], [], [], []
    for batch in dataset:
        outputs = model(batch["rgb"], training=False)
        rmse.append(shape_unit_mm * shape_losses.per_example_rmse(
            outputs["shape"], batch["shape"], batch["weights"]).numpy())
        mean = tf.broadcast_to(tf.convert_to_tensor(model.mean_shape)[None],
                               tf.shape(batch["shape"]))
        baseline.append(shape_unit_mm * shape_losses.per_example_rmse(
            mean, batch["shape"], batch["weights"]).numpy())
        features.append(outputs["identity_features"].numpy())
        ids.extend(value.decode() for value in batch["example_id"].numpy())
        labels.append(batch["label"].numpy())
        yaws.append(batch["yaw_deg"].numpy())
    return {"example_ids": np.array(ids), "labels": np.concatenate(labels),
            "yaw_deg": np.concatenate(yaws), "rmse_mm": np.concatenate(rmse),
            "features": np.concatenate(features),
            "mean_shape_rmse_mm": np.concatenate(baseline)}


def inference_ms_per_image(model, image_size: int, repeats: int = 20, warmup: int = 3) -> float:
    """Median milliseconds of one forward pass at batch 1 (compiled with tf.function)."""
    forward = tf.function(lambda rgb: model(rgb, training=False))
    image = tf.zeros([1, image_size, image_size, 3])
    for _ in range(warmup):
        tf.nest.map_structure(lambda t: t.numpy(), forward(image))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), forward(image))
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000.0)


def recognition_metrics(predicted: dict, protocol: protocol_lib.Protocol) -> dict:
    """Rank-1, TAR@FAR (``FAR_TARGETS``) and EER of c_Id on ``protocol``."""
    embedded = embeddings_lib.EmbeddingSet(
        example_ids=predicted["example_ids"], labels=predicted["labels"],
        features={FEATURES_KEY: embeddings_lib.l2_normalize(predicted["features"])})
    scored = recognition.score_protocol(embedded, protocol)
    overall = scored["overall"][FEATURES_KEY]
    verification = scored["verification"][FEATURES_KEY]
    tar = {far: tar for far, tar in verification.tar_at_far.items()}
    return {"rank1": float(overall.rank1),
            "tar_at_far": {f"{far:g}": _maybe(tar.get(far)) for far in FAR_TARGETS},
            "eer": float(verification.eer), "num_genuine": verification.num_genuine,
            "num_impostor": verification.num_impostor,
            "rank1_per_subset": {subset: float(result.rank1) for subset, result
                                 in scored["per_subset"][FEATURES_KEY].items()}}


def _maybe(value) -> Optional[float]:
    return None if value is None or not np.isfinite(value) else float(value)


def evaluate_joint_model(model, config, split: str = "test",
                         protocol: Optional[str] = "lock3dface_style",
                         timing_repeats: int = 20) -> dict:
    """Shape RMSE per yaw bin, recognition on ``protocol`` (None: skipped) and inference time
    of a trained model on ``split`` of ``config.run.data_dir`` (``config``: the run's resolved
    ``JointReconstructionConfig``)."""
    targets = training.load_shape_targets(config, split)
    dataset = training.make_joint_dataset(config, split, targets)
    predicted = predict_split(model, dataset, config.shape_unit_mm)
    metrics = {"split": split, "num_examples": int(len(predicted["example_ids"])),
               "shape_rmse_mm": rmse_per_yaw_bin(predicted["rmse_mm"], predicted["yaw_deg"]),
               "mean_shape_rmse_mm": rmse_per_yaw_bin(predicted["mean_shape_rmse_mm"],
                                                      predicted["yaw_deg"])}
    if protocol:
        data_dir = config.run.data_dir
        loaded = protocol_lib.load_protocol(protocol_lib.protocol_path(data_dir, protocol))
        if loaded.split != split:
            raise ValueError(f"protocol {protocol!r} lists split {loaded.split!r}, evaluated "
                             f"split is {split!r} (--eval_split)")
        metrics["recognition"] = recognition_metrics(predicted, loaded)
        metrics["protocol"] = protocol
    metrics["inference_ms_per_image"] = inference_ms_per_image(
        model, config.model.image_size, repeats=timing_repeats)
    logging.info("joint %s: RMSE mean %.3f mm, rank-1 %s, %.2f ms/image", config.variant,
                 metrics["shape_rmse_mm"]["mean"] or float("nan"),
                 metrics.get("recognition", {}).get("rank1"), metrics["inference_ms_per_image"])
    return metrics
