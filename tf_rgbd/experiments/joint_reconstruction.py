"""The joint reconstruction + recognition experiment (Liu et al., CVPR 2018) for the related
methods comparison (issue 12; interface of ``run_seed`` / ``summarize`` shared with the other
methods).

``run_seed`` trains the three ablation rows on one synthetic dataset and evaluates each on its
``test`` split (held-out identities) with the ``lock3dface_style`` protocol:

* ``single`` (no disentangling), ``disentangle``, ``disentangle_id`` (+ identification loss);
* phase I (the encoder regressing the generator's coefficients) does not depend on the row,
  so it is trained once per seed (in the ``disentangle_id`` run) and the other rows start
  their phase II from its encoder;
* figures: shape RMSE (mm) per yaw bin and its mean, rank-1, TAR@FAR 1e-2 / 1e-3, EER,
  milliseconds per image. Measured as they come, whatever the ordering.

Sizes (``FULL_SIZES``): image 32, the ``tiny`` IR-SE backbone (the paper's width is not what
the comparison is about), 256 face vertices; ``QUICK_SIZES`` is a smoke run for the tests.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from tf_rgbd import io_utils
from tf_rgbd.config.joint_reconstruction import (JOINT_VARIANTS, METRICS_FILE,
                                                 JointModelConfig, JointReconstructionConfig)
from tf_rgbd.config.run import RunConfig
from tf_rgbd.eval import joint_reconstruction as joint_eval
from tf_rgbd.training import joint_reconstruction_training as joint_training

DESCRIPTIONS = {"single": "no disentangling (one latent, one decoder)",
                "disentangle": "disentangling (c_Id / c_Res, f_Id / f_Res)",
                "disentangle_id": "disentangling + identification loss"}
# The run whose phase I the other rows reuse.
PHASE1_OWNER = "disentangle_id"
PROTOCOL = "lock3dface_style"


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Schedule and sizes of one seed."""

    batch_size: int
    num_shape_vertices: int
    phase1_steps: int
    phase2_steps: int
    phase3_steps: int
    image_size: int = 32
    backbone: str = "tiny"
    timing_repeats: int = 20
    run_eagerly: bool = False


FULL_SIZES = Sizes(batch_size=32, num_shape_vertices=256, phase1_steps=300, phase2_steps=150,
                   phase3_steps=300)
QUICK_SIZES = Sizes(batch_size=4, num_shape_vertices=32, phase1_steps=1, phase2_steps=1,
                    phase3_steps=1, timing_repeats=3, run_eagerly=True)


def experiment_config(data_dir: str, model_dir: str, variant: str, seed: int, sizes: Sizes,
                      init_from: Optional[str] = None) -> JointReconstructionConfig:
    """The config of one ablation row (phase I skipped when ``init_from`` gives it)."""
    return JointReconstructionConfig(
        model=JointModelConfig(backbone=sizes.backbone, image_size=sizes.image_size),
        run=RunConfig(data_dir=data_dir, model_dir=model_dir, batch_size=sizes.batch_size,
                      seed=seed, augment=False, verbose="0", init_from=init_from,
                      checkpoint_every_steps=max(sizes.phase1_steps, sizes.phase3_steps),
                      run_eagerly=sizes.run_eagerly),
        variant=variant, num_shape_vertices=sizes.num_shape_vertices,
        phase1_steps=0 if init_from else sizes.phase1_steps, phase2_steps=sizes.phase2_steps,
        phase3_steps=sizes.phase3_steps)


def train_and_evaluate(config: JointReconstructionConfig, split: str = "test",
                       protocol: Optional[str] = PROTOCOL, timing_repeats: int = 20,
                       extra: Optional[Mapping[str, Any]] = None) -> dict:
    """Trains (resuming; finished phases reused) and evaluates one run; the metrics (plus
    ``extra``) are also written to ``<model_dir>/joint_metrics.json``."""
    started = time.time()
    summary = joint_training.run_training(config)
    train_seconds = time.time() - started
    model, resolved = joint_training.load_joint_model(config.run.model_dir)
    metrics = joint_eval.evaluate_joint_model(model, resolved, split=split, protocol=protocol,
                                              timing_repeats=timing_repeats)
    metrics.update(variant=config.variant, train_seconds=round(train_seconds, 1),
                   phase_seconds={phase: value.get("seconds") for phase, value
                                  in summary["phases"].items()}, **dict(extra or {}))
    io_utils.atomic_write_json(os.path.join(config.run.model_dir, METRICS_FILE), metrics)
    return metrics


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """A readable block of one run's metrics (the program prints it)."""
    rmse = metrics["shape_rmse_mm"]
    lines = [f"joint reconstruction ({metrics.get('variant')}) on {metrics['split']}: "
             f"{metrics['num_examples']} examples",
             "shape RMSE (mm) per yaw bin: " + ", ".join(
                 f"{centre}: {'empty' if value is None else f'{value:.2f}'}"
                 for centre, value in rmse["bins"].items()),
             f"mean over bins {_fmt(rmse['mean'])} mm, over examples "
             f"{_fmt(rmse['mean_examples'])} mm (s_bar alone: "
             f"{_fmt(metrics['mean_shape_rmse_mm']['mean'])} mm over bins)"]
    recognition = metrics.get("recognition")
    if recognition:
        tar = recognition["tar_at_far"]
        lines.append(f"c_Id on {metrics.get('protocol')}: rank-1 {recognition['rank1']:.3f}, "
                     + ", ".join(f"TAR@FAR={far} {_fmt(value)}" for far, value in tar.items())
                     + f", EER {recognition['eer']:.3f}")
    lines.append(f"inference {metrics['inference_ms_per_image']:.2f} ms/image (batch 1)")
    return "\n".join(lines)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _row(metrics: Mapping[str, Any]) -> dict:
    rmse = metrics["shape_rmse_mm"]
    recognition = metrics["recognition"]
    return {"variant": metrics["variant"],
            "rmse_per_yaw_mm": rmse["bins"], "count_per_yaw": rmse["counts"],
            "rmse_mean_mm": rmse["mean"], "rmse_mean_examples_mm": rmse["mean_examples"],
            "mean_shape_rmse_mean_mm": metrics["mean_shape_rmse_mm"]["mean"],
            "rank1": recognition["rank1"],
            "tar_at_far_1e-2": recognition["tar_at_far"]["0.01"],
            "tar_at_far_1e-3": recognition["tar_at_far"]["0.001"],
            "eer": recognition["eer"],
            "num_impostor_pairs": recognition["num_impostor"],
            "inference_ms_per_image": metrics["inference_ms_per_image"],
            "train_seconds": metrics["train_seconds"]}


