"""The one training loop every trainer runs through: checks, schedule, config, precision,
strategy, checkpoints, NaN guard, TensorBoard, resumable ``fit``, atomic outputs, summary.

A trainer family describes only what differs (a :class:`TrainingTask`: how to build the
``keras.Model`` with its custom ``train_step``, its datasets, its outputs); :func:`run` does the
rest, the same way for the DepthNet GAN, the cGAN baseline, the recognizer and the related
methods::

    result = runner.run(config, DepthTrainingTask(config))

Run directory (``config.run.model_dir``)::

    config.json            the whole config; a re-run with changed model/loss parts is refused
    checkpoints/ckpt-N     models + optimisers + global step (exact resume, newest first)
    logs/                  TensorBoard scalars (+ image grids)
    nan_report.json        only when a loss became NaN/inf (the run stops, exit status 1)
    training_summary.json  steps, time, final metrics, output files
    <outputs>              e.g. generator.keras, recognizer.keras (written atomically)

Resuming: a re-run of the same command restores the newest checkpoint and continues at its
step; the input pipeline skips the consumed records before decoding them
(``make_dataset(skip_examples=...)``), with the same augmentation seeds, so the resumed run sees
exactly the batches the uninterrupted one would have.
"""
from __future__ import annotations

import abc
import dataclasses
import glob
import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from tf_rgbd import config as config_lib
from tf_rgbd import io_utils
from tf_rgbd.config.run import RunConfig
from tf_rgbd.data import pipeline, verify
from tf_rgbd.models import blocks
from tf_rgbd.training import callbacks as callbacks_lib
from tf_rgbd.training import strategy as strategy_lib
from tf_rgbd.training.checkpointing import RunCheckpoint

CONFIG_FILE = "config.json"
SUMMARY_FILE = "training_summary.json"
LOG_SUBDIR = "logs"
# Every training process's scratch directory (in the system temporary directory).
SCRATCH_PREFIX = "tf_rgbd-worker"


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What a task needs to know about the run it is part of.

    Attributes:
      config: the experiment config (after :meth:`TrainingTask.prepare_config`).
      run: ``config.run``.
      strategy: the distribution strategy (build models inside ``strategy.scope()``).
      manifest: the training dataset's manifest.
      steps_per_epoch: optimiser steps per epoch.
      total_steps: optimiser steps of the whole run.
      loss_scaling: the policy is mixed_float16 (optimisers need a LossScaleOptimizer).
      excluded_shards: shard names left out after failing verification (pass them to
        ``make_dataset(exclude_shards=...)``).
    """

    config: Any
    run: RunConfig
    strategy: tf.distribute.Strategy
    manifest: Mapping[str, Any]
    steps_per_epoch: int
    total_steps: int
    loss_scaling: bool
    excluded_shards: tuple[str, ...] = ()

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync


@dataclasses.dataclass
class BuiltTrainer:
    """A compiled trainer with every variable created, and what its checkpoints hold."""

    trainer: keras.Model
    trackables: dict[str, Any]


class TrainingTask(abc.ABC):
    """What one trainer family defines; :func:`run` calls these in order.

    Attributes:
      name: short name for logs and the summary.
      resume_invariant: config parts (attribute names) that must equal those saved in the run
        directory to resume (the model and the objective); other parts may change.
    """

    name = "training"
    resume_invariant: tuple[str, ...] = ()

    def prepare_config(self, config: Any, manifest: Mapping[str, Any]) -> Any:
        """The config completed from the dataset (e.g. the number of classes); default as is."""
        del manifest
        return config

    @abc.abstractmethod
    def build(self, context: RunContext) -> BuiltTrainer:
        """Builds and compiles the trainer and its optimisers (called inside the scope)."""

    @abc.abstractmethod
    def train_dataset(self, context: RunContext, skip_examples: int) -> tf.data.Dataset:
        """The infinite, deterministic training dataset positioned after ``skip_examples``."""

    def validation_dataset(self, context: RunContext) -> Optional[Callable[[], tf.data.Dataset]]:
        """A factory of the validation dataset, or None."""
        del context
        return None

    def callbacks(self, context: RunContext, built: BuiltTrainer,
                  log_dir: str) -> list[keras.callbacks.Callback]:
        """Extra callbacks (e.g. TensorBoard image grids)."""
        del context, built, log_dir
        return []

    def initialize_from(self, built: BuiltTrainer, path: str) -> str:
        """Loads weights to fine-tune from (``run.init_from``); returns what was loaded."""
        raise ValueError(f"{self.name}: --init_from is not supported by this trainer ({path})")

    @abc.abstractmethod
    def save_outputs(self, built: BuiltTrainer, context: RunContext) -> dict[str, str]:
        """Writes the trained models (atomically); returns ``{name: path}``."""

    def summary_extra(self, context: RunContext) -> dict[str, Any]:
        """Task facts added to ``training_summary.json``."""
        del context
        return {}


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a run produced (also written as ``training_summary.json``)."""

    model_dir: str
    config: Any
    start_step: int
    final_step: int
    steps_per_epoch: int
    seconds: float
    history: dict
    outputs: dict
    summary: dict

    @property
    def steps_per_second(self) -> float:
        return (self.final_step - self.start_step) / max(self.seconds, 1e-9)


