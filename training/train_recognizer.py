"""Train (and optionally evaluate) the segmentation-guided RGB-D recognizer.

One run::

  python -m training.train_recognizer --data_dir=DATA --model_dir=runs/recog \
      --modalities=rgb,depth,mask --losses=cls,sa,cmfl,dis --backbone=ir_se50

The full model and the RGB baseline, trained and evaluated by one command (each variant goes
to ``<model_dir>/<variant>``; the combined Table-4-style table is printed and written to
``<model_dir>/variants_summary.json``)::

  python -m training.train_recognizer --data_dir=AUGMENTED_DATA --model_dir=runs/recog \
      --variants=full,rgb_baseline --depth_source=generated --evaluate \
      --eval_depth_sources=generated,gt --backbone=tiny --image_size=64 --batch_size=32 \
      --epochs=20 --steps_per_epoch=20 --learning_rate=0.01 --lr_decay_epochs=12,16,18

``--variants`` accepts every name of ``tf_rgbd.config.recognizer.VARIANTS`` (Table 7:
t7_depth ... t7_rgbd_mask; Table 8: t8_cls ... t8_all; full; rgb_baseline). ``--depth_source``
picks D* (``generated``, an augmented dataset from training/augment_dataset.py, with M* as the
mask) or the ground truth (``gt``). Re-running the same command resumes from the checkpoints.
"""
from __future__ import annotations

import logging
import os
from typing import Optional, Sequence

from absl import app, flags

from tf_rgbd import config as config_lib
from tf_rgbd import io_utils
from tf_rgbd.config import recognizer as recognizer_config
from tf_rgbd.config.recognizer import (RecognizerEvalConfig, RecognizerExperimentConfig,
                                       RecognizerLossConfig, RecognizerModelConfig,
                                       RecognizerTrainConfig)

FLAGS = flags.FLAGS

# Data / run.
flags.DEFINE_string("data_dir", None, "Training dataset directory (ground truth or augmented).")
flags.DEFINE_string("model_dir", None, "Run directory (one sub-directory per --variants entry).")
flags.DEFINE_enum("depth_source", "gt", recognizer_config.DEPTH_SOURCES,
                  "gt: ground-truth depth; generated: D* of an augmented dataset.")
flags.DEFINE_string("split", "train", "Training split.")
flags.DEFINE_enum("strategy", "default", ("default", "mirrored", "multi_worker"),
                  "tf.distribute strategy.")
flags.DEFINE_list("variants", [], "Named variants to train one after the other (see "
                  "VARIANTS); empty = one run with --modalities/--losses.")
# Model.
flags.DEFINE_string("backbone", "ir_se50", "ir_se50 | ir_se18 | tiny.")
flags.DEFINE_list("modalities", list(recognizer_config.MODALITIES), "Any of rgb,depth,mask.")
flags.DEFINE_integer("image_size", 112, "Input side S (divisible by 16).")
flags.DEFINE_integer("embedding_dim", 512, "Size of f_id and f_style.")
flags.DEFINE_float("dropout_rate", 0.4, "Dropout of the identity embedding head.")
flags.DEFINE_float("margin_s", 64.0, "CombinedMargin scale s.")
flags.DEFINE_float("margin_m1", 1.0, "Multiplicative angular margin m1.")
flags.DEFINE_float("margin_m2", 0.5, "Additive angular margin m2 (ArcFace).")
flags.DEFINE_float("margin_m3", 0.0, "Additive cosine margin m3 (CosFace).")
# Losses.
flags.DEFINE_list("losses", list(recognizer_config.LOSS_TERMS), "Any of cls,sa,cmfl,dis.")
flags.DEFINE_float("lambda_cls", 0.5, "lambda0.")
flags.DEFINE_float("lambda_cmfl", 0.5, "lambda1.")
flags.DEFINE_float("lambda_sa", 0.05, "lambda2.")
flags.DEFINE_float("lambda_dis", 0.5, "lambda3.")
flags.DEFINE_float("cmfl_alpha", 1.0, "CMFL alpha.")
flags.DEFINE_float("cmfl_gamma", 3.0, "CMFL gamma.")
flags.DEFINE_bool("cmfl_stop_gradient", True, "Stop the gradient through n_t in CMFL.")
flags.DEFINE_float("sa_beta", 2.0, "beta of rho (eq. 11).")
flags.DEFINE_bool("sa_stop_gradient_target", True, "The partner's f_id is a constant target.")
flags.DEFINE_float("sa_max_loss_gap", 1.0, "Cap of L_id^m - L_id^n inside rho (inf = none).")
# Optimisation.
flags.DEFINE_integer("batch_size", 256, "Global batch size.")
flags.DEFINE_integer("epochs", 20, "Epochs.")
flags.DEFINE_integer("steps_per_epoch", 0, "Steps per epoch (0 = one pass over the split).")
flags.DEFINE_float("learning_rate", 0.1, "Initial SGD learning rate.")
flags.DEFINE_list("lr_decay_epochs", ["6", "10", "17"], "Epochs where lr is divided.")
flags.DEFINE_float("lr_decay_factor", 0.1, "Factor applied at each lr_decay_epochs entry.")
flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
flags.DEFINE_float("weight_decay", 5e-4, "Weight decay (decoupled, Keras SGD).")
flags.DEFINE_bool("augment", True, "Random flip / crop / colour jitter.")
flags.DEFINE_integer("seed", 0, "Seed of data order, augmentation and initialisation.")
flags.DEFINE_integer("checkpoint_every_steps", 500, "Checkpoint period in optimiser steps.")
flags.DEFINE_integer("max_to_keep", 3, "Checkpoints kept.")
# Evaluation after training.
flags.DEFINE_bool("evaluate", False, "Evaluate every trained variant on --protocol afterwards.")
flags.DEFINE_string("eval_data_dir", None, "Dataset holding the protocol (default --data_dir).")
flags.DEFINE_string("protocol", "lock3dface_style", "Protocol name under <data>/protocols.")
flags.DEFINE_list("eval_depth_sources", [], "Depth sources to evaluate (default "
                  "--depth_source).")
