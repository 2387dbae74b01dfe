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

import json
import logging
import os
import sys
from typing import Optional, Sequence

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


def preemption_handler(strategy: tf.distribute.Strategy, run_checkpoint):
    """TensorFlow's PreemptionCheckpointHandler for multi-worker runs (None otherwise).

    Under ``MultiWorkerMirroredStrategy`` a SIGTERM to any worker makes every worker save the
    same checkpoint at the same step (the handler agrees on it over the cluster), after which
    they exit with status 0. Single-process runs use ``callbacks.PreemptionCheckpoint``'s own
    signal handling instead.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return None

    def exit_after_saving():
        logging.warning("preempted: checkpoint saved in %s; exiting (re-run to resume)",
                        run_checkpoint.directory)
        sys.exit(0)

    return tf.distribute.experimental.PreemptionCheckpointHandler(
        strategy.cluster_resolver, run_checkpoint.manager,
        termination_config=tf.distribute.experimental.TerminationConfig(
            exit_fn=exit_after_saving))


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
