"""RGBDRecognizerTrainer: ``train_step`` / ``test_step`` of the segmentation-guided recognizer.

Gradient routing (paper eq. 14-15): L_total^RGB updates the RGB branch (its E_id and E_style),
L_total^D the depth branch, and the shared parts (mask branch E^M, SAM, C_id, C_style) receive
the sum of both gradients. Each total is differentiated only with respect to its own branch and
the shared variables, so the routing holds whatever stop-gradients the loss options set.

Distribution: losses are per-replica batch means divided by ``num_replicas_in_sync`` inside the
tape (``strategy.replica_scaled``); build the recognizer and the optimiser inside
``strategy.scope()`` before ``fit`` (see :func:`build_trainer`).

Usage (the training run is :func:`tf_rgbd.training.recognizer_training.run_training`)::

    with strategy.scope():
        trainer, optimizer = build_trainer(model_config, loss_config, optimizer_config,
                                           num_classes, steps_per_epoch)
    trainer.fit(dataset_of_make_dataset_dicts, ...)
"""
from __future__ import annotations

from typing import Mapping, Optional

import keras
import tensorflow as tf

from tf_rgbd.config.recognizer import RecognizerLossConfig, RecognizerModelConfig, SGDConfig
from tf_rgbd.data.modalities import select_inputs
from tf_rgbd.losses import recognition as recognition_losses
from tf_rgbd.models import blocks, heads
from tf_rgbd.models.recognizer import (STYLE_LABELS, SegmentationGuidedRecognizer,
                                       recognizer_from_config)
from tf_rgbd.training import optimizers
from tf_rgbd.training import strategy as strategy_lib


