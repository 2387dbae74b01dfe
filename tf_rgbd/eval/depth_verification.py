"""Identity preservation of generated depth (after Pini et al., "Learning to Generate Facial
Depth Maps"): a Siamese verifier trained on ground-truth depth scores the SAME fixed pairs of
held-out identities with ground-truth depth and with each generator's depth.

Protocol:

* pairs: :func:`tf_rgbd.data.pairs.fixed_pairs` over the examples of ``eval_split`` that have
  ground-truth depth (balanced, seeded); every depth source is scored on exactly these pairs;
* every source's depth goes through :func:`prepare_depth` (clip to [0, 1], values below
  ``MIN_VALID_PREDICTION`` are background 0, masked resize to the verifier's size): the ground
  truth comes from the pipeline at the verifier's size, a generator's depth from the RGB at the
  generator's size;
* threshold: accept a pair iff its score (minus the embedding distance) is above the threshold
  that maximises the accuracy on validation pairs: pairs of the verifier's held-out TRAINING
  identities with ground-truth depth (``verifier_identities.json``), never the evaluated pairs.
  The same threshold is applied to every source (the verifier is calibrated on real depth, as
  a deployed one would be);
* metrics: accuracy at that threshold, ROC, AUC, EER, TAR@FAR
  (:mod:`tf_rgbd.metrics.verification`).
"""
from __future__ import annotations

import math
import os
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from tf_rgbd import io_utils
from tf_rgbd.config.verifier import METRICS_FILE, DepthVerifierEvalConfig
from tf_rgbd.data import pairs as pairs_lib
from tf_rgbd.data import pipeline
from tf_rgbd.metrics import verification
from tf_rgbd.metrics.depth import MIN_VALID_PREDICTION, to_unit_depth
from tf_rgbd.models.loading import load_depth_generator
from tf_rgbd.training.verifier_training import load_verifier_run

GROUND_TRUTH = "ground truth"
FAR_TARGETS = (1e-3, 1e-2, 1e-1)
GENERATOR_FILE = "generator.keras"
ROC_POINTS = 101

EmbedFn = Callable[[np.ndarray], np.ndarray]


def prepare_depth(depth: tf.Tensor, image_size: int) -> tf.Tensor:
    """The one preprocessing of every depth source: float [B, H, W, 1] (a generator's raw
    output or normalised ground truth) -> float32 [B, S, S, 1] in [0, 1], 0 = background."""
    unit = to_unit_depth(depth)
    unit = tf.where(unit >= MIN_VALID_PREDICTION, unit, tf.zeros_like(unit))
    if unit.shape[1] != image_size or unit.shape[2] != image_size:
        unit = pipeline.masked_resize(unit, image_size)
    return unit


