"""Training runs of the Siamese depth verifier through the one runner. The library side of
``training/train_depth_verifier.py``::

    result = train_depth_verifier(DepthVerifierTrainingConfig(
        run=RunConfig(data_dir=..., model_dir=...)))
    result.outputs["verifier"]            # <model_dir>/verifier.keras

Pairs come from the ground-truth depth of ``run.train_split`` (:mod:`tf_rgbd.data.pairs`); the
last ``val_identity_fraction`` of its identities never train the verifier and are written to
``verifier_identities.json`` (the evaluation chooses its threshold on their pairs). Validation
(``run.val_split``, off by default) scores pairs of that split's identities.

Under multi-worker training each worker draws its pairs from the examples of its own shard
files (the runner's file sharding), with the same seed.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Mapping, Optional

import keras
import tensorflow as tf

from tf_rgbd import config as config_lib
from tf_rgbd import io_utils
from tf_rgbd.config.verifier import (IDENTITIES_FILE, VERIFIER_FILE, DepthVerifierTrainingConfig,
                                     VerifierModelConfig)
from tf_rgbd.data import pairs as pairs_lib
from tf_rgbd.data import writer
from tf_rgbd.models import blocks, loading
from tf_rgbd.models.siamese import SiameseDepthVerifier
from tf_rgbd.training import runner
from tf_rgbd.training.verifier_trainer import SiameseVerifierTrainer

VALIDATION_BATCHES = 8


def build_verifier(model: VerifierModelConfig) -> SiameseDepthVerifier:
    return SiameseDepthVerifier(backbone=model.backbone, image_size=model.image_size,
                                embedding_dim=model.embedding_dim,
                                dropout_rate=model.dropout_rate, name="depth_verifier")


class DepthVerifierTrainingTask(runner.TrainingTask):
    """The Siamese depth verifier (contrastive loss on ground-truth depth pairs) as a runner
    task."""

    name = "depth verifier"
    resume_invariant = ("model", "loss", "val_identity_fraction")

    def __init__(self, config: DepthVerifierTrainingConfig):
        self.config = config
        self.train_identities: tuple[int, ...] = ()
        self.val_identities: tuple[int, ...] = ()
        self._bank: Optional[pairs_lib.DepthBank] = None

    def prepare_config(self, config: DepthVerifierTrainingConfig, manifest: Mapping[str, Any]
                       ) -> DepthVerifierTrainingConfig:
        del manifest
        run = config.run
        labels = [record.label for record in writer.read_split_records(run.data_dir,
                                                                       run.train_split)
                  if record.has_depth]
        self.train_identities, self.val_identities = pairs_lib.split_identities(
            labels, config.val_identity_fraction)
        self.config = config
        return config

    def _training_bank(self, context: runner.RunContext) -> pairs_lib.DepthBank:
        if self._bank is None:
            run = self.config.run
            self._bank = pairs_lib.load_depth_bank(
                run.data_dir, run.train_split, self.config.model.image_size, run.depth_range_mm,
                identities=self.train_identities, exclude_shards=context.excluded_shards)
        return self._bank

    def build(self, context: runner.RunContext) -> runner.BuiltTrainer:
        config = self.config
        verifier = build_verifier(config.model)
        trainer = SiameseVerifierTrainer(verifier, margin=config.loss.margin,
                                         name="depth_verifier_trainer")
        optimizer = keras.optimizers.Adam(config.optimizer.learning_rate, name="verifier_adam")
        if context.loss_scaling:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, name="verifier_loss_scale")
        trainer.compile(optimizer=optimizer, jit_compile=config.run.jit_compile,
                        run_eagerly=config.run.run_eagerly)
        blocks.set_fused_batch_norm_training(trainer, not config.run.jit_compile)
        trainer.build_for_training()
        return runner.BuiltTrainer(trainer, {"verifier": verifier, "optimizer": optimizer})

    def train_dataset(self, context: runner.RunContext, skip_examples: int) -> tf.data.Dataset:
        run = self.config.run
        return pairs_lib.pair_dataset(self._training_bank(context), run.batch_size, run.seed,
                                      skip_pairs=skip_examples, augment=run.augment)

    def validation_dataset(self, context: runner.RunContext
                           ) -> Optional[Callable[[], tf.data.Dataset]]:
        run = self.config.run
        if not run.val_split:
            return None
        if run.val_split not in context.manifest["splits"]:
            raise KeyError(f"{run.data_dir}: no validation split {run.val_split!r}; it has "
                           f"{sorted(context.manifest['splits'])} (--val_split='' disables it)")
        bank = pairs_lib.load_depth_bank(run.data_dir, run.val_split,
                                         self.config.model.image_size, run.depth_range_mm,
                                         exclude_shards=context.excluded_shards)

        def validation() -> tf.data.Dataset:
            dataset = pairs_lib.pair_dataset(bank, run.batch_size, run.seed + 1)
            return dataset.take(VALIDATION_BATCHES).apply(
                tf.data.experimental.assert_cardinality(VALIDATION_BATCHES))

        return validation

    def save_outputs(self, built: runner.BuiltTrainer, context: runner.RunContext
                     ) -> dict[str, str]:
        model_dir = context.run.model_dir
        identities = os.path.join(model_dir, IDENTITIES_FILE)
        io_utils.atomic_write_json(identities, {
            "data_dir": context.run.data_dir, "split": context.run.train_split,
            "train_identities": list(self.train_identities),
            "val_identities": list(self.val_identities)})
        return {"verifier": loading.save_keras_model(built.trainer.verifier,
                                                     os.path.join(model_dir, VERIFIER_FILE)),
                "identities": identities}

    def summary_extra(self, context: runner.RunContext) -> dict[str, Any]:
        return {"train_identities": len(self.train_identities),
                "val_identities": len(self.val_identities),
                "train_examples": len(self._bank.example_ids) if self._bank else 0,
                "margin": self.config.loss.margin}


def train_depth_verifier(config: DepthVerifierTrainingConfig,
                         strategy: Optional[tf.distribute.Strategy] = None) -> runner.RunResult:
    """Trains (or resumes) the verifier described by ``config`` (see the module docstring)."""
    return runner.run(config, DepthVerifierTrainingTask(config), strategy=strategy)


def load_verifier_run(model_dir: str) -> tuple[SiameseDepthVerifier, DepthVerifierTrainingConfig,
                                               dict]:
    """``(verifier, training config, identities)`` of a finished verifier run.

    Raises:
      FileNotFoundError: not a finished run of ``training.train_depth_verifier``.
    """
    paths = {name: os.path.join(model_dir, name)
             for name in (runner.CONFIG_FILE, VERIFIER_FILE, IDENTITIES_FILE)}
    missing = [name for name, path in paths.items() if not os.path.exists(path)]
    if missing:
        raise FileNotFoundError(f"{model_dir} lacks {missing}: is it a finished run of "
                                "python -m training.train_depth_verifier? (re-run that command "
                                "to finish it)")
    config = config_lib.load_json(DepthVerifierTrainingConfig, paths[runner.CONFIG_FILE])
    with open(paths[IDENTITIES_FILE], encoding="utf-8") as handle:
        identities = json.load(handle)
    verifier = loading.load_keras_model(paths[VERIFIER_FILE])
    return verifier, config, identities
