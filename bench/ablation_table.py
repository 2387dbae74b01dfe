"""Paper Table 7 (modalities) and Table 8 (loss terms) ablations on synthetic data, same budget.

  python -m bench.ablation_table --output_dir=runs/ablation

Builds (or reuses) a synthetic RGB-D dataset, trains every variant of
``tf_rgbd.config.recognizer.TABLE7_VARIANTS`` and ``TABLE8_VARIANTS`` with the tiny backbone and
the SAME budget (steps, batch, learning-rate schedule, seed), evaluates each on the dataset's
``lock3dface_style`` protocol (rank-1 per probe subset with the variant's own score: fused for
two image branches, the single branch otherwise; TAR@FAR=0.1 and EER over all pairs) and prints
both tables. Table 7's rows use the classification loss only (as in the paper), so Table 7's
RGB+D+M row and Table 8's L_cls row are the same configuration, trained once; Table 8's full
model is its own run.
Results go to ``<output_dir>/ablation.json`` and ``bench/results/ablation_table.json``. Sized to finish in a few minutes on 2 CPU cores;
re-running reuses finished runs (checkpoints + recognizer.keras).
"""
from __future__ import annotations

import logging
import math
import os
import time

from absl import flags

from tf_rgbd import benchmarks, cli, io_utils
from tf_rgbd.config import recognizer as recognizer_config
from tf_rgbd.config.recognizer import (RecognizerEvalConfig, RecognizerExperimentConfig,
                                       RecognizerLossConfig, RecognizerModelConfig, SGDConfig)
from tf_rgbd.config.run import RunConfig

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", "runs/ablation", "Dataset (if built here) and runs go here.")
flags.DEFINE_string("data_dir", "", "Existing dataset with a lock3dface_style protocol "
                    "('' = build a synthetic one in <output_dir>/data).")
