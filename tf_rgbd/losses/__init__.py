"""tf_rgbd.losses: adversarial (LSGAN, BCE) and pixel (L1, mask BCE, MSE) losses."""
from tf_rgbd.losses.gan import (bce_discriminator_loss, bce_generator_loss,
                                lsgan_discriminator_loss, lsgan_generator_loss,
                                weighted_example_mean)
from tf_rgbd.losses.reconstruction import l1_loss, mask_bce_loss, mse_loss

__all__ = ["bce_discriminator_loss", "bce_generator_loss", "lsgan_discriminator_loss",
           "lsgan_generator_loss", "weighted_example_mean", "l1_loss", "mask_bce_loss",
           "mse_loss"]
