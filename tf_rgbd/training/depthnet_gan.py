"""DepthNet GAN training: ``DepthNetGAN(keras.Model)`` with ``train_step`` / ``test_step``.

The training run (both archs) is :func:`tf_rgbd.training.depth_training.train_depth_model`.

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
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import keras
import tensorflow as tf

from tf_rgbd.config.depthnet import DepthLossWeights
from tf_rgbd.losses import gan as gan_losses
from tf_rgbd.losses import reconstruction
from tf_rgbd.models.depthnet import DepthNetGenerator
from tf_rgbd.training.depth_trainer import DepthTrainerBase, as_sample_weight


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
        depth_weight = as_sample_weight(data.get("has_depth"), batch_size)
        weights = self.loss_weight_config
        real_images = {"rgb": rgb, "depth": data["depth"]}
        fake_images = {"rgb": outputs["rgb_recon"], "depth": outputs["depth"]}
        real_weights = {"rgb": None, "depth": depth_weight}
        losses = {"recon_l1": reconstruction.l1_loss(rgb, outputs["rgb_recon"]),
                  "depth_l1": reconstruction.l1_loss(data["depth"], outputs["depth"],
                                                     depth_weight)}
        if self.mask_discriminator is not None:
            mask_weight = as_sample_weight(data.get("has_mask"), batch_size)
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
