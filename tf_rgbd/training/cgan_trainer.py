"""Trainer of the cGAN baseline ("Learning to Generate Facial Depth Maps", ``--arch=cgan``).

    L_G = lambda_depth * E(y_depth - y^_depth)^2 + lambda_adv * BCE(D(y^_depth), real)
    L_D = BCE(D(y_depth), real) + BCE(D(y^_depth), fake)

The discriminator sees only a depth map (conditioned on nothing else); no mask, no
reconstruction. Evaluation metrics, building, checkpoints and image grids come from
:class:`tf_rgbd.training.depth_trainer.DepthTrainerBase`.
"""
from __future__ import annotations

from typing import Any, Mapping

import keras
import tensorflow as tf

from tf_rgbd.config.depthnet import DepthLossWeights, DepthModelConfig
from tf_rgbd.losses import gan as gan_losses
from tf_rgbd.losses import reconstruction
from tf_rgbd.models.cgan_depth import CGANDepthDiscriminator, CGANDepthGenerator
from tf_rgbd.training.depth_trainer import DepthTrainerBase, as_sample_weight


class CGANDepthTrainer(DepthTrainerBase):
    """cGAN baseline trainer.

    Args:
      generator: a :class:`CGANDepthGenerator` (``{"depth"}`` output).
      discriminator: a :class:`CGANDepthDiscriminator` (one logit per image).
      loss_weights: ``lambda_depth`` (MSE) and ``lambda_adv`` (BCE) are used.
      depth_range_mm: for reported metrics.

    ``train_step`` logs ``g_loss``, ``d_loss``, ``depth_mse``, ``adv_g``, ``depth_l1``.
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model,
                 loss_weights: DepthLossWeights = DepthLossWeights(),
                 depth_range_mm: float = 200.0, **kwargs):
        super().__init__(generator, depth_range_mm, **kwargs)
        self.discriminator = discriminator
        self.loss_weight_config = loss_weights
        self._add_train_trackers(["g_loss", "d_loss", "depth_mse", "adv_g", "depth_l1"])

    @property
    def discriminator_variables(self) -> list:
        return list(self.discriminator.trainable_variables)

    def _build_discriminators(self, outputs, rgb) -> None:
        self.discriminator(outputs["depth"], training=False)

    def checkpoint_trackables(self) -> dict[str, Any]:
        return {"generator": self.generator, "depth_discriminator": self.discriminator,
                "generator_optimizer": self.generator_optimizer,
                "discriminator_optimizer": self.discriminator_optimizer}

    def compute_losses(self, data: Mapping[str, tf.Tensor], outputs: Mapping[str, tf.Tensor],
                       training: bool = True) -> dict[str, tf.Tensor]:
        depth_weight = as_sample_weight(data.get("has_depth"), tf.shape(data["rgb"])[0])
        real_logits = self.discriminator(data["depth"], training=training)
        fake_logits = self.discriminator(outputs["depth"], training=training)
        losses = {"depth_mse": reconstruction.mse_loss(data["depth"], outputs["depth"],
                                                       depth_weight),
                  "depth_l1": reconstruction.l1_loss(data["depth"], outputs["depth"],
                                                     depth_weight),
                  "adv_g": gan_losses.bce_generator_loss(fake_logits),
                  "d_loss": gan_losses.bce_discriminator_loss(real_logits, fake_logits,
                                                              depth_weight)}
        weights = self.loss_weight_config
        losses["g_loss"] = (weights.lambda_depth * losses["depth_mse"]
                            + weights.lambda_adv * losses["adv_g"])
        return losses


def build_cgan_trainer(model: DepthModelConfig, losses: DepthLossWeights = DepthLossWeights(),
                       depth_range_mm: float = 200.0) -> CGANDepthTrainer:
    """The cGAN baseline trainer for ``model`` (``norm`` applies to the generator)."""
    generator = CGANDepthGenerator(image_size=model.image_size, base_filters=model.base_filters,
                                   max_filters=model.max_filters, norm=model.norm,
                                   name="generator")
    discriminator = CGANDepthDiscriminator(base_filters=model.discriminator_filters,
                                           num_downsamples=model.discriminator_downsamples,
                                           hidden_units=model.cgan_hidden_units,
                                           max_filters=model.max_filters,
                                           name="depth_discriminator")
    return CGANDepthTrainer(generator, discriminator, losses, depth_range_mm, name="cgan_depth")
