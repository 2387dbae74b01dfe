"""DepthNet generator: a UNet encoder feeding a face decoder and an auxiliary depth+mask decoder.

One RGB face image in, three images out::

    rgb [B, S, S, 3] in [-1, 1]
      -> UNetEncoder: stem (S) + L stride-2 levels (S/2 ... S/2^L), the skips
      -> face decoder (own weights)         -> rgb_recon [B, S, S, 3] tanh in [-1, 1]
      -> auxiliary decoder (one trunk)      -> depth     [B, S, S, 1] tanh in [-1, 1]
                                            -> mask      [B, S, S, 7] per-class sigmoid in [0, 1]

Both decoders read every encoder skip. L follows the image size: the encoder halves the
resolution while it stays even and >= ``min_bottleneck_size`` (64 -> 4 levels down to 4x4,
112 -> 4 levels down to 7x7, 256 -> 6 levels down to 4x4).

Depth convention: the training target is the pipeline's normalised depth in [0, 1] (0 =
background, nearer = larger) compared directly with the tanh output, so a perfect generator
outputs values in [0, 1]; consumers clip the prediction to [0, 1] (see
``tf_rgbd.metrics.depth.to_unit_depth``). The mask head is a per-class sigmoid (7 independent
binary cross-entropies, ``tf_rgbd.data.schema.MASK_CLASSES``); take the argmax for a label map.

Normalisation defaults to instance normalisation (per example, so a batch split over replicas
trains exactly like the whole batch on one device); ``batch`` uses synchronised batch norm.
"""
from __future__ import annotations

from typing import Any

import keras

from tf_rgbd.data.schema import NUM_MASK_CLASSES
from tf_rgbd.models.blocks import gan_conv, level_filters, unet_levels

@keras.saving.register_keras_serializable(package="tf_rgbd")
class UNetEncoder(keras.layers.Layer):
    """Stem (3x3, stride 1) then ``num_levels`` 4x4 stride-2 LeakyReLU blocks.

    Input rgb [B, S, S, C]; output: the list of skips ``[f_0 (S), f_1 (S/2), ..., f_L (S/2^L)]``
    with ``level_filters(l)`` channels each (f_L is the bottleneck).
    """

    def __init__(self, num_levels: int, base_filters: int = 32, max_filters: int = 256,
                 norm: str = "instance", **kwargs):
        super().__init__(**kwargs)
        self.num_levels = num_levels
        self.base_filters = base_filters
        self.max_filters = max_filters
        self.norm = norm
        self.stem = gan_conv(base_filters, 3, 1, norm="none", activation="leaky_relu",
                             name="stem")
        self.down_blocks = [
            gan_conv(level_filters(level, base_filters, max_filters), 4, 2, norm=norm,
                     activation="leaky_relu", name=f"down_{level}")
            for level in range(1, num_levels + 1)]

    def call(self, inputs, training=None):
        features = [self.stem(inputs, training=training)]
        for block in self.down_blocks:
            features.append(block(features[-1], training=training))
        return features

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_levels": self.num_levels,
                "base_filters": self.base_filters, "max_filters": self.max_filters,
                "norm": self.norm}


@keras.saving.register_keras_serializable(package="tf_rgbd")
class UNetDecoder(keras.layers.Layer):
    """Upsamples the bottleneck back to S, concatenating the encoder skip at every level.

    Each level: bilinear x2 upsampling -> 3x3 ConvNormAct (ReLU) -> concat skip -> 3x3
    ConvNormAct (ReLU). Input: the encoder's list of skips; output [B, S, S, base_filters]
    (the trunk that the heads read).
    """

    def __init__(self, num_levels: int, base_filters: int = 32, max_filters: int = 256,
                 norm: str = "instance", **kwargs):
        super().__init__(**kwargs)
        self.num_levels = num_levels
        self.base_filters = base_filters
        self.max_filters = max_filters
        self.norm = norm
        # float32 under a mixed policy: XLA's CPU lowering of the bilinear-resize gradient
        # mixes float32 and bfloat16 operands and fails to compile ("Seen floating point types
        # of different precisions ... ReluGrad") when the resize runs in bfloat16.
        self.upsample = keras.layers.UpSampling2D(2, interpolation="bilinear", dtype="float32",
                                                  name="upsample")
        self.concat = keras.layers.Concatenate(axis=-1, name="concat")
        self.up_convs, self.fuse_convs = [], []
        for level in reversed(range(num_levels)):
            filters = level_filters(level, base_filters, max_filters)
            self.up_convs.append(gan_conv(filters, 3, 1, norm=norm, activation="relu",
                                          name=f"up_{level}"))
            self.fuse_convs.append(gan_conv(filters, 3, 1, norm=norm, activation="relu",
                                            name=f"fuse_{level}"))

    def call(self, features, training=None):
        if len(features) != self.num_levels + 1:
            raise ValueError(f"{self.name}: expected {self.num_levels + 1} encoder features, "
                             f"got {len(features)}")
        x = features[-1]
        for index, level in enumerate(reversed(range(self.num_levels))):
            x = self.up_convs[index](self.upsample(x), training=training)
            x = self.fuse_convs[index](self.concat([x, features[level]]), training=training)
        return x

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_levels": self.num_levels,
                "base_filters": self.base_filters, "max_filters": self.max_filters,
                "norm": self.norm}


