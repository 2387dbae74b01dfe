"""The Siamese depth-only verifier: ONE IR-SE depth encoder (from the backbone registry)
applied to both depth maps of a pair; the pair's score is minus the Euclidean distance of the
two L2-normalised embeddings.

Inputs (dict): ``depth_a``, ``depth_b`` float32 [B, S, S, 1], normalised depth as the pipeline
gives it ((0, 1] on the face, nearer = larger, 0 = background). Outputs (dict, float32):
``embedding_a``, ``embedding_b`` [B, D] (unit length), ``distance`` [B] in [0, 2], ``score`` [B]
= -distance (higher = more alike, as :mod:`tf_rgbd.metrics.verification` expects).
"""
from __future__ import annotations

from typing import Mapping

import keras
import tensorflow as tf

from tf_rgbd.losses.contrastive import pair_distance
from tf_rgbd.models.backbones import IRSEBackbone, check_input_size, get_backbone


@keras.saving.register_keras_serializable(package="tf_rgbd")
class SiameseDepthVerifier(keras.Model):
    """Shared-weight depth encoder over the two inputs of a pair (see the module docstring).

    Args:
      backbone: registered IR-SE backbone name (``tiny`` on CPU).
      image_size: S (divisible by 16).
      embedding_dim: D.
      dropout_rate: dropout of the encoder's embedding head.
    """

    def __init__(self, backbone: str = "tiny", image_size: int = 32, embedding_dim: int = 64,
                 dropout_rate: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        check_input_size(int(image_size))
        self.backbone_name = backbone
        self.image_size = int(image_size)
        self.embedding_dim = int(embedding_dim)
        self.dropout_rate = float(dropout_rate)
        self.encoder: IRSEBackbone = get_backbone(
            backbone, input_channels=1, embedding_dim=self.embedding_dim,
            dropout_rate=self.dropout_rate, name=f"{self.name}_encoder")

    def build(self, input_shape=None):
        """Creates the encoder's variables (a call on zeros; the shapes are fixed by
        ``image_size``, whatever ``input_shape`` Keras passes when a ``.keras`` file loads)."""
        self.encoder(keras.ops.zeros((2, self.image_size, self.image_size, 1)), training=False)
        self.built = True

    def embed(self, depth: tf.Tensor, training=None) -> tf.Tensor:
        """Depth float32 [B, S, S, 1] in [0, 1] -> unit embedding float32 [B, D]."""
        images = tf.cast(depth, self.compute_dtype) * 2.0 - 1.0   # background 0 -> -1
        embedding = tf.cast(self.encoder(images, training=training), tf.float32)
        return tf.math.l2_normalize(embedding, axis=-1, epsilon=1e-12)

    def call(self, inputs: Mapping[str, tf.Tensor], training=None) -> dict[str, tf.Tensor]:
        first = self.embed(inputs["depth_a"], training=training)
        second = self.embed(inputs["depth_b"], training=training)
        distance = pair_distance(first, second)
        return {"embedding_a": first, "embedding_b": second, "distance": distance,
                "score": -distance}

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone_name,
                "image_size": self.image_size, "embedding_dim": self.embedding_dim,
                "dropout_rate": self.dropout_rate}
