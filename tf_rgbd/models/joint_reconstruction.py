"""Joint 3D face reconstruction and recognition with identity/residual shape disentangling
(Liu, Tran, Liu et al., "Disentangling Features in 3D Face Shapes for Joint Face
Reconstruction and Recognition", CVPR 2018).

::

    rgb [B, S, S, 3] --IR-SE encoder--> embedding --FC--> latent [B, id_dim + res_dim]
        disentangled:  c_Id = latent[:, :id_dim]    c_Res = latent[:, id_dim:]
                       dS_Id = f_Id(c_Id)           dS_Res = f_Res(c_Res)       [B, N, C]
                       neutral = s_bar + dS_Id      shape = neutral + dS_Res
        single (no disentangling): dS = f(latent), shape = s_bar + dS
    classifier(c_Id) -> logits [B, num_classes]     (single: on the whole latent)

``s_bar`` [N, C] is the mean neutral shape of the training set: a non-trainable weight set
with :meth:`JointReconstructionModel.set_mean_shape` before training (saved with the model).
Shapes are in the training's loss unit (``shape_unit_mm`` mm; see the config). The decoders
are fully connected (``decoder_hidden_units`` hidden ReLU layers, then a linear layer whose
kernel starts at zero, so an untrained decoder predicts s_bar).
"""
from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from tf_rgbd.models import backbones, heads

CLASSIFIER_MARGINS = {"arcface": (1.0, 0.5, 0.0), "cosface": (1.0, 0.0, 0.35)}


@keras.saving.register_keras_serializable(package="tf_rgbd")
class ShapeDecoder(keras.layers.Layer):
    """Fully connected decoder: latent [B, K] -> shape offsets [B, num_points, channels]."""

    def __init__(self, num_points: int, channels: int, hidden_units: Sequence[int] = (),
                 **kwargs):
        super().__init__(**kwargs)
        self.num_points = int(num_points)
        self.channels = int(channels)
        self.hidden_units = tuple(int(units) for units in hidden_units)
        self.hidden = [keras.layers.Dense(units, activation="relu", name=f"hidden{index}")
                       for index, units in enumerate(self.hidden_units)]
        self.output_layer = keras.layers.Dense(self.num_points * self.channels,
                                               kernel_initializer="zeros", name="output")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.hidden:
            layer.build(shape)
            shape = shape[:-1] + (layer.units,)
        self.output_layer.build(shape)
        self.built = True

    def call(self, latent):
        features = latent
        for layer in self.hidden:
            features = layer(features)
        return ops.reshape(self.output_layer(features), (-1, self.num_points, self.channels))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_points, self.channels)

    def get_config(self):
        return {**super().get_config(), "num_points": self.num_points,
                "channels": self.channels, "hidden_units": list(self.hidden_units)}


