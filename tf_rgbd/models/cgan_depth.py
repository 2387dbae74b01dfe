"""The cGAN baseline of "Learning to Generate Facial Depth Maps" (Pini et al., 2018).

Generator: a fully convolutional encoder-decoder, ReLU inside, tanh output, with UNet skips::

    rgb [B, S, S, 3] in [-1, 1]
      -> num_levels x [4x4 stride-2 conv, batch norm, ReLU]
      -> num_levels x [4x4 stride-2 transposed conv, batch norm, ReLU, concat skip]
      -> 3x3 conv, tanh -> depth [B, S, S, 1] in [-1, 1]

Discriminator: conv + fully-connected, conditioned on nothing but its input (the depth map)::

    depth [B, S, S, 1] -> num_downsamples x [4x4 stride-2 conv, LeakyReLU] -> flatten
      -> dense(hidden_units), LeakyReLU -> dense(1) logit (float32)

Trained with L_MSE(generator, GT depth) + a binary cross-entropy adversarial loss (see
``tf_rgbd.training.cgan_trainer``); no mask, no reconstruction. The depth target convention is
DepthNet's (normalised [0, 1], 0 = background, compared with the tanh output directly).
"""
from __future__ import annotations

from typing import Any

import keras

from tf_rgbd.models.blocks import gan_conv, level_filters, unet_levels


@keras.saving.register_keras_serializable(package="tf_rgbd")
class CGANDepthGenerator(keras.Model):
    """Fully convolutional RGB -> depth generator of the cGAN baseline.

    Args:
      image_size: S (sets the number of levels like DepthNet's UNet).
      base_filters: channels of the first level (doubled per level, capped at ``max_filters``).
      max_filters: channel cap.
      norm: ``batch`` (the paper's choice), ``instance`` or ``none``.

    Call:
      inputs: ``{"rgb": float32 [B, S, S, 3] in [-1, 1]}`` or the rgb tensor.

    Returns:
      ``{"depth": float32 [B, S, S, 1] in [-1, 1]}``.
    """

    def __init__(self, image_size: int = 64, base_filters: int = 32, max_filters: int = 256,
                 norm: str = "batch", **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.base_filters = base_filters
        self.max_filters = max_filters
        self.norm = norm
        self.num_levels = unet_levels(image_size)
        self.down_blocks = [
            gan_conv(level_filters(level, base_filters, max_filters), 4, 2,
                     norm="none" if level == 0 else norm, activation="relu",
                     name=f"down_{level}")
            for level in range(self.num_levels)]
        self.up_blocks, self.up_norms = [], []
        for level in reversed(range(self.num_levels)):
            filters = level_filters(max(level - 1, 0), base_filters, max_filters)
            self.up_blocks.append(keras.layers.Conv2DTranspose(
                filters, 4, strides=2, padding="same", use_bias=norm == "none",
                name=f"up_{level}"))
            self.up_norms.append(gan_conv(filters, 3, 1, norm=norm, activation="relu",
                                          name=f"up_refine_{level}"))
        self.concat = keras.layers.Concatenate(axis=-1, name="concat")
        self.depth_head = keras.layers.Conv2D(1, 3, padding="same", activation="tanh",
                                              dtype="float32", name="depth_head")

    def call(self, inputs, training=None):
        x = inputs["rgb"] if isinstance(inputs, dict) else inputs
        skips = []
        for block in self.down_blocks:
            x = block(x, training=training)
            skips.append(x)
        for index, (up, refine) in enumerate(zip(self.up_blocks, self.up_norms)):
            x = refine(up(x), training=training)
            skip_level = self.num_levels - 2 - index
            if skip_level >= 0:
                x = self.concat([x, skips[skip_level]])
        return {"depth": self.depth_head(x)}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "image_size": self.image_size,
                "base_filters": self.base_filters, "max_filters": self.max_filters,
                "norm": self.norm}


@keras.saving.register_keras_serializable(package="tf_rgbd")
class CGANDepthDiscriminator(keras.Model):
    """Conv + fully-connected discriminator on a depth map; outputs one real/fake logit.

    Args:
      base_filters: channels of the first conv (doubled per level, capped at ``max_filters``).
      num_downsamples: stride-2 convs before the dense layers.
      hidden_units: width of the hidden dense layer.
      max_filters: channel cap.

    Call:
      inputs: float32 [B, S, S, C] (C = 1 for depth; S fixed at the first call).

    Returns:
      float32 [B, 1] logits (> 0: real).
    """

    def __init__(self, base_filters: int = 32, num_downsamples: int = 3, hidden_units: int = 64,
                 max_filters: int = 256, **kwargs):
        super().__init__(**kwargs)
        self.base_filters = base_filters
        self.num_downsamples = num_downsamples
        self.hidden_units = hidden_units
        self.max_filters = max_filters
        self.blocks = [
            gan_conv(level_filters(level, base_filters, max_filters), 4, 2, norm="none",
                     activation="leaky_relu", name=f"down_{level}")
            for level in range(num_downsamples)]
        self.flatten = keras.layers.Flatten(name="flatten")
        self.hidden = keras.layers.Dense(hidden_units, name="hidden")
        self.hidden_activation = keras.layers.LeakyReLU(negative_slope=0.2, name="hidden_act")
        self.logit = keras.layers.Dense(1, dtype="float32", name="logit")

    def call(self, inputs, training=None):
        x = inputs
        for block in self.blocks:
            x = block(x, training=training)
        return self.logit(self.hidden_activation(self.hidden(self.flatten(x))))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "base_filters": self.base_filters,
                "num_downsamples": self.num_downsamples, "hidden_units": self.hidden_units,
                "max_filters": self.max_filters}