class RGBDRecognizerTrainer(keras.Model):
    """Wraps a :class:`SegmentationGuidedRecognizer` with the four-loss training step.

    Args:
      recognizer: the model being trained (built, see ``build_for_size``).
      loss_config: switches and weights of the loss terms.
      depth_key: ``make_dataset`` key that feeds the depth branch (``depth`` or ``gt_depth``).

    Data: dicts from ``tf_rgbd.data.pipeline.make_dataset`` (``rgb``, ``depth``/``gt_depth``,
    ``mask``, ``label``). Logged metrics (epoch means): ``loss`` (sum of the branch totals),
    ``loss_<term>_<branch>`` for every active term, ``rho_<branch>`` (eq. 11), ``acc_<branch>``
    and ``acc_fused`` (batch identification accuracy of C_id's margin-free logits).
    """

    def __init__(self, recognizer: SegmentationGuidedRecognizer,
                 loss_config: RecognizerLossConfig = RecognizerLossConfig(),
                 depth_key: str = "depth", **kwargs):
        super().__init__(**kwargs)
        self.recognizer = recognizer
        self.loss_config = loss_config
        self.depth_key = depth_key
        branches = recognizer.branches
        cross_modal = len(branches) == 2
        names = ["loss"]
        for branch in branches:
            names.append(f"loss_total_{branch}")
            names.append(f"loss_id_{branch}")
            for term in loss_config.losses:
                if term in ("sa", "cmfl", "dis") and not cross_modal:
                    continue
                names.append(f"loss_{term}_{branch}")
            if "sa" in loss_config.losses and cross_modal:
                names.append(f"rho_{branch}")
            names.append(f"acc_{branch}")
        if cross_modal:
            names.append("acc_fused")
        self.tracker_names = tuple(names)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def build(self, input_shape):
        if not self.recognizer.built:
            self.recognizer.build(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        return self.recognizer(inputs, training=training)

    def compute_branch_losses(self, batch: Mapping, training: bool) -> dict:
        """Forward pass + every loss term and accuracy for one batch (unscaled batch means)."""
        recognizer = self.recognizer
        labels = tf.cast(batch["label"], tf.int32)
        inputs = select_inputs(batch, recognizer.modalities, self.depth_key)
        outputs = recognizer(inputs, training=training)
        # L_dis needs two styles: one image branch has none to disentangle (see losses).
        use_dis = "dis" in self.loss_config.losses and len(recognizer.branches) == 2
        per_branch = {}
        cos_logits = {}
        for branch in recognizer.branches:
            identity_heads = recognizer.identity_classifier(outputs[f"id_{branch}"], labels)
            cos_logits[branch] = identity_heads["cos_logits"]
            per_branch[branch] = recognition_losses.BranchOutputs(
                id_logits=identity_heads["logits"],
                style_logits=(recognizer.style_classifier(outputs[f"style_{branch}"])
                              if len(recognizer.branches) == 2 else None),
                identity_features=outputs[f"id_{branch}"],
                # Eq. 12-13: margin-free logits, classifier weights held fixed.
                dis_identity_logits=(recognizer.identity_classifier(
                    outputs[f"style_{branch}"], freeze_weights=True)["cos_logits"]
                    if use_dis else None),
                dis_style_logits=(recognizer.style_classifier(
                    outputs[f"id_{branch}"], freeze_weights=True) if use_dis else None))
        results = recognition_losses.branch_losses(per_branch, labels, STYLE_LABELS,
                                                   self.loss_config)
        for branch, logits in cos_logits.items():
            results[f"acc_{branch}"] = heads.identity_accuracy(logits, labels)
        if len(cos_logits) == 2:
            results["acc_fused"] = heads.identity_accuracy(sum(cos_logits.values()), labels)
        return results

    def branches_are_separable(self) -> bool:
        """True when no branch's total has a gradient path into the OTHER branch's variables
        (every cross-modal term reads its partner through a stop-gradient: ``cmfl`` with
        ``cmfl_stop_gradient``, ``sa`` with ``sa_stop_gradient_target``; rho is always
        constant). Then eq. 14-15's routing equals the plain gradient of the summed totals."""
        config = self.loss_config
        if len(self.recognizer.branches) < 2:
            return True
        return ((("cmfl" not in config.losses) or config.cmfl_stop_gradient)
                and (("sa" not in config.losses) or config.sa_stop_gradient_target))

    def routed_gradients(self, batch: Mapping) -> tuple[dict, list]:
        """Losses and (gradient, variable) pairs routed per eq. 14-15 (replica-scaled, and
        loss-scaled under a LossScaleOptimizer).

        When :meth:`branches_are_separable` (the default loss options) the routing is one
        backward pass over the sum of the totals (each branch's variables only reach their own
        total, the shared ones get the sum); otherwise each total is differentiated with
        respect to its own branch and the shared variables from a persistent tape, which
        back-propagates the shared mask branch and heads once per image branch.

        Returns ``(results, grads_and_vars)``; variables that receive no gradient are left out.
        """
        recognizer = self.recognizer
        shared = recognizer.shared_variables()
        separable = self.branches_are_separable()
        with tf.GradientTape(persistent=not separable) as tape:
            results = self.compute_branch_losses(batch, training=True)
            # Under mixed_float16 the optimiser is a LossScaleOptimizer: the objective is
            # multiplied by its loss scale here and the gradients unscaled in apply_gradients.
            scaled = {branch: self.optimizer.scale_loss(
                          strategy_lib.replica_scaled(results[f"total_{branch}"]))
                      for branch in recognizer.branches}
            objective = tf.add_n(list(scaled.values())) if separable else None
        if separable:
            variables = [variable for branch in recognizer.branches
                         for variable in recognizer.branch_variables(branch)] + shared
            gradients = tape.gradient(objective, variables)
            return results, [(gradient, variable) for gradient, variable
                             in zip(gradients, variables) if gradient is not None]
        shared_gradients = [None] * len(shared)
        grads_and_vars = []
        for branch in recognizer.branches:
            own = recognizer.branch_variables(branch)
            gradients = tape.gradient(scaled[branch], own + shared)
            grads_and_vars.extend(zip(gradients[:len(own)], own))
            for index, gradient in enumerate(gradients[len(own):]):
                if gradient is None:
                    continue
                previous = shared_gradients[index]
                shared_gradients[index] = gradient if previous is None else previous + gradient
        del tape
        grads_and_vars.extend(zip(shared_gradients, shared))
        return results, [(gradient, variable) for gradient, variable in grads_and_vars
                         if gradient is not None]

    def _update_trackers(self, results: Mapping) -> dict:
        total = tf.add_n([results[f"total_{branch}"] for branch in self.recognizer.branches])
        values = {"loss": total}
        for key, value in results.items():
            name = key if key.startswith(("acc_", "rho_")) else f"loss_{key}"
            values[name] = value
        for name, tracker in self.trackers.items():
            tracker.update_state(values[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        results, grads_and_vars = self.routed_gradients(data)
        self.optimizer.apply_gradients(grads_and_vars)
        return self._update_trackers(results)

    def test_step(self, data):
        return self._update_trackers(self.compute_branch_losses(data, training=False))


def learning_rate_schedule(train_config: SGDConfig, steps_per_epoch: int
                           ) -> keras.optimizers.schedules.LearningRateSchedule:
    """lr = learning_rate * lr_decay_factor ** (number of lr_decay_epochs passed), per step."""
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    boundaries = [int(epoch * steps_per_epoch) for epoch in train_config.lr_decay_epochs]
    values = [train_config.learning_rate * train_config.lr_decay_factor ** index
              for index in range(len(boundaries) + 1)]
    if not boundaries:
        return keras.optimizers.schedules.PiecewiseConstantDecay([10**12], values * 2)
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def build_optimizer(optimizer_config: SGDConfig, steps_per_epoch: int,
                    loss_scaling: bool = False) -> keras.optimizers.Optimizer:
    """SGD with momentum, weight decay (coupled L2 by default, see
    :mod:`tf_rgbd.training.optimizers`) and the step learning-rate schedule (in a
    LossScaleOptimizer under mixed_float16)."""
    optimizer = optimizers.build_sgd(optimizer_config,
                                     learning_rate_schedule(optimizer_config, steps_per_epoch))
    if loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def build_trainer(model_config: RecognizerModelConfig, loss_config: RecognizerLossConfig,
                  optimizer_config: SGDConfig, num_classes: int, steps_per_epoch: int,
                  depth_key: str = "depth",
                  recognizer: Optional[SegmentationGuidedRecognizer] = None,
                  jit_compile: bool = False, loss_scaling: bool = False,
                  run_eagerly: bool = False
                  ) -> tuple[RGBDRecognizerTrainer, keras.optimizers.Optimizer]:
    """Builds recognizer, trainer and optimiser, all variables created (call inside the scope).

    Pitfalls handled (PITFALLS.md #1): the model is built before ``fit``, ``compile`` gets an
    explicit optimiser (no stray RMSprop), and the optimiser's slots are built up front.
    """
    if recognizer is None:
        recognizer = recognizer_from_config(model_config, num_classes)
    trainer = RGBDRecognizerTrainer(recognizer, loss_config, depth_key=depth_key,
                                    name="rgbd_recognizer_trainer")
    trainer.built = True
    optimizer = build_optimizer(optimizer_config, steps_per_epoch, loss_scaling)
    trainer.compile(optimizer=optimizer, jit_compile=jit_compile, run_eagerly=run_eagerly)
    blocks.set_fused_batch_norm_training(trainer, not jit_compile)
    strategy_lib.build_optimizers([(optimizer, recognizer.trainable_variables)])
    return trainer, optimizer