def schedule(run: RunConfig, example_count: int) -> tuple[int, int]:
    """``(steps_per_epoch, total_steps)`` of a run over a split of ``example_count`` examples."""
    steps_per_epoch = run.steps_per_epoch or max(1, example_count // run.batch_size)
    total_steps = run.steps or run.epochs * steps_per_epoch
    return min(steps_per_epoch, total_steps), total_steps


def set_precision_policy(policy: str) -> bool:
    """Sets the Keras dtype policy; returns True when float16 loss scaling is needed."""
    keras.mixed_precision.set_global_policy(policy)
    return policy == "mixed_float16"


def check_resumable(config_path: str, config: Any, invariant: Sequence[str]) -> None:
    """Refuses to resume a run directory whose saved config differs in an invariant part."""
    if not os.path.exists(config_path):
        return
    try:
        previous = config_lib.load_json(type(config), config_path)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{config_path} is not a {type(config).__name__} of this version "
                         f"({error}); use a fresh --model_dir") from error
    for part in invariant:
        before, now = getattr(previous, part), getattr(config, part)
        if before != now:
            raise ValueError(f"{config_path}: the run was started with {part} {before}, now "
                             f"{now}; resume with the same flags (or --config_file={config_path})"
                             " or use a fresh --model_dir")
    changed = {key: value for key, value in config_lib.to_dict(config).items()
               if config_lib.to_dict(previous).get(key) != value}
    if changed:
        logging.warning("resuming %s with a changed config: %s", os.path.dirname(config_path),
                        changed)


def merge_histories(histories: Sequence[keras.callbacks.History]) -> dict[str, list[float]]:
    merged: dict[str, list] = {}
    for history in histories:
        for key, values in history.history.items():
            merged.setdefault(key, []).extend(float(value) for value in values)
    return merged


def _verified_exclusions(run_config: RunConfig, manifest: Mapping[str, Any]) -> list[str]:
    """Shards to leave out (``on_corrupt_shard=skip``) after verifying the run's splits;
    raises naming the bad shards with ``on_corrupt_shard=fail``."""
    if not (run_config.verify_shards or run_config.on_corrupt_shard == "skip"):
        return []
    splits = [run_config.train_split] + ([run_config.val_split] if run_config.val_split
                                         and run_config.val_split in manifest["splits"] else [])
    report = verify.verify_dataset(run_config.data_dir, splits,
                                   num_threads=max(2, os.cpu_count() or 1),
                                   progress=run_config.keras_verbose not in (0, 2))
    if report.ok:
        logging.info("verified %d shards of %s", len(report.checks), run_config.data_dir)
        return []
    if run_config.on_corrupt_shard == "fail":
        raise verify.corrupt_shard_error(report, "--verify_shards")
    for check in report.bad:
        logging.warning("leaving out corrupt shard %s", check.describe())
    return report.bad_names()


