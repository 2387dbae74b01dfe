"""The methods users compare against, side by side on one synthetic dataset and over seeds.

Each method lives in its own experiment module with the same two functions::

    run_seed(data_dir, workdir, seed, quick=False) -> dict      # one seed's figures (resumable)
    summarize(per_seed: list[dict]) -> {table title: [row dicts]} # mean / std over the seeds

* ``joint_reconstruction``: Liu et al., CVPR 2018 (identity / residual shape disentangling:
  shape RMSE per yaw bin and recognition with c_Id, ablation rows);
* ``dmfr``: Zhai et al., AAAI 2021 (demodalizing: TAR@FAR per mode against the two baselines on
  the general / cross-pose / cross-quality probe sets; the intra/inter-class similarity table);
* ``depth_identity``: Pini et al. (a Siamese depth verifier trained on ground-truth depth,
  evaluated on the same test pairs with ground-truth, DepthNet and cGAN depth).

This module builds the shared dataset, runs every (method, seed) once (a finished one is read
back from ``<output_dir>/<method>/seed_<seed>/seed_results.json`` when its config matches),
and returns the tables as rows and Markdown.
"""
from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Mapping, Sequence

from absl import logging

from tf_rgbd import config as config_lib
from tf_rgbd import io_utils
from tf_rgbd.config.related import RelatedMethodsConfig
from tf_rgbd.experiments import depth_identity, dmfr, joint_reconstruction

METHOD_MODULES = {"joint_reconstruction": joint_reconstruction, "dmfr": dmfr,
                  "depth_identity": depth_identity}
METHOD_TITLES = {
    "joint_reconstruction": "Joint 3D shape reconstruction + recognition (Liu et al. 2018)",
    "dmfr": "Demodalizing face recognition with generated samples (Zhai et al. 2021)",
    "depth_identity": "Does generated depth keep identity? Siamese depth verifier (Pini et al.)",
}
SEED_RESULTS_FILE = "seed_results.json"


def build_data(config: RelatedMethodsConfig) -> str:
    """The synthetic RGB-D dataset every method and seed shares (resumed when built)."""
    from tf_rgbd.config.data import BuildConfig
    from tf_rgbd.data.build import build_dataset

    data_dir = os.path.join(config.output_dir, "data")
    build_dataset(BuildConfig(
        source="synthetic", output_dir=data_dir, image_size=config.image_size,
        num_identities=config.num_identities, images_per_identity=config.images_per_identity,
        num_workers=config.num_workers, seed=0, num_shards=2), progress=False)
    return data_dir


def _data_key(config: RelatedMethodsConfig) -> dict:
    """What a cached seed result depends on besides the method and the seed."""
    values = config_lib.to_dict(config)
    return {key: values[key] for key in ("num_identities", "images_per_identity", "image_size",
                                         "quick")}


def run_method_seed(config: RelatedMethodsConfig, method: str, data_dir: str,
                    seed: int) -> dict:
    """One seed of one method, read back when it already ran with the same data and sizes."""
    workdir = os.path.join(config.output_dir, method, f"seed_{seed}")
    path = os.path.join(workdir, SEED_RESULTS_FILE)
    key = _data_key(config)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            cached = json.load(handle)
        if cached.get("data") == key:
            logging.info("%s seed %d: reusing %s", method, seed, path)
            return cached
    started = time.time()
    figures = METHOD_MODULES[method].run_seed(data_dir, workdir, seed, quick=config.quick)
    result = {"method": method, "seed": seed, "data": key, "figures": figures,
              "seconds": round(time.time() - started, 1)}
    io_utils.atomic_write_json(path, result)
    return result


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(item) for item in value)
    return str(value).replace("|", "/")


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of row dicts (columns in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns += [column for column in row if column not in columns]
    if not columns:
        return "(no rows)"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(column)) for column in columns) + " |"
              for row in rows]
    return "\n".join(lines)


def format_markdown(methods: Mapping[str, Mapping[str, Any]]) -> str:
    parts = []
    for method, result in methods.items():
        seeds = ", ".join(str(seed) for seed in result["seeds"])
        parts.append(f"## {METHOD_TITLES[method]}\n\nSeeds {seeds}; "
                     f"{result['seconds']:.0f} s in total.")
        for title, rows in result["tables"].items():
            parts.append(f"### {title}\n\n{markdown_table(rows)}")
    return "\n\n".join(parts)


def run_related_methods(config: RelatedMethodsConfig) -> dict:
    """Builds the data, runs every method over the seeds; returns ``{"methods": {method:
    {"tables", "per_seed", "seconds", "seeds"}}, "markdown": text, "seconds": ...}``."""
    started = time.time()
    os.makedirs(config.output_dir, exist_ok=True)
    data_dir = build_data(config)
    seconds: dict[str, float] = {"build": round(time.time() - started, 1)}
    methods = {}
    for method in config.methods:
        results = [run_method_seed(config, method, data_dir, seed) for seed in config.seeds]
        per_seed = [result["figures"] for result in results]
        total = sum(result["seconds"] for result in results)
        methods[method] = {"tables": METHOD_MODULES[method].summarize(per_seed),
                           "per_seed": {str(result["seed"]): result["figures"]
                                        for result in results},
                           "seeds": list(config.seeds), "seconds": round(total, 1)}
        seconds[method] = round(total, 1)
        logging.info("%s: %d seed(s), %.0f s", method, len(results), total)
    seconds["total"] = round(time.time() - started, 1)
    return {"config": config_lib.to_dict(config), "methods": methods,
            "markdown": format_markdown(methods), "seconds": seconds}
