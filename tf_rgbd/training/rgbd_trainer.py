"""RGBDRecognizerTrainer: ``train_step`` / ``test_step`` of the segmentation-guided recognizer.

Gradient routing (paper eq. 14-15): L_total^RGB updates the RGB branch (its E_id and E_style),
L_total^D the depth branch, and the shared parts (mask branch E^M, SAM, C_id, C_style) receive
the sum of both gradients. Each total is differentiated only with respect to its own branch and
the shared variables, so the routing holds whatever stop-gradients the loss options set.

Distribution: losses are per-replica batch means divided by ``num_replicas_in_sync`` inside the
tape (``strategy.replica_scaled``); build the recognizer and the optimiser inside
``strategy.scope()`` before ``fit`` (see :func:`build_trainer`).

Usage::

    with strategy.scope():
        trainer, optimizer = build_trainer(model_config, loss_config, train_config,
                                           num_classes, steps_per_epoch)
    trainer.fit(dataset_of_make_dataset_dicts, ...)
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any, Mapping, Optional, Sequence

import keras
import tensorflow as tf

from tf_rgbd import config as config_lib
from tf_rgbd import io_utils
from tf_rgbd.config import recognizer as recognizer_config
from tf_rgbd.config.recognizer import (CONFIG_FILE, INFERENCE_FILE, RECOGNIZER_FILE,
                                       SUMMARY_FILE, RecognizerExperimentConfig,
                                       RecognizerLossConfig, RecognizerModelConfig,
                                       RecognizerTrainConfig)
from tf_rgbd.data import pipeline
from tf_rgbd.losses import recognition as recognition_losses
from tf_rgbd.models import heads
from tf_rgbd.models.recognizer import (STYLE_LABELS, SegmentationGuidedRecognizer,
                                       build_inference_model, dataset_modalities,
                                       recognizer_from_config, resolve_depth_key, select_inputs)
from tf_rgbd.training import callbacks as callbacks_lib
from tf_rgbd.training import checkpointing
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
                if term in ("sa", "cmfl") and not cross_modal:
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
        use_dis = "dis" in self.loss_config.losses
        per_branch = {}
        cos_logits = {}
        for branch in recognizer.branches:
            identity_heads = recognizer.identity_classifier(outputs[f"id_{branch}"], labels)
            cos_logits[branch] = identity_heads["cos_logits"]
            per_branch[branch] = recognition_losses.BranchOutputs(
                id_logits=identity_heads["logits"],
                style_logits=recognizer.style_classifier(outputs[f"style_{branch}"]),
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

    def routed_gradients(self, batch: Mapping) -> tuple[dict, list]:
        """Losses and (gradient, variable) pairs routed per eq. 14-15 (replica-scaled).

        Returns ``(results, grads_and_vars)``; variables that receive no gradient are left out.
        """
        recognizer = self.recognizer
        shared = recognizer.shared_variables()
        with tf.GradientTape(persistent=True) as tape:
            results = self.compute_branch_losses(batch, training=True)
            scaled = {branch: strategy_lib.replica_scaled(results[f"total_{branch}"])
                      for branch in recognizer.branches}
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


def learning_rate_schedule(train_config: RecognizerTrainConfig, steps_per_epoch: int
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


def build_optimizer(train_config: RecognizerTrainConfig, steps_per_epoch: int
                    ) -> keras.optimizers.Optimizer:
    """SGD with momentum, decoupled weight decay and the step learning-rate schedule."""
    return keras.optimizers.SGD(learning_rate=learning_rate_schedule(train_config, steps_per_epoch),
                                momentum=train_config.momentum,
                                weight_decay=train_config.weight_decay or None)


def build_trainer(model_config: RecognizerModelConfig, loss_config: RecognizerLossConfig,
                  train_config: RecognizerTrainConfig, num_classes: int, steps_per_epoch: int,
                  depth_key: str = "depth",
                  recognizer: Optional[SegmentationGuidedRecognizer] = None
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
    optimizer = build_optimizer(train_config, steps_per_epoch)
    trainer.compile(optimizer=optimizer)
    strategy_lib.build_optimizers([(optimizer, recognizer.trainable_variables)])
    return trainer, optimizer


def _save_keras_atomically(model: keras.Model, path: str) -> None:
    # Keras insists on the .keras suffix, so the temporary name keeps it.
    temp_path = os.path.join(os.path.dirname(path), f".tmp-{os.getpid()}-{os.path.basename(path)}")
    model.save(temp_path)
    os.replace(temp_path, path)


def _attention_grid_renderer(depth_key: str):
    """TensorBoard image grid: faces and the SAM maps upsampled to the face size."""

    def render(trainer: RGBDRecognizerTrainer, batch: Mapping) -> dict:
        recognizer = trainer.recognizer
        outputs = recognizer(select_inputs(batch, recognizer.modalities, depth_key),
                             training=False)
        size = batch["mask"].shape[1]
        images = {key: tf.image.resize(value, [size, size], method="nearest")
                  for key, value in outputs.items() if key.startswith("attention_")}
        if "rgb" in batch:
            images["rgb"] = (batch["rgb"] + 1.0) / 2.0
        return images

    return render


def run_training(experiment: RecognizerExperimentConfig, verbose: Any = "auto") -> dict:
    """Trains one recognizer run end to end (resumable) and returns its summary.

    Writes into ``experiment.train.model_dir``: ``config.json`` (refuses a directory holding a
    different config), ``checkpoints/`` (every ``checkpoint_every_steps`` and at the end; a
    re-run resumes from the newest), ``logs/`` (TensorBoard scalars + attention image grids),
    ``recognizer.keras`` (training model incl. classifiers), ``recognizer_inference.keras``
    (export graph) and ``training_summary.json``. A NaN/inf loss stops the run, keeps the last
    good checkpoint and raises ``callbacks.NonFiniteLossError``.
    """
    train = experiment.train
    if not train.data_dir or not train.model_dir:
        raise ValueError("run_training needs train.data_dir and train.model_dir")
    manifest = pipeline.read_manifest(train.data_dir)
    if train.split not in manifest["splits"]:
        raise KeyError(f"{train.data_dir}: no split {train.split!r}; splits are "
                       f"{sorted(manifest['splits'])}")
    modalities = experiment.model.modalities
    depth_key = (resolve_depth_key(manifest, train.split, train.depth_source)
                 if "depth" in modalities else "depth")
    example_count = manifest["splits"][train.split]["example_count"]
    steps_per_epoch = train.steps_per_epoch or max(1, example_count // train.batch_size)
    experiment = dataclasses.replace(experiment, num_classes=int(manifest["num_classes"]))

    os.makedirs(train.model_dir, exist_ok=True)
    config_path = os.path.join(train.model_dir, CONFIG_FILE)
    if os.path.exists(config_path):
        # Resuming: the model and the objective must match the checkpoints; the schedule may
        # change (e.g. more epochs).
        previous = config_lib.load_json(RecognizerExperimentConfig, config_path)
        for part in ("model", "loss", "num_classes"):
            before, now = getattr(previous, part), getattr(experiment, part)
            if before != now:
                raise ValueError(f"{config_path}: the run was started with {part} {before}, "
                                 f"now {now}; resume with the same flags or use a fresh "
                                 "--model_dir")
        if previous.train != experiment.train:
            logging.warning("resuming %s with a changed training config: %s", train.model_dir,
                            {key: value for key, value in config_lib.to_dict(train).items()
                             if config_lib.to_dict(previous.train)[key] != value})
    config_lib.save_json(experiment, config_path)

    keras.utils.set_random_seed(train.seed)
    strategy = strategy_lib.build_strategy(train.strategy)
    with strategy.scope():
        trainer, optimizer = build_trainer(experiment.model, experiment.loss, train,
                                           experiment.num_classes, steps_per_epoch, depth_key)
    recognizer = trainer.recognizer
    run_checkpoint = checkpointing.RunCheckpoint(train.model_dir, max_to_keep=train.max_to_keep,
                                                 recognizer=recognizer, optimizer=optimizer)
    start_step = run_checkpoint.restore_latest()
    total_steps = train.epochs * steps_per_epoch
    phases = callbacks_lib.resume_phases(start_step, total_steps, steps_per_epoch)
    logging.info("recognizer %s (%s, %s): %d classes, %d steps/epoch x %d epochs, global batch "
                 "%d on %d replica(s); resuming at step %d", experiment.variant,
                 ",".join(modalities), ",".join(experiment.loss.losses), experiment.num_classes,
                 steps_per_epoch, train.epochs, train.batch_size, strategy.num_replicas_in_sync,
                 start_step)

    needed = dataset_modalities(modalities, depth_key)

    def dataset_fn(skip_steps: int) -> tf.data.Dataset:
        dataset = pipeline.make_dataset(
            train.data_dir, split=train.split, batch_size=train.batch_size,
            image_size=experiment.model.image_size, modalities=needed, augment=train.augment,
            shuffle=True, repeat=True, seed=train.seed, deterministic=True, drop_remainder=True)
        # Under a strategy, Keras reduces the first batch before training, which fails on the
        # pipeline's bool features (strategy.make_distributable casts/drops them).
        return strategy_lib.make_distributable(dataset.skip(skip_steps))

    log_dir = os.path.join(train.model_dir, "logs")
    nan_guard = callbacks_lib.NanGuard(run_checkpoint)
    callbacks = [nan_guard,
                 callbacks_lib.CheckpointCallback(run_checkpoint, train.checkpoint_every_steps),
                 keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False)]
    if recognizer.uses_mask:
        preview = next(iter(pipeline.make_dataset(
            train.data_dir, split=train.split, batch_size=4,
            image_size=experiment.model.image_size, modalities=needed, deterministic=True)))
        callbacks.append(callbacks_lib.TensorBoardImageGrid(
            log_dir, preview, _attention_grid_renderer(depth_key), every_n_epochs=1))
    started = time.time()
    histories = callbacks_lib.fit_resumable(trainer, dataset_fn, phases, callbacks=callbacks,
                                            verbose=verbose)
    seconds = time.time() - started

    _save_keras_atomically(recognizer, os.path.join(train.model_dir, RECOGNIZER_FILE))
    _save_keras_atomically(build_inference_model(recognizer, experiment.model.image_size),
                           os.path.join(train.model_dir, INFERENCE_FILE))
    final_logs = {}
    for history in histories:
        for key, values in history.history.items():
            if values:
                final_logs[key] = float(values[-1])
    summary = {"variant": experiment.variant, "start_step": start_step,
               "total_steps": total_steps, "steps_per_epoch": steps_per_epoch,
               "seconds": round(seconds, 1), "depth_input_key": depth_key,
               "final_epoch_metrics": final_logs}
    io_utils.atomic_write_json(os.path.join(train.model_dir, SUMMARY_FILE), summary)
    accuracy = ", ".join(f"{key} {value:.3f}" for key, value in final_logs.items()
                         if key.startswith("acc_"))
    logging.info("trained %s: steps %d -> %d in %.0f s, loss %.4f, %s -> %s", experiment.variant,
                 start_step, total_steps, seconds, final_logs.get("loss", float("nan")),
                 accuracy, train.model_dir)
    return summary


def train_and_evaluate(experiments: Sequence[RecognizerExperimentConfig], evaluate: bool,
                       eval_data_dir: Optional[str] = None, protocol: str = "lock3dface_style",
                       eval_depth_sources: Sequence[str] = (), flip_test: bool = True,
                       summary_dir: Optional[str] = None, verbose="auto") -> dict:
    """Trains each experiment, evaluates it for every depth source, prints the combined tables.

    The library side of ``training/train_recognizer.py --variants=... --evaluate`` (importable
    without absl flags, e.g. by the demo).

    Returns ``{"runs": {variant: {"training": summary, "evaluation": {source: metrics}}},
    "table": text}``; with ``summary_dir`` also writes ``variants_summary.json`` there.
    """
    from tf_rgbd import eval as eval_lib  # evaluation needs the whole eval package
    from tf_rgbd.eval import identification

    runs, table_rows, subsets = {}, {}, None
    for experiment in experiments:
        training_summary = run_training(experiment, verbose=verbose)
        run = {"training": training_summary, "evaluation": {}}
        if evaluate:
            sources = tuple(eval_depth_sources) or (experiment.train.depth_source,)
            if "depth" not in experiment.model.modalities:
                sources = sources[:1]  # depth source is irrelevant without a depth branch
            for source in sources:
                metrics = eval_lib.evaluate_recognizer(recognizer_config.RecognizerEvalConfig(
                    data_dir=eval_data_dir or experiment.train.data_dir,
                    model_dir=experiment.train.model_dir, protocol=protocol,
                    depth_source=source, flip_test=flip_test))
                run["evaluation"][source] = {key: value for key, value in metrics.items()
                                             if key != "tables"}
                print(metrics["tables"]["identification"])
                print(metrics["tables"]["verification"])
                subsets = subsets or list(metrics["num_probes"])
                for method, values in metrics["identification"].items():
                    label = eval_lib.METHOD_NAMES.get(method, method)
                    with_depth = "depth" in experiment.model.modalities
                    source_note = f", {source} depth" if with_depth else ""
                    table_rows[f"{experiment.variant}: {label}{source_note}"] = {
                        **{subset: entry["rank1"] for subset, entry in values["subsets"].items()},
                        "average": values["average_rank1"]}
        runs[experiment.variant] = run
    table = (identification.format_identification_table(table_rows, subsets, "rank-1 %")
             if table_rows else "")
    if table:
        print(table)
    result = {"runs": runs, "table": table}
    if summary_dir:
        io_utils.atomic_write_json(os.path.join(summary_dir, "variants_summary.json"), result)
    return result