def embed_depth(embed_fn: EmbedFn, depth: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """``embed_fn`` over ``depth`` [N, S, S, 1] in batches -> float64 [N, D]."""
    chunks = [np.asarray(embed_fn(depth[start:start + batch_size]), np.float64)
              for start in range(0, len(depth), batch_size)]
    return np.concatenate(chunks).reshape(len(depth), -1)


def pair_scores(embeddings: np.ndarray, example_ids: Sequence[str],
                pairs: Sequence[tuple[str, str, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(scores float [P] = minus the Euclidean embedding distance, same int [P]) of ``pairs``."""
    index = {example_id: row for row, example_id in enumerate(example_ids)}
    missing = sorted({i for a, b, _ in pairs for i in (a, b) if i not in index})
    if missing:
        raise KeyError(f"pairs name examples without depth in this source: {missing[:5]}")
    first = embeddings[[index[a] for a, _, _ in pairs]]
    second = embeddings[[index[b] for _, b, _ in pairs]]
    scores = -np.sqrt(np.sum((first - second) ** 2, axis=-1))
    return scores, np.asarray([same for _, _, same in pairs], np.int64)


def choose_threshold(scores: Sequence[float], same: Sequence[int]) -> float:
    """The threshold (accept iff score > threshold) of highest accuracy on these pairs: the
    midpoint between consecutive distinct scores (or below / above all of them); the lowest
    such threshold on ties."""
    scores = np.asarray(scores, np.float64)
    same = np.asarray(same, bool)
    values = np.unique(scores)
    candidates = np.concatenate([[values[0] - 1.0], (values[:-1] + values[1:]) / 2.0,
                                 [values[-1] + 1.0]])
    accuracies = [np.mean((scores > threshold) == same) for threshold in candidates]
    return float(candidates[int(np.argmax(accuracies))])


def verification_summary(scores: Sequence[float], same: Sequence[int], threshold: float,
                         far_targets: Sequence[float] = FAR_TARGETS) -> dict:
    """Accuracy at ``threshold``, AUC, EER, TAR@FAR and a ROC of <= ``ROC_POINTS`` points."""
    scores = np.asarray(scores, np.float64)
    same = np.asarray(same, bool)
    genuine, impostor = scores[same], scores[~same]
    far, tar, _ = verification.roc_curve(genuine, impostor)
    keep = np.unique(np.linspace(0, len(far) - 1, min(len(far), ROC_POINTS)).round().astype(int))
    return {"accuracy": float(np.mean((scores > threshold) == same)),
            "threshold": float(threshold),
            "auc": verification.area_under_roc(genuine, impostor),
            "eer": verification.equal_error_rate(genuine, impostor),
            "tar_at_far": {f"{key:g}": value for key, value in
                           verification.tar_at_far(genuine, impostor, far_targets).items()},
            "num_genuine": int(len(genuine)), "num_impostor": int(len(impostor)),
            "mean_genuine_distance": float(-np.mean(genuine)),
            "mean_impostor_distance": float(-np.mean(impostor)),
            "roc": {"far": far[keep].tolist(), "tar": tar[keep].tolist()}}


def evaluate_sources(embed_fn: EmbedFn, sources: Mapping[str, tuple[Sequence[str], np.ndarray]],
                     pairs: Sequence[tuple[str, str, int]],
                     validation: tuple[Sequence[str], np.ndarray, Sequence[tuple[str, str, int]]],
                     batch_size: int = 64, far_targets: Sequence[float] = FAR_TARGETS) -> dict:
    """Scores ``pairs`` with every source's depth; one threshold from the validation pairs.

    Args:
      embed_fn: depth [B, S, S, 1] -> embeddings [B, D].
      sources: name -> (example ids, depth [N, S, S, 1]) covering every example of ``pairs``.
      pairs: the evaluated pair list (the same for every source).
      validation: (ids, depth, pairs) of the validation identities (ground truth).

    Returns:
      ``{"threshold", "validation": summary, "sources": {name: summary}}``
      (:func:`verification_summary`).
    """
    val_ids, val_depth, val_pairs = validation
    val_scores, val_same = pair_scores(embed_depth(embed_fn, val_depth, batch_size), val_ids,
                                       val_pairs)
    threshold = choose_threshold(val_scores, val_same)
    results = {}
    for name, (ids, depth) in sources.items():
        scores, same = pair_scores(embed_depth(embed_fn, depth, batch_size), ids, pairs)
        results[name] = verification_summary(scores, same, threshold, far_targets)
    return {"threshold": threshold,
            "validation": verification_summary(val_scores, val_same, threshold, far_targets),
            "sources": results}


def generated_depth(generator, data_dir: str, split: str, example_ids: Sequence[str],
                    image_size: int, batch_size: int = 32,
                    depth_range_mm: float = pipeline.DEFAULT_DEPTH_RANGE_MM) -> np.ndarray:
    """A generator's depth of ``example_ids`` (from their RGB at the generator's own size),
    through :func:`prepare_depth` to ``image_size``: float32 [N, S, S, 1] in the ids' order."""
    generator_size = int(generator.get_config().get("image_size") or image_size)
    dataset = pipeline.make_dataset(data_dir, split, batch_size=batch_size,
                                    image_size=generator_size, modalities=("rgb",),
                                    with_metadata=True, deterministic=True,
                                    depth_range_mm=depth_range_mm, example_ids=example_ids)
    forward = tf.function(lambda rgb: prepare_depth(generator(rgb, training=False)["depth"],
                                                    image_size), reduce_retracing=True)
    by_id = {}
    for batch in dataset:
        depth = forward(batch["rgb"]).numpy()
        for example_id, value in zip(batch["example_id"].numpy(), depth):
            by_id[example_id.decode()] = value
    missing = [i for i in example_ids if i not in by_id]
    if missing:
        raise KeyError(f"{data_dir}:{split}: examples {missing[:5]} not found")
    return np.stack([by_id[i] for i in example_ids]).astype(np.float32)


def resolve_generator(path: str) -> str:
    """A generator run directory -> its ``generator.keras``; a ``.keras`` path as is."""
    if os.path.isdir(path):
        path = os.path.join(path, GENERATOR_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"--generators: {path} does not exist (train a generator with "
                                "python -m training.train_depthnet)")
    return path


def parse_generators(entries: Sequence[str]) -> dict[str, str]:
    """``["name=path", "path"]`` -> ``{name: generator.keras path}`` (a bare path is named after
    its run directory)."""
    named = {}
    for entry in entries:
        name, _, path = entry.partition("=") if "=" in entry else ("", "", entry)
        resolved = resolve_generator(path)
        named[name or os.path.basename(os.path.dirname(os.path.abspath(resolved)))] = resolved
    return named


def evaluate_depth_verifier(config: DepthVerifierEvalConfig,
                            generators: Optional[Mapping[str, object]] = None) -> dict:
    """The library side of ``training/evaluate_depth_verifier.py``: loads the verifier run and
    the generators, evaluates ground truth + each generator on the same pairs and writes
    ``depth_verification.json`` (``config.output_dir``, default the verifier's run directory).

    Args:
      generators: already loaded generators by name (instead of ``config.generators``).

    Returns:
      The written report: ``{"path", "pairs", "threshold", "validation", "sources", ...}``.
    """
    verifier, training, identities = load_verifier_run(config.model_dir)
    run = training.run
    if identities.get("split") == config.eval_split and os.path.abspath(
            identities.get("data_dir", "")) == os.path.abspath(config.data_dir):
        raise ValueError(f"--eval_split={config.eval_split} is the split the verifier trained "
                         "on; evaluate on held-out identities (e.g. --eval_split=test)")
    size = verifier.image_size
    paths = parse_generators(config.generators) if generators is None else {}
    models = dict(generators) if generators is not None else {
        name: load_depth_generator(path) for name, path in paths.items()}

    test = pairs_lib.load_depth_bank(config.data_dir, config.eval_split, size, run.depth_range_mm)
    overlap = set(test.identities) & set(identities["train_identities"])
    if overlap and os.path.abspath(identities.get("data_dir", "")) == os.path.abspath(
            config.data_dir):
        raise ValueError(f"--eval_split={config.eval_split} shares identities {sorted(overlap)} "
                         "with the verifier's training identities")
    pairs = pairs_lib.fixed_pairs(test.example_ids, test.labels, config.max_pairs,
                                  config.pair_seed)
    used = sorted({i for a, b, _ in pairs for i in (a, b)})
    index = test.index_of()
    gt = np.stack([test.depth[index[i]] for i in used])
    sources = {GROUND_TRUTH: (used, prepare_depth(tf.constant(gt), size).numpy())}
    for name, model in models.items():
        sources[name] = (used, generated_depth(model, config.data_dir, config.eval_split, used,
                                               size, config.batch_size, run.depth_range_mm))

    val = pairs_lib.load_depth_bank(identities.get("data_dir") or config.data_dir,
                                    identities["split"], size, run.depth_range_mm,
                                    identities=identities["val_identities"])
    val_pairs = pairs_lib.fixed_pairs(val.example_ids, val.labels, config.max_pairs,
                                      config.pair_seed + 1)
    embed = tf.function(lambda depth: verifier.embed(depth, training=False),
                        reduce_retracing=True)
    results = evaluate_sources(
        lambda depth: embed(tf.constant(depth)).numpy(), sources, pairs,
        (val.example_ids, prepare_depth(tf.constant(val.depth), size).numpy(), val_pairs),
        config.batch_size)
    output_dir = config.output_dir or config.model_dir
    path = os.path.join(output_dir, METRICS_FILE)
    report = {"data_dir": config.data_dir, "eval_split": config.eval_split,
              "verifier": config.model_dir, "generators": paths, "image_size": size,
              "margin": training.loss.margin, "pair_seed": config.pair_seed,
              "pairs": [list(pair) for pair in pairs],
              "validation_identities": identities["val_identities"], **results}
    io_utils.atomic_write_json(path, report)
    return {"path": path, **report}


def table_rows(report: Mapping) -> list[dict]:
    """source -> accuracy, AUC, EER, TAR@FAR=1e-2 (and the pair counts) rows of a report."""
    rows = []
    names = list(report["sources"])   # ground truth first (a report read back from JSON is
    names = [name for name in names if name == GROUND_TRUTH] + [   # sorted by name)
        name for name in names if name != GROUND_TRUTH]
    for name in names:
        summary = report["sources"][name]
        rows.append({"source": name, "accuracy": summary["accuracy"], "auc": summary["auc"],
                     "eer": summary["eer"],
                     "tar_at_far_1e-2": summary["tar_at_far"].get("0.01", math.nan),
                     "pairs": f"{summary['num_genuine']}/{summary['num_impostor']}"})
    return rows


def format_table(report: Mapping) -> str:
    """The plain-text table of :func:`table_rows` (percentages)."""
    header = f"{'depth source':<24}{'accuracy':>10}{'AUC':>8}{'EER':>8}{'TAR@1e-2':>10}" \
             f"{'pairs +/-':>12}"
    lines = [header, "-" * len(header)]
    for row in table_rows(report):
        tar = row["tar_at_far_1e-2"]
        lines.append(f"{row['source']:<24}{100 * row['accuracy']:>10.2f}{row['auc']:>8.4f}"
                     f"{100 * row['eer']:>8.2f}"
                     f"{'nan' if math.isnan(tar) else f'{100 * tar:.2f}':>10}{row['pairs']:>12}")
    lines.append(f"threshold (chosen on validation identities' ground-truth pairs): "
                 f"{report['threshold']:.4f}; validation accuracy "
                 f"{100 * report['validation']['accuracy']:.2f}")
    return "\n".join(lines)
