"""Demodalizing face recognition (DMFR; Zhai et al., AAAI 2021) against its two baselines, one
seed at a time (the related-methods interface: :func:`run_seed`, :func:`summarize`).

One seed on a synthetic dataset (train / test splits, the ``lock3dface_style`` protocol):

1. train a small DepthNet on the real training split (its D* drives the pose domain);
2. build the generative domains of both splits (``pose``: RGB + D* re-rendered at new yaws;
   ``quality``: blur + noise + JPEG), every generated example paired with its source;
3. pre-train one encoder with a softmax classifier on the real data (shared by every row: each
   row starts from the same softmax-pretrained network, as in the paper);
4. train five rows with the same budget (steps, batch, SGD): the CosFace baseline on real data,
   the CosFace baseline on real + generated mixed 1:1, and the modes ``meta``, ``disentangle``
   and ``filter``;
5. evaluate each: TAR@FAR 1e-5 .. 1e-2 on the general, cross-pose and cross-quality pair sets,
   and the Table 1 similarity analysis.

Sizes (``quick=False``; image side 32, the ``tiny`` IR-SE of the registry, CosFace s = 64,
m = 0.4, the paper's lambdas): see :data:`FULL_SIZES`; ``quick=True`` is a smoke run
(:data:`QUICK_SIZES`). Nothing is tuned per row: every row gets the same data, budget and
schedule; the figures are whatever the runs measure.

Measured (one fresh full seed, 48 identities x 16 images at 64 px, 36 training identities,
192 test images): 169 s wall, 136 s CPU on the shared 2-core machine at load ~5; the smoke run
(6 x 5 images) ~39 s CPU. The tiny budget (120 steps per row) makes the rows' spread over
seeds large: summarize over >= 3 seeds before reading an ordering.

Resumable: every finished part (DepthNet, domains, pre-training, each row, each evaluation)
is kept under ``workdir`` and reused by a re-run with the same workdir.
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

METHODS = ("baseline_real", "baseline_mixed", "meta", "disentangle", "filter")
METHOD_LABELS = {"baseline_real": "CosFace, real only", "baseline_mixed":
                 "CosFace, real + generated 1:1", "meta": "DMFR meta",
                 "disentangle": "DMFR disentangle", "filter": "DMFR filter"}
RESULT_FILE = "dmfr_seed_result.json"
FAR_KEYS = ("1e-05", "0.0001", "0.001", "0.01")
SIMILARITY_KEYS = ("real_intra", "real_inter", "with_generated_intra", "with_generated_inter",
                   "after_filter_intra", "after_filter_inter")

FULL_SIZES = dict(image_size=32, embedding_dim=64, disentangle_dim=128, batch_size=32,
                  depth_steps=100, depth_batch_size=16, depth_base_filters=8,
                  pretrain_steps=120, steps=120, learning_rate=0.05,
                  pretrain_learning_rate=0.1)
QUICK_SIZES = dict(image_size=32, embedding_dim=16, disentangle_dim=16, batch_size=8,
                   depth_steps=0, depth_batch_size=8, depth_base_filters=4,
                   pretrain_steps=2, steps=2, learning_rate=0.05, pretrain_learning_rate=0.1,
                   run_eagerly=True)


def _depthnet(data_dir: str, workdir: str, seed: int, sizes: Mapping) -> str:
    from tf_rgbd.config.depthnet import DepthModelConfig, DepthTrainingConfig, OptimizerConfig
    from tf_rgbd.config.run import RunConfig
    from tf_rgbd.training.depth_training import train_depth_model

    model_dir = os.path.join(workdir, "depthnet")
    path = os.path.join(model_dir, "generator.keras")
    if os.path.exists(path):
        return path
    steps = sizes["depth_steps"]
    if steps == 0:
        # The smoke run's generator is initialised, not trained (its D* still drives the
        # whole pose-domain route; GAN training is tested in tests/training).
        import numpy as np  # noqa: PLC0415

        from tf_rgbd.models.depthnet import DepthNetGenerator  # noqa: PLC0415
        from tf_rgbd.models.loading import save_keras_model  # noqa: PLC0415

        generator = DepthNetGenerator(image_size=sizes["image_size"],
                                      base_filters=sizes["depth_base_filters"],
                                      max_filters=2 * sizes["depth_base_filters"])
        generator(np.zeros([1, sizes["image_size"], sizes["image_size"], 3], np.float32))
        return save_keras_model(generator, path)
    result = train_depth_model(DepthTrainingConfig(
        model=DepthModelConfig(image_size=sizes["image_size"],
                               base_filters=sizes["depth_base_filters"],
                               discriminator_filters=max(4, sizes["depth_base_filters"]),
                               discriminator_downsamples=3 if sizes["image_size"] >= 32 else 1),
        optimizer=OptimizerConfig(learning_rate=2e-3),
        run=RunConfig(data_dir=data_dir, model_dir=model_dir, val_split="",
                      batch_size=sizes["depth_batch_size"], steps=steps,
                      steps_per_epoch=max(1, steps // 2), checkpoint_every_steps=max(1, steps),
                      seed=seed, verbose="0")))
    return result.outputs["generator"]


def _domains(data_dir: str, workdir: str, generator_path: str, seed: int) -> str:
    from tf_rgbd.augmentation.dmfr_domains import build_dmfr_domains
    from tf_rgbd.config.dmfr import GENERATIVE_DOMAINS, DMFRDomainsConfig
    from tf_rgbd.models.loading import load_depth_generator

    domains_dir = os.path.join(workdir, "domains")
    if all(os.path.exists(os.path.join(domains_dir, domain, "manifest.json"))
           for domain in GENERATIVE_DOMAINS):
        return domains_dir
    build_dmfr_domains(load_depth_generator(generator_path), DMFRDomainsConfig(
        generator=generator_path, data_dir=data_dir, output_dir=domains_dir, seed=seed),
        progress=False)
    return domains_dir


def experiment_config(method: str, data_dir: str, domains_dir: str, model_dir: str, seed: int,
                      sizes: Mapping, pretrain_from: str = ""):
    """The run config of one row (``METHODS``) with ``sizes``."""
    from tf_rgbd.config.dmfr import DMFRExperimentConfig, DMFRModelConfig
    from tf_rgbd.config.recognizer import SGDConfig
    from tf_rgbd.config.run import RunConfig

    if method not in METHODS:
        raise ValueError(f"unknown DMFR row {method!r}; choose from {METHODS}")
    dmfr = method if method in ("meta", "disentangle", "filter") else "none"
    steps = sizes["steps"]
    return DMFRExperimentConfig(
        model=DMFRModelConfig(image_size=sizes["image_size"],
                              embedding_dim=sizes["embedding_dim"],
                              disentangle_dim=sizes["disentangle_dim"]),
        optimizer=SGDConfig(learning_rate=sizes["learning_rate"], lr_decay_epochs=()),
        run=RunConfig(data_dir=data_dir, model_dir=model_dir, batch_size=sizes["batch_size"],
                      steps=steps, steps_per_epoch=max(1, steps // 2),
                      checkpoint_every_steps=max(1, steps), seed=seed, augment=False,
                      verbose="0", run_eagerly=bool(sizes.get("run_eagerly", False))),
        dmfr=dmfr, mix_generated=method == "baseline_mixed", domains_dir=domains_dir,
        pretrain_steps=sizes["pretrain_steps"],
        pretrain_learning_rate=sizes["pretrain_learning_rate"], pretrain_from=pretrain_from)


def run_seed(data_dir: str, workdir: str, seed: int, quick: bool = False) -> dict:
    """Trains and evaluates the five rows once with ``seed`` (see the module docstring).

    Returns a JSON-ready dict: ``seed``, ``quick``, ``sizes``, ``methods`` (row -> {
    ``verification``: {pair set: TAR@FAR, EER, pair counts}, ``similarity``: Table 1
    values}), ``pair_counts`` (images on each side of each pair set) and ``seconds`` (per
    stage).
    """
    from tf_rgbd.eval import dmfr as dmfr_eval
    from tf_rgbd.training import dmfr_training

    sizes = dict(QUICK_SIZES if quick else FULL_SIZES)
    path = os.path.join(workdir, RESULT_FILE)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            cached = json.load(handle)
        if cached.get("sizes") == sizes and cached.get("seed") == seed:
            logging.info("DMFR seed %d: reusing %s", seed, path)
            return cached
    os.makedirs(workdir, exist_ok=True)
    seconds: dict[str, float] = {}
    started = time.time()
    generator_path = _depthnet(data_dir, workdir, seed, sizes)
    seconds["depthnet"] = round(time.time() - started, 1)
    mark = time.time()
    domains_dir = _domains(data_dir, workdir, generator_path, seed)
    seconds["domains"] = round(time.time() - mark, 1)

    mark = time.time()
    pretrain_dir = os.path.join(workdir, "pretrain")
    base = experiment_config("baseline_real", data_dir, domains_dir, pretrain_dir, seed, sizes)
    if not os.path.exists(os.path.join(pretrain_dir, "dmfr_model.keras")):
        dmfr_training.run_pretraining(base, pretrain_dir)
    seconds["pretrain"] = round(time.time() - mark, 1)

    probe_sets = dmfr_eval.build_probe_sets(data_dir, domains_dir, sizes["image_size"])
    methods = {}
    for method in METHODS:
        mark = time.time()
        model_dir = os.path.join(workdir, "runs", method)
        evaluation_path = os.path.join(model_dir, "dmfr_evaluation.json")
        if os.path.exists(evaluation_path):
            with open(evaluation_path, encoding="utf-8") as handle:
                methods[method] = json.load(handle)
            continue
        config = experiment_config(method, data_dir, domains_dir, model_dir, seed, sizes,
                                   pretrain_from=pretrain_dir)
        summary = dmfr_training.run_training(config)
        network = dmfr_training.load_dmfr_network(model_dir)
        evaluation = dmfr_eval.evaluate_network(network, probe_sets)
        evaluation["final_training_metrics"] = summary["final_epoch_metrics"]
        io_utils.atomic_write_json(evaluation_path, evaluation)
        methods[method] = evaluation
        seconds[method] = round(time.time() - mark, 1)
    seconds["total"] = round(time.time() - started, 1)
    result = {"seed": seed, "quick": quick, "sizes": sizes, "methods": methods,
              "pair_counts": {name: {"first": int(len(pairs.first_labels)),
                                     "second": int(len(pairs.second_labels))}
                              for name, pairs in probe_sets.probes.items()},
              "seconds": seconds}
    io_utils.atomic_write_json(path, result)
    return result


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = np.asarray([value for value in values], np.float64)
    if values.size == 0 or np.all(np.isnan(values)):
        return math.nan, math.nan
    finite = values[np.isfinite(values)]
    if finite.size < values.size:   # a seed could not resolve it: the row cannot either
        return math.nan, math.nan
    return float(np.mean(finite)), float(np.std(finite, ddof=1)) if finite.size > 1 else 0.0


def summarize(per_seed: list[dict]) -> dict[str, list[dict]]:
    """Paper-style tables over seeds: ``TAR@FAR (%) per probe set`` (one row per method and
    probe set: mean and std of TAR at each FAR and of the EER, in %) and ``Table 1: mean
    cosine similarity`` (one row per method: intra/inter for real, with generated and, for
    the filter, after the filter). ``nan`` where a seed could not resolve a value."""
    if not per_seed:
        raise ValueError("summarize needs at least one seed's result")
    tar_rows, similarity_rows = [], []
    for method in METHODS:
        entries = [result["methods"][method] for result in per_seed
                   if method in result.get("methods", {})]
        if not entries:
            continue
        for probe_set in entries[0]["verification"]:
            row = {"method": METHOD_LABELS[method], "probe_set": probe_set,
                   "n_seeds": len(entries)}
            for far in FAR_KEYS:
                mean, std = _mean_std([100.0 * entry["verification"][probe_set]["tar_at_far"]
                                       [far] for entry in entries])
                row[f"tar@{far}_mean"], row[f"tar@{far}_std"] = mean, std
            row["eer_mean"], row["eer_std"] = _mean_std(
                [100.0 * entry["verification"][probe_set]["eer"] for entry in entries])
            row["pairs"] = (f"{entries[0]['verification'][probe_set]['num_genuine']}/"
                            f"{entries[0]['verification'][probe_set]['num_impostor']}")
            tar_rows.append(row)
        row = {"method": METHOD_LABELS[method], "n_seeds": len(entries)}
        for key in SIMILARITY_KEYS:
            if key in entries[0]["similarity"]:
                row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(
                    [entry["similarity"][key] for entry in entries])
        similarity_rows.append(row)
    return {"DMFR: TAR@FAR (%) per probe set": tar_rows,
            "DMFR Table 1: mean cosine similarity (intra / inter class)": similarity_rows}

