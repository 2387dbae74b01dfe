"""SiameseVerifierTrainer: ``train_step`` / ``test_step`` of the Siamese depth verifier with the
contrastive loss (:mod:`tf_rgbd.losses.contrastive`).

Data: pair batches of :func:`tf_rgbd.data.pairs.pair_dataset` (``depth_a``, ``depth_b``,
``same``). Logged metrics (epoch means): ``loss`` (contrastive), ``pair_accuracy`` (a pair is
called genuine when its distance is below margin / 2), ``genuine_distance`` and
``impostor_distance`` (mean distances of each kind).

Distribution: the loss is divided by ``num_replicas_in_sync`` inside the tape
(``strategy.replica_scaled``); build with :meth:`SiameseVerifierTrainer.build_for_training`
inside ``strategy.scope()`` before ``fit``.
"""
from __future__ import annotations

from typing import Mapping

import keras
import tensorflow as tf

from tf_rgbd.losses.contrastive import contrastive_loss
from tf_rgbd.models.siamese import SiameseDepthVerifier
from tf_rgbd.training import strategy as strategy_lib

METRIC_NAMES = ("loss", "pair_accuracy", "genuine_distance", "impostor_distance")


class SiameseVerifierTrainer(keras.Model):
    """Wraps a :class:`SiameseDepthVerifier` with the contrastive training step.

    Args:
      verifier: the model being trained.
      margin: the contrastive margin m (distances of unit embeddings lie in [0, 2]).
    """

    def __init__(self, verifier: SiameseDepthVerifier, margin: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.verifier = verifier
        self.margin = float(margin)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in METRIC_NAMES}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def build(self, input_shape=None):
        self.verifier.build()
        self.built = True

    def call(self, inputs, training=None):
        return self.verifier(inputs, training=training)

    def build_for_training(self) -> None:
        """Creates the verifier's and the optimiser's variables (inside ``strategy.scope()``,
        after ``compile``)."""
        size = self.verifier.image_size
        zeros = tf.zeros([1, size, size, 1])
        self.verifier({"depth_a": zeros, "depth_b": zeros}, training=False)
        self.built = True
        strategy_lib.build_optimizers([(self.optimizer, self.verifier.trainable_variables)])

    def pair_losses(self, batch: Mapping[str, tf.Tensor], training: bool) -> dict[str, tf.Tensor]:
        outputs = self.verifier({"depth_a": batch["depth_a"], "depth_b": batch["depth_b"]},
                                training=training)
        distance = outputs["distance"]
        same = tf.cast(batch["same"], tf.float32)
        loss = contrastive_loss(distance, same, self.margin)
        return {"loss": loss, "distance": distance, "same": same}

    def _update_trackers(self, values: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        distance, same = values["distance"], values["same"]
        called_same = tf.cast(distance < 0.5 * self.margin, tf.float32)
        self.trackers["loss"].update_state(values["loss"])
        self.trackers["pair_accuracy"].update_state(tf.cast(tf.equal(called_same, same),
                                                            tf.float32))
        self.trackers["genuine_distance"].update_state(distance, sample_weight=same)
        self.trackers["impostor_distance"].update_state(distance, sample_weight=1.0 - same)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        with tf.GradientTape() as tape:
            values = self.pair_losses(data, training=True)
            # Scaled INSIDE the tape: Keras sums gradients over replicas (PITFALLS.md #1).
            objective = self.optimizer.scale_loss(strategy_lib.replica_scaled(values["loss"]))
        variables = self.verifier.trainable_variables
        gradients = tape.gradient(objective, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self._update_trackers(values)

    def test_step(self, data):
        return self._update_trackers(self.pair_losses(data, training=False))