def run(config: Any, task: TrainingTask,
        extra_callbacks: Sequence[keras.callbacks.Callback] = (),
        strategy: Optional[tf.distribute.Strategy] = None) -> RunResult:
    """Trains (or resumes) one run of ``task`` as ``config`` (which has a ``run`` RunConfig).

    The run directory is locked for the duration (by the chief only, under multi-worker
    training): a second training into the same ``model_dir`` is refused.

    Raises:
      ValueError / KeyError: missing directories, unknown splits, an incompatible run directory.
      io_utils.LockedError: another live process trains into the same run directory.
      verify.CorruptShardError: corrupt shards (named) with ``on_corrupt_shard=fail``.
      callbacks.NonFiniteLossError: a loss became NaN/inf (last good checkpoint kept).
      callbacks.PreemptedError: SIGTERM arrived; a checkpoint of the current step was saved.
    """
    run_config: RunConfig = config.run
    if not run_config.data_dir or not run_config.model_dir:
        raise ValueError(f"{task.name}: run.data_dir and run.model_dir are required "
                         "(--data_dir, --model_dir)")
    manifest = pipeline.read_manifest(run_config.data_dir)
    if run_config.train_split not in manifest["splits"]:
        raise KeyError(f"{run_config.data_dir}: no split {run_config.train_split!r}; splits are "
                       f"{sorted(manifest['splits'])} (--train_split)")
    role = (strategy_lib.worker_role() if run_config.strategy == "multi_worker"
            else strategy_lib.WorkerRole(None, 0, 1, True, 0))
    # Every worker has a scratch directory (the preemption handler's bookkeeping; a non-chief's
    # whole run directory), removed at the end whatever happens.
    _remove_dead_scratch_dirs()
    scratch_dir = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{role.input_index}-pid{os.getpid()}-")
    try:
        if not role.is_chief:
            return _run(config, task, manifest, extra_callbacks, strategy, role, scratch_dir)
        with io_utils.directory_lock(run_config.model_dir, f"training ({task.name})"):
            return _run(config, task, manifest, extra_callbacks, strategy, role, scratch_dir)
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)


