"""DepthNet GAN training: ``DepthNetGAN(keras.Model)`` with ``train_step`` / ``test_step``, and
:func:`train_depth_model`, the library behind ``training/train_depthnet.py`` (both archs).

Losses (the paper's, all weights configurable, ``tf_rgbd.config.depthnet.DepthLossWeights``)::

    L_recon = E|x - y^_rgb|_1
    L_depth = E|y_depth - y^_depth|_1          (examples with ground-truth depth only)
    L_mask  = BCE(y_mask, y^_mask)             (per-class sigmoid; examples with a mask only)
    L_adv^G = E[(D_rgb(y^_rgb) - 1)^2] + E[(D_d(y^_depth) - 1)^2] + E[(D_m(y^_mask) - 1)^2]
    L_Dis   = E[(D_rgb(x) - 1)^2] + E[D_rgb(y^_rgb)^2] + E[(D_d(y_depth) - 1)^2] + E[D_d(y^_depth)^2]
              + E[(D_m(y_mask) - 1)^2] + E[D_m(y^_mask)^2]
    L_G     = lambda_depth L_depth + lambda_mask L_mask + lambda_adv L_adv^G + lambda_recon L_recon

Depth targets are the pipeline's normalised depth in [0, 1] (0 = background), compared directly
with the tanh depth head; D_d sees those maps as is. Generator and discriminators are updated
simultaneously from one forward pass (two tapes, two Adam optimisers).

Distribution (PITFALLS.md #1, #2): build everything with :meth:`DepthTrainerBase.build_for_training`
inside ``strategy.scope()`` before ``fit``; losses are divided by the replica count inside the
tapes (``strategy.replica_scaled``); ``compile`` passes ``optimizer=None`` to Keras.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from typing import Any, Mapping, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from tf_rgbd import config as config_lib
from tf_rgbd.config.depthnet import (DepthLossWeights, DepthModelConfig, DepthTrainingConfig,
                                     OptimizerConfig)
from tf_rgbd.data import pipeline
from tf_rgbd.data.schema import NUM_MASK_CLASSES
from tf_rgbd.eval import depth as depth_eval
from tf_rgbd.losses import gan as gan_losses
from tf_rgbd.losses import reconstruction
from tf_rgbd.models.depthnet import DepthNetGenerator
from tf_rgbd.models.discriminators import PatchDiscriminator
from tf_rgbd.training import callbacks as callbacks_lib
from tf_rgbd.training import strategy as strategy_lib
from tf_rgbd.training.checkpointing import RunCheckpoint

GENERATOR_FILE = "generator.keras"
CONFIG_FILE = "config.json"
LOG_SUBDIR = "logs"
# Colours (RGB in [0, 1]) of MASK_CLASSES for TensorBoard grids.
MASK_PALETTE = np.array([[0, 0, 0], [0.93, 0.76, 0.62], [0.45, 0.25, 0.1], [0.1, 0.5, 0.95],
                         [0.6, 0.6, 0.6], [0.95, 0.35, 0.2], [0.85, 0.1, 0.45]], np.float32)
VALIDATION_DEPTH_METRICS = ("mse_255_intersection", "mse_255", "delta_1.25", "delta_1.25^(1/4)")


def _as_weight(flags: Optional[tf.Tensor], batch_size: tf.Tensor) -> tf.Tensor:
    """float32 [B] sample weights from a bool [B] flag (all ones when absent)."""
    if flags is None:
        return tf.ones([batch_size], tf.float32)
    return tf.cast(flags, tf.float32)


def colorize_mask(mask: tf.Tensor) -> tf.Tensor:
    """[B, H, W, K] one-hot/probabilities -> [B, H, W, 3] colours in [0, 1] (all-zero -> black)."""
    palette = tf.constant(MASK_PALETTE[: mask.shape[-1]])
    colours = tf.gather(palette, tf.argmax(mask, axis=-1))
    known = tf.cast(tf.reduce_max(mask, axis=-1, keepdims=True) > 0, tf.float32)
    return colours * known


class DepthTrainerBase(keras.Model):
    """What every depth GAN trainer shares: the generator, evaluation metrics in ``test_step``,
    building for distribution, checkpoint contents and TensorBoard image grids.

    Subclasses define ``discriminator_variables``, ``_build_discriminators(outputs, batch)``,
    ``checkpoint_trackables()`` and ``train_step``.

    Args:
      generator: maps ``rgb`` [B, S, S, 3] to a dict with at least ``depth`` [B, S, S, 1].
      depth_range_mm: the pipeline's normalisation span (reported metrics only).
    """

    def __init__(self, generator: keras.Model, depth_range_mm: float = 200.0, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.depth_range_mm = depth_range_mm
        self.generator_optimizer: Optional[keras.optimizers.Optimizer] = None
        self.discriminator_optimizer: Optional[keras.optimizers.Optimizer] = None
        self._train_trackers: dict[str, keras.metrics.Metric] = {}
        self.depth_l1_tracker = keras.metrics.Mean(name="depth_l1")
        self.eval_depth_trackers = {name: keras.metrics.Mean(name=name)
                                    for name in VALIDATION_DEPTH_METRICS}
        self.mask_iou = keras.metrics.MeanIoU(num_classes=NUM_MASK_CLASSES, sparse_y_true=True,
                                              sparse_y_pred=True, name="mask_miou")
        self.mask_accuracy = keras.metrics.Mean(name="mask_pixel_accuracy")

    def _train_tracker(self, name: str) -> keras.metrics.Metric:
        if name == "depth_l1":
            return self.depth_l1_tracker
        return self._train_trackers[name]

    def _add_train_trackers(self, names: Sequence[str]) -> None:
        self._train_trackers = {name: keras.metrics.Mean(name=name) for name in names
                                if name != "depth_l1"}

    @property
    def metrics(self) -> list:
        return [*self._train_trackers.values(), self.depth_l1_tracker,
                *self.eval_depth_trackers.values(), self.mask_iou, self.mask_accuracy]

    # --- compile / build -------------------------------------------------------------------

    def compile(self, generator_optimizer: keras.optimizers.Optimizer,
                discriminator_optimizer: keras.optimizers.Optimizer,
                jit_compile: bool = False, **kwargs) -> None:
        """Sets the two optimisers; Keras gets ``optimizer=None`` (no unused default optimiser)."""
        keras.Model.compile(self, optimizer=None, jit_compile=jit_compile, **kwargs)
        self.generator_optimizer = generator_optimizer
        self.discriminator_optimizer = discriminator_optimizer

    @property
    def discriminator_variables(self) -> list:
        raise NotImplementedError

    def _build_discriminators(self, outputs: Mapping[str, tf.Tensor], rgb: tf.Tensor) -> None:
        raise NotImplementedError

    def build_for_training(self, image_size: int) -> None:
        """Creates every variable (models and both optimisers' slots).

        Call inside ``strategy.scope()`` after :meth:`compile` and before ``fit`` or restoring
        a checkpoint.
        """
        rgb = tf.zeros([1, image_size, image_size, 3])
        outputs = self({"rgb": rgb}, training=False)
        self._build_discriminators(outputs, rgb)
        if self.generator_optimizer is None or self.discriminator_optimizer is None:
            raise RuntimeError(f"{self.name}: call compile(generator_optimizer, "
                               "discriminator_optimizer) before build_for_training")
        strategy_lib.build_optimizers([
            (self.generator_optimizer, self.generator.trainable_variables),
            (self.discriminator_optimizer, self.discriminator_variables)])

    def checkpoint_trackables(self) -> dict[str, Any]:
        raise NotImplementedError

    # --- forward / evaluation ----------------------------------------------------------------

    def build(self, input_shape=None):
        # The sub-models build on their first call (see build_for_training).
        self.built = True

    def call(self, inputs, training=None):
        rgb = inputs["rgb"] if isinstance(inputs, Mapping) else inputs
        return self.generator(rgb, training=training)

    def _update_evaluation_metrics(self, data: Mapping[str, tf.Tensor],
                                   outputs: Mapping[str, tf.Tensor]) -> None:
        batch_size = tf.shape(data["rgb"])[0]
        depth_weight = _as_weight(data.get("has_depth"), batch_size)
        self.depth_l1_tracker.update_state(
            reconstruction.l1_loss(data["depth"], outputs["depth"], depth_weight))
        face_region = None
        mask_weight = _as_weight(data.get("has_mask"), batch_size)
        if "mask" in data:
            known = tf.reshape(mask_weight, [-1, 1, 1, 1])
            face_region = (known * depth_eval.face_region_from_mask(data["mask"])
                           + (1.0 - known) * tf.cast(data["depth"] > 0, tf.float32))
        per_image = depth_eval.per_image_depth_metrics(
            outputs["depth"], data["depth"], face_region, None, self.depth_range_mm, depth_weight)
        for name, tracker in self.eval_depth_trackers.items():
            values, weights = per_image[name]
            tracker.update_state(values, sample_weight=weights)
        if "mask" in outputs and "mask" in data:
            pixel_weight = tf.broadcast_to(tf.reshape(mask_weight, [-1, 1, 1]),
                                           tf.shape(data["mask"])[:3])
            pixel_count = tf.cast(pixel_weight, tf.int32)
            gt_class = tf.argmax(data["mask"], axis=-1)
            predicted_class = tf.argmax(outputs["mask"], axis=-1)
            self.mask_iou.update_state(gt_class, predicted_class, sample_weight=pixel_count)
            self.mask_accuracy.update_state(
                tf.cast(tf.equal(gt_class, predicted_class), tf.float32),
                sample_weight=pixel_weight)

    def test_step(self, data):
        outputs = self.generator(data["rgb"], training=False)
        self._update_evaluation_metrics(data, outputs)
        results = {"depth_l1": self.depth_l1_tracker.result()}
        results.update({name: tracker.result()
                        for name, tracker in self.eval_depth_trackers.items()})
        if "mask" in outputs and "mask" in data:
            results["mask_miou"] = self.mask_iou.result()
            results["mask_pixel_accuracy"] = self.mask_accuracy.result()
        return results

    def compute_losses(self, data: Mapping[str, tf.Tensor], outputs: Mapping[str, tf.Tensor],
                       training: bool = True) -> dict[str, tf.Tensor]:
        """Loss terms (per-replica means); must include ``g_loss`` and ``d_loss``."""
        raise NotImplementedError

    def train_step(self, data):
        """One simultaneous generator + discriminator update (two tapes, two optimisers)."""
        with tf.GradientTape() as generator_tape, tf.GradientTape() as discriminator_tape:
            outputs = self.generator(data["rgb"], training=True)
            losses = self.compute_losses(data, outputs, training=True)
            # Scaled INSIDE the tapes: Keras sums gradients over replicas (PITFALLS.md #1).
            generator_objective = self.generator_optimizer.scale_loss(
                strategy_lib.replica_scaled(losses["g_loss"]))
            discriminator_objective = self.discriminator_optimizer.scale_loss(
                strategy_lib.replica_scaled(losses["d_loss"]))
        _apply(self.generator_optimizer, generator_tape, generator_objective,
               self.generator.trainable_variables)
        _apply(self.discriminator_optimizer, discriminator_tape, discriminator_objective,
               self.discriminator_variables)
        return self._report(losses)

    def _report(self, values: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        for name, value in values.items():
            self._train_tracker(name).update_state(value)
        return {name: self._train_tracker(name).result() for name in values}

    def render_image_grid(self, batch: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """TensorBoard images in [0, 1]: input, reconstruction, GT/predicted depth and masks."""
        outputs = self.generator(batch["rgb"], training=False)
        images = {"input_rgb": (batch["rgb"] + 1.0) / 2.0,
                  "gt_depth": batch["depth"],
                  "predicted_depth": depth_eval.to_unit_depth(outputs["depth"])}
        if "rgb_recon" in outputs:
            images["reconstructed_rgb"] = (outputs["rgb_recon"] + 1.0) / 2.0
        if "mask" in batch:
            images["gt_mask"] = colorize_mask(batch["mask"])
        if "mask" in outputs:
            images["predicted_mask"] = colorize_mask(outputs["mask"])
        return images


class DepthNetGAN(DepthTrainerBase):
    """The segmentation-aware depth GAN (generator + D_rgb, D_d, D_m; LSGAN).

    Args:
      generator: a :class:`DepthNetGenerator` (``use_mask_branch`` decides whether D_m exists).
      rgb_discriminator / depth_discriminator / mask_discriminator: PatchGAN discriminators
        (``mask_discriminator`` None without the mask branch).
      loss_weights: the lambdas.
      conditional_discriminators: concatenate the input RGB to every discriminator input.
      depth_range_mm: for reported metrics.

    ``train_step`` logs ``g_loss``, ``d_loss``, ``recon_l1``, ``depth_l1``, ``mask_bce`` (with
    the mask branch) and ``adv_g``; ``test_step`` logs ``depth_l1``, ``mse_255_intersection``,
    ``mse_255``, ``delta_1.25``, ``delta_1.25^(1/4)``, ``mask_miou`` and ``mask_pixel_accuracy``.
    """

    def __init__(self, generator: DepthNetGenerator, rgb_discriminator: keras.Model,
                 depth_discriminator: keras.Model, mask_discriminator: Optional[keras.Model] = None,
                 loss_weights: DepthLossWeights = DepthLossWeights(),
                 conditional_discriminators: bool = False, depth_range_mm: float = 200.0,
                 **kwargs):
        super().__init__(generator, depth_range_mm, **kwargs)
        if generator.use_mask_branch != (mask_discriminator is not None):
            raise ValueError("DepthNetGAN: give a mask discriminator exactly when the generator "
                             f"has a mask branch (use_mask_branch={generator.use_mask_branch})")
        self.rgb_discriminator = rgb_discriminator
        self.depth_discriminator = depth_discriminator
        self.mask_discriminator = mask_discriminator
        self.loss_weight_config = loss_weights
        self.conditional_discriminators = conditional_discriminators
        names = ["g_loss", "d_loss", "recon_l1", "depth_l1", "adv_g"]
        if mask_discriminator is not None:
            names.insert(4, "mask_bce")
        self._add_train_trackers(names)

    @property
    def discriminators(self) -> dict[str, keras.Model]:
        pairs = {"rgb": self.rgb_discriminator, "depth": self.depth_discriminator,
                 "mask": self.mask_discriminator}
        return {name: model for name, model in pairs.items() if model is not None}

    @property
    def discriminator_variables(self) -> list:
        return [variable for model in self.discriminators.values()
                for variable in model.trainable_variables]

    def _discriminate(self, name: str, image: tf.Tensor, rgb: tf.Tensor,
                      training: bool) -> tf.Tensor:
        if self.conditional_discriminators:
            image = tf.concat([image, tf.cast(rgb, image.dtype)], axis=-1)
        return self.discriminators[name](image, training=training)

    def _build_discriminators(self, outputs, rgb) -> None:
        for name in self.discriminators:
            key = "rgb_recon" if name == "rgb" else name
            self._discriminate(name, outputs[key], rgb, training=False)

    def checkpoint_trackables(self) -> dict[str, Any]:
        trackables = {"generator": self.generator,
                      "rgb_discriminator": self.rgb_discriminator,
                      "depth_discriminator": self.depth_discriminator,
                      "generator_optimizer": self.generator_optimizer,
                      "discriminator_optimizer": self.discriminator_optimizer}
        if self.mask_discriminator is not None:
            trackables["mask_discriminator"] = self.mask_discriminator
        return trackables

    def compute_losses(self, data: Mapping[str, tf.Tensor], outputs: Mapping[str, tf.Tensor],
                       training: bool = True) -> dict[str, tf.Tensor]:
        """Every loss term of the module docstring (per-replica means, float32 scalars)."""
        rgb = data["rgb"]
        batch_size = tf.shape(rgb)[0]
        depth_weight = _as_weight(data.get("has_depth"), batch_size)
        weights = self.loss_weight_config
        real_images = {"rgb": rgb, "depth": data["depth"]}
        fake_images = {"rgb": outputs["rgb_recon"], "depth": outputs["depth"]}
        real_weights = {"rgb": None, "depth": depth_weight}
        losses = {"recon_l1": reconstruction.l1_loss(rgb, outputs["rgb_recon"]),
                  "depth_l1": reconstruction.l1_loss(data["depth"], outputs["depth"],
                                                     depth_weight)}
        if self.mask_discriminator is not None:
            mask_weight = _as_weight(data.get("has_mask"), batch_size)
            losses["mask_bce"] = reconstruction.mask_bce_loss(data["mask"], outputs["mask"],
                                                              mask_weight)
            real_images["mask"], fake_images["mask"] = data["mask"], outputs["mask"]
            real_weights["mask"] = mask_weight
        adversarial, discriminator = 0.0, 0.0
        for name in self.discriminators:
            real_scores = self._discriminate(name, real_images[name], rgb, training)
            fake_scores = self._discriminate(name, fake_images[name], rgb, training)
            adversarial += gan_losses.lsgan_generator_loss(fake_scores)
            discriminator += gan_losses.lsgan_discriminator_loss(real_scores, fake_scores,
                                                                 real_weights[name])
        losses["adv_g"] = adversarial
        losses["g_loss"] = (weights.lambda_depth * losses["depth_l1"]
                            + weights.lambda_mask * losses.get("mask_bce", 0.0)
                            + weights.lambda_adv * adversarial
                            + weights.lambda_recon * losses["recon_l1"])
        losses["d_loss"] = discriminator
        return losses


def _apply(optimizer: keras.optimizers.Optimizer, tape: tf.GradientTape, objective: tf.Tensor,
           variables: list) -> None:
    gradients = tape.gradient(objective, variables)
    optimizer.apply_gradients(zip(gradients, variables))


# ---------------------------------------------------------------------------------------------
# Building trainers from configs, and the training run.

def make_optimizer(config: OptimizerConfig, mixed_float16: bool = False,
                   name: str = "adam") -> keras.optimizers.Optimizer:
    optimizer = keras.optimizers.Adam(config.learning_rate, beta_1=config.beta_1,
                                      beta_2=config.beta_2, name=name)
    if mixed_float16:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, name=f"{name}_loss_scale")
    return optimizer


def build_trainer(model: DepthModelConfig, losses: DepthLossWeights = DepthLossWeights(),
                  depth_range_mm: float = 200.0) -> DepthTrainerBase:
    """The (uncompiled, unbuilt) trainer of ``model.arch``; create it inside the strategy scope."""
    if model.arch == "cgan":
        from tf_rgbd.training.cgan_trainer import build_cgan_trainer  # noqa: PLC0415 (cycle)
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
        latest = tf.train.latest_checkpoint(os.path.join(path, "checkpoints"))
        if latest is None and os.path.exists(os.path.join(path, GENERATOR_FILE)):
            return initialize_from(trainer, os.path.join(path, GENERATOR_FILE))
        if latest is None:
            raise FileNotFoundError(f"--init_from={path}: no checkpoints/ and no "
                                    f"{GENERATOR_FILE} in that directory")
        path = latest
    if path.endswith(".keras"):
        source = keras.saving.load_model(path, compile=False)
        if source.get_config().get("image_size") != trainer.generator.get_config().get("image_size"):
            logging.warning("init_from %s: image_size differs from this run's", path)
        try:
            trainer.generator.set_weights(source.get_weights())
        except ValueError as error:
            raise ValueError(f"--init_from={path}: its generator does not match this run's "
                             f"architecture ({error}); use the same widths / arch flags") from error
        return f"generator weights from {path}"
    models = {name: value for name, value in trainer.checkpoint_trackables().items()
              if "optimizer" not in name}
    status = tf.train.Checkpoint(**models).restore(path)
    status.expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError as error:
        raise ValueError(f"--init_from={path}: checkpoint does not match this run's models "
                         f"({error})") from error
    return f"models from checkpoint {path}"


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    model_dir: str
    generator_path: str
    start_step: int
    final_step: int
    seconds: float
    history: dict
    steps_per_second: float


def _set_precision_policy(mixed_precision: bool) -> bool:
    """Sets the global Keras dtype policy; returns True when float16 loss scaling is needed."""
    if not mixed_precision:
        keras.mixed_precision.set_global_policy("float32")
        return False
    if tf.config.list_physical_devices("GPU"):
        keras.mixed_precision.set_global_policy("mixed_float16")
        return True
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    return False


def _merge_histories(histories: Sequence[keras.callbacks.History]) -> dict:
    merged: dict[str, list] = {}
    for history in histories:
        for key, values in history.history.items():
            merged.setdefault(key, []).extend(float(v) for v in values)
    return merged


def train_depth_model(config: DepthTrainingConfig,
                      strategy: Optional[tf.distribute.Strategy] = None,
                      extra_callbacks: Sequence[keras.callbacks.Callback] = ()) -> TrainResult:
    """Trains (or resumes) a depth model as described by ``config``.

    Writes to ``config.run.model_dir``: ``config.json``, ``checkpoints/`` (exact resume:
    re-running the same command continues from the newest checkpoint with both optimisers'
    iterations restored), ``logs/`` (TensorBoard scalars + image grids), ``nan_report.json``
    on a non-finite loss (then raises ``callbacks.NonFiniteLossError``), and the final
    generator as ``generator.keras``.
    """
    run = config.run
    if not run.data_dir or not run.model_dir:
        raise ValueError("train_depth_model: run.data_dir and run.model_dir are required")
    keras.utils.set_random_seed(run.seed)
    loss_scaling = _set_precision_policy(run.mixed_precision)
    strategy = strategy or strategy_lib.build_strategy(run.strategy,
                                                       run.num_logical_cpus or None)
    manifest = pipeline.read_manifest(run.data_dir)
    if run.train_split not in manifest["splits"]:
        raise KeyError(f"{run.data_dir}: no split {run.train_split!r}; it has "
                       f"{sorted(manifest['splits'])}")
    train_examples = manifest["splits"][run.train_split]["example_count"]
    steps_per_epoch = run.steps_per_epoch or max(1, train_examples // run.batch_size)
    total_steps = run.steps or run.epochs * steps_per_epoch
    steps_per_epoch = min(steps_per_epoch, total_steps)
    os.makedirs(run.model_dir, exist_ok=True)
    config_lib.save_json(config, os.path.join(run.model_dir, CONFIG_FILE))

    with strategy.scope():
        trainer = build_trainer(config.model, config.losses, run.depth_range_mm)
        trainer.compile(make_optimizer(config.optimizer, loss_scaling, "generator_adam"),
                        make_optimizer(config.optimizer, loss_scaling, "discriminator_adam"),
                        jit_compile=run.jit_compile)
        trainer.build_for_training(config.model.image_size)
        run_checkpoint = RunCheckpoint(run.model_dir, **trainer.checkpoint_trackables())
        start_step = run_checkpoint.restore_latest()
    if start_step:
        logging.info("resuming %s from step %d of %d", run.model_dir, start_step, total_steps)
    elif run.init_from:
        logging.info("fine-tuning: %s", initialize_from(trainer, run.init_from))

    drop_remainder = strategy.num_replicas_in_sync > 1

    def train_dataset(skip_steps: int) -> tf.data.Dataset:
        dataset = pipeline.make_dataset(
            run.data_dir, run.train_split, batch_size=run.batch_size,
            image_size=config.model.image_size, augment=run.augment, shuffle=True, repeat=True,
            seed=run.seed, deterministic=True, drop_remainder=True,
            depth_range_mm=run.depth_range_mm)
        return strategy_lib.make_distributable(dataset.skip(skip_steps))

    validation_fn = None
    callbacks: list[keras.callbacks.Callback] = []
    nan_guard = callbacks_lib.NanGuard(run_checkpoint)
    callbacks += [nan_guard,
                  callbacks_lib.CheckpointCallback(run_checkpoint, run.checkpoint_every_steps)]
    log_dir = os.path.join(run.model_dir, LOG_SUBDIR)
    callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False))
    if run.val_split:
        if run.val_split not in manifest["splits"]:
            raise KeyError(f"{run.data_dir}: no validation split {run.val_split!r}; it has "
                           f"{sorted(manifest['splits'])} (--val_split='' disables validation)")
        val_examples = manifest["splits"][run.val_split]["example_count"]
        val_batches = (val_examples // run.batch_size if drop_remainder
                       else math.ceil(val_examples / run.batch_size))
        if val_batches == 0:
            raise ValueError(f"validation split {run.val_split!r} has {val_examples} examples, "
                             f"fewer than one batch of {run.batch_size} per step under "
                             f"{strategy.num_replicas_in_sync} replicas; lower --batch_size or "
                             "pass --val_split=''")

        def validation_fn() -> tf.data.Dataset:
            dataset = pipeline.make_dataset(
                run.data_dir, run.val_split, batch_size=run.batch_size,
                image_size=config.model.image_size, deterministic=True,
                drop_remainder=drop_remainder, depth_range_mm=run.depth_range_mm)
            # A known length spares Keras' "input ran out of data" warning every epoch.
            dataset = dataset.apply(tf.data.experimental.assert_cardinality(val_batches))
            return strategy_lib.make_distributable(dataset)

        grid_batch = next(iter(validation_fn()))
        callbacks.append(callbacks_lib.TensorBoardImageGrid(
            log_dir, grid_batch, lambda model, batch: model.render_image_grid(batch),
            every_n_epochs=run.image_grid_every_epochs))
    callbacks += list(extra_callbacks)

    phases = callbacks_lib.resume_phases(start_step, total_steps, steps_per_epoch)
    verbose = int(run.verbose) if run.verbose.isdigit() else run.verbose
    start_time = time.time()
    histories = callbacks_lib.fit_resumable(trainer, train_dataset, phases, callbacks,
                                            validation_fn, verbose=verbose)
    seconds = time.time() - start_time
    steps_run = total_steps - start_step
    generator_path = os.path.join(run.model_dir, GENERATOR_FILE)
    trainer.generator.save(generator_path)
    history = _merge_histories(histories)
    final = {key: values[-1] for key, values in history.items() if values}
    logging.info("trained %s (%s) steps %d -> %d in %.1f s (%.2f steps/s); final %s; generator: %s",
                 config.model.arch, run.model_dir, start_step, total_steps, seconds,
                 steps_run / max(seconds, 1e-9),
                 ", ".join(f"{k}={v:.4g}" for k, v in sorted(final.items())), generator_path)
    return TrainResult(run.model_dir, generator_path, start_step, total_steps, seconds, history,
                       steps_run / max(seconds, 1e-9))
