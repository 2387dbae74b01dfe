"""Exact checkpoint + resume for multi-model, multi-optimiser runs.

``keras.callbacks.BackupAndRestore`` restores only the epoch and silently drops optimiser state
when an optimiser was not built before ``fit`` (PITFALLS.md #2). :class:`RunCheckpoint` wraps
``tf.train.Checkpoint`` + ``tf.train.CheckpointManager`` over every model, every optimiser and a
global step counter, so a resumed run continues from exactly the saved optimiser step.

Usage::

    with strategy.scope():
        ...build models and optimisers (strategy.build_optimizers)...
    run_checkpoint = RunCheckpoint(model_dir, generator=generator, discriminator=discriminator,
                                   generator_optimizer=g_opt, discriminator_optimizer=d_opt)
    start_step = run_checkpoint.restore_latest()      # 0 for a fresh run
    ...train, calling run_checkpoint.save(step) (callbacks.CheckpointCallback does it)...

Checkpoints live in ``<model_dir>/checkpoints/ckpt-<step>``.
"""
from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import shutil
from typing import Optional

import keras
import tensorflow as tf

from tf_rgbd import io_utils

CHECKPOINT_SUBDIR = "checkpoints"


def _is_mismatch(error: Exception) -> bool:
    """A restore error that means "another architecture", not "damaged files"."""
    if isinstance(error, AssertionError):
        return True
    return isinstance(error, ValueError) and ("incompatible" in str(error)
                                              or "shape" in str(error))


class CheckpointError(RuntimeError):
    """No checkpoint of a run directory can be restored (the message names the directory)."""


class SavingBlockedError(RuntimeError):
    """``save`` was called after the run was marked unsafe to save (e.g. by the NaN guard)."""


def random_seed_states(trackables) -> list:
    """The state variables of every Keras ``SeedGenerator`` (e.g. of Dropout layers) reachable
    from the given models/layers, in a stable order, without duplicates."""
    states, seen = [], set()
    for trackable in trackables:
        if not isinstance(trackable, keras.layers.Layer):
            continue
        for layer in trackable._flatten_layers(include_self=True, recursive=True):
            for variable in layer.non_trainable_variables:
                if variable.path.endswith("seed_generator_state") and id(variable) not in seen:
                    seen.add(id(variable))
                    states.append(variable)
    return states


WEIGHTS_SUFFIX = "_weights"


def weights_by_path(layer: keras.layers.Layer) -> dict[str, tf.Variable]:
    """Every variable of a Keras layer/model (trainable, BatchNorm statistics, seeds...) keyed by
    its Keras path with ``/`` written as ``.`` (checkpoint-key safe).

    ``tf.train.Checkpoint`` follows a Keras 3 model's attributes, but not layers kept in Python
    dicts (the recognizer's per-branch encoders): without this map their variables were saved
    only as the optimiser's references to its trainable variables, and their BatchNorm moving
    statistics not at all.
    """
    variables: dict[str, tf.Variable] = {}
    for variable in layer.weights:
        key = variable.path.replace("/", ".")
        if key in variables and variables[key] is not variable:
            raise ValueError(f"{layer.name}: two variables share the path {variable.path!r}; "
                             "give the layers unique names")
        variables[key] = variable
    return variables