def run_seed(data_dir: str, workdir: str, seed: int, quick: bool = False) -> dict:
    """Trains and evaluates the three rows with ``seed`` (see the module docstring); a re-run
    with the same ``workdir`` reuses finished runs (their ``joint_metrics.json``) and phases.

    Returns ``{"method": "joint_reconstruction", "seed", "quick", "sizes", "seconds",
    "rows": [one dict per variant: rmse_per_yaw_mm {bin: mm | None}, rmse_mean_mm, rank1,
    tar_at_far_1e-2, tar_at_far_1e-3, eer, inference_ms_per_image, ...]}``.
    """
    sizes = QUICK_SIZES if quick else FULL_SIZES
    started = time.time()
    rows = []
    phase1 = os.path.join(workdir, PHASE1_OWNER, "phase1")
    order = [PHASE1_OWNER] + [name for name in JOINT_VARIANTS if name != PHASE1_OWNER]
    by_variant = {}
    for variant in order:
        model_dir = os.path.join(workdir, variant)
        config = experiment_config(data_dir, model_dir, variant, seed, sizes,
                                   init_from=None if variant == PHASE1_OWNER else phase1)
        metrics_path = os.path.join(model_dir, METRICS_FILE)
        metrics = None
        if os.path.exists(metrics_path):
            with open(metrics_path, encoding="utf-8") as handle:
                metrics = json.load(handle)
            if metrics.get("sizes") != dataclasses.asdict(sizes):
                raise ValueError(f"{model_dir} holds a run of other sizes "
                                 f"({metrics.get('sizes')}); use another workdir")
        if metrics is None:
            metrics = train_and_evaluate(config, protocol=PROTOCOL,
                                         timing_repeats=sizes.timing_repeats,
                                         extra={"sizes": dataclasses.asdict(sizes)})
        by_variant[variant] = _row(metrics)
    rows = [{"description": DESCRIPTIONS[name], **by_variant[name]} for name in JOINT_VARIANTS]
    return {"method": "joint_reconstruction", "seed": int(seed), "quick": bool(quick),
            "sizes": dataclasses.asdict(sizes), "seconds": round(time.time() - started, 1),
            "rows": rows}


def _mean_std(values: Sequence[Optional[float]]) -> tuple[Optional[float], Optional[float], int]:
    present = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not present:
        return None, None, 0
    return float(np.mean(present)), float(np.std(present)), len(present)


def summarize(per_seed: list[dict]) -> dict[str, list[dict]]:
    """Two tables over seeds (mean and std per column; bins empty in every seed stay None):

    * ``Joint reconstruction: shape RMSE (mm) per yaw``: per variant, ``yaw_<bin>_mean/_std``
      for the bins of ``joint_eval.YAW_BINS``, ``mean_mean/_std`` (mean over non-empty bins),
      ``mean_shape_only_mean/_std`` (the same mean for s_bar alone);
    * ``Joint reconstruction: recognition with c_Id``: per variant, ``rank1``,
      ``tar_at_far_1e-2``, ``tar_at_far_1e-3``, ``eer``, ``inference_ms_per_image``.
    """
    if not per_seed:
        raise ValueError("summarize needs at least one seed's results")
    variants = [row["variant"] for row in per_seed[0]["rows"]]
    shape_rows, recognition_rows = [], []
    for variant in variants:
        rows = [next(row for row in seed["rows"] if row["variant"] == variant)
                for seed in per_seed]
        shape_row = {"variant": variant, "description": DESCRIPTIONS.get(variant, variant),
                     "n_seeds": len(rows)}
        for centre in joint_eval.YAW_BINS:
            mean, std, _ = _mean_std([row["rmse_per_yaw_mm"].get(str(centre)) for row in rows])
            shape_row[f"yaw_{centre}_mean"], shape_row[f"yaw_{centre}_std"] = mean, std
        shape_row["mean_mean"], shape_row["mean_std"], _ = _mean_std(
            [row["rmse_mean_mm"] for row in rows])
        shape_row["mean_shape_only_mean"], shape_row["mean_shape_only_std"], _ = _mean_std(
            [row.get("mean_shape_rmse_mean_mm") for row in rows])
        shape_rows.append(shape_row)
        recognition_row = {"variant": variant, "description": DESCRIPTIONS.get(variant, variant),
                           "n_seeds": len(rows)}
        for key in ("rank1", "tar_at_far_1e-2", "tar_at_far_1e-3", "eer",
                    "inference_ms_per_image"):
            recognition_row[f"{key}_mean"], recognition_row[f"{key}_std"], _ = _mean_std(
                [row[key] for row in rows])
        recognition_rows.append(recognition_row)
    return {"Joint reconstruction: shape RMSE (mm) per yaw": shape_rows,
            "Joint reconstruction: recognition with c_Id": recognition_rows}