def _head(channels: int, activation: str, name: str) -> keras.layers.Layer:
    # float32 output layers keep losses stable under a mixed-precision policy.
    return keras.layers.Conv2D(channels, 3, padding="same", activation=activation,
                               dtype="float32", name=name)


@keras.saving.register_keras_serializable(package="tf_rgbd")
class DepthNetGenerator(keras.Model):
    """Segmentation-aware depth generator (UNet, face decoder + auxiliary depth/mask decoder).

    Args:
      image_size: S, the square input size (sets the number of UNet levels).
      base_filters: channels of the full-resolution stem; level l has base * 2^l (capped).
      max_filters: channel cap.
      num_mask_classes: mask channels (7, ``schema.MASK_CLASSES``).
      use_mask_branch: False drops the mask head (the ``--no_mask_branch`` ablation).
      norm: ``instance`` | ``batch`` | ``none``.
      min_bottleneck_size: smallest feature map side.

    Call:
      inputs: ``{"rgb": float32 [B, S, S, 3] in [-1, 1]}`` (or the rgb tensor itself).

    Returns:
      ``{"rgb_recon": [B, S, S, 3] in [-1, 1], "depth": [B, S, S, 1] in [-1, 1],
      "mask": [B, S, S, num_mask_classes] in [0, 1]}`` (no ``mask`` without the mask branch).
    """

    def __init__(self, image_size: int = 64, base_filters: int = 32, max_filters: int = 256,
                 num_mask_classes: int = NUM_MASK_CLASSES, use_mask_branch: bool = True,
                 norm: str = "instance", min_bottleneck_size: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.base_filters = base_filters
        self.max_filters = max_filters
        self.num_mask_classes = num_mask_classes
        self.use_mask_branch = use_mask_branch
        self.norm = norm
        self.min_bottleneck_size = min_bottleneck_size
        self.num_levels = unet_levels(image_size, min_bottleneck_size)
        widths = dict(num_levels=self.num_levels, base_filters=base_filters,
                      max_filters=max_filters, norm=norm)
        self.encoder = UNetEncoder(**widths, name="encoder")
        self.face_decoder = UNetDecoder(**widths, name="face_decoder")
        self.auxiliary_decoder = UNetDecoder(**widths, name="auxiliary_decoder")
        self.rgb_head = _head(3, "tanh", "rgb_head")
        self.depth_head = _head(1, "tanh", "depth_head")
        self.mask_head = _head(num_mask_classes, "sigmoid", "mask_head") if use_mask_branch else None

    @property
    def output_names_in_order(self) -> tuple[str, ...]:
        return ("rgb_recon", "depth", "mask") if self.use_mask_branch else ("rgb_recon", "depth")

    def call(self, inputs, training=None):
        rgb = inputs["rgb"] if isinstance(inputs, dict) else inputs
        features = self.encoder(rgb, training=training)
        outputs = {"rgb_recon": self.rgb_head(self.face_decoder(features, training=training))}
        trunk = self.auxiliary_decoder(features, training=training)
        outputs["depth"] = self.depth_head(trunk)
        if self.mask_head is not None:
            outputs["mask"] = self.mask_head(trunk)
        return outputs

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "image_size": self.image_size,
                "base_filters": self.base_filters, "max_filters": self.max_filters,
                "num_mask_classes": self.num_mask_classes,
                "use_mask_branch": self.use_mask_branch, "norm": self.norm,
                "min_bottleneck_size": self.min_bottleneck_size}