flags.DEFINE_bool("flip_test", True, "Flip-test embeddings.")


def experiment_from_flags(model_dir: str, variant: Optional[str]) -> RecognizerExperimentConfig:
    """The run config of one variant from the parsed flags."""
    experiment = RecognizerExperimentConfig(
        model=config_lib.from_flag_values(RecognizerModelConfig, FLAGS),
        loss=config_lib.from_flag_values(RecognizerLossConfig, FLAGS),
        train=config_lib.from_flag_values(
            RecognizerTrainConfig, FLAGS, model_dir=model_dir,
            lr_decay_epochs=tuple(int(epoch) for epoch in FLAGS.lr_decay_epochs)))
    return recognizer_config.apply_variant(experiment, variant)


def train_and_evaluate(experiments: Sequence[RecognizerExperimentConfig], evaluate: bool,
                       eval_data_dir: Optional[str] = None, protocol: str = "lock3dface_style",
                       eval_depth_sources: Sequence[str] = (), flip_test: bool = True,
                       summary_dir: Optional[str] = None, verbose="auto") -> dict:
    """Trains each experiment, evaluates it for every depth source, prints the combined tables.

    Returns ``{"runs": {variant: {"training": summary, "evaluation": {source: metrics}}},
    "table": text}``; with ``summary_dir`` also writes ``variants_summary.json`` there.
    """
    from tf_rgbd import eval as eval_lib
    from tf_rgbd.eval import identification
    from tf_rgbd.training.rgbd_trainer import run_training

    runs, table_rows, subsets = {}, {}, None
    for experiment in experiments:
        training_summary = run_training(experiment, verbose=verbose)
        run = {"training": training_summary, "evaluation": {}}
        if evaluate:
            sources = tuple(eval_depth_sources) or (experiment.train.depth_source,)
            if "depth" not in experiment.model.modalities:
                sources = sources[:1]  # depth source is irrelevant without a depth branch
            for source in sources:
                metrics = eval_lib.evaluate_recognizer(RecognizerEvalConfig(
                    data_dir=eval_data_dir or experiment.train.data_dir,
                    model_dir=experiment.train.model_dir, protocol=protocol,
                    depth_source=source, flip_test=flip_test))
                run["evaluation"][source] = {key: value for key, value in metrics.items()
                                             if key != "tables"}
                print(metrics["tables"]["identification"])
                print(metrics["tables"]["verification"])
                subsets = subsets or list(metrics["num_probes"])
                for method, values in metrics["identification"].items():
                    label = eval_lib.METHOD_NAMES.get(method, method)
                    with_depth = "depth" in experiment.model.modalities
                    source_note = f", {source} depth" if with_depth else ""
                    table_rows[f"{experiment.variant}: {label}{source_note}"] = {
                        **{subset: entry["rank1"] for subset, entry in values["subsets"].items()},
                        "average": values["average_rank1"]}
        runs[experiment.variant] = run
    table = (identification.format_identification_table(table_rows, subsets, "rank-1 %")
             if table_rows else "")
    if table:
        print(table)
    result = {"runs": runs, "table": table}
    if summary_dir:
        io_utils.atomic_write_json(os.path.join(summary_dir, "variants_summary.json"), result)
    return result


def main(argv) -> None:
    del argv
    if not FLAGS.data_dir or not FLAGS.model_dir:
        raise app.UsageError("--data_dir and --model_dir are required")
    if FLAGS.variants:
        experiments = [experiment_from_flags(os.path.join(FLAGS.model_dir, name), name)
                       for name in FLAGS.variants]
    else:
        experiments = [experiment_from_flags(FLAGS.model_dir, None)]
    train_and_evaluate(experiments, FLAGS.evaluate, FLAGS.eval_data_dir, FLAGS.protocol,
                       FLAGS.eval_depth_sources, FLAGS.flip_test,
                       summary_dir=FLAGS.model_dir if FLAGS.variants else None)


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    app.run(main)
