"""What every depth GAN trainer shares (:class:`DepthTrainerBase`): the generator, the
evaluation metrics of ``test_step``, building for distribution, the simultaneous generator +
discriminator update, checkpoint contents and TensorBoard image grids.

Subclasses (``depthnet_gan.DepthNetGAN``, ``cgan_trainer.CGANDepthTrainer``) define their
discriminators and ``compute_losses``.

Distribution (PITFALLS.md #1, #2): build everything with
:meth:`DepthTrainerBase.build_for_training` inside ``strategy.scope()`` before ``fit``; losses are
divided by the replica count inside the tapes (``strategy.replica_scaled``); ``compile`` passes
``optimizer=None`` to Keras.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from tf_rgbd.data import preview
from tf_rgbd.data.schema import NUM_MASK_CLASSES
from tf_rgbd.losses import reconstruction
from tf_rgbd.models import blocks
from tf_rgbd.metrics import depth as depth_metrics
from tf_rgbd.training import strategy as strategy_lib

# Colours (RGB in [0, 1]) of MASK_CLASSES for TensorBoard grids (the contact sheets' palette).
MASK_PALETTE = preview.MASK_PALETTE.astype(np.float32) / 255.0
VALIDATION_DEPTH_METRICS = ("mse_255_intersection", "mse_255", "delta_1.25", "delta_1.25^(1/4)")


def as_sample_weight(flags: Optional[tf.Tensor], batch_size: tf.Tensor) -> tf.Tensor:
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
        # Every layer exists now (the discriminators are built above).
        blocks.set_fused_batch_norm_training(self, not self.jit_compile)
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
        depth_weight = as_sample_weight(data.get("has_depth"), batch_size)
        self.depth_l1_tracker.update_state(
            reconstruction.l1_loss(data["depth"], outputs["depth"], depth_weight))
        face_region = None
        mask_weight = as_sample_weight(data.get("has_mask"), batch_size)
        if "mask" in data:
            known = tf.reshape(mask_weight, [-1, 1, 1, 1])
            face_region = (known * depth_metrics.face_region_from_mask(data["mask"])
                           + (1.0 - known) * tf.cast(data["depth"] > 0, tf.float32))
        per_image = depth_metrics.per_image_depth_metrics(
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
        apply_gradients(self.generator_optimizer, generator_tape, generator_objective,
               self.generator.trainable_variables)
        apply_gradients(self.discriminator_optimizer, discriminator_tape, discriminator_objective,
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
                  "predicted_depth": depth_metrics.to_unit_depth(outputs["depth"])}
        if "rgb_recon" in outputs:
            images["reconstructed_rgb"] = (outputs["rgb_recon"] + 1.0) / 2.0
        if "mask" in batch:
            images["gt_mask"] = colorize_mask(batch["mask"])
        if "mask" in outputs:
            images["predicted_mask"] = colorize_mask(outputs["mask"])
        return images


def apply_gradients(optimizer: keras.optimizers.Optimizer, tape: tf.GradientTape,
                    objective: tf.Tensor, variables: list) -> None:
    """One optimiser update of ``variables`` from ``tape``'s gradient of ``objective``."""
    gradients = tape.gradient(objective, variables)
    optimizer.apply_gradients(zip(gradients, variables))
