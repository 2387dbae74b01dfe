"""Every claim of the paper measured with seeds and confidence intervals, on the embedded
synthetic data (the library side of ``python -m bench.claims``).

One repetition per seed (:func:`run_seed`): train DepthNet, DepthNet without its mask branch and
the cGAN baseline with one budget and evaluate them with the mean-face baseline on ONE common
support; augment the dataset with that seed's DepthNet (D*, M*, the ground truth kept beside);
train the recognizer variants on RGB + D* + M* (Table 7 rows: classification loss only; Table
8 rows: the loss terms added in the paper's order; the RGB baseline = Table 7's RGB row) and
evaluate them on the Lock3DFace-style protocol of the held-out identities (average rank-1 of
the variant's own score: fused for two image branches) with ground-truth depth, and the full
model also with D*. Then for every claim (:data:`CLAIMS`): the mean +- std of each side over
the seeds, the paired difference with its 95 % t-interval, and a verdict: ``holds`` (interval
above 0), ``does not hold`` (below 0) or ``inconclusive`` (it spans 0).

The data are the same for every seed (one synthetic dataset): the intervals cover the run-to-run
spread of training, not the sampling of the data. Nothing here is tuned per claim: every method
of a claim gets the same data, budget and schedule.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from typing import Mapping, Optional, Sequence

import numpy as np

from tf_rgbd import config as config_lib
from tf_rgbd import io_utils
from tf_rgbd.config.claims import ClaimsConfig

SEED_RESULTS_FILE = "seed_results.json"
PROTOCOL = "lock3dface_style"
DEPTH_METRIC = "mse_255_intersection"
DEPTHNET, NO_MASK, CGAN = "DepthNet", "DepthNet without mask branch", "cGAN (Pini et al.)"
DEPTH_METHODS = {
    DEPTHNET: {"arch": "depthnet"},
    NO_MASK: {"arch": "depthnet", "use_mask_branch": False},
    CGAN: {"arch": "cgan", "norm": "batch"},
}
# Recognizer runs (variant -> depth sources evaluated). t7_rgb is the RGB baseline (RGB,
# classification loss: the same configuration as VARIANTS["rgb_baseline"]); t7_rgbd_mask is
# also Table 8's L_cls row; t8_all is the full method.
RECOGNIZER_RUNS = {
    "t7_rgb": ("gt",), "t7_rgbd": ("gt",), "t7_rgbd_mask": ("gt",), "t7_depth": ("gt",),
    "t7_depth_mask": ("gt",), "t8_cls_sa": ("gt",), "t8_cls_sa_cmfl": ("gt",),
    "t8_all": ("gt", "generated"),
}


@dataclasses.dataclass(frozen=True)
class Claim:
    """``a`` beats ``b`` on a per-seed value (``higher_is_better`` says which way).

    ``a``/``b`` name per-seed values: ``depth:<method>`` (MSE on the common support, lower is
    better) or ``rank1:<variant>/<depth source>`` (average rank-1, higher is better).
    """

    name: str
    statement: str
    a: str
    b: str
    a_label: str
    b_label: str
    higher_is_better: bool


def _depth(method: str) -> str:
    return f"depth:{method}"


def _rank1(variant: str, source: str = "gt") -> str:
    return f"rank1:{variant}/{source}"


CLAIMS = (
    Claim("tab6_mask_branch", "Tab. 6: DepthNet with the mask branch has lower depth MSE than "
          "without it (MSE_255 on the common support)", _depth(DEPTHNET), _depth(NO_MASK),
          DEPTHNET, NO_MASK, False),
    Claim("depthnet_vs_mean_face", "DepthNet beats the mean-face baseline (MSE_255, common "
          "support)", _depth(DEPTHNET), _depth("mean-face baseline"), DEPTHNET, "mean face",
          False),
    Claim("depthnet_vs_cgan", "DepthNet beats the cGAN baseline (MSE_255, common support)",
          _depth(DEPTHNET), _depth(CGAN), DEPTHNET, CGAN, False),
    Claim("tab45_fused_vs_rgb_gt", "Tab. 4/5: trained on RGB + D* + M*, tested with ground-truth "
          "depth, fused RGB-D beats RGB alone (average rank-1)", _rank1("t8_all", "gt"),
          _rank1("t7_rgb"), "full, fused, Dgt at test", "RGB baseline", True),
    Claim("tab45_fused_vs_rgb_generated", "Tab. 4/5: the same model tested with D* beats RGB "
          "alone (average rank-1)", _rank1("t8_all", "generated"), _rank1("t7_rgb"),
          "full, fused, D* at test", "RGB baseline", True),
    Claim("tab7_rgbdm_vs_rgbd", "Tab. 7 (cls only): RGB+D+M > RGB+D", _rank1("t7_rgbd_mask"),
          _rank1("t7_rgbd"), "RGB+D+M", "RGB+D", True),
    Claim("tab7_rgbd_vs_rgb", "Tab. 7 (cls only): RGB+D > RGB", _rank1("t7_rgbd"),
          _rank1("t7_rgb"), "RGB+D", "RGB", True),
    Claim("tab7_dm_vs_d", "Tab. 7 (cls only): D+M > D", _rank1("t7_depth_mask"),
          _rank1("t7_depth"), "D+M", "D", True),
    Claim("tab8_add_sa", "Tab. 8: adding L_SA to L_cls improves the average rank-1",
          _rank1("t8_cls_sa"), _rank1("t7_rgbd_mask"), "cls+SA", "cls", True),
    Claim("tab8_add_cmfl", "Tab. 8: adding L_CMFL improves it further",
          _rank1("t8_cls_sa_cmfl"), _rank1("t8_cls_sa"), "cls+SA+CMFL", "cls+SA", True),
    Claim("tab8_add_dis", "Tab. 8: adding L_dis (the full method) improves it further",
          _rank1("t8_all"), _rank1("t8_cls_sa_cmfl"), "all four", "cls+SA+CMFL", True),
    Claim("dstar_vs_dgt_gap", "D* vs Dgt gap: the full model scores at least as well with "
          "ground-truth depth at test as with D* (the gap Dgt - D* is reported)",
          _rank1("t8_all", "gt"), _rank1("t8_all", "generated"), "Dgt at test", "D* at test",
          True),
)

# Two-sided 95 % Student t quantiles t_{0.975, df}, df = 1..30 (normal beyond).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile_975(df: int) -> float:
    """t_{0.975} with ``df`` degrees of freedom (two-sided 95 %)."""
    if df < 1:
        raise ValueError(f"need at least 2 paired values (df >= 1), got df={df}")
    return _T975[df - 1] if df <= len(_T975) else 1.960


def paired_interval(a: Sequence[float], b: Sequence[float], higher_is_better: bool) -> dict:
    """Mean +- std of each side, the paired difference (oriented: > 0 = ``a`` better) and its
    95 % t-interval over the pairs, and the verdict."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"unpaired values: {a.shape} vs {b.shape}")
    difference = (a - b) if higher_is_better else (b - a)
    result = {"a_mean": float(np.mean(a)), "a_std": float(np.std(a, ddof=1)),
              "b_mean": float(np.mean(b)), "b_std": float(np.std(b, ddof=1)),
              "n": int(a.size), "a_values": a.tolist(), "b_values": b.tolist()}
    if not np.all(np.isfinite(difference)):
        return {**result, "difference": math.nan, "ci95": [math.nan, math.nan],
                "verdict": "not measured"}
    mean = float(np.mean(difference))
    half = t_quantile_975(a.size - 1) * float(np.std(difference, ddof=1)) / math.sqrt(a.size)
    low, high = mean - half, mean + half
    verdict = "holds" if low > 0 else "does not hold" if high < 0 else "inconclusive"
    return {**result, "difference": mean, "ci95": [low, high], "verdict": verdict}


