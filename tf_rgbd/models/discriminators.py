"""PatchGAN discriminators (least-squares GAN) for DepthNet's three outputs.

A PatchGAN scores overlapping patches instead of the whole image::

    x [B, S, S, C]
      -> 4x4 stride-2 conv, LeakyReLU(0.2) (no normalisation)
      -> (num_downsamples - 1) x [4x4 stride-2 conv, norm, LeakyReLU]
      -> 4x4 stride-1 conv, norm, LeakyReLU
      -> 4x4 stride-1 conv to 1 channel, linear (float32)
    scores [B, S / 2^num_downsamples, S / 2^num_downsamples, 1]

Scores are unbounded (LSGAN targets: 1 = real, 0 = fake; see ``tf_rgbd.losses.gan``). The same
class serves D_rgb (C = 3), D_d (C = 1) and D_m (C = 7); a conditional discriminator simply gets
the input image concatenated on the channel axis (C + 3), which the trainer does.
"""
from __future__ import annotations

from typing import Any

import keras

from tf_rgbd.models.blocks import gan_conv, level_filters


@keras.saving.register_keras_serializable(package="tf_rgbd")
class PatchDiscriminator(keras.Model):
    """LSGAN PatchGAN discriminator.

    Args:
      base_filters: channels of the first conv; doubled per level, capped at ``max_filters``.
      num_downsamples: stride-2 convs (3 gives 8x8 patches scores on 64x64 inputs).
      max_filters: channel cap.
      norm: ``instance`` | ``batch`` | ``none`` (see ``blocks.make_norm``).

    Call:
      inputs: float32 [B, S, S, C] (any C; fixed at the first call).

    Returns:
      float32 [B, S / 2^num_downsamples, S / 2^num_downsamples, 1] patch scores.
    """

    def __init__(self, base_filters: int = 32, num_downsamples: int = 3, max_filters: int = 256,
                 norm: str = "instance", **kwargs):
        super().__init__(**kwargs)
        if num_downsamples < 1:
            raise ValueError(f"num_downsamples must be >= 1, got {num_downsamples}")
        self.base_filters = base_filters
        self.num_downsamples = num_downsamples
        self.max_filters = max_filters
        self.norm = norm
        self.blocks = [
            gan_conv(level_filters(level, base_filters, max_filters), 4, 2,
                     norm="none" if level == 0 else norm, activation="leaky_relu",
                     name=f"down_{level}")
            for level in range(num_downsamples)]
        self.blocks.append(gan_conv(level_filters(num_downsamples, base_filters, max_filters),
                                    4, 1, norm=norm, activation="leaky_relu", name="patch"))
        self.score = keras.layers.Conv2D(1, 4, padding="same", dtype="float32", name="score")

    def call(self, inputs, training=None):
        x = inputs
        for block in self.blocks:
            x = block(x, training=training)
        return self.score(x)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "base_filters": self.base_filters,
                "num_downsamples": self.num_downsamples, "max_filters": self.max_filters,
                "norm": self.norm}
