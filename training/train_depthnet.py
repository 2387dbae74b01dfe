"""Trains DepthNet (or the cGAN baseline) on a TFRecord dataset; resumes where it stopped.

  python -m training.train_depthnet --data_dir=/tmp/synth --model_dir=/tmp/depthnet \
      --image_size=64 --batch_size=16 --epochs=20
  python -m training.train_depthnet --arch=cgan ...            # the cGAN baseline
  python -m training.train_depthnet --no_mask_branch ...       # the ablation without D_m
  python -m training.train_depthnet --init_from=/tmp/depthnet/generator.keras ...  # fine-tune

Writes ``model_dir/config.json``, ``checkpoints/`` (re-running the same command after a kill
continues from the newest one, both optimisers' iterations restored), ``logs/`` (TensorBoard
scalars + image grids), and ``generator.keras``. A NaN/inf loss stops training, keeps the last
good checkpoint, writes ``nan_report.json`` and exits with status 1.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags() -> None:
    # Run.
    flags.DEFINE_string("data_dir", None, "Dataset directory (python -m datasets.build output).")
    flags.DEFINE_string("model_dir", None, "Run directory (config, checkpoints, logs, model).")
    flags.DEFINE_string("train_split", "train", "Training split.")
    flags.DEFINE_string("val_split", "test", "Validation split ('' disables validation).")
    flags.DEFINE_integer("batch_size", 16, "Global batch size.")
    flags.DEFINE_integer("epochs", 10, "Epochs (ignored when --steps > 0).")
    flags.DEFINE_integer("steps", 0, "Total optimiser steps (0: epochs * steps_per_epoch).")
    flags.DEFINE_integer("steps_per_epoch", 0, "Steps per epoch (0: one pass over the split).")
    flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker"],
                      "Distribution strategy.")
    flags.DEFINE_integer("num_logical_cpus", 0,
                         "mirrored on a CPU-only machine: split the CPU into N logical devices.")
    flags.DEFINE_string("init_from", None, "Fine-tune from a generator.keras, a run directory "
                                           "or a checkpoint prefix.")
    flags.DEFINE_boolean("jit_compile", False, "XLA-compile the train/test steps.")
    flags.DEFINE_boolean("mixed_precision", False,
                         "mixed_float16 (GPU, loss-scaled) / mixed_bfloat16 (CPU).")
    flags.DEFINE_boolean("augment", True, "Flip / crop / colour augmentation.")
    flags.DEFINE_integer("seed", 0, "Seed of weights, shuffling and augmentation.")
    flags.DEFINE_integer("checkpoint_every_steps", 200, "Checkpoint period in steps.")
    flags.DEFINE_integer("image_grid_every_epochs", 1, "TensorBoard image grid period.")
    flags.DEFINE_float("depth_range_mm", 200.0, "Depth normalisation span (the pipeline's).")
    flags.DEFINE_string("verbose", "auto", "Keras fit verbosity: auto, 0, 1 or 2.")
    # Model.
    flags.DEFINE_enum("arch", "depthnet", ["depthnet", "cgan"], "Model family.")
    flags.DEFINE_integer("image_size", 64, "Square input size (64 or 112 here, 256 in the paper).")
    flags.DEFINE_integer("base_filters", 32, "Generator stem channels (doubled per level).")
    flags.DEFINE_integer("max_filters", 256, "Channel cap.")
    flags.DEFINE_enum("norm", "instance", ["instance", "batch", "none"],
                      "Generator normalisation.")
    flags.DEFINE_boolean("no_mask_branch", False, "Ablation: no mask head and no D_m.")
    flags.DEFINE_boolean("conditional_discriminators", False,
                         "Concatenate the input image to every discriminator input.")
    flags.DEFINE_integer("discriminator_filters", 32, "Discriminator first-layer channels.")
    flags.DEFINE_integer("discriminator_downsamples", 3, "Discriminator stride-2 convs.")
    flags.DEFINE_integer("cgan_hidden_units", 64, "cGAN discriminator hidden dense width.")
    # Losses and optimiser.
    flags.DEFINE_float("lambda_depth", 100.0, "Weight of L_depth (L1; MSE for the cGAN).")
    flags.DEFINE_float("lambda_mask", 100.0, "Weight of L_mask (BCE).")
    flags.DEFINE_float("lambda_adv", 1.0, "Weight of the generator's adversarial loss.")
    flags.DEFINE_float("lambda_recon", 1.0, "Weight of L_recon (L1 image reconstruction).")
    flags.DEFINE_float("learning_rate", 2e-4, "Adam learning rate (G and D).")
    flags.DEFINE_float("beta_1", 0.5, "Adam beta_1.")
    flags.DEFINE_float("beta_2", 0.999, "Adam beta_2.")
    flags.mark_flags_as_required(["data_dir", "model_dir"])


def config_from_flags():
    from tf_rgbd import config as config_lib
    from tf_rgbd.config.depthnet import (DepthLossWeights, DepthModelConfig,
                                         DepthTrainingConfig, OptimizerConfig, TrainRunConfig)
    return DepthTrainingConfig(
        model=config_lib.from_flag_values(DepthModelConfig, FLAGS,
                                          use_mask_branch=not FLAGS.no_mask_branch),
        losses=config_lib.from_flag_values(DepthLossWeights, FLAGS),
        optimizer=config_lib.from_flag_values(OptimizerConfig, FLAGS),
        run=config_lib.from_flag_values(TrainRunConfig, FLAGS))


def main(argv) -> Optional[int]:
    del argv
    # TF is imported here so that --num_logical_cpus can split the CPU before it initialises.
    from tf_rgbd.training import callbacks as callbacks_lib
    from tf_rgbd.training import depthnet_gan
    config = config_from_flags()
    try:
        result = depthnet_gan.train_depth_model(config)
    except callbacks_lib.NonFiniteLossError as error:
        logging.error("%s", error)
        print(f"FAILED: {error}")
        return 1
    print(f"{config.model.arch}: steps {result.start_step} -> {result.final_step} in "
          f"{result.seconds:.1f} s ({result.steps_per_second:.2f} steps/s); generator: "
          f"{result.generator_path}; logs: {os.path.join(result.model_dir, 'logs')}")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
