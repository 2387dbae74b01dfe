"""Training runs of the segmentation-guided recognizer through the one runner, and loading a
trained run back. The library side of ``training/train_recognizer.py``::

    summary = run_training(RecognizerExperimentConfig(run=RunConfig(data_dir=..., model_dir=...)))
    recognizer, experiment = load_recognizer(model_dir)

Besides the runner's files, the run directory holds ``recognizer.keras`` (the training model
with its classifiers) and ``recognizer_inference.keras`` (the training-free embedding graph).
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Mapping, Optional

import keras
import tensorflow as tf

from tf_rgbd import config as config_lib
from tf_rgbd.config.recognizer import (CONFIG_FILE, INFERENCE_FILE, RECOGNIZER_FILE,
                                       RecognizerExperimentConfig)
from tf_rgbd.data import pipeline, writer
from tf_rgbd.data.modalities import (check_modalities_present, dataset_modalities,
                                     resolve_depth_key, resolve_depth_source, select_inputs)
from tf_rgbd.models import loading
from tf_rgbd.models.recognizer import (SegmentationGuidedRecognizer, build_inference_model,
                                       recognizer_from_config)
from tf_rgbd.training import callbacks as callbacks_lib
from tf_rgbd.training import runner
from tf_rgbd.training.checkpointing import RunCheckpoint
from tf_rgbd.training.rgbd_trainer import RGBDRecognizerTrainer, build_trainer


def attention_grid_renderer(depth_key: str):
    """TensorBoard image grid: faces and the SAM maps upsampled to the face size."""

    def render(trainer: RGBDRecognizerTrainer, batch: Mapping) -> dict:
        recognizer = trainer.recognizer
        outputs = recognizer(select_inputs(batch, recognizer.modalities, depth_key),
                             training=False)
        size = batch["mask"].shape[1]
        images = {key: tf.image.resize(value, [size, size], method="nearest")
                  for key, value in outputs.items() if key.startswith("attention_")}
        if "rgb" in batch:
            images["rgb"] = (batch["rgb"] + 1.0) / 2.0
        return images

    return render


class RecognizerTrainingTask(runner.TrainingTask):
    """The recognizer (any modalities / loss terms of its config) as a runner task."""

    name = "recognizer"
    resume_invariant = ("model", "loss", "num_classes", "depth_source")

    def __init__(self, experiment: RecognizerExperimentConfig):
        self.experiment = experiment
        self.depth_key = "depth"
        self.training_labels: tuple[int, ...] = ()

    def prepare_config(self, config: RecognizerExperimentConfig, manifest: Mapping[str, Any]
                       ) -> RecognizerExperimentConfig:
        run = config.run
        modalities = config.model.modalities
        if "depth" in modalities:
            self.depth_key = resolve_depth_key(manifest, run.train_split, config.depth_source)
            config = dataclasses.replace(config, depth_source=resolve_depth_source(
                manifest, run.train_split, config.depth_source))
        check_modalities_present(manifest, run.train_split, modalities, config.zero_fill_missing)
        # C_id has one class per identity PRESENT in the training split (a dataset's other
        # identities, e.g. held-out test subjects, would only be never-seen negatives).
        self.training_labels = training_labels(run.data_dir, run.train_split)
        self.experiment = dataclasses.replace(config, num_classes=len(self.training_labels))
        self.name = f"recognizer {self.experiment.variant}"
        return self.experiment

    @property
    def input_keys(self) -> tuple[str, ...]:
        return dataset_modalities(self.experiment.model.modalities, self.depth_key)

    def build(self, context: runner.RunContext) -> runner.BuiltTrainer:
        experiment = self.experiment
        trainer, optimizer = build_trainer(
            experiment.model, experiment.loss, experiment.optimizer, experiment.num_classes,
            context.steps_per_epoch, self.depth_key, jit_compile=experiment.run.jit_compile,
            loss_scaling=context.loss_scaling, run_eagerly=experiment.run.run_eagerly)
        return runner.BuiltTrainer(trainer, {"recognizer": trainer.recognizer,
                                             "optimizer": optimizer})

    def train_dataset(self, context: runner.RunContext, skip_examples: int) -> tf.data.Dataset:
        run = self.experiment.run
        dataset = pipeline.make_dataset(
            run.data_dir, split=run.train_split, batch_size=run.batch_size,
            image_size=self.experiment.model.image_size, modalities=self.input_keys,
            augment=run.augment, shuffle=True, repeat=True, seed=run.seed, deterministic=True,
            drop_remainder=True, depth_range_mm=run.depth_range_mm, skip_examples=skip_examples,
            exclude_shards=context.excluded_shards,
            zero_fill=self.experiment.zero_fill_missing)
        return remap_labels(dataset, self.training_labels)

    def callbacks(self, context: runner.RunContext, built: runner.BuiltTrainer,
                  log_dir: str) -> list[keras.callbacks.Callback]:
        if not built.trainer.recognizer.uses_mask:
            return []
        run = self.experiment.run
        preview = next(iter(pipeline.make_dataset(
            run.data_dir, split=run.train_split, batch_size=4,
            image_size=self.experiment.model.image_size, modalities=self.input_keys,
            deterministic=True, depth_range_mm=run.depth_range_mm,
            exclude_shards=context.excluded_shards,
            zero_fill=self.experiment.zero_fill_missing)))
        return [callbacks_lib.TensorBoardImageGrid(
            log_dir, preview, attention_grid_renderer(self.depth_key),
            every_n_epochs=run.image_grid_every_epochs)]

    def initialize_from(self, built: runner.BuiltTrainer, path: str) -> str:
        source, _ = load_recognizer(path) if os.path.isdir(path) else (
            loading.load_keras_model(path), None)
        target = built.trainer.recognizer
        loaded = 0
        for part in ("identity_encoders", "style_encoders"):
            for branch, layer in getattr(target, part).items():
                if branch in getattr(source, part):
                    layer.set_weights(getattr(source, part)[branch].get_weights())
                    loaded += 1
        for part in ("mask_encoder", "spatial_attention"):
            if getattr(target, part) is not None and getattr(source, part, None) is not None:
                getattr(target, part).set_weights(getattr(source, part).get_weights())
                loaded += 1
        if not loaded:
            raise ValueError(f"--init_from={path}: no encoder of that recognizer matches this "
                             f"run's modalities {target.modalities}")
        # The classifiers are new: fine-tuning may change the identities.
        return f"{loaded} encoder part(s) from {path} (classifiers re-initialised)"

    def save_outputs(self, built: runner.BuiltTrainer, context: runner.RunContext
                     ) -> dict[str, str]:
        recognizer = built.trainer.recognizer
        model_dir = self.experiment.run.model_dir
        return {
            "recognizer": loading.save_keras_model(
                recognizer, os.path.join(model_dir, RECOGNIZER_FILE)),
            "inference": loading.save_keras_model(
                build_inference_model(recognizer, self.experiment.model.image_size),
                os.path.join(model_dir, INFERENCE_FILE))}

    def summary_extra(self, context: runner.RunContext) -> dict[str, Any]:
        return {"variant": self.experiment.variant, "depth_input_key": self.depth_key,
                "depth_source": self.experiment.depth_source,
                "num_classes": self.experiment.num_classes,
                "labels_remapped": list(self.training_labels) != list(
                    range(len(self.training_labels)))}


def training_labels(data_dir: str, split: str) -> tuple[int, ...]:
    """The dataset labels present in ``split`` (sorted): C_id's classes, in that order."""
    labels = tuple(sorted({record.label for record in writer.read_split_records(data_dir, split)}))
    if len(labels) < 2:
        raise ValueError(f"{data_dir}: split {split!r} has {len(labels)} identit(y/ies); a "
                         "recognizer needs at least 2")
    return labels


