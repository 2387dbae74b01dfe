"""Training runs of the depth generators (DepthNet GAN and the cGAN baseline), through the one
runner (:mod:`tf_rgbd.training.runner`). The library side of ``training/train_depthnet.py``::

    result = train_depth_model(DepthTrainingConfig(model=DepthModelConfig(arch="depthnet"),
                                                   run=RunConfig(data_dir=..., model_dir=...)))
    result.outputs["generator"]          # <model_dir>/generator.keras

Besides the runner's files, the run directory holds ``generator.keras`` (the trained
generator, loadable with ``tf_rgbd.models.loading.load_depth_generator``).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
from typing import Callable, Optional, Sequence

import keras
import tensorflow as tf

from tf_rgbd.config.depthnet import (DepthLossWeights, DepthModelConfig, DepthTrainingConfig,
                                     OptimizerConfig)
from tf_rgbd.data import pipeline, verify, writer
from tf_rgbd.data import protocol as protocol_lib
from tf_rgbd.models import loading
from tf_rgbd.models.depthnet import DepthNetGenerator
from tf_rgbd.models.discriminators import PatchDiscriminator
from tf_rgbd.training import callbacks as callbacks_lib
from tf_rgbd.training import runner
from tf_rgbd.training.cgan_trainer import build_cgan_trainer
from tf_rgbd.training.checkpointing import CHECKPOINT_SUBDIR, RunCheckpoint
from tf_rgbd.training.depth_trainer import DepthTrainerBase
from tf_rgbd.training.depthnet_gan import DepthNetGAN

GENERATOR_FILE = "generator.keras"
# The depth trainers weight their depth / mask losses by has_depth / has_mask, so examples
# without them (2D images in a mixed dataset) are read as zeros and weighted out.
ZERO_FILL = ("depth", "mask")


def make_optimizer(config: OptimizerConfig, loss_scaling: bool = False,
                   name: str = "adam") -> keras.optimizers.Optimizer:
    """Adam from ``config``; wrapped in a LossScaleOptimizer under mixed_float16."""
    optimizer = keras.optimizers.Adam(config.learning_rate, beta_1=config.beta_1,
                                      beta_2=config.beta_2, name=name)
    if loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, name=f"{name}_loss_scale")
    return optimizer


def build_depth_trainer(model: DepthModelConfig, losses: DepthLossWeights = DepthLossWeights(),
                        depth_range_mm: float = 200.0) -> DepthTrainerBase:
    """The (uncompiled, unbuilt) trainer of ``model.arch``; create it inside the strategy scope."""
    if model.arch == "cgan":
        return build_cgan_trainer(model, losses, depth_range_mm)
    generator = DepthNetGenerator(image_size=model.image_size, base_filters=model.base_filters,
                                  max_filters=model.max_filters, norm=model.norm,
                                  use_mask_branch=model.use_mask_branch, name="generator")

    def discriminator(name: str) -> PatchDiscriminator:
        return PatchDiscriminator(base_filters=model.discriminator_filters,
                                  num_downsamples=model.discriminator_downsamples,
                                  max_filters=model.max_filters, name=name)

    return DepthNetGAN(generator, discriminator("rgb_discriminator"),
                       discriminator("depth_discriminator"),
                       discriminator("mask_discriminator") if model.use_mask_branch else None,
                       loss_weights=losses,
                       conditional_discriminators=model.conditional_discriminators,
                       depth_range_mm=depth_range_mm, name="depthnet_gan")


def initialize_from(trainer: DepthTrainerBase, path: str) -> str:
    """Loads generator (and discriminator) weights for fine-tuning; optimisers stay fresh.

    Args:
      path: a ``.keras`` generator file, a run directory (its newest checkpoint, else its
        ``generator.keras``) or a checkpoint prefix (``.../checkpoints/ckpt-123``).

    Returns:
      What was loaded (for the log).
    """
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(os.path.join(path, CHECKPOINT_SUBDIR))
        if latest is None and os.path.exists(os.path.join(path, GENERATOR_FILE)):
            return initialize_from(trainer, os.path.join(path, GENERATOR_FILE))
        if latest is None:
            raise FileNotFoundError(f"--init_from={path}: no {CHECKPOINT_SUBDIR}/ and no "
                                    f"{GENERATOR_FILE} in that directory")
        path = latest
    if path.endswith(".keras"):
        source = loading.load_depth_generator(path)
        if source.get_config().get("image_size") != trainer.generator.get_config().get(
                "image_size"):
            logging.warning("init_from %s: image_size differs from this run's", path)
        try:
            trainer.generator.set_weights(source.get_weights())
        except ValueError as error:
            raise ValueError(f"--init_from={path}: its generator does not match this run's "
                             f"architecture ({error}); use the same widths / arch flags"
                             ) from error
        return f"generator weights from {path}"
    models = {name: value for name, value in trainer.checkpoint_trackables().items()
              if "optimizer" not in name}
    # The source run's checkpoint object (its directory is only read): every model variable,
    # normalisation statistics included, must be found in the file.
    source_run_dir = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    try:
        RunCheckpoint(source_run_dir, **models).restore(path, expect_partial=True)
    except RuntimeError as error:
        raise ValueError(f"--init_from={path}: checkpoint does not match this run's models "
                         f"({error})") from error
    return f"models from checkpoint {path}"


class DepthTrainingTask(runner.TrainingTask):
    """The depth GANs (``config.model.arch``: depthnet | cgan) as a runner task."""

    resume_invariant = ("model", "losses")

    def __init__(self, config: DepthTrainingConfig):
        self.config = config
        self.name = config.model.arch
        self.example_ids: Optional[tuple[str, ...]] = None

    def prepare_config(self, config: DepthTrainingConfig, manifest) -> DepthTrainingConfig:
        """With ``finetune_on`` != all: selects the fine-tuning examples through the protocol
        (never a probe) and sizes the epoch to them."""
        if config.finetune_on == "all":
            return config
        self.example_ids = finetune_example_ids(config)
        run = config.run
        if run.val_split == run.train_split:
            logging.warning("--finetune_on=%s: validation on --val_split=%s would read the "
                            "protocol's probes; validation disabled", config.finetune_on,
                            run.val_split)
            run = dataclasses.replace(run, val_split="")
        if not run.steps_per_epoch:
            run = dataclasses.replace(
                run, steps_per_epoch=max(1, len(self.example_ids) // run.batch_size))
        self.config = dataclasses.replace(config, run=run)
        self.name = f"{config.model.arch} fine-tuned on {len(self.example_ids)} " \
                    f"{config.finetune_on} examples"
        return self.config

    def build(self, context: runner.RunContext) -> runner.BuiltTrainer:
        config = self.config
        trainer = build_depth_trainer(config.model, config.losses, config.run.depth_range_mm)
        trainer.compile(make_optimizer(config.optimizer, context.loss_scaling, "generator_adam"),
                        make_optimizer(config.optimizer, context.loss_scaling,
                                       "discriminator_adam"),
                        jit_compile=config.run.jit_compile, run_eagerly=config.run.run_eagerly)
        trainer.build_for_training(config.model.image_size)
        return runner.BuiltTrainer(trainer, trainer.checkpoint_trackables())

    def train_dataset(self, context: runner.RunContext, skip_examples: int) -> tf.data.Dataset:
        run = self.config.run
        return pipeline.make_dataset(
            run.data_dir, run.train_split, batch_size=run.batch_size,
            image_size=self.config.model.image_size, augment=run.augment, shuffle=True,
            repeat=True, seed=run.seed, deterministic=True, drop_remainder=True,
            depth_range_mm=run.depth_range_mm, skip_examples=skip_examples,
            exclude_shards=context.excluded_shards, zero_fill=ZERO_FILL,
            example_ids=self.example_ids)

    def validation_dataset(self, context: runner.RunContext
                           ) -> Optional[Callable[[], tf.data.Dataset]]:
        run = self.config.run
        if not run.val_split:
            return None
        splits = context.manifest["splits"]
        if run.val_split not in splits:
            raise KeyError(f"{run.data_dir}: no validation split {run.val_split!r}; it has "
                           f"{sorted(splits)} (--val_split='' disables validation)")
        drop_remainder = context.replicas > 1
        examples = (verify.good_example_count(run.data_dir, run.val_split,
                                              context.excluded_shards)
                    if context.excluded_shards else splits[run.val_split]["example_count"])
        batches = (examples // run.batch_size if drop_remainder
                   else math.ceil(examples / run.batch_size))
        if batches == 0:
            raise ValueError(f"validation split {run.val_split!r} has {examples} examples, "
                             f"fewer than one batch of {run.batch_size} per step under "
                             f"{context.replicas} replicas; lower --batch_size or pass "
                             "--val_split=''")

        def validation() -> tf.data.Dataset:
            dataset = pipeline.make_dataset(
                run.data_dir, run.val_split, batch_size=run.batch_size,
                image_size=self.config.model.image_size, deterministic=True,
                drop_remainder=drop_remainder, depth_range_mm=run.depth_range_mm,
                exclude_shards=context.excluded_shards, zero_fill=ZERO_FILL)
            # A known length spares Keras' "input ran out of data" warning every epoch.
            return dataset.apply(tf.data.experimental.assert_cardinality(batches))

        return validation

    def callbacks(self, context: runner.RunContext, built: runner.BuiltTrainer,
                  log_dir: str) -> list[keras.callbacks.Callback]:
        validation = self.validation_dataset(context)
        if validation is None:
            return []
        return [callbacks_lib.TensorBoardImageGrid(
            log_dir, next(iter(validation())),
            lambda model, batch: model.render_image_grid(batch),
            every_n_epochs=self.config.run.image_grid_every_epochs)]

    def initialize_from(self, built: runner.BuiltTrainer, path: str) -> str:
        return initialize_from(built.trainer, path)

    def save_outputs(self, built: runner.BuiltTrainer, context: runner.RunContext
                     ) -> dict[str, str]:
        path = os.path.join(context.run.model_dir, GENERATOR_FILE)  # a worker's own dir
        return {"generator": loading.save_keras_model(built.trainer.generator, path)}

    def summary_extra(self, context: runner.RunContext) -> dict:
        if self.example_ids is None:
            return {}
        return {"finetune_on": self.config.finetune_on, "protocol": self.config.protocol,
                "finetune_examples": len(self.example_ids)}


def finetune_example_ids(config: DepthTrainingConfig) -> tuple[str, ...]:
    """The example ids of ``config.run.train_split`` a ``finetune_on`` run reads (see
    :func:`tf_rgbd.data.protocol.finetune_example_ids`); the protocol must be on that split."""
    run = config.run
    name = config.protocol
    if not name:
        candidates = [candidate for candidate in protocol_lib.list_protocols(run.data_dir)
                      if protocol_lib.load_protocol(protocol_lib.protocol_path(
                          run.data_dir, candidate)).split == run.train_split]
        if len(candidates) != 1:
            raise ValueError(f"--finetune_on={config.finetune_on}: name the protocol with "
                             f"--protocol; {run.data_dir} has {len(candidates)} protocol(s) on "
                             f"split {run.train_split!r}: {candidates}")
        name = candidates[0]
    protocol = protocol_lib.load_protocol(protocol_lib.protocol_path(run.data_dir, name))
    if protocol.split != run.train_split:
        raise ValueError(f"--protocol={name} lists split {protocol.split!r} but "
                         f"--train_split={run.train_split!r}; fine-tune on the protocol's split")
    records = writer.read_split_records(run.data_dir, run.train_split)
    return protocol_lib.finetune_example_ids(protocol, records, config.finetune_on)


def train_depth_model(config: DepthTrainingConfig,
                      strategy: Optional[tf.distribute.Strategy] = None,
                      extra_callbacks: Sequence[keras.callbacks.Callback] = ()
                      ) -> runner.RunResult:
    """Trains (or resumes) a depth model as described by ``config`` (see the module docstring).

    Raises:
      callbacks.NonFiniteLossError: a loss became NaN/inf (``nan_report.json`` written, last
        good checkpoint kept).
    """
    return runner.run(config, DepthTrainingTask(config), extra_callbacks, strategy)