class RunCheckpoint:
    """Checkpoints models, optimisers and a global step counter of one run directory.

    Args:
      model_dir: the run directory; checkpoints go to ``<model_dir>/checkpoints``.
      max_to_keep: how many recent checkpoints to keep.
      restore_from: another run directory to RESTORE from (default ``model_dir``). A
        non-chief worker of a multi-worker run restores the chief's checkpoints (shared
        storage) and writes its own into a temporary ``model_dir`` that is removed (every
        worker must save: reading synchronised variables is a collective operation); it never
        moves the chief's files.
      **trackables: everything to save, by name (keras models/layers, optimisers,
        ``tf.Variable``s). Names are the checkpoint keys: keep them stable across versions.
        ``step`` is reserved for the global step counter.

    Attributes:
      step: int64 ``tf.Variable``, the global optimiser step of the last save/restore.
      directory: where the checkpoints are written.
      restore_directory: where they are restored from.
    """

    def __init__(self, model_dir: str, max_to_keep: int = 3, restore_from: Optional[str] = None,
                 **trackables):
        if "step" in trackables:
            raise ValueError("RunCheckpoint: 'step' is reserved for the global step counter; "
                             "rename that trackable")
        if not trackables:
            raise ValueError("RunCheckpoint needs at least one model/optimizer to save")
        self.model_dir = model_dir
        self.directory = os.path.join(model_dir, CHECKPOINT_SUBDIR)
        self.restore_directory = os.path.join(restore_from or model_dir, CHECKPOINT_SUBDIR)
        self._owns_restore_directory = (os.path.abspath(self.restore_directory)
                                        == os.path.abspath(self.directory))
        # Assigned from Python between steps only (cross-replica context under a strategy).
        with tf.init_scope():
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.trackable_names = tuple(sorted(trackables))
        seed_states = random_seed_states(trackables.values())
        for name, trackable in list(trackables.items()):
            if isinstance(trackable, keras.layers.Layer):
                trackables[f"{name}{WEIGHTS_SUFFIX}"] = tf.train.Checkpoint(
                    **weights_by_path(trackable))
        if seed_states:
            # Dropout's random state: without it a resumed run draws other masks than the
            # uninterrupted one (Keras' SeedGenerators are not checkpoint-tracked by default).
            trackables = {**trackables, "random_seed_states": seed_states}
        self.checkpoint = tf.train.Checkpoint(step=self.step, **trackables)
        self.max_to_keep = max_to_keep
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory,
                                                  max_to_keep=max_to_keep)
        self._blocked_reason: Optional[str] = None

    @property
    def latest_path(self) -> Optional[str]:
        """Prefix of the newest checkpoint (``.../ckpt-<step>``), or None when there is none
        (this run's own newest save, else the newest in :attr:`restore_directory`)."""
        if self.manager.latest_checkpoint or self._owns_restore_directory:
            return self.manager.latest_checkpoint
        return tf.train.latest_checkpoint(self.restore_directory)

    def checkpoints_on_disk(self, directory: Optional[str] = None) -> list[str]:
        """Checkpoint prefixes in ``directory`` (default: where they are restored from),
        newest (highest step) first."""
        prefixes = []
        directory = self.restore_directory if directory is None else directory
        for index_file in glob.glob(os.path.join(directory, "ckpt-*.index")):
            match = re.fullmatch(r"ckpt-(\d+)\.index", os.path.basename(index_file))
            if match:
                prefixes.append((int(match.group(1)), index_file[:-len(".index")]))
        return [prefix for _, prefix in sorted(prefixes, reverse=True)]

    def restore_latest(self) -> int:
        """Restores the newest checkpoint that can be read, if any.

        Models and optimisers must be built first (variables that do not exist yet are not
        restored). Every saved object must find its match, so a changed architecture fails
        loudly here instead of training from a half-restored state. A checkpoint that cannot be
        READ (truncated or corrupted files) is moved aside as ``corrupt-ckpt-<step>.*`` with a
        warning naming it, and the next older one is restored; the good ones are never deleted.

        Returns:
          The restored global step, 0 when the directory has no checkpoint.

        Raises:
          CheckpointError: there are checkpoints and none of them can be read.
          RuntimeError: a checkpoint does not match the models built for this run.
        """
        candidates = self.checkpoints_on_disk()
        if not candidates:
            self.step.assign(0)
            return 0
        failures, unreadable = [], []
        for path in candidates:
            try:
                status = self.checkpoint.restore(path)
                status.assert_existing_objects_matched()
            except Exception as error:  # noqa: BLE001 (classified below)
                if _is_mismatch(error):
                    raise RuntimeError(
                        f"checkpoint {path} does not match the models/optimisers built for this "
                        f"run ({', '.join(self.trackable_names)}): {error}. Use a fresh "
                        "--model_dir or the configuration the run was started with (see its "
                        "config.json)") from error
                # IndexError ("Read less bytes than requested"), DataLossError, ...: unreadable.
                reason = " ".join(f"{type(error).__name__}: {error}".split())[:300]
                logging.warning("checkpoint %s cannot be read (%s); falling back to the previous "
                                "one", path, reason)
                failures.append(f"{os.path.basename(path)} ({reason})")
                unreadable.append(path)
                continue
            # Found a good one: the newer, unreadable ones are moved aside (kept for a look) by
            # the owner of the directory (a non-chief worker only skips them).
            for bad in unreadable if self._owns_restore_directory else ():
                logging.warning("moving unreadable checkpoint %s aside as corrupt-%s", bad,
                                os.path.basename(bad))
                self._quarantine(bad)
            if unreadable and self._owns_restore_directory:
                self._rewrite_state()
            return int(self.step.numpy())
        raise CheckpointError(
            f"no checkpoint in {self.restore_directory} can be restored ({'; '.join(failures)}); "
            "nothing was changed there: move the run directory aside (or use a fresh "
            "--model_dir) to start over")

    def _quarantine(self, prefix: str) -> None:
        folder, name = os.path.split(prefix)
        for path in glob.glob(prefix + ".*"):
            suffix = os.path.basename(path)[len(name):]
            os.replace(path, os.path.join(folder, f"corrupt-{name}{suffix}"))

    def _rewrite_state(self) -> None:
        """Points the CheckpointManager's state file at the readable checkpoints only."""
        surviving = list(reversed(self.checkpoints_on_disk()))
        if surviving:
            tf.compat.v1.train.update_checkpoint_state(
                self.directory, surviving[-1], all_model_checkpoint_paths=surviving)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory,
                                                  max_to_keep=self.max_to_keep)

    def restore(self, path: str, expect_partial: bool = False) -> int:
        """Restores a specific checkpoint prefix; returns its global step.

        Every object of this checkpoint (every model variable) must be found in the file, or a
        RuntimeError names what did not match. ``expect_partial`` only allows the file to hold
        more (e.g. the optimisers, when loading a model for evaluation).
        """
        status = self.checkpoint.restore(path)
        if expect_partial:
            status.expect_partial()
        try:
            status.assert_existing_objects_matched()
        except AssertionError as error:
            raise RuntimeError(f"checkpoint {path} does not match the models built for it "
                               f"({', '.join(self.trackable_names)}): {error}") from error
        return int(self.step.numpy())

    def save(self, step: int) -> str:
        """Saves everything as ``ckpt-<step>``; returns the checkpoint prefix.

        Raises:
          SavingBlockedError: :meth:`block_saving` was called (the state is known to be bad).
        """
        if self._blocked_reason is not None:
            raise SavingBlockedError(f"not saving step {step}: {self._blocked_reason}")
        self.step.assign(int(step))
        try:
            return self.manager.save(checkpoint_number=int(step))
        except Exception as error:  # noqa: BLE001 (TF reports a full disk as UnknownError etc.)
            prefix = os.path.join(self.directory, f"ckpt-{int(step)}")
            self._remove_partial(prefix)
            if io_utils.is_disk_full(error):
                raise io_utils.DiskFullError(prefix, self._size_estimate(), "checkpoint",
                                             cause=" ".join(str(error).split())[:200]) from error
            raise

    def _remove_partial(self, prefix: str) -> None:
        """Removes what a failed save of ``prefix`` left (its files and temporary folders)."""
        for path in glob.glob(prefix + ".*") + glob.glob(prefix + "_temp*"):
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)

    def _size_estimate(self) -> Optional[int]:
        """Bytes of the newest complete checkpoint (what the next one will need, roughly)."""
        for prefix in self.checkpoints_on_disk(self.directory):
            return sum(os.path.getsize(path) for path in glob.glob(prefix + ".*"))
        return None

    def block_saving(self, reason: str) -> None:
        """Refuses every later :meth:`save` (keeps the last good checkpoint the newest)."""
        self._blocked_reason = reason

    @property
    def saving_blocked(self) -> bool:
        return self._blocked_reason is not None
