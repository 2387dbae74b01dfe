"""Distribution strategies and the two rules every custom ``train_step`` must follow under them.

Usage (a trainer with several optimisers)::

    strategy = build_strategy("mirrored")
    with strategy.scope():
        model = ...; model(dummy_batch)                    # build every variable
        build_optimizers([(g_opt, generator.trainable_variables),
                          (d_opt, discriminator.trainable_variables)])
    model.fit(...)

and inside ``train_step``::

    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(per_example_loss)            # mean over the per-replica batch
        scaled = replica_scaled(loss)                      # INSIDE the tape

Why (measured with TF 2.19 / Keras 3.15, see PITFALLS.md #1): Keras sums gradients over
replicas, so an unscaled per-replica mean gives an update ``num_replicas_in_sync`` times too large;
scaling outside the tape gives ``None`` gradients; optimisers created lazily inside the replica
function fail with "You must feed a value for placeholder tensor".
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Callable, Optional, Sequence

import keras
import tensorflow as tf

from tf_rgbd.config.run import STRATEGY_NAMES  # noqa: F401  (re-exported)


def _configure_logical_cpus(count: int) -> None:
    """Splits the first physical CPU into ``count`` logical devices (before TF initialises).

    Listing logical devices initialises TensorFlow's devices, so the split is tried first; when
    TensorFlow is already initialised with ``count`` logical CPUs (e.g. a second run in the same
    process) that is fine.
    """
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as error:
        logical = tf.config.list_logical_devices("CPU")
        if len(logical) == count:
            return
        raise RuntimeError(
            f"cannot split the CPU into {count} logical devices: TensorFlow is already "
            f"initialised with {len(logical)} logical CPU(s). Call build_strategy(..., "
            f"num_logical_cpus={count}) before any tensor is created") from error


def build_strategy(name: str = "default",
                   num_logical_cpus: Optional[int] = None) -> tf.distribute.Strategy:
    """Builds a ``tf.distribute.Strategy`` by name.

    Args:
      name: ``default`` (no distribution: the default strategy, one device), ``mirrored``
        (synchronous data parallelism over the local GPUs, or over the logical CPUs when there
        is no GPU and more than one logical CPU exists) or ``multi_worker``
        (``MultiWorkerMirroredStrategy``; the cluster comes from the ``TF_CONFIG`` variable).
      num_logical_cpus: for ``mirrored`` without GPUs: split the CPU into this many logical
        devices first (only possible before TF initialises its devices). ``None`` uses the
        logical CPUs that exist.

    Returns:
      The strategy. Create models and optimisers inside ``strategy.scope()``.
    """
    if name not in STRATEGY_NAMES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {STRATEGY_NAMES}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multi_worker":
        role = worker_role()
        if role.num_workers == 1:
            logging.warning("--strategy=multi_worker without a TF_CONFIG cluster: training on "
                            "this process alone (set TF_CONFIG, or use training.launch_local)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    # Physical devices first: listing logical ones initialises TensorFlow, after which the CPU
    # can no longer be split (--num_logical_cpus).
    if tf.config.list_physical_devices("GPU"):
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy([device.name for device in gpus])
    if num_logical_cpus is not None:
        _configure_logical_cpus(num_logical_cpus)
    cpus = tf.config.list_logical_devices("CPU")
    # Variables on CPU and a plain all-reduce: NCCL does not exist without GPUs.
    return tf.distribute.MirroredStrategy(
        [device.name for device in cpus],
        cross_device_ops=tf.distribute.ReductionToOneDevice(reduce_to_device=cpus[0].name))


@dataclasses.dataclass(frozen=True)
class WorkerRole:
    """This process's place in a ``TF_CONFIG`` cluster (read without initialising TensorFlow).

    Attributes:
      task_type: ``worker`` or ``chief`` (``None`` without a cluster).
      task_index: the index within ``task_type``.
      num_workers: training processes of the cluster (``chief`` + ``worker`` tasks); 1 without
        a cluster.
      is_chief: writes the run directory (checkpoints, summaries, outputs); the others write
        to temporary directories that are removed.
      input_index: this worker's input pipeline index in ``[0, num_workers)`` (the chief is 0),
        i.e. which share of the shard files it reads.
    """

    task_type: Optional[str]
    task_index: int
    num_workers: int
    is_chief: bool
    input_index: int


def worker_role(tf_config: Optional[str] = None) -> WorkerRole:
    """This process's :class:`WorkerRole` from ``TF_CONFIG`` (the environment by default).

    Raises:
      ValueError: ``TF_CONFIG`` is not valid JSON, or names a task the cluster lacks.
    """
    text = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not text:
        return WorkerRole(None, 0, 1, True, 0)
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {text[:200]}") from error
    cluster = spec.get("cluster") or {}
    task = spec.get("task") or {}
    task_type, task_index = task.get("type"), int(task.get("index", 0))
    chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
    num_workers = max(1, len(chiefs) + len(workers))
    if task_type is None:
        return WorkerRole(None, 0, num_workers, True, 0)
    if task_type not in ("chief", "worker") or task_index >= len(cluster.get(task_type, [])):
        raise ValueError(f"TF_CONFIG names task {task_type}:{task_index}, which its cluster "
                         f"{cluster} does not have (multi-worker training takes 'chief' and "
                         "'worker' tasks)")
    is_chief = is_chief_from_tf_config(text)
    input_index = task_index if task_type == "chief" else len(chiefs) + task_index
    return WorkerRole(task_type, task_index, num_workers, is_chief, input_index)


def is_chief_from_tf_config(tf_config: Optional[str] = None) -> bool:
    """Whether this process is the chief of a ``TF_CONFIG`` cluster (True without one).

    Read from the environment (no TensorFlow call), so it can decide before any device is
    initialised. The chief is task ``chief`` (any index), or ``worker`` 0 when the cluster has
    no ``chief`` task (MultiWorkerMirroredStrategy's convention).
    """
    text = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not text:
        return True
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {text[:200]}") from error
    task = spec.get("task") or {}
    task_type, task_index = task.get("type"), int(task.get("index", 0))
    if task_type is None or task_type == "chief":
        return True
    cluster = spec.get("cluster") or {}
    return task_type == "worker" and task_index == 0 and "chief" not in cluster


def preemption_handler(strategy: tf.distribute.Strategy, termination_requested: Callable[[], bool],
                       save_fn: Callable[[], Any], exit_fn: Callable[[], Any], scratch_dir: str):
    """TensorFlow's ``PreemptionCheckpointHandler`` for multi-worker runs (None otherwise).

    Under ``MultiWorkerMirroredStrategy`` a termination request on ANY worker (SIGTERM, seen
    through ``termination_requested``, polled by the handler's thread about once a second)
    makes every worker call ``save_fn`` at the same training step (the handler agrees on the
    step over the cluster's coordination service), then ``exit_fn``. Single-process runs use
    ``callbacks.PreemptionCheckpoint``'s own path instead.

    Call ``handler.save_checkpoint_if_preempted()`` after every training step on every worker.

    Args:
      strategy: the run's strategy.
      termination_requested: returns True once this worker was asked to terminate.
      save_fn: saves the run's checkpoint (our :class:`RunCheckpoint`, so its files are named
        by the global step: the handler's own manager would number them by save count).
      exit_fn: called after the save on every worker (e.g. stop training; the program then
        exits 0 and a re-run resumes).
      scratch_dir: an empty directory, removed by the caller, for the handler's bookkeeping
        (its own step counter checkpoint is never written: ``save_fn`` replaces it).
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return None
    # The handler needs a checkpoint to restore its run counter from; an empty one in an empty
    # directory: every launch starts counting at 0 on every worker, which is all it needs.
    return tf.distribute.experimental.PreemptionCheckpointHandler(
        strategy.cluster_resolver, tf.train.Checkpoint(),
        checkpoint_dir=os.path.join(scratch_dir, "preemption"),
        termination_config=tf.distribute.experimental.TerminationConfig(
            termination_watcher_fn=termination_requested, exit_fn=exit_fn, save_fn=save_fn,
            grace_period=0))


def replica_scaled(loss: tf.Tensor) -> tf.Tensor:
    """Divides a per-replica mean loss by the number of replicas in sync.

    Call it INSIDE the ``GradientTape`` on the value you differentiate. With one replica (the
    default strategy) the loss is returned unchanged. The value to *report* is the unscaled loss.
    """
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas == 1:
        return loss
    return loss / tf.cast(replicas, loss.dtype)


def build_optimizers(pairs: Sequence[tuple[keras.optimizers.Optimizer, list]]
                     ) -> list[keras.optimizers.Optimizer]:
    """Builds each optimiser's slot variables for its variables; call inside ``strategy.scope()``.

    Building before ``fit`` (and before restoring a checkpoint) is what makes optimiser state
    distributable and restorable.

    Args:
      pairs: ``(optimizer, variables)`` for every optimiser of the model.

    Returns:
      The optimisers, in order.
    """
    optimizers = []
    for optimizer, variables in pairs:
        variables = list(variables)
        if not variables:
            raise ValueError(f"optimizer {optimizer.name!r} was given no variables; build the "
                             "model (call it once on a batch) before building its optimisers")
        if not optimizer.built:
            optimizer.build(variables)
        optimizers.append(optimizer)
    return optimizers


def make_distributable(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Makes a dict-of-tensors dataset safe for ``fit``/``evaluate`` under a strategy.

    Keras 3.15 (``TFTrainer._maybe_symbolic_build``) reduces the first distributed batch with
    ``strategy.reduce("MEAN", ...)`` before training, which fails on ``tf.bool`` ("Value for
    attr 'T' of bool is not in the list of allowed values ... AddN") and on ``tf.string``
    features. This casts bool features (``has_depth``, ``has_mask``) to float32 (1.0 / 0.0) and
    drops string features (metadata such as ``example_id``). Harmless without a strategy.
    """
    spec = dataset.element_spec
    if not isinstance(spec, dict):
        return dataset
    drop = [key for key, value in spec.items() if value.dtype == tf.string]
    cast = [key for key, value in spec.items() if value.dtype == tf.bool]
    if not drop and not cast:
        return dataset

    def convert(element):
        element = {key: value for key, value in element.items() if key not in drop}
        for key in cast:
            element[key] = tf.cast(element[key], tf.float32)
        return element

    return dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)



def adapt_to_multi_worker(model: keras.Model) -> keras.Model:
    """Makes Keras 3.15 ``fit``/``evaluate`` work under a real multi-worker
    ``MultiWorkerMirroredStrategy`` (two Keras bugs, measured with TF 2.19.1 / Keras 3.15.1 on
    2 loopback workers; patched on this model instance only):

    1. Before training, ``TFTrainer._maybe_symbolic_build`` reduces the first distributed batch
       with ``strategy.reduce("MEAN", batch)`` on the WHOLE dict; across workers that is a dict
       of ``PerReplica`` values, which ``MultiWorkerMirroredStrategy.reduce`` refuses ("Attempt
       to convert a value ({'rgb': PerReplica:...}) with an unsupported type (<class 'dict'>)
       to a Tensor"). Replaced by a feature-by-feature reduction, then Keras' own build.
    2. Every step's logs are reduced across workers with ``strategy.reduce("MEAN", v,
       axis=0)``, which fails on the scalar losses a custom ``train_step`` returns ("Invalid
       reduction dimension 0 for input with 0 dimensions"). The step's scalar logs are given a
       length-1 axis, so that reduction becomes the mean over the replicas (a scalar again).
    """
    strategy = model.distribute_strategy

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = next(batches)
                break
        data_batch = tf.nest.map_structure(
            lambda value: strategy.reduce("MEAN", value, axis=None)
            if isinstance(value, tf.distribute.DistributedValues) else value, data_batch)
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)  # noqa: SLF001 (what Keras calls)

    def with_axis(step):
        def wrapped(data):
            logs = step(data)
            return tf.nest.map_structure(
                lambda value: tf.reshape(value, [1]) if tf.is_tensor(value)
                and value.shape.rank == 0 else value, logs)
        return wrapped

    model._maybe_symbolic_build = maybe_symbolic_build  # noqa: SLF001
    model.train_step = with_axis(model.train_step)
    model.test_step = with_axis(model.test_step)
    return model
