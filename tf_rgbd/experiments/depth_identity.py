"""Identity preservation of generated depth (issue 12; Pini et al., "Learning to Generate
Facial Depth Maps", 3DV 2018): does depth generated from RGB keep the identity?

One seed (:func:`run_seed`): train DepthNet and the cGAN baseline on the train split (the
project's depth training task, one budget for both), train the Siamese depth-only verifier on
the ground-truth depth of the training identities (contrastive loss, margin 1.0 on unit
embeddings), then score the SAME fixed, seeded pairs of the held-out test identities with
(a) ground-truth depth, (b) DepthNet's depth, (c) the cGAN's depth, with one acceptance
threshold chosen on pairs of held-out training identities (ground truth), never on the test
pairs (:mod:`tf_rgbd.eval.depth_verification`). Rows: source -> accuracy, AUC, EER,
TAR@FAR=1e-2. Nothing is tuned per source: every number is measured as it comes out.

Sizes (``FULL``): image size 32, verifier backbone ``tiny`` (IR-SE [1, 1, 1, 1], widths
8-64; the paper's verifier width is not the point, the GT-vs-generated gap is), embedding 64,
300 verifier steps of 32 pairs; DepthNet / cGAN with generator stem width 8, 150 steps of 16
images each. ``QUICK``: the smoke sizes of the test suite (numbers meaningless).
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Mapping, Sequence

import numpy as np

from tf_rgbd import io_utils
from tf_rgbd.experiments.claims import CGAN, DEPTH_METHODS, DEPTHNET

RESULTS_FILE = "depth_identity.json"
TABLE_TITLE = ("Identity preservation of generated depth: Siamese depth verifier trained on "
               "ground-truth depth, test-identity pairs (Pini et al.)")
METRICS = ("accuracy", "auc", "eer", "tar_at_far_1e-2")
GENERATORS = (DEPTHNET, CGAN)

FULL = dict(image_size=32, depth_steps=150, depth_batch_size=16, depth_base_filters=8,
            depth_learning_rate=2e-3, verifier_steps=300, verifier_batch_size=32,
            embedding_dim=64, verifier_learning_rate=1e-3, margin=1.0, max_pairs=500,
            val_identity_fraction=0.25, run_eagerly=False)
QUICK = dict(FULL, image_size=16, depth_steps=2, depth_batch_size=4, depth_base_filters=4,
             verifier_steps=4, verifier_batch_size=8, embedding_dim=16, max_pairs=50,
             run_eagerly=True)


def _depth_config(sizes: Mapping, data_dir: str, model_dir: str, seed: int, overrides: Mapping):
    from tf_rgbd.config.depthnet import DepthModelConfig, DepthTrainingConfig, OptimizerConfig
    from tf_rgbd.config.run import RunConfig

    steps = sizes["depth_steps"]
    return DepthTrainingConfig(
        model=DepthModelConfig(image_size=sizes["image_size"],
                               base_filters=sizes["depth_base_filters"],
                               discriminator_filters=max(4, sizes["depth_base_filters"]),
                               discriminator_downsamples=3 if sizes["image_size"] >= 32 else 1,
                               **overrides),
        optimizer=OptimizerConfig(learning_rate=sizes["depth_learning_rate"]),
        run=RunConfig(data_dir=data_dir, model_dir=model_dir, val_split="",
                      batch_size=sizes["depth_batch_size"], steps=steps,
                      steps_per_epoch=max(1, steps // 2), checkpoint_every_steps=max(1, steps),
                      seed=seed, verbose="0", run_eagerly=sizes["run_eagerly"]))


def _verifier_config(sizes: Mapping, data_dir: str, model_dir: str, seed: int):
    from tf_rgbd.config.run import RunConfig
    from tf_rgbd.config.verifier import (ContrastiveLossConfig, DepthVerifierTrainingConfig,
                                         VerifierModelConfig, VerifierOptimizerConfig)

    steps = sizes["verifier_steps"]
    return DepthVerifierTrainingConfig(
        model=VerifierModelConfig(backbone="tiny", image_size=sizes["image_size"],
                                  embedding_dim=sizes["embedding_dim"]),
        loss=ContrastiveLossConfig(margin=sizes["margin"]),
        optimizer=VerifierOptimizerConfig(learning_rate=sizes["verifier_learning_rate"]),
        run=RunConfig(data_dir=data_dir, model_dir=model_dir, val_split="",
                      batch_size=sizes["verifier_batch_size"], steps=steps,
                      steps_per_epoch=max(1, steps // 3), checkpoint_every_steps=max(1, steps),
                      seed=seed, verbose="0", run_eagerly=sizes["run_eagerly"]),
        val_identity_fraction=sizes["val_identity_fraction"])


def _finished(model_dir: str, output: str) -> bool:
    return (os.path.exists(os.path.join(model_dir, "training_summary.json"))
            and os.path.exists(os.path.join(model_dir, output)))


def run_seed(data_dir: str, workdir: str, seed: int, quick: bool = False) -> dict:
    """Trains and evaluates once with ``seed`` (see the module docstring); resumable: finished
    runs in ``workdir`` are reused, and a finished seed with the same sizes is returned as is.

    Returns:
      ``{"seed", "sizes", "rows": [{source, accuracy, auc, eer, tar_at_far_1e-2, pairs}],
      "threshold", "validation_accuracy", "num_pairs", "seconds"}``.
    """
    from tf_rgbd.config.verifier import DepthVerifierEvalConfig
    from tf_rgbd.eval import depth_verification
    from tf_rgbd.training.depth_training import train_depth_model
    from tf_rgbd.training.verifier_training import train_depth_verifier

    sizes = dict(QUICK if quick else FULL)
    seed_dir = os.path.join(workdir, f"seed_{seed}")
    path = os.path.join(seed_dir, RESULTS_FILE)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            cached = json.load(handle)
        if cached.get("sizes") == sizes and cached.get("data_dir") == os.path.abspath(data_dir):
            logging.info("depth identity seed %d: reusing %s", seed, path)
            return cached
    started = time.time()
    seconds: dict[str, float] = {}
    generators = {}
    for method in GENERATORS:
        model_dir = os.path.join(seed_dir, "depth", DEPTH_METHODS[method]["arch"])
        begun = time.time()
        if not _finished(model_dir, "generator.keras"):
            train_depth_model(_depth_config(sizes, data_dir, model_dir, seed,
                                            DEPTH_METHODS[method]))
        seconds[method] = round(time.time() - begun, 1)
        generators[method] = os.path.join(model_dir, "generator.keras")
    verifier_dir = os.path.join(seed_dir, "verifier")
    begun = time.time()
    if not _finished(verifier_dir, "verifier.keras"):
        train_depth_verifier(_verifier_config(sizes, data_dir, verifier_dir, seed))
    seconds["verifier"] = round(time.time() - begun, 1)
    begun = time.time()
    report = depth_verification.evaluate_depth_verifier(DepthVerifierEvalConfig(
        data_dir=data_dir, model_dir=verifier_dir,
        generators=tuple(f"{name}={generator}" for name, generator in generators.items()),
        eval_split="test", max_pairs=sizes["max_pairs"], pair_seed=seed, output_dir=seed_dir))
    seconds["evaluation"] = round(time.time() - begun, 1)
    seconds["total"] = round(time.time() - started, 1)
    result = {"seed": seed, "data_dir": os.path.abspath(data_dir), "sizes": sizes,
              "rows": depth_verification.table_rows(report), "threshold": report["threshold"],
              "validation_accuracy": report["validation"]["accuracy"],
              "num_pairs": len(report["pairs"]), "report": report["path"], "seconds": seconds}
    io_utils.atomic_write_json(path, result)
    return result


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = np.asarray(values, np.float64)
    if not values.size or not np.all(np.isfinite(values)):
        return math.nan, math.nan
    return float(np.mean(values)), float(np.std(values, ddof=1)) if values.size > 1 else 0.0


def summarize(per_seed: list[dict]) -> dict[str, list[dict]]:
    """``{TABLE_TITLE: rows}``: per depth source (in the order of the first seed), the mean and
    std over seeds of accuracy, AUC, EER and TAR@FAR=1e-2, plus ``n_seeds``."""
    if not per_seed:
        return {TABLE_TITLE: []}
    sources = [row["source"] for row in per_seed[0]["rows"]]
    rows = []
    for source in sources:
        entries = [row for result in per_seed for row in result["rows"]
                   if row["source"] == source]
        row = {"source": source}
        for metric in METRICS:
            mean, std = _mean_std([entry[metric] for entry in entries])
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean, std
        row["n_seeds"] = len(entries)
        rows.append(row)
    return {TABLE_TITLE: rows}

