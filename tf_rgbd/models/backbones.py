"""IR-SE (SE-ResNet "improved residual") face backbones, chosen by name from a registry.

Layout (InsightFace ``IR_SE_50``), for an S x S input (S = 112 in the paper):

====================  =====================  ==========================================
part                  output                 notes
====================  =====================  ==========================================
stem                  S x S x stem_width     3x3 conv (stride 1) -> BN -> PReLU
stage 1               S/2 x S/2 x w1         ``units[0]`` IR-SE units, first has stride 2
stage 2               S/4 x S/4 x w2
stage 3               S/8 x S/8 x w3
stage 4               S/16 x S/16 x w4       7 x 7 x 512 for ir_se50 at 112
head                  [embedding_dim]        BN -> dropout -> flatten -> dense -> BN
====================  =====================  ==========================================

Registered names: ``ir_se50`` (units [3, 4, 14, 3], widths 64/128/256/512), ``ir_se18``
([2, 2, 2, 2], same widths; the small real-data option) and ``tiny`` ([1, 1, 1, 1], widths
8/16/32/64; tests and CPU benches). ``register_backbone`` adds more.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Optional

import keras

from tf_rgbd.models import blocks

NUM_STAGES = 4
# Total downsampling of stage 4 relative to the input.
BACKBONE_STRIDE = 16


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """Depth and width of an IR-SE backbone.

    Attributes:
      stage_units: number of IR-SE units in each of the 4 stages.
      stage_widths: output channels of each stage.
      stem_width: channels of the stride-1 stem convolution.
    """

    stage_units: tuple[int, int, int, int]
    stage_widths: tuple[int, int, int, int]
    stem_width: int


_BACKBONE_SPECS: dict[str, BackboneSpec] = {
    "ir_se50": BackboneSpec((3, 4, 14, 3), (64, 128, 256, 512), 64),
    "ir_se18": BackboneSpec((2, 2, 2, 2), (64, 128, 256, 512), 64),
    "tiny": BackboneSpec((1, 1, 1, 1), (8, 16, 32, 64), 8),
}


def register_backbone(name: str, spec: BackboneSpec) -> None:
    """Adds a backbone spec under ``name`` (refuses to overwrite an existing name)."""
    if name in _BACKBONE_SPECS:
        raise ValueError(f"backbone {name!r} is already registered")
    if len(spec.stage_units) != NUM_STAGES or len(spec.stage_widths) != NUM_STAGES:
        raise ValueError(f"backbone {name!r}: need {NUM_STAGES} stages, got {spec}")
    _BACKBONE_SPECS[name] = spec


def backbone_names() -> tuple[str, ...]:
    return tuple(sorted(_BACKBONE_SPECS))


def backbone_spec(name: str) -> BackboneSpec:
    if name not in _BACKBONE_SPECS:
        raise ValueError(f"unknown backbone {name!r}; registered: {backbone_names()}")
    return _BACKBONE_SPECS[name]


def check_input_size(image_size: int) -> None:
    """Raises unless ``image_size`` is divisible by the backbone stride (16)."""
    if image_size % BACKBONE_STRIDE:
        raise ValueError(f"image size {image_size} is not divisible by {BACKBONE_STRIDE}; "
                         "resize faces to e.g. 64 or 112")


@keras.saving.register_keras_serializable(package="tf_rgbd")
class IRSEStage(keras.layers.Layer):
    """``num_units`` IR-SE units; the first one has stride ``strides`` and sets the width.

    Input float32 [B, H, W, C]; output [B, H / strides, W / strides, filters].
    """

    def __init__(self, filters: int, num_units: int, strides: int = 2, se_reduction: int = 16,
                 bn_momentum: float = blocks.BN_MOMENTUM, bn_epsilon: float = blocks.BN_EPSILON,
                 **kwargs):
        super().__init__(**kwargs)
        if num_units < 1:
            raise ValueError(f"{self.name}: num_units must be >= 1, got {num_units}")
        self.filters = int(filters)
        self.num_units = int(num_units)
        self.strides = int(strides)
        self.se_reduction = int(se_reduction)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        self.units = [
            blocks.IRSEUnit(self.filters, self.strides if index == 0 else 1, self.se_reduction,
                            self.bn_momentum, self.bn_epsilon, name=f"unit{index + 1}")
            for index in range(self.num_units)]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for unit in self.units:
            unit.build(shape)
            shape = unit.compute_output_shape(shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for unit in self.units:
            shape = unit.compute_output_shape(shape)
        return shape

    def call(self, inputs, training=None):
        outputs = inputs
        for unit in self.units:
            outputs = unit(outputs, training=training)
        return outputs

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "num_units": self.num_units,
                "strides": self.strides, "se_reduction": self.se_reduction,
                "bn_momentum": self.bn_momentum, "bn_epsilon": self.bn_epsilon}


@keras.saving.register_keras_serializable(package="tf_rgbd")
class EmbeddingHead(keras.layers.Layer):
    """ArcFace output block "E": BN -> dropout -> flatten -> dense -> BN (no learned scale).

    Input float32 [B, h, w, C] (7 x 7 x 512 for ir_se50 at 112); output [B, embedding_dim].
    """

    def __init__(self, embedding_dim: int = 512, dropout_rate: float = 0.4,
                 bn_momentum: float = blocks.BN_MOMENTUM, bn_epsilon: float = blocks.BN_EPSILON,
                 **kwargs):
        super().__init__(**kwargs)
        self.embedding_dim = int(embedding_dim)
        self.dropout_rate = float(dropout_rate)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        bn = dict(momentum=self.bn_momentum, epsilon=self.bn_epsilon)
        self.feature_norm = blocks.FusedBatchNormalization(name="bn_features", **bn)
        self.dropout = keras.layers.Dropout(self.dropout_rate, name="dropout")
        self.flatten = keras.layers.Flatten(name="flatten")
        self.dense = keras.layers.Dense(self.embedding_dim, name="dense")
        # float32 under a mixed policy: the embedding feeds the margin head and the losses.
        self.embedding_norm = keras.layers.BatchNormalization(scale=False, name="bn_embedding",
                                                              dtype="float32", **bn)

    def build(self, input_shape):
        self.feature_norm.build(input_shape)
        flat_shape = self.flatten.compute_output_shape(input_shape)
        if flat_shape[-1] is None:
            raise ValueError(f"{self.name}: the spatial size must be static, got {input_shape}")
        self.dense.build(flat_shape)
        self.embedding_norm.build((input_shape[0], self.embedding_dim))
        self.built = True

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.embedding_dim)

    def call(self, inputs, training=None):
        outputs = self.dropout(self.feature_norm(inputs, training=training), training=training)
        return self.embedding_norm(self.dense(self.flatten(outputs)), training=training)

    def get_config(self):
        return {**super().get_config(), "embedding_dim": self.embedding_dim,
                "dropout_rate": self.dropout_rate, "bn_momentum": self.bn_momentum,
                "bn_epsilon": self.bn_epsilon}


StageHook = Callable[[int, "keras.KerasTensor"], "keras.KerasTensor"]


@keras.saving.register_keras_serializable(package="tf_rgbd")
class IRSEBackbone(keras.Model):
    """An IR-SE backbone: image [B, S, S, input_channels] -> embedding [B, embedding_dim].

    ``forward`` also returns every stage's feature map and accepts a ``stage_hook`` that may
    rewrite a stage's output before the next stage sees it (the recognizer multiplies the
    mask-branch attention maps in there).

    Args:
      backbone: registered spec name (``ir_se50``, ``ir_se18``, ``tiny``).
      input_channels: 3 for RGB, 1 for depth.
      embedding_dim: size of the output embedding (512 in the paper).
      dropout_rate: dropout in the embedding head.
    """

    def __init__(self, backbone: str = "ir_se50", input_channels: int = 3,
                 embedding_dim: int = 512, dropout_rate: float = 0.4, se_reduction: int = 16,
                 bn_momentum: float = blocks.BN_MOMENTUM, bn_epsilon: float = blocks.BN_EPSILON,
                 **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.spec = backbone_spec(backbone)
        self.input_channels = int(input_channels)
        self.embedding_dim = int(embedding_dim)
        self.dropout_rate = float(dropout_rate)
        self.se_reduction = int(se_reduction)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        bn = blocks.bn_kwargs(self.bn_momentum, self.bn_epsilon)
        # Parts are prefixed with the model's name: a functional graph over two backbones
        # (the recognizer's inference model) needs unique layer names.
        prefix = self.name
        self.stem = blocks.ConvNormAct(self.spec.stem_width, 3, 1, activation="prelu",
                                     name=f"{prefix}_stem", **bn)
        self.stages = [
            IRSEStage(width, units, 2, self.se_reduction, name=f"{prefix}_stage{index + 1}", **bn)
            for index, (units, width) in enumerate(zip(self.spec.stage_units,
                                                       self.spec.stage_widths))]
        self.head = EmbeddingHead(self.embedding_dim, self.dropout_rate, name=f"{prefix}_head",
                                  **bn)

    @property
    def stage_widths(self) -> tuple[int, ...]:
        return self.spec.stage_widths

    def forward(self, images, training=None,
                stage_hook: Optional[StageHook] = None) -> dict:
        """Runs the backbone and returns ``{"stage1".."stage4": maps, "embedding": [B, D]}``.

        ``stage_hook(stage_number, maps)`` (stage_number 1..4) replaces a stage's output.
        """
        if images.shape[-1] != self.input_channels:
            raise ValueError(f"{self.name}: expected {self.input_channels} input channels, got "
                             f"shape {images.shape}")
        features = self.stem(images, training=training)
        outputs = {}
        for number, stage in enumerate(self.stages, start=1):
            features = stage(features, training=training)
            if stage_hook is not None:
                features = stage_hook(number, features)
            outputs[f"stage{number}"] = features
        outputs["embedding"] = self.head(features, training=training)
        return outputs

    def call(self, images, training=None):
        return self.forward(images, training=training)["embedding"]

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone,
                "input_channels": self.input_channels, "embedding_dim": self.embedding_dim,
                "dropout_rate": self.dropout_rate, "se_reduction": self.se_reduction,
                "bn_momentum": self.bn_momentum, "bn_epsilon": self.bn_epsilon}


def get_backbone(name: str, /, **kwargs) -> IRSEBackbone:
    """The registry entry point: ``get_backbone("ir_se50", input_channels=3)``.

    ``kwargs`` go to :class:`IRSEBackbone` (input_channels, embedding_dim, dropout_rate, ...;
    ``name=`` names the Keras model, the spec name is positional-only).
    """
    backbone_spec(name)  # validates the name with a helpful message
    return IRSEBackbone(backbone=name, **kwargs)


def stage_resolutions(image_size: int) -> Mapping[int, int]:
    """Spatial size of each stage's output for an ``image_size`` input: {1: S/2, ..., 4: S/16}."""
    check_input_size(image_size)
    return {number: image_size // (2 ** number) for number in range(1, NUM_STAGES + 1)}
