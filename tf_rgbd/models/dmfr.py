"""The network of demodalizing face recognition (DMFR; Zhai et al., AAAI 2021).

One :class:`DMFRNetwork` serves the baselines and the three modes:

* the encoder H: an IR-SE backbone of the registry (``tiny`` on CPU), image -> H(x) [B, D];
* the CosFace classifier: :class:`~tf_rgbd.models.heads.CombinedMargin` (s = 64, m1 = 1,
  m2 = 0, m3 = 0.4), whose class weights are the prototypes w of the meta mode;
* the softmax classifier of the pre-training phase (:class:`~tf_rgbd.models.heads.
  LinearClassifier`), which every mode starts from;
* ``mode="disentangle"``: :class:`FeatureDisentangler` on the mid-level map M of backbone stage
  ``split_stage``: M is split in depth (channels) into two halves, each goes through its own
  trunk (an IR-SE stage) and an FC layer (+ BN) -> f_entangle, f_non-id [B, d]; a deconvolution
  decoder reconstructs M from f_entangle; the embedding is f_id = f_entangle - f_non-id (the
  backbone's later stages and its head are not used in this mode);
* ``mode="filter"``: :class:`FeatureFilter` F [B, D] -> [B, D], trained to map the features
  of a generated sample onto those of its real counterpart.

``call(images)`` returns ``{"embedding": [B, D or d]}`` (plus ``feature_map``,
``reconstruction``, ``f_entangle``, ``f_non_id`` in the disentangle mode). The embedding is what
evaluation compares (L2-normalised there); the classifiers are training-only.
"""
from __future__ import annotations

import keras
from keras import ops

from tf_rgbd.models import backbones, blocks, heads

MODES = ("none", "meta", "disentangle", "filter")


