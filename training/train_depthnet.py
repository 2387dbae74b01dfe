"""Trains DepthNet (or the cGAN baseline) on a TFRecord dataset; resumes where it stopped.

  python -m training.train_depthnet --data_dir=/tmp/synth --model_dir=/tmp/depthnet \
      --image_size=64 --batch_size=16 --epochs=20
  python -m training.train_depthnet --arch=cgan ...              # the cGAN baseline
  python -m training.train_depthnet --use_mask_branch=false ...  # the ablation without D_m
  python -m training.train_depthnet --init_from=/tmp/depthnet/generator.keras ...  # fine-tune
  python -m training.train_depthnet --config_file=/tmp/depthnet/config.json   # re-run a run

Every flag is a field of ``tf_rgbd.config.depthnet.DepthTrainingConfig`` (``--helpfull``).
Writes ``model_dir/config.json``, ``checkpoints/`` (re-running the same command after a kill
continues from the newest one, both optimisers' iterations restored), ``logs/`` (TensorBoard
scalars + image grids), and ``generator.keras``. A NaN/inf loss stops training, keeps the last
good checkpoint, writes ``nan_report.json`` and exits with status 1.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

from tf_rgbd import cli
from tf_rgbd.config import flags as config_flags
from tf_rgbd.config.depthnet import DepthTrainingConfig

CONFIG_FLAGS = config_flags.define_config_flags(DepthTrainingConfig(),
                                                required=("data_dir", "model_dir"))


def main(argv) -> Optional[int]:
    del argv
    config = CONFIG_FLAGS.config()
    # TensorFlow is imported here so that --num_logical_cpus can split the CPU before it starts.
    from tf_rgbd.training import callbacks as callbacks_lib  # noqa: PLC0415
    from tf_rgbd.training.depth_training import train_depth_model  # noqa: PLC0415
    try:
        result = train_depth_model(config)
    except callbacks_lib.NonFiniteLossError as error:
        logging.error("%s", error)
        print(f"FAILED: {error}")
        return 1
    print(f"{config.model.arch}: steps {result.start_step} -> {result.final_step} in "
          f"{result.seconds:.1f} s ({result.steps_per_second:.2f} steps/s); generator: "
          f"{result.outputs['generator']}; logs: {os.path.join(result.model_dir, 'logs')}")
    return 0


if __name__ == "__main__":
    cli.run(main)
