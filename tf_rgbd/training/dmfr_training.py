"""DMFR runs (baselines and the three modes) through the one runner, and loading them back.
The library side of ``training/train_dmfr.py``::

    summary = run_training(DMFRExperimentConfig(run=RunConfig(data_dir=REAL, model_dir=RUN),
                                                domains_dir=DOMAINS, dmfr="meta"))
    network = load_dmfr_network(RUN)

A run first pre-trains the encoder with a softmax classifier on the real data
(``<model_dir>/pretrain``, itself a runner run; or ``pretrain_from``: a shared pre-training run)
and then trains its phase from those weights; the CosFace prototypes start as the softmax
classifier's (normalised) weight columns. The run directory holds the runner's files and
``dmfr_model.keras`` (the whole :class:`~tf_rgbd.models.dmfr.DMFRNetwork`).

Input: the real training split and the generative domains (``pose``, ``quality``) are decoded
once by ``tf_rgbd.data.pipeline.make_dataset`` and paired by source id in memory
(:func:`paired_domain_arrays`); the training stream (:func:`paired_domain_dataset`) shuffles
the real examples with the run seed and gathers each one's counterparts, so resuming skips the
consumed positions exactly.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from tf_rgbd import config as config_lib
from tf_rgbd.augmentation import dmfr_domains
from tf_rgbd.config.dmfr import (DMFR_MODEL_FILE, GENERATIVE_DOMAINS, POSE_DOMAIN,
                                 PRETRAIN_SUBDIR, QUALITY_DOMAIN, DMFRExperimentConfig)
from tf_rgbd.data import pipeline
from tf_rgbd.models import loading
from tf_rgbd.models.dmfr import DMFRNetwork, dmfr_network_from_config
from tf_rgbd.training import runner
from tf_rgbd.training.checkpointing import RunCheckpoint
from tf_rgbd.training.dmfr_trainer import build_trainer, phase_of

CONFIG_FILE = "config.json"


@dataclasses.dataclass
class SplitImages:
    """Decoded images of one split of one dataset.

    Attributes:
      example_ids: str [N].
      images: float32 [N, S, S, 3] in [-1, 1].
      labels: int32 [N] dataset labels.
      yaw_deg: float32 [N].
    """

    example_ids: list
    images: np.ndarray
    labels: np.ndarray
    yaw_deg: np.ndarray

    def index(self) -> dict:
        return {example_id: row for row, example_id in enumerate(self.example_ids)}


# Decoded splits of this process, keyed by (directory, split, size, manifest mtime): the five
# rows of an experiment read the same real split and domains once.
_DECODED: dict[tuple, SplitImages] = {}
_DECODED_MAX = 16


def load_split_images(data_dir: str, split: str, image_size: int,
                      example_ids: Optional[Sequence[str]] = None) -> SplitImages:
    """Every image of ``split`` (or of ``example_ids``) decoded by ``pipeline.make_dataset``
    and resized to S (kept for this process while the dataset's manifest is unchanged)."""
    manifest_path = os.path.join(data_dir, "manifest.json")
    key = (os.path.abspath(data_dir), split, int(image_size),
           None if example_ids is None else tuple(example_ids),
           os.path.getmtime(manifest_path) if os.path.exists(manifest_path) else None)
    if key not in _DECODED:
        if len(_DECODED) >= _DECODED_MAX:
            _DECODED.pop(next(iter(_DECODED)))
        _DECODED[key] = _decode_split_images(data_dir, split, image_size, example_ids)
    return _DECODED[key]


def _decode_split_images(data_dir: str, split: str, image_size: int,
                         example_ids: Optional[Sequence[str]]) -> SplitImages:
    dataset = pipeline.make_dataset(data_dir, split=split, batch_size=256, image_size=image_size,
                                    modalities=("rgb",), deterministic=True, with_metadata=True,
                                    example_ids=example_ids)
    ids, images, labels, yaws = [], [], [], []
    for batch in dataset.as_numpy_iterator():
        ids.extend(value.decode() for value in batch["example_id"])
        images.append(batch["rgb"])
        labels.append(batch["label"])
        yaws.append(batch["yaw_deg"])
    if not ids:
        raise ValueError(f"{data_dir}: split {split!r} has no examples")
    return SplitImages(ids, np.concatenate(images), np.concatenate(labels).astype(np.int32),
                       np.concatenate(yaws).astype(np.float32))


def paired_domain_arrays(data_dir: str, domains_dir: str, split: str, image_size: int
                         ) -> dict[str, np.ndarray]:
    """The real split and, for each of its examples, the generated counterparts.

    Returns:
      dict of aligned arrays (row i = real example i): ``real`` [N, S, S, 3], ``label`` [N]
      (dataset labels), ``pose_same`` [N, S, S, 3] (render at the source's pose),
      ``pose_novel`` [N, K, S, S, 3] (the K renders at new poses), ``quality`` [N, S, S, 3],
      and ``example_ids`` [N].

    Raises:
      ValueError: a real example lacks a counterpart (naming it and the domain directory).
    """
    real = load_split_images(data_dir, split, image_size)
    by_source: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for domain in GENERATIVE_DOMAINS:
        generated = load_split_images(os.path.join(domains_dir, domain), split, image_size)
        for row, example_id in enumerate(generated.example_ids):
            source_id, _, condition = dmfr_domains.parse_generated_id(example_id)
            by_source.setdefault(domain, {}).setdefault(source_id, {})[condition] = \
                generated.images[row]
    same = dmfr_domains.SAME_CONDITIONS
    pose_same, pose_novel, quality = [], [], []
    novel_conditions = None
    for example_id in real.example_ids:
        entries = {domain: by_source.get(domain, {}).get(example_id) for domain in
                   GENERATIVE_DOMAINS}
        missing = [domain for domain, entry in entries.items() if not entry]
        if missing:
            raise ValueError(f"{example_id} of {data_dir} ({split}) has no generated counterpart "
                             f"in {[os.path.join(domains_dir, d) for d in missing]}; rebuild "
                             "the domains from this dataset (python -m training.build_dmfr_domains)")
        poses = entries[POSE_DOMAIN]
        conditions = sorted(condition for condition in poses if condition != same[POSE_DOMAIN])
        if novel_conditions is None:
            novel_conditions = conditions
        if same[POSE_DOMAIN] not in poses or conditions != novel_conditions or not conditions:
            raise ValueError(f"{example_id}: the pose domain has renders {sorted(poses)}, "
                             f"expected {same[POSE_DOMAIN]} and {novel_conditions}")
        pose_same.append(poses[same[POSE_DOMAIN]])
        pose_novel.append(np.stack([poses[condition] for condition in conditions]))
        quality.append(entries[QUALITY_DOMAIN][same[QUALITY_DOMAIN]])
    return {"real": real.images, "label": real.labels, "pose_same": np.stack(pose_same),
            "pose_novel": np.stack(pose_novel), "quality": np.stack(quality),
            "example_ids": np.asarray(real.example_ids)}


def paired_domain_dataset(arrays: Mapping[str, np.ndarray], batch_size: int, seed: int,
                          skip_examples: int = 0, real_only: bool = False) -> tf.data.Dataset:
    """The infinite training stream of paired batches (see ``dmfr_trainer``'s table).

    Each element is one real example (shuffled with ``seed``, reshuffled every epoch) with its
    counterparts; ``pose_novel`` is one of its K novel-pose renders, drawn from ``seed`` and
    the element's position; every image of an element is flipped horizontally together with
    probability 1/2 (same draw). ``skip_examples`` positions are skipped before any gather.
    ``real_only`` leaves the generated images out (pre-training, the real-only baseline).
    """
    count = len(arrays["real"])
    keys = ("real",) if real_only else ("real", "pose_same", "pose_novel", "quality")
    tensors = {key: tf.constant(arrays[key]) for key in keys}
    labels = tf.constant(arrays["label"], tf.int32)
    num_novel = 0 if real_only else int(arrays["pose_novel"].shape[1])

    def gather(position, index):
        seed_pair = tf.stack([tf.constant(seed, tf.int64), position])
        flip = tf.random.stateless_uniform([], seed=seed_pair) < 0.5
        element = {"label": labels[index]}
        for key in keys:
            image = tensors[key][index]
            if key == "pose_novel":
                choice = tf.random.stateless_uniform([], seed=seed_pair + 1, minval=0,
                                                     maxval=num_novel, dtype=tf.int32)
                image = image[choice]
            element[key] = tf.where(flip, tf.reverse(image, axis=[1]), image)
        return element

    dataset = tf.data.Dataset.range(count).shuffle(count, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.repeat().enumerate()
    if skip_examples:
        dataset = dataset.skip(int(skip_examples))
    dataset = dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def remapped_labels(labels: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """Labels as indices into the sorted present labels (the classifier's classes)."""
    present = tuple(int(label) for label in sorted(set(labels.tolist())))
    if len(present) < 2:
        raise ValueError(f"the training split has {len(present)} identit(y/ies); a recognizer "
                         "needs at least 2")
    lookup = {label: index for index, label in enumerate(present)}
    return np.asarray([lookup[int(label)] for label in labels], np.int32), present


class DMFRTrainingTask(runner.TrainingTask):
    """One phase of a DMFR run (pre-training, a baseline or a mode) as a runner task."""

    resume_invariant = ("model", "loss", "dmfr", "mix_generated", "num_classes")

    def __init__(self, experiment: DMFRExperimentConfig, pretrain: bool = False):
        self.experiment = experiment
        self.pretrain = pretrain
        self.phase = "pretrain" if pretrain else phase_of(experiment.dmfr,
                                                           experiment.mix_generated)
        self.name = f"dmfr {self.phase}"
        self.arrays: Optional[dict] = None
        self.classes: tuple[int, ...] = ()

    def prepare_config(self, config: DMFRExperimentConfig, manifest: Mapping[str, Any]
                       ) -> DMFRExperimentConfig:
        run = config.run
        real_only = self.phase in ("pretrain", "real")
        if real_only:
            images = load_split_images(run.data_dir, run.train_split, config.model.image_size)
            self.arrays = {"real": images.images, "label": images.labels}
        else:
            if not config.domains_dir:
                raise ValueError(f"--dmfr={config.dmfr} / --mix_generated need the generative "
                                 "domains: --domains_dir (python -m training.build_dmfr_domains)")
            self.arrays = paired_domain_arrays(run.data_dir, config.domains_dir, run.train_split,
                                               config.model.image_size)
        self.arrays["label"], self.classes = remapped_labels(self.arrays["label"])
        self.experiment = dataclasses.replace(config, num_classes=len(self.classes))
        return self.experiment

    def _network(self) -> DMFRNetwork:
        mode = "none" if self.pretrain else self.experiment.dmfr
        return dmfr_network_from_config(self.experiment.model, mode,
                                        self.experiment.num_classes)

    def build(self, context: runner.RunContext) -> runner.BuiltTrainer:
        experiment = self.experiment
        optimizer_config = experiment.optimizer
        if self.pretrain:
            optimizer_config = dataclasses.replace(
                optimizer_config, learning_rate=experiment.pretrain_learning_rate)
        trainer, optimizer = build_trainer(
            self._network(), self.phase, experiment.loss, optimizer_config,
            context.steps_per_epoch, seed=experiment.run.seed,
            jit_compile=experiment.run.jit_compile, loss_scaling=context.loss_scaling,
            run_eagerly=experiment.run.run_eagerly)
        return runner.BuiltTrainer(trainer, {"network": trainer.network, "optimizer": optimizer})

    def train_dataset(self, context: runner.RunContext, skip_examples: int) -> tf.data.Dataset:
        run = self.experiment.run
        return paired_domain_dataset(self.arrays, run.batch_size, run.seed, skip_examples,
                                     real_only=self.phase in ("pretrain", "real"))

    def initialize_from(self, built: runner.BuiltTrainer, path: str) -> str:
        source = load_dmfr_network(path)
        target = built.trainer.network
        if source.num_classes != target.num_classes:
            raise ValueError(f"{path}: trained on {source.num_classes} identities, this run has "
                             f"{target.num_classes}; pre-train on the same training split")
        target.encoder.set_weights(source.encoder.get_weights())
        loaded = ["encoder"]
        if target.feature_dim == source.feature_dim:
            target.softmax.set_weights(source.softmax.get_weights())
            # Prototypes w start as the softmax classifier's weight columns.
            target.cosface.class_weights.assign(source.softmax.kernel)
            loaded.append("CosFace prototypes from the softmax classifier")
        return f"{', '.join(loaded)} from {path}"

    def save_outputs(self, built: runner.BuiltTrainer, context: runner.RunContext
                     ) -> dict[str, str]:
        return {"network": loading.save_keras_model(
            built.trainer.network, os.path.join(self.experiment.run.model_dir, DMFR_MODEL_FILE))}

    def summary_extra(self, context: runner.RunContext) -> dict[str, Any]:
        return {"phase": self.phase, "method": self.experiment.method_name,
                "num_classes": self.experiment.num_classes,
                "domains_dir": self.experiment.domains_dir}


def pretrain_config(experiment: DMFRExperimentConfig, model_dir: str) -> DMFRExperimentConfig:
    """The softmax pre-training run of ``experiment`` (real data, ``pretrain_steps`` steps)."""
    steps = experiment.pretrain_steps
    return dataclasses.replace(
        experiment, dmfr="none", mix_generated=False,
        run=dataclasses.replace(experiment.run, model_dir=model_dir, steps=steps,
                                steps_per_epoch=min(steps, experiment.run.steps_per_epoch or steps),
                                init_from=None))


def run_pretraining(experiment: DMFRExperimentConfig, model_dir: str) -> dict:
    """Runs (or resumes) the softmax pre-training into ``model_dir``; returns its summary."""
    config = pretrain_config(experiment, model_dir)
    return runner.run(config, DMFRTrainingTask(config, pretrain=True)).summary


def run_training(experiment: DMFRExperimentConfig,
                 strategy: Optional[tf.distribute.Strategy] = None) -> dict:
    """Pre-trains (unless ``pretrain_from`` or ``pretrain_steps=0``), then trains the run's
    phase from the pre-trained network; returns the main run's summary (with the
    pre-training's under ``pretrain``)."""
    pretrain_summary = None
    init_from = experiment.run.init_from
    if experiment.pretrain_from:
        init_from = experiment.pretrain_from
    elif experiment.pretrain_steps > 0:
        pretrain_dir = os.path.join(experiment.run.model_dir, PRETRAIN_SUBDIR)
        pretrain_summary = run_pretraining(experiment, pretrain_dir)
        init_from = pretrain_dir
    config = dataclasses.replace(experiment, run=dataclasses.replace(experiment.run,
                                                                     init_from=init_from))
    result = runner.run(config, DMFRTrainingTask(config), strategy=strategy)
    logging.info("trained %s: %s", config.method_name, result.summary["final_epoch_metrics"])
    return {**result.summary, "pretrain": pretrain_summary}


def load_dmfr_network(model_dir_or_file: str) -> DMFRNetwork:
    """The trained network of a run directory (``dmfr_model.keras``, else its newest
    checkpoint) or a ``.keras`` file."""
    if not os.path.isdir(model_dir_or_file):
        return loading.load_keras_model(model_dir_or_file)
    path = os.path.join(model_dir_or_file, DMFR_MODEL_FILE)
    if os.path.exists(path):
        return loading.load_keras_model(path)
    config_path = os.path.join(model_dir_or_file, CONFIG_FILE)
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"{model_dir_or_file} has neither {DMFR_MODEL_FILE} nor "
                                f"{CONFIG_FILE}: is it a run of training/train_dmfr.py?")
    experiment = config_lib.load_json(DMFRExperimentConfig, config_path)
    if experiment.num_classes < 2:
        raise ValueError(f"{config_path}: the run never started training")
    network = dmfr_network_from_config(experiment.model, experiment.dmfr,
                                       experiment.num_classes)
    checkpoint = RunCheckpoint(model_dir_or_file, network=network)
    if checkpoint.latest_path is None:
        raise FileNotFoundError(f"{model_dir_or_file} has neither {DMFR_MODEL_FILE} nor "
                                "checkpoints")
    checkpoint.restore(checkpoint.latest_path, expect_partial=True)
    return network
