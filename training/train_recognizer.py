"""Train (and optionally evaluate) the segmentation-guided RGB-D recognizer.

One run::

  python -m training.train_recognizer --data_dir=DATA --model_dir=runs/recog \
      --modalities=rgb,depth,mask --losses=cls,sa,cmfl,dis --backbone=ir_se50

The full model and the RGB baseline, trained and evaluated by one command (each variant goes
to ``<model_dir>/<variant>``; the combined Table-4-style table is printed and written to
``<model_dir>/variants_summary.json``)::

  python -m training.train_recognizer --data_dir=DATA --model_dir=runs/recog \
      --variants=full,rgb_baseline --evaluate --backbone=tiny --image_size=64 \
      --embedding_dim=128 --batch_size=32 --epochs=10 --steps_per_epoch=14 \
      --learning_rate=0.1 --lr_decay_epochs=6,8,9

(about 3 minutes on 2 CPU cores for a 40-identity x 15-image synthetic set). With an augmented
dataset (D*, M*) add ``--depth_source=generated --eval_depth_sources=generated,gt`` to train on
D* and evaluate the same model with D* and with Dgt.

``--variants`` accepts every name of ``tf_rgbd.config.recognizer.VARIANTS`` (Table 7:
t7_depth ... t7_rgbd_mask; Table 8: t8_cls ... t8_all; full; rgb_baseline). ``--depth_source``
picks D* (``generated``, an augmented dataset from training/augment_dataset.py, with M* as the
mask) or the ground truth (``gt``). Re-running the same command resumes from the checkpoints.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

from absl import app, flags

from tf_rgbd import config as config_lib
from tf_rgbd.config import recognizer as recognizer_config
from tf_rgbd.config.recognizer import (RecognizerExperimentConfig,
                                       RecognizerLossConfig, RecognizerModelConfig,
                                       RecognizerTrainConfig)
from tf_rgbd.training import rgbd_trainer

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
flags.DEFINE_enum("sam_normalization", "none", recognizer_config.SAM_NORMALIZATIONS,
                  "Between the SAM conv and its sigmoid: none (as printed) or batch (BN, as in "
                  "CBAM's reference code; keeps the attention out of saturation).")
flags.DEFINE_enum("attention_mode", "multiply", recognizer_config.ATTENTION_MODES,
                  "multiply: x * A (paper); residual: x * (1 + A).")
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


def main(argv) -> None:
    del argv
    if not FLAGS.data_dir or not FLAGS.model_dir:
        raise app.UsageError("--data_dir and --model_dir are required")
    if FLAGS.variants:
        experiments = [experiment_from_flags(os.path.join(FLAGS.model_dir, name), name)
                       for name in FLAGS.variants]
    else:
        experiments = [experiment_from_flags(FLAGS.model_dir, None)]
    rgbd_trainer.train_and_evaluate(experiments, FLAGS.evaluate, FLAGS.eval_data_dir, FLAGS.protocol,
                       FLAGS.eval_depth_sources, FLAGS.flip_test,
                       summary_dir=FLAGS.model_dir if FLAGS.variants else None)


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    app.run(main)