@keras.saving.register_keras_serializable(package="tf_rgbd")
class JointReconstructionModel(keras.Model):
    """The encoder, the latent split, the shape decoders and the identity classifier.

    Args:
      num_classes: identities of the training split (classifier outputs).
      num_points, channels: the shape's points N and coordinates C (3 for a mesh, 1 for a
        depth map).
      id_dim, res_dim: sizes of c_Id and c_Res (single: the latent has id_dim + res_dim).
      disentangled: two latents and decoders (True) or one (False, "no disentangling").
      backbone: IR-SE registry name; image_size: S; embedding_dim: the encoder's embedding.
      decoder_hidden_units: hidden layers of each decoder.
      classifier: ``softmax`` (linear + softmax), ``arcface`` or ``cosface`` (CombinedMargin).
      margin_s: scale of the margin heads.

    Call: rgb float32 [B, S, S, 3] in [-1, 1] (or ``{"rgb": ...}``) -> dict of float32:
      ``latent`` [B, id_dim + res_dim], ``identity_features`` [B, id_dim] (c_Id; the whole
      latent when not disentangled), ``shape`` [B, N, C], ``logits`` [B, num_classes]
      (margin-free), and ``delta_id``, ``delta_res``, ``neutral_shape`` [B, N, C]
      (disentangled) or ``delta`` [B, N, C] (single).
    """

    def __init__(self, num_classes: int, num_points: int, channels: int = 3, id_dim: int = 36,
                 res_dim: int = 7, disentangled: bool = True, backbone: str = "tiny",
                 image_size: int = 32, embedding_dim: int = 128,
                 decoder_hidden_units: Sequence[int] = (), classifier: str = "softmax",
                 margin_s: float = 30.0, dropout_rate: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.num_points = int(num_points)
        self.channels = int(channels)
        self.id_dim = int(id_dim)
        self.res_dim = int(res_dim)
        self.disentangled = bool(disentangled)
        self.backbone_name = backbone
        self.image_size = int(image_size)
        self.embedding_dim = int(embedding_dim)
        self.decoder_hidden_units = tuple(int(units) for units in decoder_hidden_units)
        self.classifier_name = classifier
        self.margin_s = float(margin_s)
        self.dropout_rate = float(dropout_rate)
        if self.id_dim < 1 or self.res_dim < 1:
            raise ValueError(f"id_dim and res_dim must be >= 1, got {id_dim}, {res_dim}")
        backbones.check_input_size(self.image_size)
        self.encoder = backbones.get_backbone(backbone, input_channels=3,
                                              embedding_dim=self.embedding_dim,
                                              dropout_rate=self.dropout_rate, name="encoder")
        self.latent_head = keras.layers.Dense(self.id_dim + self.res_dim, name="latent_head",
                                              dtype="float32")
        if self.disentangled:
            self.decoders = {
                "id": ShapeDecoder(self.num_points, self.channels, self.decoder_hidden_units,
                                   name="f_id", dtype="float32"),
                "res": ShapeDecoder(self.num_points, self.channels, self.decoder_hidden_units,
                                    name="f_res", dtype="float32")}
        else:
            self.decoders = {"all": ShapeDecoder(self.num_points, self.channels,
                                                 self.decoder_hidden_units, name="f",
                                                 dtype="float32")}
        if classifier == "softmax":
            self.classifier = heads.LinearClassifier(self.num_classes, name="classifier",
                                                     dtype="float32")
        elif classifier in CLASSIFIER_MARGINS:
            m1, m2, m3 = CLASSIFIER_MARGINS[classifier]
            self.classifier = heads.CombinedMargin(self.num_classes, s=self.margin_s, m1=m1,
                                                   m2=m2, m3=m3, name="classifier",
                                                   dtype="float32")
        else:
            raise ValueError(f"classifier must be softmax, arcface or cosface, got "
                             f"{classifier!r}")
        self.mean_shape = None

    @property
    def feature_dim(self) -> int:
        return self.id_dim if self.disentangled else self.id_dim + self.res_dim

    def build(self, input_shape=None):
        size = self.image_size
        # The backbone creates its variables on a first call (as the recognizer's do).
        self.encoder(ops.zeros((2, size, size, 3)), training=False)
        self.latent_head.build((None, self.embedding_dim))
        for name, decoder in self.decoders.items():
            width = {"id": self.id_dim, "res": self.res_dim}.get(name, self.id_dim + self.res_dim)
            decoder.build((None, width))
        self.classifier.build((None, self.feature_dim))
        self.mean_shape = self.add_weight(name="mean_shape",
                                          shape=(self.num_points, self.channels),
                                          initializer="zeros", trainable=False,
                                          dtype="float32")
        self.built = True

    def set_mean_shape(self, mean_shape) -> None:
        """Sets s_bar (float [N, C], the training set's mean neutral shape)."""
        if not self.built:
            self.build()
        mean_shape = ops.convert_to_numpy(mean_shape).astype("float32")
        if mean_shape.shape != (self.num_points, self.channels):
            raise ValueError(f"mean shape {mean_shape.shape} != ({self.num_points}, "
                             f"{self.channels})")
        self.mean_shape.assign(mean_shape)

    # ---------------------------------------------------------------- parts
    def encode(self, images, training=None):
        """rgb [B, S, S, 3] -> latent float32 [B, id_dim + res_dim]."""
        if isinstance(images, dict):
            images = images["rgb"]
        return self.latent_head(ops.cast(self.encoder(images, training=training), "float32"))

    def identity_features(self, latent):
        return latent[:, :self.id_dim] if self.disentangled else latent

    def decode(self, latent) -> dict:
        """latent [B, id_dim + res_dim] -> the shape outputs (see the class docstring)."""
        mean = ops.expand_dims(ops.convert_to_tensor(self.mean_shape), 0)
        if self.disentangled:
            delta_id = self.decoders["id"](latent[:, :self.id_dim])
            delta_res = self.decoders["res"](latent[:, self.id_dim:])
            neutral = mean + delta_id
            return {"delta_id": delta_id, "delta_res": delta_res, "neutral_shape": neutral,
                    "shape": neutral + delta_res}
        delta = self.decoders["all"](latent)
        return {"delta": delta, "shape": mean + delta}

    def classify(self, features, labels=None):
        """Logits [B, num_classes] on c_Id: with ``labels`` a margin head puts its margin on
        the true class (softmax ignores them)."""
        if self.classifier_name == "softmax":
            return self.classifier(features)
        return self.classifier(features, labels)["logits"]

    def call(self, inputs, training=None):
        latent = self.encode(inputs, training=training)
        features = self.identity_features(latent)
        return {"latent": latent, "identity_features": features,
                "logits": self.classify(features), **self.decode(latent)}

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "num_points": self.num_points, "channels": self.channels,
                "id_dim": self.id_dim, "res_dim": self.res_dim,
                "disentangled": self.disentangled, "backbone": self.backbone_name,
                "image_size": self.image_size, "embedding_dim": self.embedding_dim,
                "decoder_hidden_units": list(self.decoder_hidden_units),
                "classifier": self.classifier_name, "margin_s": self.margin_s,
                "dropout_rate": self.dropout_rate}


def joint_model_from_config(config, num_points: int, channels: int) -> JointReconstructionModel:
    """The model of a ``JointReconstructionConfig`` whose ``num_classes`` and latent sizes
    are resolved (after ``prepare_config``), built."""
    model_config = config.model
    model = JointReconstructionModel(
        num_classes=config.num_classes, num_points=num_points, channels=channels,
        id_dim=config.latent_id_dim, res_dim=config.latent_res_dim,
        disentangled=config.disentangled, backbone=model_config.backbone,
        image_size=model_config.image_size,
        embedding_dim=max(64, 2 * (config.latent_id_dim + config.latent_res_dim)),
        decoder_hidden_units=model_config.decoder_hidden_units,
        classifier=model_config.classifier, margin_s=model_config.margin_s,
        dropout_rate=model_config.dropout_rate, name="joint_reconstruction")
    model.build()
    return model
