"""DMFRTrainer: ``train_step`` of demodalizing face recognition (DMFR) and its baselines.

Every batch (``tf_rgbd.training.dmfr_training.paired_domain_dataset``) holds, row by row, one
real training image and its generated counterparts from the same source image: ``real``
[B, S, S, 3], ``label`` [B], ``pose_same`` (the pose domain's render at the source's own pose),
``pose_novel`` (a render at a new pose), ``quality`` (the degraded copy). What a step uses
(B = batch size, rows in brackets)::

    phase       inputs                                   objective
    pretrain    real                                     softmax CE (LinearClassifier)
    real        real                                     CosFace
    mixed       real[:B/2] + pose_novel[B/2:3B/4]        CosFace on real + generated, 1:1
                + quality[3B/4:]
    meta        meta-train: real[:B/2] + G_other[B/2:]   lambda L_tr(theta, w)
                meta-test:  G_held[B/2:]                 + (1 - lambda) L_te(theta, w')
    disentangle the mixed batch                          CosFace(f_id) + lambda L_recons
    filter      real[:B/2]; F(H(G)) of the mixed batch's CosFace(H(real) ++ F(H(gen)))
                generated half; pairs F(H(pose_same[:B/4]))  + lambda L_flt(pairs)
                -> H(real[:B/4]), F(H(quality[B/4:B/2]))
                -> H(real[B/4:B/2])

In the meta phase the held-out (meta-test) generative domain is drawn per step (pose or
quality, a stateless draw from the run seed and the step), the other one joins the real
domain for meta-train (N = 3 domains, N - 1 = 2 for meta-train, always including real).

Distribution: losses are per-replica batch means divided by ``num_replicas_in_sync`` inside
the tape (``strategy.replica_scaled``); build inside ``strategy.scope()`` (:func:`build_trainer`).
"""
from __future__ import annotations

from typing import Mapping

import keras
import tensorflow as tf

from tf_rgbd.config.recognizer import SGDConfig
from tf_rgbd.losses import dmfr as dmfr_losses
from tf_rgbd.models import blocks, heads
from tf_rgbd.models.dmfr import DMFRNetwork
from tf_rgbd.training import strategy as strategy_lib
from tf_rgbd.training.rgbd_trainer import build_optimizer

PHASES = ("pretrain", "real", "mixed", "meta", "disentangle", "filter")
METRICS = {
    "pretrain": ("loss", "acc"),
    "real": ("loss", "acc"),
    "mixed": ("loss", "acc"),
    "meta": ("loss", "loss_train", "loss_test", "acc"),
    "disentangle": ("loss", "loss_cls", "loss_recons", "acc"),
    "filter": ("loss", "loss_cls", "loss_flt", "acc"),
}


def phase_of(dmfr: str, mix_generated: bool) -> str:
    """The trainer phase of a run (``dmfr`` mode, or the baseline)."""
    if dmfr == "none":
        return "mixed" if mix_generated else "real"
    return dmfr