def remap_labels(dataset: tf.data.Dataset, labels) -> tf.data.Dataset:
    """Batches with ``label`` replaced by its index in ``labels`` (identity when ``labels`` is
    0..n-1 already)."""
    labels = [int(label) for label in labels]
    if labels == list(range(len(labels))):
        return dataset
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(labels, tf.int32), tf.range(len(labels), dtype=tf.int32)), default_value=-1)

    def remap(batch):
        return {**batch, "label": table.lookup(tf.cast(batch["label"], tf.int32))}

    return dataset.map(remap, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def run_training(experiment: RecognizerExperimentConfig,
                 strategy: Optional[tf.distribute.Strategy] = None) -> dict:
    """Trains one recognizer run end to end (resumable) and returns its summary dict.

    The summary (also ``training_summary.json``) has ``variant``, ``start_step``,
    ``total_steps``, ``steps_per_epoch``, ``seconds``, ``depth_input_key``,
    ``final_epoch_metrics`` and ``outputs``. A NaN/inf loss stops the run, keeps the last good
    checkpoint and raises ``callbacks.NonFiniteLossError``.
    """
    result = runner.run(experiment, RecognizerTrainingTask(experiment), strategy=strategy)
    accuracy = ", ".join(f"{key} {value:.3f}"
                         for key, value in result.summary["final_epoch_metrics"].items()
                         if key.startswith("acc_"))
    logging.info("trained %s: %s", experiment.variant, accuracy)
    return result.summary


def load_recognizer(model_dir: str, experiment: Optional[RecognizerExperimentConfig] = None
                    ) -> tuple[SegmentationGuidedRecognizer, RecognizerExperimentConfig]:
    """The trained recognizer of a run: ``recognizer.keras`` if present, else the newest
    checkpoint (a run interrupted before its end).

    Returns ``(recognizer, experiment_config)``.
    """
    config_path = os.path.join(model_dir, CONFIG_FILE)
    if experiment is None:
        if not os.path.exists(config_path):
            raise FileNotFoundError(f"{config_path} not found: is {model_dir} a run directory of "
                                    "training/train_recognizer.py?")
        experiment = config_lib.load_json(RecognizerExperimentConfig, config_path)
    keras_path = os.path.join(model_dir, RECOGNIZER_FILE)
    if os.path.exists(keras_path):
        return loading.load_keras_model(keras_path), experiment
    if experiment.num_classes < 2:
        raise ValueError(f"{config_path}: num_classes is {experiment.num_classes}; the run never "
                         "started training, nothing to evaluate")
    recognizer = recognizer_from_config(experiment.model, experiment.num_classes)
    checkpoint = RunCheckpoint(model_dir, recognizer=recognizer)
    if checkpoint.latest_path is None:
        raise FileNotFoundError(f"{model_dir} has neither {RECOGNIZER_FILE} nor checkpoints")
    step = checkpoint.restore(checkpoint.latest_path, expect_partial=True)
    logging.info("restored %s (global step %d)", checkpoint.latest_path, step)
    return recognizer, experiment
