"""Segmentation-guided two-stream RGB-D face recognizer with identity/style disentanglement.

Inputs (a dict; only the enabled modalities are needed), for an S x S face (S divisible by 16):

* ``rgb``: float32 [B, S, S, 3] in [-1, 1]
* ``depth``: float32 [B, S, S, 1] in [0, 1], 0 = background, nearer = larger (exactly what
  ``tf_rgbd.data.pipeline.make_dataset`` yields). The depth branch takes this single channel as
  is (no replication to 3 channels; its stem is a 1-channel convolution).
* ``mask``: float32 [B, S, S, 7] one-hot or probabilities over ``schema.MASK_CLASSES``.

Architecture (widths w1..w4 and units from the backbone registry; ir_se50 at S = 112 gives
56x56x64 after stage 1 and 14x14x256 after stage 3):

* RGB branch and depth branch, each an :class:`~tf_rgbd.models.backbones.IRSEBackbone`:
  stem -> stage 1 -> [x attention A1] -> stage 2 -> stage 3 -> [x attention A3] -> stage 4 ->
  embedding head = identity feature f_id (``embedding_dim``).
* Identity/style split: the style encoder E_style of a branch SHARES the stem and stages 1-2
  (including the stage-1 attention) with its identity encoder E_id; from the stage-2 output it
  has its own IR-SE unit (stride 2, width w3), IR-SE unit (stride 2, width w4), global average
  pooling, dense -> BN = style feature f_style (``embedding_dim``). E_id's own part is stages 3-4
  and the embedding head.
* Mask branch E^M (shared by both branches): conv encoder over the 7-channel mask producing maps
  at the stage-1 resolution (S/2, w1) and the stage-3 resolution (S/8, w3).
* SAM: ONE CBAM spatial-attention module (a single 7x7 conv over [channel-mean, channel-max])
  turns both mask maps into attention maps A1 [B, S/2, S/2, 1] and A3 [B, S/8, S/8, 1]; the same
  maps multiply the RGB and the depth feature maps, so the SAM weights are one variable set
  shared by both branches (and both stages). ``sam_normalization="batch"`` puts a BatchNorm
  between the conv and the sigmoid as CBAM's reference code does (one BN per stage, the conv
  stays shared); ``"none"`` is sigmoid(conv + bias) as printed.
* ``attention_mode``: ``multiply`` (the paper, x * A) or ``residual`` (x * (1 + A), the
  residual-attention form: the identity path is kept and A only adds emphasis).
* Classifiers (shared by both branches, called by the trainer, never exported):
  C_id = :class:`~tf_rgbd.models.heads.CombinedMargin` (ArcFace s = 64, m = 0.5 by default),
  C_style = 2-way :class:`~tf_rgbd.models.heads.LinearClassifier` (0 = RGB, 1 = depth).

``modalities`` switches parts off for the paper's Table 7: without ``mask`` there is no mask
branch and no attention; without ``rgb`` / ``depth`` that branch is not built.

Why the attention options exist (measured on the tiny synthetic bench,
``bench/ablation_table.py``): every consumer of an attended map starts with BatchNorm (the
next IR-SE unit's pre-BN and its projection shortcut, or the style encoder's), so a uniform
rescaling of A is invisible to the loss and only A's spatial/per-sample contrast matters.
Without normalisation the SAM logit is an unbounded linear function of the pooled (ReLU,
>= 0) mask features. At lr 0.1 the 99 SAM weights get a large gradient in the first 2-4 steps
only; SGD momentum (0.9) keeps moving them for ~20 more steps after that gradient has
vanished (sum(kernel) -0.1 -> +39 by step 50; with momentum 0 it stays at 3-4), driving the
logits to |z| >> 10. Depending on the seed the map ends at A = 1 everywhere (the mask branch
is a no-op) or as a hard 0/1 gate that zeroes most positions; either way sigma' ~ 0 and it
never recovers. ``sam_normalization="batch"`` keeps |z| within a few units with a live
per-face contrast, and is the default since the seeded claims benchmark (issue 10 item 7;
``python -m bench.claims``, 5 seeds, the same data, depth models and seeds for both forms;
``bench/results/claims_sam_none_vs_batch.md``) measured: with the printed form the
classification-only RGB+D+M model collapsed to constant embeddings (rank-1 0, EER 0.5,
|kernel| 6.8-7.7) in 2 of 5 seeds, with ``batch`` in none; no row's mean rank-1 differed
between the two forms beyond its 95 % interval (e.g. the full model with D* at test
32.2 +- 4.6 -> 34.2 +- 4.4 %). ``none`` keeps the printed form for comparison.

:func:`build_inference_model` wraps the trained encoders in a training-free functional model
(dynamic batch, named inputs ``rgb``/``depth``/``mask``, L2-normalised outputs
``id_rgb``/``id_depth``) for export.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import keras
from keras import ops

from tf_rgbd.config.recognizer import (ATTENTION_MODES, MODALITIES, SAM_NORMALIZATIONS,
                                       RecognizerModelConfig)
from tf_rgbd.models import backbones, blocks, heads

BRANCHES = ("rgb", "depth")
INPUT_CHANNELS = {"rgb": 3, "depth": 1, "mask": 7}
# Style classifier targets.
STYLE_LABELS = {"rgb": 0, "depth": 1}
NUM_STYLES = len(STYLE_LABELS)
# Backbone stages whose outputs are multiplied by mask-guided attention.
ATTENTION_STAGES = (1, 3)


def check_modalities(modalities: Sequence[str]) -> tuple[str, ...]:
    """Validates a modality switch: subset of MODALITIES with at least one image branch."""
    modalities = tuple(modalities)
    unknown = sorted(set(modalities) - set(MODALITIES))
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; choose from {MODALITIES}")
    if not set(modalities) & set(BRANCHES):
        raise ValueError(f"modalities {modalities} have no image branch; add 'rgb' and/or "
                         "'depth' ('mask' only guides the branches)")
    return tuple(name for name in MODALITIES if name in modalities)


@keras.saving.register_keras_serializable(package="tf_rgbd")
class MaskEncoder(keras.layers.Layer):
    """E^M: mask [B, S, S, 7] -> {"stage1": [B, S/2, S/2, w1], "stage3": [B, S/8, S/8, w3]}.

    conv s2 (w1) -> conv (w1) = stage-1 maps -> conv s2 (w2) -> conv s2 (w3) -> conv (w3) =
    stage-3 maps; every conv is 3x3 -> BN -> ReLU.
    """

    def __init__(self, stage_widths: Sequence[int], bn_momentum: float = blocks.BN_MOMENTUM,
                 bn_epsilon: float = blocks.BN_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.stage_widths = tuple(int(width) for width in stage_widths)
        if len(self.stage_widths) != 3:
            raise ValueError(f"{self.name}: need widths of stages 1, 2, 3, got {stage_widths}")
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        bn = blocks.bn_kwargs(self.bn_momentum, self.bn_epsilon)
        width1, width2, width3 = self.stage_widths
        self.to_stage1 = [blocks.ConvNormAct(width1, 3, 2, "relu", name="stage1_down", **bn),
                          blocks.ConvNormAct(width1, 3, 1, "relu", name="stage1_conv", **bn)]
        self.to_stage3 = [blocks.ConvNormAct(width2, 3, 2, "relu", name="stage2_down", **bn),
                          blocks.ConvNormAct(width3, 3, 2, "relu", name="stage3_down", **bn),
                          blocks.ConvNormAct(width3, 3, 1, "relu", name="stage3_conv", **bn)]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.to_stage1 + self.to_stage3:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.built = True

    def call(self, masks, training=None):
        features = masks
        for layer in self.to_stage1:
            features = layer(features, training=training)
        stage1 = features
        for layer in self.to_stage3:
            features = layer(features, training=training)
        return {"stage1": stage1, "stage3": features}

    def compute_output_shape(self, input_shape):
        batch, size = input_shape[0], input_shape[1]
        return {"stage1": (batch, size // 2, size // 2, self.stage_widths[0]),
                "stage3": (batch, size // 8, size // 8, self.stage_widths[2])}

    def get_config(self):
        return {**super().get_config(), "stage_widths": self.stage_widths,
                "bn_momentum": self.bn_momentum, "bn_epsilon": self.bn_epsilon}


@keras.saving.register_keras_serializable(package="tf_rgbd")
class StyleEncoderHead(keras.layers.Layer):
    """E_style's own part: stage-2 maps [B, S/4, S/4, w2] -> f_style [B, embedding_dim].

    IR-SE unit (stride 2, w3) -> IR-SE unit (stride 2, w4) -> global average pool -> dense -> BN.
    """

    def __init__(self, widths: Sequence[int], embedding_dim: int = 512, se_reduction: int = 16,
                 bn_momentum: float = blocks.BN_MOMENTUM, bn_epsilon: float = blocks.BN_EPSILON,
                 **kwargs):
        super().__init__(**kwargs)
        self.widths = tuple(int(width) for width in widths)
        self.embedding_dim = int(embedding_dim)
        self.se_reduction = int(se_reduction)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        self.units = [blocks.IRSEUnit(width, 2, self.se_reduction, self.bn_momentum,
                                      self.bn_epsilon, name=f"unit{index + 1}")
                      for index, width in enumerate(self.widths)]
        self.dense = keras.layers.Dense(self.embedding_dim, name="dense")
        # float32 under a mixed policy: f_style feeds the heads and losses (see heads.py).
        self.embedding_norm = keras.layers.BatchNormalization(
            scale=False, momentum=self.bn_momentum, epsilon=self.bn_epsilon, dtype="float32",
            name="bn_embedding")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for unit in self.units:
            unit.build(shape)
            shape = unit.compute_output_shape(shape)
        self.dense.build((shape[0], shape[-1]))
        self.embedding_norm.build((shape[0], self.embedding_dim))
        self.built = True

    def call(self, features, training=None):
        for unit in self.units:
            features = unit(features, training=training)
        pooled = ops.mean(features, axis=(1, 2))
        return self.embedding_norm(self.dense(pooled), training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.embedding_dim)

    def get_config(self):
        return {**super().get_config(), "widths": self.widths,
                "embedding_dim": self.embedding_dim, "se_reduction": self.se_reduction,
                "bn_momentum": self.bn_momentum, "bn_epsilon": self.bn_epsilon}


@keras.saving.register_keras_serializable(package="tf_rgbd")
class SegmentationGuidedRecognizer(keras.Model):
    """The two-stream recognizer (see the module docstring for the architecture).

    Args:
      num_classes: training identities (size of C_id).
      backbone: registered backbone name (``ir_se50``, ``ir_se18``, ``tiny``).
      modalities: any of ("rgb", "depth", "mask") with at least one of rgb/depth.
      embedding_dim: size of f_id and f_style (512 in the paper).
      dropout_rate: dropout in the identity embedding heads.
      margin_s, margin_m1, margin_m2, margin_m3: C_id's CombinedMargin parameters.
      sam_kernel_size: the SAM convolution size (7).
      sam_normalization: ``batch`` (conv -> BN -> sigmoid, CBAM's reference SpatialGate; one BN
        per attention stage; the default, see the module docstring) or ``none``
        (sigmoid(conv + bias), as printed).
      attention_mode: ``multiply`` (x * A, the paper) or ``residual`` (x * (1 + A)).

    ``call(inputs)`` returns a dict with, for each enabled branch b in (rgb, depth),
    ``id_<b>`` and ``style_<b>`` (float32 [B, embedding_dim], not normalised), and when the mask
    is enabled ``attention_stage1`` [B, S/2, S/2, 1] and ``attention_stage3`` [B, S/8, S/8, 1]
    in (0, 1).
    """

    def __init__(self, num_classes: int, backbone: str = "ir_se50",
                 modalities: Sequence[str] = MODALITIES, embedding_dim: int = 512,
                 dropout_rate: float = 0.4, margin_s: float = 64.0, margin_m1: float = 1.0,
                 margin_m2: float = 0.5, margin_m3: float = 0.0, se_reduction: int = 16,
                 sam_kernel_size: int = 7, sam_normalization: str = "batch",
                 attention_mode: str = "multiply", bn_momentum: float = blocks.BN_MOMENTUM,
                 bn_epsilon: float = blocks.BN_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.backbone = backbone
        self.modalities = check_modalities(modalities)
        self.embedding_dim = int(embedding_dim)
        self.dropout_rate = float(dropout_rate)
        self.margin_s = float(margin_s)
        self.margin_m1 = float(margin_m1)
        self.margin_m2 = float(margin_m2)
        self.margin_m3 = float(margin_m3)
        self.se_reduction = int(se_reduction)
        self.sam_kernel_size = int(sam_kernel_size)
        if sam_normalization not in SAM_NORMALIZATIONS:
            raise ValueError(f"sam_normalization {sam_normalization!r} is not one of "
                             f"{SAM_NORMALIZATIONS}")
        if attention_mode not in ATTENTION_MODES:
            raise ValueError(f"attention_mode {attention_mode!r} is not one of {ATTENTION_MODES}")
        self.sam_normalization = sam_normalization
        self.attention_mode = attention_mode
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        spec = backbones.backbone_spec(backbone)
        bn = blocks.bn_kwargs(self.bn_momentum, self.bn_epsilon)

        # Built complete before assignment so Keras tracks (and saves) every encoder.
        self.identity_encoders = {
            branch: backbones.get_backbone(
                backbone, input_channels=INPUT_CHANNELS[branch], embedding_dim=self.embedding_dim,
                dropout_rate=self.dropout_rate, se_reduction=self.se_reduction,
                name=f"{branch}_identity_encoder", **bn)
            for branch in self.branches}
        self.style_encoders = {
            branch: StyleEncoderHead(spec.stage_widths[2:], self.embedding_dim, self.se_reduction,
                                     name=f"{branch}_style_encoder", **bn)
            for branch in self.branches}
        if self.uses_mask:
            self.mask_encoder = MaskEncoder(spec.stage_widths[:3], name="mask_encoder", **bn)
            self.spatial_attention = blocks.SpatialAttention(
                self.sam_kernel_size, normalization=self.sam_normalization,
                num_inputs=len(ATTENTION_STAGES), name="spatial_attention", **bn)
        else:
            self.mask_encoder = None
            self.spatial_attention = None
        # The classifiers always compute in float32 (margin logits: arccos/cos near +-1 and
        # s = 64 do not survive bfloat16's 8-bit mantissa), whatever the dtype policy.
        self.identity_classifier = heads.CombinedMargin(
            self.num_classes, self.margin_s, self.margin_m1, self.margin_m2, self.margin_m3,
            dtype="float32", name="identity_classifier")
        self.style_classifier = heads.LinearClassifier(NUM_STYLES, dtype="float32",
                                                       name="style_classifier")

    @property
    def branches(self) -> tuple[str, ...]:
        """The enabled image branches, in the order (rgb, depth)."""
        return tuple(name for name in BRANCHES if name in self.modalities)

    @property
    def uses_mask(self) -> bool:
        return "mask" in self.modalities

    def _check_inputs(self, inputs: Mapping) -> None:
        if not isinstance(inputs, Mapping):
            raise TypeError(f"{self.name}: inputs must be a dict with keys {self.modalities}, "
                            f"got {type(inputs).__name__}")
        missing = [name for name in self.modalities if name not in inputs]
        if missing:
            raise KeyError(f"{self.name}: inputs lack {missing} (model modalities "
                           f"{self.modalities}, given {sorted(inputs)})")

    def attention_maps(self, masks, training=None) -> dict:
        """SAM(E^M(mask)): {"attention_stage1": [B,S/2,S/2,1], "attention_stage3": [B,S/8,S/8,1]}
        in (0, 1)."""
        mask_features = self.mask_encoder(masks, training=training)
        return {f"attention_stage{stage}": self.spatial_attention(
                    mask_features[f"stage{stage}"], training=training, input_index=index)
                for index, stage in enumerate(ATTENTION_STAGES)}

    def encode_branch(self, branch: str, images, attention: Mapping, training=None,
                      with_style: bool = True) -> dict:
        """One branch: images -> {"id": f_id, "style": f_style (if with_style)}."""

        def multiply_attention(stage_number, features):
            key = f"attention_stage{stage_number}"
            if key not in attention:
                return features
            if self.attention_mode == "residual":
                return features * (1.0 + attention[key])
            return features * attention[key]

        stages = self.identity_encoders[branch].forward(images, training=training,
                                                        stage_hook=multiply_attention)
        outputs = {"id": stages["embedding"]}
        if with_style:
            outputs["style"] = self.style_encoders[branch](stages["stage2"], training=training)
        return outputs

    def encode(self, inputs: Mapping, training=None, with_style: bool = True) -> dict:
        """The forward pass shared by ``call`` and :func:`build_inference_model`.

        Under a mixed dtype policy the encoders compute in float16/bfloat16; every output is
        float32 (features for the float32 heads and losses, attention maps for display).
        """
        self._check_inputs(inputs)
        attention = self.attention_maps(inputs["mask"], training) if self.uses_mask else {}
        outputs = {key: ops.cast(value, "float32") for key, value in attention.items()}
        for branch in self.branches:
            encoded = self.encode_branch(branch, inputs[branch], attention, training, with_style)
            for kind, features in encoded.items():
                outputs[f"{kind}_{branch}"] = ops.cast(features, "float32")
        return outputs

    def call(self, inputs, training=None):
        return self.encode(inputs, training=training)

    def build(self, input_shape):
        """Creates every variable (encoders AND both classifiers) from the input shapes.

        ``input_shape``: dict modality -> (batch, S, S, channels) (what Keras records at the first
        call and passes again when a ``.keras`` file is loaded).
        """
        if not isinstance(input_shape, Mapping):
            raise TypeError(f"{self.name}: build() needs a dict of input shapes, got "
                            f"{input_shape!r}")
        zeros = {name: ops.zeros((2,) + tuple(input_shape[name][1:]))
                 for name in self.modalities}
        outputs = self.encode(zeros, training=False)
        for branch in self.branches:
            self.identity_classifier(outputs[f"id_{branch}"])
            self.style_classifier(outputs[f"style_{branch}"])
        self.built = True

    def build_for_size(self, image_size: int) -> None:
        """Builds the model for S x S inputs (call before ``fit``, saving or variable routing)."""
        backbones.check_input_size(image_size)
        self.build({name: (None, image_size, image_size, INPUT_CHANNELS[name])
                    for name in self.modalities})

    # --- variable groups used for gradient routing --------------------------------------------
    def branch_variables(self, branch: str) -> list:
        """Trainable variables that belong to ``branch`` only (its E_id and E_style)."""
        if branch not in self.branches:
            raise ValueError(f"{self.name}: branch {branch!r} is not enabled ({self.branches})")
        return (list(self.identity_encoders[branch].trainable_variables)
                + list(self.style_encoders[branch].trainable_variables))

    def shared_variables(self) -> list:
        """Trainable variables used by every branch: E^M, SAM, C_id, C_style."""
        parts = [self.identity_classifier, self.style_classifier]
        if self.uses_mask:
            parts = [self.mask_encoder, self.spatial_attention] + parts
        return [variable for part in parts for variable in part.trainable_variables]

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "backbone": self.backbone, "modalities": self.modalities,
                "embedding_dim": self.embedding_dim, "dropout_rate": self.dropout_rate,
                "margin_s": self.margin_s, "margin_m1": self.margin_m1,
                "margin_m2": self.margin_m2, "margin_m3": self.margin_m3,
                "se_reduction": self.se_reduction, "sam_kernel_size": self.sam_kernel_size,
                "sam_normalization": self.sam_normalization,
                "attention_mode": self.attention_mode,
                "bn_momentum": self.bn_momentum, "bn_epsilon": self.bn_epsilon}


def build_inference_model(recognizer: SegmentationGuidedRecognizer, image_size: int,
                          with_attention: bool = False) -> keras.Model:
    """A training-free functional model over the trained encoders (shares their weights).

    Inputs: named ``rgb`` [None, S, S, 3], ``depth`` [None, S, S, 1], ``mask`` [None, S, S, 7]
    (those in ``recognizer.modalities``), dynamic batch. Outputs: ``id_rgb`` / ``id_depth``
    float32 [None, embedding_dim], L2-normalised (unit length); with ``with_attention`` also the
    SAM maps (for pictures, not for export). No classifier, no style encoder, no dropout.
    """
    backbones.check_input_size(image_size)
    inputs = {name: keras.Input((image_size, image_size, INPUT_CHANNELS[name]), name=name)
              for name in recognizer.modalities}
    encoded = recognizer.encode(inputs, training=False, with_style=False)
    outputs = {f"id_{branch}": blocks.UnitNormalization(name=f"id_{branch}")(
        encoded[f"id_{branch}"]) for branch in recognizer.branches}
    if with_attention:
        outputs.update({key: value for key, value in encoded.items()
                        if key.startswith("attention_")})
    return keras.Model(inputs, outputs, name=f"{recognizer.name}_inference")


def recognizer_from_config(model_config: RecognizerModelConfig, num_classes: int,
                           name: str = "recognizer") -> SegmentationGuidedRecognizer:
    """A built recognizer from its config (call inside ``strategy.scope()`` when distributing)."""
    recognizer = SegmentationGuidedRecognizer(
        num_classes=num_classes, backbone=model_config.backbone,
        modalities=model_config.modalities, embedding_dim=model_config.embedding_dim,
        dropout_rate=model_config.dropout_rate, margin_s=model_config.margin_s,
        margin_m1=model_config.margin_m1, margin_m2=model_config.margin_m2,
        margin_m3=model_config.margin_m3, sam_normalization=model_config.sam_normalization,
        attention_mode=model_config.attention_mode, name=name)
    recognizer.build_for_size(model_config.image_size)
    return recognizer