flags.DEFINE_integer("num_identities", 40, "Synthetic identities when building.")
flags.DEFINE_integer("images_per_identity", 15, "Synthetic images per identity when building.")
flags.DEFINE_integer("image_size", 48, "Model input side (divisible by 16).")
flags.DEFINE_string("backbone", "tiny", "Backbone of every variant.")
flags.DEFINE_integer("embedding_dim", 128, "f_id / f_style size.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_integer("epochs", 8, "Epochs (the lr drops at 5 and 7, like the paper's 6/10/17 "
                     "of 20).")
flags.DEFINE_integer("steps_per_epoch", 15, "Steps per epoch.")
flags.DEFINE_float("learning_rate", 0.1, "Initial SGD learning rate.")
flags.DEFINE_float("margin_s", 64.0, "ArcFace scale.")
flags.DEFINE_float("margin_m2", 0.5, "ArcFace margin.")
flags.DEFINE_enum("sam_normalization", RecognizerModelConfig.sam_normalization,
                  recognizer_config.SAM_NORMALIZATIONS,
                  "SAM logit normalisation of every +M variant (none | batch).")
flags.DEFINE_enum("attention_mode", RecognizerModelConfig.attention_mode,
                  recognizer_config.ATTENTION_MODES,
                  "How +M variants apply the attention: x * A | x * (1 + A).")
flags.DEFINE_list("tables", ["7", "8"], "Which tables to run.")
flags.DEFINE_integer("seed", 0, "Seed shared by every variant.")
flags.DEFINE_bool("run_eagerly", False, "Train without tracing the step (smoke runs of a few "
                  "steps; see RunConfig.run_eagerly).")

PROTOCOL = "lock3dface_style"


def _build_dataset(work_dir: str) -> str:
    from tf_rgbd.config.data import BuildConfig
    from tf_rgbd.data.build import build_dataset

    data_dir = os.path.join(work_dir, "data")
    build_dataset(BuildConfig(
        source="synthetic", output_dir=data_dir, image_size=64,
        num_identities=FLAGS.num_identities, images_per_identity=FLAGS.images_per_identity,
        seed=FLAGS.seed, num_shards=4))
    return data_dir


def _experiment(data_dir: str, variant: str) -> RecognizerExperimentConfig:
    epochs = FLAGS.epochs
    decay = tuple(epoch for epoch in (round(epochs * 0.6), round(epochs * 0.85)) if epoch > 0)
    experiment = RecognizerExperimentConfig(
        model=RecognizerModelConfig(backbone=FLAGS.backbone, image_size=FLAGS.image_size,
                                    embedding_dim=FLAGS.embedding_dim,
                                    margin_s=FLAGS.margin_s, margin_m2=FLAGS.margin_m2,
                                    sam_normalization=FLAGS.sam_normalization,
                                    attention_mode=FLAGS.attention_mode),
        loss=RecognizerLossConfig(),
        optimizer=SGDConfig(learning_rate=FLAGS.learning_rate, lr_decay_epochs=decay),
        run=RunConfig(
            data_dir=data_dir, model_dir=os.path.join(FLAGS.output_dir, "runs", variant),
            batch_size=FLAGS.batch_size, epochs=epochs, steps_per_epoch=FLAGS.steps_per_epoch,
            seed=FLAGS.seed, checkpoint_every_steps=10**6, verbose="0",
            run_eagerly=FLAGS.run_eagerly))
    return recognizer_config.apply_variant(experiment, variant)


def _row(metrics: dict) -> dict:
    method = "fused" if "fused" in metrics["identification"] else metrics["modalities"][0]
    identification = metrics["identification"][method]
    verification = metrics["verification"][method]
    return {"method": method,
            **{subset: entry["rank1"] for subset, entry in identification["subsets"].items()},
            "average": identification["average_rank1"],
            "tar@0.1": verification["tar_at_far"]["0.1"], "eer": verification["eer"]}


def _table(title: str, variants, rows: dict, subsets) -> str:
    columns = list(subsets) + ["average", "tar@0.1", "eer"]
    width = max([len(title)] + [len(recognizer_config.VARIANTS[name].description)
                                for name in variants]) + 2
    header = f"{title:<{width}}" + "".join(f"{column:>12}" for column in columns)
    lines = [header, "-" * len(header)]
    for name in variants:
        row = rows[name]
        cells = "".join(
            f"{'nan' if math.isnan(row[column]) else f'{100 * row[column]:.2f}':>12}"
            for column in columns)
        lines.append(f"{recognizer_config.VARIANTS[name].description:<{width}}{cells}")
    return "\n".join(lines)


def main(argv) -> None:
    del argv
    from tf_rgbd.eval import recognition
    from tf_rgbd.training.recognizer_training import run_training

    started = time.time()
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    data_dir = FLAGS.data_dir or _build_dataset(FLAGS.output_dir)
    tables = {"7": recognizer_config.TABLE7_VARIANTS, "8": recognizer_config.TABLE8_VARIANTS}
    wanted = [name for table in FLAGS.tables for name in tables[table]]
    rows, runs, trained_by_config = {}, {}, {}
    subsets = None
    for name in wanted:
        experiment = _experiment(data_dir, name)
        key = (experiment.model, experiment.loss)
        if key in trained_by_config:  # same configuration under another table's name
            rows[name] = rows[trained_by_config[key]]
            runs[name] = {**runs[trained_by_config[key]], "same_run_as": trained_by_config[key]}
            continue
        variant_started = time.time()
        summary = run_training(experiment)
        metrics = recognition.evaluate_recognizer(
            RecognizerEvalConfig(data_dir=data_dir, model_dir=experiment.run.model_dir,
                                 protocol=PROTOCOL, depth_source="gt", make_plots=False),
            progress=False)
        subsets = subsets or list(metrics["num_probes"])
        rows[name] = _row(metrics)
        runs[name] = {"training": summary, "row": rows[name],
                      "seconds": round(time.time() - variant_started, 1)}
        trained_by_config[key] = name
        logging.info("%s: average rank-1 %.2f%% (%s score) in %.0f s", name,
                     100 * rows[name]["average"], rows[name]["method"], runs[name]["seconds"])

    budget = (f"budget per variant: {FLAGS.epochs} epochs x {FLAGS.steps_per_epoch} steps, batch "
              f"{FLAGS.batch_size}, backbone {FLAGS.backbone} at {FLAGS.image_size}px, lr "
              f"{FLAGS.learning_rate} (step decay), seed {FLAGS.seed}; +M: SAM "
              f"normalisation {FLAGS.sam_normalization}, attention {FLAGS.attention_mode}; "
              f"data {data_dir}; "
              f"rank-1 / TAR@FAR=0.1 / EER in %")
    texts = {}
    if "7" in FLAGS.tables:
        texts["table7"] = _table("Table 7 (modalities)", tables["7"], rows, subsets)
    if "8" in FLAGS.tables:
        texts["table8"] = _table("Table 8 (losses)", tables["8"], rows, subsets)
    print(budget)
    for text in texts.values():
        print()
        print(text)
    seconds = time.time() - started
    report = {"budget": budget, "rows": rows, "runs": runs, "tables": texts,
              "seconds": round(seconds, 1),
              "flags": {flag: FLAGS[flag].value for flag in (
                  "image_size", "backbone", "embedding_dim", "batch_size", "epochs",
                  "steps_per_epoch", "learning_rate", "margin_s", "margin_m2",
                  "sam_normalization", "attention_mode", "seed")}}
    io_utils.atomic_write_json(os.path.join(FLAGS.output_dir, "ablation.json"), report)
    print(f"wrote {benchmarks.write_results(__file__, 'ablation_table', report)}")
    logging.info("ablation finished in %.0f s -> %s", seconds,
                 os.path.join(FLAGS.output_dir, "ablation.json"))


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    cli.run(main)