def _remove_dead_scratch_dirs() -> None:
    """Removes the scratch directories of training processes that died without cleaning up
    (SIGKILL, OOM): their names carry the owner's pid; a live owner's are left alone."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{SCRATCH_PREFIX}*-pid*-*")):
        match = re.search(r"-pid(\d+)-", os.path.basename(path))
        if not match:
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass  # alive (another user's process): not ours to remove


def weights_fingerprint(trackables: Mapping[str, Any], trainable_only: bool = True) -> str:
    """sha256 of the weights of the models/layers among ``trackables`` (by name, in order).

    The trainable weights are equal, bit for bit, on every worker of a multi-worker run (the
    all-reduced updates are). Non-trainable state is not: Keras' (unsynchronised)
    BatchNormalization keeps each worker's moving statistics of its own batches (aggregation
    "none"), so only the chief's are saved; ``trainable_only=False`` includes them.
    """
    digest = hashlib.sha256()
    for name in sorted(trackables):
        trackable = trackables[name]
        if not isinstance(trackable, keras.layers.Layer):
            continue
        for variable in (trackable.trainable_weights if trainable_only else trackable.weights):
            digest.update(variable.path.encode())
            digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(variable)).tobytes())
    return digest.hexdigest()


def _check_cluster(run_config: RunConfig, role: strategy_lib.WorkerRole, replicas: int,
                   excluded: Sequence[str]) -> None:
    """Refuses a global batch that does not split over the replicas, and (multi-worker) a
    split with fewer shard files than workers (the input is sharded by file)."""
    if run_config.batch_size % replicas:
        raise ValueError(f"--batch_size={run_config.batch_size} is the GLOBAL batch; it must be a "
                         f"multiple of the {replicas} replicas (per-replica batch = batch_size / "
                         "replicas)")
    if role.num_workers > 1:
        shards = pipeline.list_shards(run_config.data_dir, run_config.train_split, excluded)
        if len(shards) < role.num_workers:
            raise ValueError(
                f"{run_config.data_dir}: split {run_config.train_split!r} has {len(shards)} "
                f"shard file(s) but the cluster has {role.num_workers} workers, and each worker "
                "reads its own shard files; rebuild the dataset with --num_shards >= "
                f"{role.num_workers} (a multiple of it balances the workers)")


def _agree_on_step(strategy: tf.distribute.Strategy, step: int, role: strategy_lib.WorkerRole
                   ) -> None:
    """Every worker must resume at the same step (else their collectives pair different
    steps); compares the restored steps over the cluster."""
    if role.num_workers < 2:
        return
    value = tf.constant([step], tf.int64)
    steps = strategy.gather(strategy.run(lambda: tf.identity(value)), axis=0).numpy()
    low, high = int(steps.min()), int(steps.max())
    if low != high:
        raise RuntimeError(f"the workers restored different steps ({low} .. {high}): every "
                           "worker must see the chief's --model_dir (shared storage, the same "
                           "path on every host)")


def _multi_worker_datasets(task: TrainingTask, context: RunContext,
                           role: strategy_lib.WorkerRole):
    """``(dataset_fn, validation_fn)`` of one worker of a multi-worker run.

    The training input is sharded BY FILE: worker ``i`` of ``N`` reads the split's shard files
    ``i, i + N, ...`` (its own shuffle, repeat and skip over them; tf.data's FILE auto-sharding
    cannot see through the pipeline's record enumeration, so the sharding is done here, before
    the pipeline is built, by leaving the other workers' files out). Each worker's batches of
    ``batch_size`` records are re-cut into per-replica batches of ``batch_size / replicas``,
    so a step consumes ``batch_size / N`` records per worker and ``batch_size`` in all: the
    global batch is ``batch_size`` whatever the cluster size. A resumed worker skips its own
    ``step * batch_size / N`` consumed records.

    Validation is read whole by every worker (per-replica batches of ``batch_size /
    replicas``): every worker then takes the same number of steps (sharding a small validation
    split could leave one worker a batch short, and its peers waiting in a collective forever),
    and the logged means are those of the whole split.
    """
    run_config = context.run
    files = pipeline.list_shards(run_config.data_dir, run_config.train_split,
                                 context.excluded_shards)
    others = [os.path.basename(path) for index, path in enumerate(files)
              if index % role.num_workers != role.input_index]
    worker_context = dataclasses.replace(
        context, excluded_shards=tuple(context.excluded_shards) + tuple(others))
    per_replica = run_config.batch_size // context.replicas
    logging.info("worker %d reads %d of %d shard files; per-replica batch %d", role.input_index,
                 len(files) - len(others), len(files), per_replica)
    no_auto_shard = tf.data.Options()
    no_auto_shard.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF)

    def dataset_fn(skip_steps: int):
        def per_worker(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
            del input_context  # the sharding above is by this worker's TF_CONFIG index
            dataset = task.train_dataset(
                worker_context, skip_steps * run_config.batch_size // role.num_workers)
            dataset = dataset.rebatch(per_replica, drop_remainder=True)
            return strategy_lib.make_distributable(dataset).with_options(no_auto_shard)

        return context.strategy.distribute_datasets_from_function(per_worker)

    validation = task.validation_dataset(context)
    if validation is None:
        return dataset_fn, None

    def validation_fn():
        def per_worker(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
            del input_context
            dataset = validation().rebatch(per_replica, drop_remainder=True)
            return strategy_lib.make_distributable(dataset).with_options(no_auto_shard)

        return context.strategy.distribute_datasets_from_function(per_worker)

    return dataset_fn, validation_fn


def _run(config: Any, task: TrainingTask, manifest: Mapping[str, Any],
         extra_callbacks: Sequence[keras.callbacks.Callback],
         strategy: Optional[tf.distribute.Strategy], role: strategy_lib.WorkerRole,
         scratch_dir: str) -> RunResult:
    shared_dir = config.run.model_dir
    if not role.is_chief:
        # A non-chief writes everything (checkpoints, logs, outputs) into its scratch
        # directory and reads the chief's checkpoints from the shared run directory.
        config = dataclasses.replace(config, run=dataclasses.replace(
            config.run, model_dir=os.path.join(scratch_dir, "run")))
    run_config: RunConfig = config.run
    config = task.prepare_config(config, manifest)
    run_config = config.run  # a task may set the schedule (e.g. a selected subset's epoch)
    excluded = _verified_exclusions(run_config, manifest)
    example_count = (verify.good_example_count(run_config.data_dir, run_config.train_split,
                                               excluded) if excluded
                     else manifest["splits"][run_config.train_split]["example_count"])
    steps_per_epoch, total_steps = schedule(run_config, example_count)

    model_dir = run_config.model_dir
    os.makedirs(model_dir, exist_ok=True)
    if role.is_chief:  # the chief refuses an incompatible run directory for the cluster
        check_resumable(os.path.join(shared_dir, CONFIG_FILE), config, task.resume_invariant)
    config_lib.save_json(config, os.path.join(model_dir, CONFIG_FILE))

    # The strategy first: splitting the CPU into logical devices (--num_logical_cpus) is only
    # possible before TensorFlow initialises its devices (any op, seeding included).
    strategy = strategy or strategy_lib.build_strategy(run_config.strategy,
                                                       run_config.num_logical_cpus or None)
    previous_policy = keras.mixed_precision.global_policy().name
    keras.utils.set_random_seed(run_config.seed)
    termination = callbacks_lib.TerminationRequest()
    try:
        loss_scaling = set_precision_policy(run_config.mixed_precision)
        context = RunContext(config, run_config, strategy, manifest, steps_per_epoch,
                             total_steps, loss_scaling, tuple(excluded))
        _check_cluster(run_config, role, context.replicas, excluded)
        with strategy.scope():
            built = task.build(context)
            if not run_config.fused_batch_norm:
                blocks.set_fused_batch_norm_training(built.trainer, False)
            checkpoint = RunCheckpoint(model_dir, max_to_keep=run_config.max_to_keep,
                                       restore_from=None if role.is_chief else shared_dir,
                                       **built.trackables)
            start_step = checkpoint.restore_latest()
        _agree_on_step(strategy, start_step, role)
        if start_step:
            logging.info("%s: resuming %s at step %d of %d", task.name, model_dir, start_step,
                         total_steps)
        elif run_config.init_from:
            logging.info("%s: fine-tuning from %s", task.name,
                         task.initialize_from(built, run_config.init_from))
        logging.info("%s: %d steps/epoch, %d steps, global batch %d on %d replica(s) (%d per "
                     "replica) over %d worker(s), %s", task.name, steps_per_epoch, total_steps,
                     run_config.batch_size, context.replicas,
                     run_config.batch_size // context.replicas, role.num_workers,
                     run_config.mixed_precision)

        log_dir = os.path.join(model_dir, LOG_SUBDIR)
        preemption = callbacks_lib.PreemptionCheckpoint(checkpoint, termination, strategy,
                                                        scratch_dir)
        callbacks: list[keras.callbacks.Callback] = [
            callbacks_lib.NanGuard(checkpoint),
            callbacks_lib.CheckpointCallback(checkpoint, run_config.checkpoint_every_steps),
            preemption,
            keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False),
            *task.callbacks(context, built, log_dir), *extra_callbacks]

        if role.num_workers > 1:
            dataset_fn, validation_fn = _multi_worker_datasets(task, context, role)
            strategy_lib.adapt_to_multi_worker(built.trainer)
        else:
            def dataset_fn(skip_steps: int) -> tf.data.Dataset:
                dataset = task.train_dataset(context, skip_steps * run_config.batch_size)
                return strategy_lib.make_distributable(dataset)

            validation = task.validation_dataset(context)
            validation_fn = None if validation is None else (
                lambda: strategy_lib.make_distributable(validation()))

        phases = callbacks_lib.resume_phases(start_step, total_steps, steps_per_epoch)
        started = time.time()
        splits = [run_config.train_split] + ([run_config.val_split] if validation_fn else [])
        with termination.installed(), verify.naming_corrupt_shards(run_config.data_dir, splits):
            histories = callbacks_lib.fit_resumable(built.trainer, dataset_fn, phases,
                                                    callbacks, validation_fn,
                                                    verbose=run_config.keras_verbose)
        seconds = time.time() - started
        if preemption.preempted_at is not None:
            cause = (f"signal {termination.signal_number} received" if termination.requested
                     else "another worker was asked to terminate")
            raise callbacks_lib.PreemptedError(
                f"{cause}; checkpoint saved at step {preemption.preempted_at} of {total_steps} "
                f"in {checkpoint.restore_directory}; re-run the same command to resume")
        # Every worker saves (reading synchronised variables is collective); a non-chief's
        # outputs land in its scratch directory, which is removed.
        outputs = task.save_outputs(built, context)
        fingerprint = weights_fingerprint(built.trackables)
        logging.info("%s: worker %d of %d: weights sha256 %s (trainable; with this worker's "
                     "batch-norm statistics: %s)", task.name, role.input_index, role.num_workers,
                     fingerprint, weights_fingerprint(built.trackables, trainable_only=False))
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    history = merge_histories(histories)
    final = {key: values[-1] for key, values in history.items() if values}
    summary = {"task": task.name, "start_step": start_step, "total_steps": total_steps,
               "steps_per_epoch": steps_per_epoch, "seconds": round(seconds, 1),
               "replicas": context.replicas, "workers": role.num_workers,
               "trainable_weights_sha256": fingerprint, "mixed_precision": run_config.mixed_precision,
               "examples_per_epoch_source": example_count,
               "excluded_shards": list(excluded),
               "final_epoch_metrics": final, "outputs": outputs, **task.summary_extra(context)}
    io_utils.atomic_write_json(os.path.join(model_dir, SUMMARY_FILE), summary)
    result = RunResult(model_dir, config, start_step, total_steps, steps_per_epoch, seconds,
                       history, outputs, summary)
    logging.info("%s: steps %d -> %d in %.1f s (%.2f steps/s); final %s -> %s", task.name,
                 start_step, total_steps, seconds, result.steps_per_second,
                 ", ".join(f"{key}={value:.4g}" for key, value in sorted(final.items())),
                 model_dir)
    return result