@keras.saving.register_keras_serializable(package="tf_rgbd")
class FeatureDisentangler(keras.layers.Layer):
    """Split-in-depth trunks + FC -> (f_entangle, f_non-id) and the deconvolution decoder.

    Args:
      disentangle_dim: d, size of f_entangle and f_non-id (512 in the paper).
      trunk_filters: width of each trunk's IR-SE stage (stride 2).

    Call: feature map M float32 [B, h, w, c] (c even, h and w even) -> dict ``f_entangle``,
    ``f_non_id``, ``f_id`` float32 [B, d] and ``reconstruction`` float32 [B, h, w, c].
    """

    def __init__(self, disentangle_dim: int = 512, trunk_filters: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.disentangle_dim = int(disentangle_dim)
        self.trunk_filters = int(trunk_filters)
        bn = blocks.bn_kwargs(blocks.BN_MOMENTUM, blocks.BN_EPSILON)
        self.trunks = [backbones.IRSEStage(self.trunk_filters, 1, 2, name=f"trunk_{name}", **bn)
                       for name in ("entangle", "non_id")]
        self.projections = [keras.layers.Dense(self.disentangle_dim, name=f"fc_{name}")
                            for name in ("entangle", "non_id")]
        # FC -> BN, as the backbone's embedding head ends: f_entangle and f_non-id are only
        # constrained through their difference (CosFace normalises f_id), and without it their
        # common magnitude grew until L_recons overflowed (measured: inf at step 41 of a
        # 120-step run, tiny backbone, SGD 0.05).
        self.projection_norms = [
            keras.layers.BatchNormalization(momentum=blocks.BN_MOMENTUM,
                                            epsilon=blocks.BN_EPSILON, name=f"bn_{name}")
            for name in ("entangle", "non_id")]
        self.flatten = keras.layers.Flatten()
        self.decoder_dense = None
        self.decoder_act = keras.layers.PReLU(shared_axes=[1, 2], name="decoder_prelu")
        self.decoder_deconv = None
        self.map_shape = None

    def build(self, input_shape):
        height, width, channels = (int(value) for value in tuple(input_shape)[1:])
        if channels % 2 or height % 2 or width % 2:
            raise ValueError(f"{self.name}: the feature map must have an even channel count and "
                             f"size, got {input_shape}")
        self.map_shape = (height, width, channels)
        half = (input_shape[0], height, width, channels // 2)
        for trunk, projection, norm in zip(self.trunks, self.projections,
                                           self.projection_norms):
            trunk.build(half)
            out = trunk.compute_output_shape(half)
            projection.build((input_shape[0], out[1] * out[2] * out[3]))
            norm.build((input_shape[0], self.disentangle_dim))
        low = (height // 2, width // 2, self.trunk_filters)
        self.decoder_dense = keras.layers.Dense(low[0] * low[1] * low[2], name="decoder_fc")
        self.decoder_dense.build((input_shape[0], self.disentangle_dim))
        self.decoder_act.build((input_shape[0],) + low)
        self.decoder_deconv = keras.layers.Conv2DTranspose(channels, 3, strides=2,
                                                           padding="same", name="decoder_deconv")
        self.decoder_deconv.build((input_shape[0],) + low)
        self.built = True

    def call(self, feature_map, training=None):
        half = feature_map.shape[-1] // 2
        parts = (feature_map[..., :half], feature_map[..., half:])
        f_entangle, f_non_id = (
            norm(projection(self.flatten(trunk(part, training=training))), training=training)
            for trunk, projection, norm, part in zip(self.trunks, self.projections,
                                                     self.projection_norms, parts))
        height, width, _ = self.map_shape
        low = ops.reshape(self.decoder_dense(f_entangle),
                          (-1, height // 2, width // 2, self.trunk_filters))
        reconstruction = self.decoder_deconv(self.decoder_act(low))
        return {"f_entangle": f_entangle, "f_non_id": f_non_id, "f_id": f_entangle - f_non_id,
                "reconstruction": reconstruction}

    def compute_output_shape(self, input_shape):
        vector = (input_shape[0], self.disentangle_dim)
        return {"f_entangle": vector, "f_non_id": vector, "f_id": vector,
                "reconstruction": tuple(input_shape)}

    def get_config(self):
        return {**super().get_config(), "disentangle_dim": self.disentangle_dim,
                "trunk_filters": self.trunk_filters}


@keras.saving.register_keras_serializable(package="tf_rgbd")
class FeatureFilter(keras.layers.Layer):
    """The filter network F: x + MLP(x) (two FC layers with a PReLU), [B, D] -> [B, D].

    The residual form starts near the identity, so the filter begins as "no change".

    Args:
      hidden_dim: width of the hidden layer (0 = the input width).
    """

    def __init__(self, hidden_dim: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.hidden = None
        self.act = keras.layers.PReLU(name="prelu")
        self.output_dense = None

    def build(self, input_shape):
        dim = int(input_shape[-1])
        hidden = self.hidden_dim or dim
        self.hidden = keras.layers.Dense(hidden, name="fc1")
        self.hidden.build(input_shape)
        self.act.build((input_shape[0], hidden))
        self.output_dense = keras.layers.Dense(dim, kernel_initializer="zeros", name="fc2")
        self.output_dense.build((input_shape[0], hidden))
        self.built = True

    def call(self, features):
        return features + self.output_dense(self.act(self.hidden(features)))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "hidden_dim": self.hidden_dim}


@keras.saving.register_keras_serializable(package="tf_rgbd")
class DMFRNetwork(keras.Model):
    """Encoder + CosFace prototypes + softmax pre-training classifier (+ the mode's module).

    Args:
      num_classes: identities of the training split.
      mode: one of ``MODES`` (``none`` and ``meta`` need no extra module).
      backbone, embedding_dim, dropout_rate: the encoder (``tf_rgbd.models.backbones``).
      image_size: S (the disentangle module's map size depends on it).
      margin_s, margin_m3: CosFace scale and cosine margin.
      disentangle_dim: d of the disentangle mode.
      split_stage: backbone stage whose map M is split and reconstructed.
      filter_hidden_dim: hidden width of F (0 = embedding width).

    Call: images float32 [B, S, S, 3] in [-1, 1] -> dict (see the module docstring).
    """

    def __init__(self, num_classes: int, mode: str = "none", backbone: str = "tiny",
                 image_size: int = 32, embedding_dim: int = 64, dropout_rate: float = 0.0,
                 margin_s: float = 64.0, margin_m3: float = 0.4, disentangle_dim: int = 512,
                 split_stage: int = 3, filter_hidden_dim: int = 0, **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        backbones.check_input_size(image_size)
        self.num_classes = int(num_classes)
        self.mode = mode
        self.backbone_name = backbone
        self.image_size = int(image_size)
        self.embedding_dim = int(embedding_dim)
        self.dropout_rate = float(dropout_rate)
        self.margin_s = float(margin_s)
        self.margin_m3 = float(margin_m3)
        self.disentangle_dim = int(disentangle_dim)
        self.split_stage = int(split_stage)
        self.filter_hidden_dim = int(filter_hidden_dim)
        self.encoder = backbones.get_backbone(backbone, embedding_dim=self.embedding_dim,
                                              dropout_rate=self.dropout_rate,
                                              name="dmfr_encoder")
        self.disentangler = None
        self.feature_filter = None
        feature_dim = self.embedding_dim
        if mode == "disentangle":
            widths = self.encoder.stage_widths
            self.disentangler = FeatureDisentangler(
                self.disentangle_dim, widths[min(self.split_stage, len(widths) - 1)],
                name="disentangler")
            feature_dim = self.disentangle_dim
        if mode == "filter":
            self.feature_filter = FeatureFilter(self.filter_hidden_dim, name="feature_filter")
        self.feature_dim = feature_dim
        self.cosface = heads.CombinedMargin(self.num_classes, s=self.margin_s, m1=1.0, m2=0.0,
                                            m3=self.margin_m3, name="cosface")
        self.softmax = heads.LinearClassifier(self.num_classes, name="softmax_classifier")

    def build(self, input_shape):
        # The backbone creates its variables on its first call.
        self.encoder.forward(ops.zeros((1, self.image_size, self.image_size, 3)))
        if self.disentangler is not None:
            size = self.image_size // 2 ** self.split_stage
            channels = self.encoder.stage_widths[self.split_stage - 1]
            self.disentangler.build((input_shape[0], size, size, channels))
        if self.feature_filter is not None:
            self.feature_filter.build((input_shape[0], self.feature_dim))
        self.cosface.build((input_shape[0], self.feature_dim))
        self.softmax.build((input_shape[0], self.feature_dim))
        self.built = True

    def feature_map(self, images, training=None):
        """M: the output of backbone stage ``split_stage``, float32 [B, h, w, c]."""
        features = self.encoder.stem(images, training=training)
        for stage in self.encoder.stages[:self.split_stage]:
            features = stage(features, training=training)
        return features

    def call(self, images, training=None):
        if self.disentangler is None:
            return {"embedding": self.encoder(images, training=training)}
        feature_map = self.feature_map(images, training=training)
        parts = self.disentangler(feature_map, training=training)
        return {"embedding": parts["f_id"], "feature_map": feature_map,
                "reconstruction": parts["reconstruction"], "f_entangle": parts["f_entangle"],
                "f_non_id": parts["f_non_id"]}

    def filter_features(self, features):
        """F(features) [B, D]; the identity when the network has no filter."""
        return features if self.feature_filter is None else self.feature_filter(features)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "mode": self.mode,
                "backbone": self.backbone_name, "image_size": self.image_size,
                "embedding_dim": self.embedding_dim, "dropout_rate": self.dropout_rate,
                "margin_s": self.margin_s, "margin_m3": self.margin_m3,
                "disentangle_dim": self.disentangle_dim, "split_stage": self.split_stage,
                "filter_hidden_dim": self.filter_hidden_dim}


def dmfr_network_from_config(model_config, mode: str, num_classes: int) -> DMFRNetwork:
    """A built :class:`DMFRNetwork` from a ``DMFRModelConfig``."""
    network = DMFRNetwork(num_classes, mode=mode, backbone=model_config.backbone,
                          image_size=model_config.image_size,
                          embedding_dim=model_config.embedding_dim,
                          dropout_rate=model_config.dropout_rate,
                          margin_s=model_config.margin_s, margin_m3=model_config.margin_m3,
                          disentangle_dim=model_config.disentangle_dim,
                          split_stage=model_config.split_stage,
                          filter_hidden_dim=model_config.filter_hidden_dim, name="dmfr_network")
    network.build((None, model_config.image_size, model_config.image_size, 3))
    return network