def summarize(per_seed: Mapping[int, Mapping[str, float]],
              claims: Sequence[Claim] = CLAIMS) -> list[dict]:
    """One row per claim from the per-seed values (``{seed: {value name: value}}``)."""
    seeds = sorted(per_seed)
    rows = []
    for claim in claims:
        a = [per_seed[seed].get(claim.a, math.nan) for seed in seeds]
        b = [per_seed[seed].get(claim.b, math.nan) for seed in seeds]
        rows.append({"claim": claim.name, "statement": claim.statement,
                     "a": claim.a_label, "b": claim.b_label,
                     "metric": ("average rank-1 (higher is better)" if claim.higher_is_better
                                else f"{DEPTH_METRIC} (lower is better)"),
                     **paired_interval(a, b, claim.higher_is_better)})
    return rows


def format_markdown(rows: Sequence[Mapping], seeds: Sequence[int]) -> str:
    """The claims table: statement, each side's mean +- std, the paired difference and its
    95 % interval, the verdict."""
    def number(value: float, scale: float) -> str:
        return "n/a" if not np.isfinite(value) else f"{scale * value:.2f}"

    lines = [f"Seeds {list(seeds)}; difference > 0 means the paper's side is better; rank-1 in "
             "%, depth MSE on the 0-255 scale.", "",
             "| claim | paper's statement | side A | A mean ± std | side B | B mean ± std | "
             "difference (A better) | 95% CI | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        scale = 100.0 if row["metric"].startswith("average rank-1") else 1.0
        lines.append(
            f"| {row['claim']} | {row['statement']} | {row['a']} | "
            f"{number(row['a_mean'], scale)} ± {number(row['a_std'], scale)} | {row['b']} | "
            f"{number(row['b_mean'], scale)} ± {number(row['b_std'], scale)} | "
            f"{number(row['difference'], scale)} | [{number(row['ci95'][0], scale)}, "
            f"{number(row['ci95'][1], scale)}] | {row['verdict']} |")
    return "\n".join(lines)


# --- the measurements -----------------------------------------------------------------------

def build_data(config: ClaimsConfig) -> str:
    """The synthetic RGB-D dataset every seed shares (resumed when already built)."""
    from tf_rgbd.config.data import BuildConfig
    from tf_rgbd.data.build import build_dataset

    data_dir = os.path.join(config.output_dir, "data")
    build_dataset(BuildConfig(
        source="synthetic", output_dir=data_dir, image_size=config.data_image_size,
        num_identities=config.num_identities, images_per_identity=config.images_per_identity,
        num_workers=config.num_workers, seed=0, num_shards=2), progress=False)
    return data_dir


def _depth_config(config: ClaimsConfig, data_dir: str, model_dir: str, seed: int,
                  overrides: Mapping):
    from tf_rgbd.config.depthnet import DepthModelConfig, DepthTrainingConfig, OptimizerConfig
    from tf_rgbd.config.run import RunConfig

    return DepthTrainingConfig(
        model=DepthModelConfig(image_size=config.image_size,
                               base_filters=config.depth_base_filters,
                               discriminator_filters=max(4, config.depth_base_filters),
                               discriminator_downsamples=3 if config.image_size >= 32 else 1,
                               **overrides),
        optimizer=OptimizerConfig(learning_rate=config.depth_learning_rate),
        run=RunConfig(data_dir=data_dir, model_dir=model_dir, val_split="",
                      batch_size=config.depth_batch_size, steps=config.depth_steps,
                      steps_per_epoch=max(1, config.depth_steps // 2),
                      checkpoint_every_steps=max(1, config.depth_steps), seed=seed, verbose="0",
                      run_eagerly=config.run_eagerly))


def selected_claims(config: ClaimsConfig) -> tuple[Claim, ...]:
    """The claims ``config.claims`` names (all when empty)."""
    if not config.claims:
        return CLAIMS
    known = {claim.name: claim for claim in CLAIMS}
    unknown = sorted(set(config.claims) - set(known))
    if unknown:
        raise ValueError(f"--claims: unknown {unknown}; choose from {sorted(known)}")
    return tuple(known[name] for name in config.claims)


def needed_runs(claims: Sequence[Claim]) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """(depth methods, {recognizer variant: depth sources}) the claims need. DepthNet is always
    trained when a recognizer is (its D*, M* are the recognizers' training data)."""
    names = [name for claim in claims for name in (claim.a, claim.b)]
    runs: dict[str, list[str]] = {}
    for name in names:
        if name.startswith("rank1:"):
            variant, source = name[len("rank1:"):].split("/")
            runs.setdefault(variant, [])
            if source not in runs[variant]:
                runs[variant].append(source)
    depth = [method for method in DEPTH_METHODS if _depth(method) in names
             or (method == DEPTHNET and runs)]
    ordered = {variant: tuple(runs[variant]) for variant in RECOGNIZER_RUNS if variant in runs}
    return tuple(depth), ordered


def depth_stage(config: ClaimsConfig, data_dir: str, seed_dir: str, seed: int,
                methods: Sequence[str] = tuple(DEPTH_METHODS), augment: bool = True) -> dict:
    """Trains the depth models of ``seed``, evaluates them with the mean face on one common
    support, and (``augment``) augments the dataset with DepthNet. Returns the per-seed values
    and paths."""
    from tf_rgbd.augmentation.generated_rgbd import augment_dataset
    from tf_rgbd.eval import depth as depth_eval
    from tf_rgbd.models.loading import load_depth_generator
    from tf_rgbd.training.depth_training import train_depth_model

    predictors, generators, seconds = {}, {}, {}
    for method in methods:
        overrides = DEPTH_METHODS[method]
        model_dir = os.path.join(seed_dir, "depth", method.split(" ")[0].lower()
                                 + ("_no_mask" if method == NO_MASK else ""))
        started = time.time()
        result = train_depth_model(_depth_config(config, data_dir, model_dir, seed, overrides))
        seconds[method] = round(time.time() - started, 1)
        generators[method] = result.outputs["generator"]
        predictors[method] = depth_eval.generator_predictor(
            load_depth_generator(generators[method]))
    started = time.time()
    metrics = depth_eval.evaluate_depth_models(data_dir, predictors, image_size=config.image_size,
                                               batch_size=32)
    seconds["evaluation"] = round(time.time() - started, 1)
    generated_dir = ""
    if augment and DEPTHNET in generators:
        started = time.time()
        generated_dir = os.path.join(seed_dir, "generated")
        augment_dataset(load_depth_generator(generators[DEPTHNET]), data_dir, generated_dir,
                        keep_gt_depth=True, generator_path=generators[DEPTHNET], progress=False)
        seconds["augmentation"] = round(time.time() - started, 1)
    values = {_depth(method): row[DEPTH_METRIC] for method, row in metrics.items()}
    values.update({f"coverage:{method}": row["coverage"] for method, row in metrics.items()})
    return {"values": values, "depth_metrics": metrics, "generated_dir": generated_dir,
            "seconds": seconds}


def _recognizer_config(config: ClaimsConfig, data_dir: str, model_dir: str, seed: int,
                       variant: str):
    from tf_rgbd.config import recognizer as recognizer_config
    from tf_rgbd.config.run import RunConfig

    epochs = config.recognizer_epochs
    decay = tuple(sorted({epoch for epoch in (round(epochs * 0.5), round(epochs * 0.8))
                          if 0 < epoch < epochs}))
    experiment = recognizer_config.RecognizerExperimentConfig(
        model=recognizer_config.RecognizerModelConfig(
            backbone="tiny", image_size=config.image_size, embedding_dim=config.embedding_dim,
            sam_normalization=config.sam_normalization),
        loss=recognizer_config.RecognizerLossConfig(sa_max_loss_gap=config.sa_max_loss_gap),
        optimizer=recognizer_config.SGDConfig(learning_rate=config.recognizer_learning_rate,
                                              lr_decay_epochs=decay),
        run=RunConfig(data_dir=data_dir, model_dir=model_dir,
                      batch_size=config.recognizer_batch_size, epochs=epochs,
                      steps_per_epoch=config.recognizer_steps_per_epoch,
                      checkpoint_every_steps=10**6, seed=seed, verbose="0",
                      run_eagerly=config.run_eagerly),
        depth_source="generated")
    return recognizer_config.apply_variant(experiment, variant)


def recognizer_stage(config: ClaimsConfig, generated_dir: str, seed_dir: str, seed: int,
                     runs: Mapping[str, Sequence[str]] = RECOGNIZER_RUNS) -> dict:
    """Trains every recognizer run of ``seed`` on RGB + D* + M* and evaluates it."""
    from tf_rgbd.config.recognizer import RecognizerEvalConfig
    from tf_rgbd.eval import recognition
    from tf_rgbd.training.recognizer_training import run_training

    values, details, seconds = {}, {}, {}
    for variant, sources in runs.items():
        model_dir = os.path.join(seed_dir, "recognizer", variant)
        started = time.time()
        experiment = _recognizer_config(config, generated_dir, model_dir, seed, variant)
        run_training(experiment)
        for source in sources:
            metrics = recognition.evaluate_recognizer(RecognizerEvalConfig(
                data_dir=generated_dir, model_dir=model_dir, protocol=PROTOCOL,
                depth_source=source, make_plots=False, flip_test=config.flip_test),
                progress=False)
            method = ("fused" if "fused" in metrics["identification"]
                      else metrics["modalities"][0])
            entry = metrics["identification"][method]
            values[_rank1(variant, source)] = entry["average_rank1"]
            details[f"{variant}/{source}"] = {
                "score": method, "average_rank1": entry["average_rank1"],
                "subsets": {subset: result["rank1"] for subset, result in
                            entry["subsets"].items()},
                "eer": metrics["verification"][method]["eer"]}
        seconds[variant] = round(time.time() - started, 1)
    return {"values": values, "recognition": details, "seconds": seconds}


def run_seed(config: ClaimsConfig, data_dir: str, seed: int) -> dict:
    """One repetition (depth + recognition) for ``seed``; reused when already measured with the
    same config."""
    seed_dir = os.path.join(config.output_dir, f"seed_{seed}")
    path = os.path.join(seed_dir, SEED_RESULTS_FILE)
    config_dict = config_lib.to_dict(config)
    for field in ("output_dir", "seeds", "claims"):
        config_dict.pop(field)
    selected = selected_claims(config)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            cached = json.load(handle)
        needed = {name for claim in selected for name in (claim.a, claim.b)}
        if cached.get("config") == config_dict and needed <= set(cached.get("values", {})):
            logging.info("seed %d: reusing %s", seed, path)
            return cached
    started = time.time()
    depth_methods, recognizer_runs = needed_runs(selected)
    depth = depth_stage(config, data_dir, seed_dir, seed, depth_methods,
                        augment=bool(recognizer_runs))
    recognition = recognizer_stage(config, depth["generated_dir"], seed_dir, seed,
                                   recognizer_runs)
    result = {"config": config_dict, "seed": seed,
              "values": {**depth["values"], **recognition["values"]},
              "depth_metrics": depth["depth_metrics"], "recognition": recognition["recognition"],
              "seconds": {"depth": depth["seconds"], "recognizer": recognition["seconds"],
                          "total": round(time.time() - started, 1)}}
    io_utils.atomic_write_json(path, result)
    return result


def run_claims(config: ClaimsConfig, seeds: Optional[Sequence[int]] = None) -> dict:
    """Builds the data, runs every seed, and returns the report: ``{"rows": [...], "markdown":
    text, "per_seed": {seed: values}, "seconds": ...}``."""
    started = time.time()
    os.makedirs(config.output_dir, exist_ok=True)
    data_dir = build_data(config)
    build_seconds = round(time.time() - started, 1)
    per_seed, seconds = {}, {"build": build_seconds}
    for seed in (seeds or config.seeds):
        result = run_seed(config, data_dir, seed)
        per_seed[seed] = result["values"]
        seconds[f"seed_{seed}"] = result["seconds"]
        logging.info("seed %d done (%.0f s so far)", seed, time.time() - started)
    rows = summarize(per_seed, selected_claims(config))
    markdown = format_markdown(rows, sorted(per_seed))
    coverage = {name[len("coverage:"):]: [per_seed[seed].get(name, math.nan) for seed in per_seed]
                for name in sorted({key for values in per_seed.values() for key in values
                                    if key.startswith("coverage:")})}
    if coverage:
        markdown += ("\n\nDepth coverage (fraction of the ground-truth face pixels a method "
                     "predicts, per seed; below 0.5 a method is left out of the common support "
                     "and its MSE is not measured): " + "; ".join(
                         f"{method} {', '.join(f'{value:.2f}' for value in values)}"
                         for method, values in coverage.items()))
    seconds["total"] = round(time.time() - started, 1)
    return {"config": config_lib.to_dict(config), "rows": rows, "markdown": markdown,
            "per_seed": {str(seed): values for seed, values in per_seed.items()},
            "depth_coverage": coverage,
            "seconds": seconds}


def read_seed_values(output_dir: str) -> dict[int, dict]:
    """``{seed: {"values": ..., "config": ...}}`` of a claims run's finished seeds."""
    found = {}
    for entry in sorted(os.listdir(output_dir)):
        path = os.path.join(output_dir, entry, SEED_RESULTS_FILE)
        if entry.startswith("seed_") and os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                result = json.load(handle)
            found[int(result["seed"])] = result
    if not found:
        raise FileNotFoundError(f"{output_dir}: no seed_*/{SEED_RESULTS_FILE}; is it the "
                                "--output_dir of a finished python -m bench.claims run?")
    return found


def compare_runs(a_dir: str, b_dir: str, a_label: str = "A", b_label: str = "B") -> dict:
    """Every rank-1 / depth value both runs measured, paired over their common seeds: B - A
    (oriented so that > 0 = B better) with its 95 % interval, and the config fields that differ.
    The seeds must have the same data (a run compares one setting, not two datasets)."""
    a_runs, b_runs = read_seed_values(a_dir), read_seed_values(b_dir)
    seeds = sorted(set(a_runs) & set(b_runs))
    if len(seeds) < 2:
        raise ValueError(f"{a_dir} and {b_dir} share {len(seeds)} seed(s); need >= 2 to pair")
    a_config, b_config = a_runs[seeds[0]]["config"], b_runs[seeds[0]]["config"]
    differs = {key: [a_config.get(key), b_config.get(key)]
               for key in sorted(set(a_config) | set(b_config))
               if a_config.get(key) != b_config.get(key)}
    names = sorted(set.intersection(*[set(run[seed]["values"]) for run in (a_runs, b_runs)
                                      for seed in seeds]))
    rows = []
    for name in names:
        if not name.startswith(("rank1:", "depth:")):
            continue
        scale = 100.0 if name.startswith("rank1:") else 1.0
        a = [a_runs[seed]["values"][name] * scale for seed in seeds]
        b = [b_runs[seed]["values"][name] * scale for seed in seeds]
        # paired_interval's first side is run B here ("difference" > 0 = B better).
        paired = paired_interval(b, a, higher_is_better=name.startswith("rank1:"))
        rows.append({"value": name, "a_mean": paired["b_mean"], "a_std": paired["b_std"],
                     "b_mean": paired["a_mean"], "b_std": paired["a_std"], "a_values": a,
                     "b_values": b, "b_better_by": paired["difference"],
                     "ci95": paired["ci95"],
                     "verdict": "identical" if a == b else {
                         "holds": "B better", "does not hold": "B worse"}.get(
                             paired["verdict"], paired["verdict"])})
    lines = [f"Seeds {seeds}; A = {a_label} ({a_dir}), B = {b_label} ({b_dir}); config fields "
             f"that differ: {differs or 'none'}. Rank-1 in %, depth MSE on the 0-255 scale; "
             "'B better by' > 0 means B is better.", "",
             "| value | A mean ± std | B mean ± std | B better by | 95% CI | verdict | A per seed"
             " | B per seed |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['value']} | {row['a_mean']:.1f} ± {row['a_std']:.1f} | "
            f"{row['b_mean']:.1f} ± {row['b_std']:.1f} | {row['b_better_by']:+.1f} | "
            f"[{row['ci95'][0]:+.1f}, {row['ci95'][1]:+.1f}] | {row['verdict']} | "
            f"{', '.join(f'{v:.1f}' for v in row['a_values'])} | "
            f"{', '.join(f'{v:.1f}' for v in row['b_values'])} |")
    return {"a": {"label": a_label, "dir": a_dir}, "b": {"label": b_label, "dir": b_dir},
            "seeds": seeds, "config_differences": differs, "rows": rows,
            "markdown": "\n".join(lines)}


def results_name(config: ClaimsConfig, quick: bool) -> str:
    """``claims`` only for the default measurement (every claim, default sizes and settings;
    where it runs does not matter), so that a subset or a changed setting never overwrites the
    committed table: ``claims_quick`` for --quick, ``claims_custom`` otherwise."""
    if quick:
        return "claims_quick"
    where = dict(output_dir=config.output_dir, num_workers=config.num_workers)
    return "claims" if config == ClaimsConfig(**where) else "claims_custom"