class DMFRTrainer(keras.Model):
    """Wraps a :class:`DMFRNetwork` with the phase's training step.

    Args:
      network: the model being trained (built).
      phase: one of ``PHASES``.
      lambda_meta, meta_alpha, lambda_disen, lambda_flt: loss weights (DMFRLossConfig).
      filter_stop_gradient_target, recons_stop_gradient_target: constant targets.
      seed: seeds the per-step draw of the meta-test domain.
    """

    def __init__(self, network: DMFRNetwork, phase: str, lambda_meta: float = 0.5,
                 meta_alpha: float = 0.1, lambda_disen: float = 1.0, lambda_flt: float = 1.0,
                 filter_stop_gradient_target: bool = True,
                 recons_stop_gradient_target: bool = True, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        needed = {"disentangle": network.disentangler, "filter": network.feature_filter}
        if phase in needed and needed[phase] is None:
            raise ValueError(f"phase {phase!r} needs a DMFRNetwork built with mode={phase!r}")
        self.network = network
        self.phase = phase
        self.lambda_meta = float(lambda_meta)
        self.meta_alpha = float(meta_alpha)
        self.lambda_disen = float(lambda_disen)
        self.lambda_flt = float(lambda_flt)
        self.filter_stop_gradient_target = bool(filter_stop_gradient_target)
        self.recons_stop_gradient_target = bool(recons_stop_gradient_target)
        self.seed = int(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in METRICS[phase]}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def build(self, input_shape):
        self.built = True

    def call(self, inputs, training=None):
        return self.network(inputs, training=training)

    # --- pieces --------------------------------------------------------------------------
    def _embed(self, images, training: bool):
        return self.network(images, training=training)["embedding"]

    def _cosface(self, features, labels):
        return dmfr_losses.margin_softmax_loss(features, self.network.cosface.class_weights,
                                               labels, self.network.cosface)

    def _accuracy(self, features, labels):
        return heads.identity_accuracy(self.network.cosface(features)["cos_logits"], labels)

    @staticmethod
    def _halves(batch: Mapping):
        """(real rows [:B/2], generated rows: pose_novel[B/2:3B/4] ++ quality[3B/4:]) and the
        labels of both."""
        size = tf.shape(batch["real"])[0]
        half, quarter = size // 2, size // 4
        generated = tf.concat([batch["pose_novel"][half:half + quarter],
                               batch["quality"][half + quarter:]], axis=0)
        labels = tf.cast(batch["label"], tf.int32)
        return batch["real"][:half], labels[:half], generated, labels[half:]

    def meta_test_is_pose(self) -> tf.Tensor:
        """bool scalar: the held-out generative domain of this step is ``pose`` (else
        ``quality``), drawn from the seed and the optimiser's step."""
        step = tf.cast(self.optimizer.iterations, tf.int64)
        draw = tf.random.stateless_uniform([], seed=tf.stack([tf.constant(self.seed, tf.int64),
                                                              step]))
        return draw < 0.5

    def compute_losses(self, batch: Mapping, training: bool = True) -> dict:
        """The phase's objective (``loss``) and its terms for one batch (batch means)."""
        labels = tf.cast(batch["label"], tf.int32)
        network = self.network
        if self.phase == "pretrain":
            features = self._embed(batch["real"], training)
            logits = network.softmax(features)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=labels, logits=logits))
            return {"loss": loss, "acc": heads.identity_accuracy(logits, labels)}
        if self.phase == "real":
            features = self._embed(batch["real"], training)
            return {"loss": self._cosface(features, labels),
                    "acc": self._accuracy(features, labels)}
        real, real_labels, generated, generated_labels = self._halves(batch)
        all_labels = tf.concat([real_labels, generated_labels], axis=0)
        if self.phase == "mixed":
            features = self._embed(tf.concat([real, generated], axis=0), training)
            return {"loss": self._cosface(features, all_labels),
                    "acc": self._accuracy(features, all_labels)}
        if self.phase == "disentangle":
            outputs = network(tf.concat([real, generated], axis=0), training=training)
            target = outputs["feature_map"]
            if self.recons_stop_gradient_target:
                target = tf.stop_gradient(target)
            loss_cls = self._cosface(outputs["embedding"], all_labels)
            loss_recons = dmfr_losses.reconstruction_loss(outputs["reconstruction"], target)
            return {"loss": loss_cls + self.lambda_disen * loss_recons, "loss_cls": loss_cls,
                    "loss_recons": loss_recons,
                    "acc": self._accuracy(outputs["embedding"], all_labels)}
        if self.phase == "filter":
            size = tf.shape(batch["real"])[0]
            quarter = size // 4
            paired = tf.concat([batch["pose_same"][:quarter],
                                batch["quality"][quarter:2 * quarter]], axis=0)
            features = self._embed(tf.concat([real, generated, paired], axis=0), training)
            real_count = tf.shape(real)[0]
            generated_count = tf.shape(generated)[0]
            real_features = features[:real_count]
            filtered = network.filter_features(features[real_count:])
            filtered_generated = filtered[:generated_count]
            filtered_paired = filtered[generated_count:]
            target = real_features[:tf.shape(paired)[0]]
            if self.filter_stop_gradient_target:
                target = tf.stop_gradient(target)
            classified = tf.concat([real_features, filtered_generated], axis=0)
            loss_cls = self._cosface(classified, all_labels)
            loss_flt = dmfr_losses.filter_loss(filtered_paired, target)
            return {"loss": loss_cls + self.lambda_flt * loss_flt, "loss_cls": loss_cls,
                    "loss_flt": loss_flt, "acc": self._accuracy(classified, all_labels)}
        # meta
        size = tf.shape(batch["real"])[0]
        half = size // 2
        held_is_pose = self.meta_test_is_pose()
        held = tf.where(held_is_pose, batch["pose_novel"], batch["quality"])
        other = tf.where(held_is_pose, batch["quality"], batch["pose_novel"])
        train_images = tf.concat([batch["real"][:half], other[half:]], axis=0)
        train_features = self._embed(train_images, training)
        result = dmfr_losses.meta_objective(
            train_features, labels, lambda: self._embed(held[half:], training), labels[half:],
            network.cosface.class_weights.value, network.cosface, self.meta_alpha,
            self.lambda_meta)
        return {"loss": result["objective"], "loss_train": result["loss_train"],
                "loss_test": result["loss_test"],
                "acc": self._accuracy(train_features, labels)}

    def _update(self, results: Mapping) -> dict:
        for name, tracker in self.trackers.items():
            tracker.update_state(results[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        variables = self.trainable_variables_of_phase()
        with tf.GradientTape() as tape:
            results = self.compute_losses(data, training=True)
            objective = self.optimizer.scale_loss(strategy_lib.replica_scaled(results["loss"]))
        gradients = tape.gradient(objective, variables)
        self.optimizer.apply_gradients([(gradient, variable) for gradient, variable
                                        in zip(gradients, variables) if gradient is not None])
        return self._update(results)

    def test_step(self, data):
        return self._update(self.compute_losses(data, training=False))

    def trainable_variables_of_phase(self) -> list:
        """The variables the phase trains: the softmax classifier only in pre-training, the
        CosFace prototypes otherwise (plus the encoder and the mode's module)."""
        network = self.network
        excluded = {id(variable) for variable in (
            network.cosface.trainable_variables if self.phase == "pretrain"
            else network.softmax.trainable_variables)}
        return [variable for variable in network.trainable_variables
                if id(variable) not in excluded]


def build_trainer(network: DMFRNetwork, phase: str, loss_config, optimizer_config: SGDConfig,
                  steps_per_epoch: int, seed: int = 0, jit_compile: bool = False,
                  loss_scaling: bool = False, run_eagerly: bool = False
                  ) -> tuple[DMFRTrainer, keras.optimizers.Optimizer]:
    """Trainer + SGD optimiser with every variable created (call inside the strategy scope);
    ``run_eagerly`` skips tracing the step (tiny smoke runs)."""
    trainer = DMFRTrainer(network, phase, loss_config.lambda_meta, loss_config.meta_alpha,
                          loss_config.lambda_disen, loss_config.lambda_flt,
                          loss_config.filter_stop_gradient_target,
                          loss_config.recons_stop_gradient_target, seed=seed,
                          name=f"dmfr_trainer_{phase}")
    trainer.built = True
    optimizer = build_optimizer(optimizer_config, steps_per_epoch, loss_scaling)
    trainer.compile(optimizer=optimizer, jit_compile=jit_compile, run_eagerly=run_eagerly)
    blocks.set_fused_batch_norm_training(trainer, not jit_compile)
    strategy_lib.build_optimizers([(optimizer, trainer.trainable_variables_of_phase())])
    return trainer, optimizer
