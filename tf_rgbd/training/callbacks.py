"""Training callbacks shared by every trainer: checkpoints, NaN guard, TensorBoard image grids,
and the resume schedule that makes an interrupted + resumed run take exactly the same number of
optimiser steps as an uninterrupted one.

Typical use (see ``tf_rgbd.training.depthnet_gan.train_depth_model``)::

    run_checkpoint = RunCheckpoint(model_dir, ...)
    start_step = run_checkpoint.restore_latest()
    phases = resume_phases(start_step, total_steps, steps_per_epoch)
    nan_guard = NanGuard(run_checkpoint)
    fit_resumable(model, lambda skip: make_train_dataset().skip(skip), phases,
                  callbacks=[nan_guard, CheckpointCallback(run_checkpoint, 100), ...])

The dataset factory receives the number of batches already consumed, so a deterministic,
repeated dataset is positioned where the interrupted run stopped.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import threading
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from tf_rgbd import io_utils
from tf_rgbd.training import strategy as strategy_lib
from tf_rgbd.training.checkpointing import RunCheckpoint

NAN_REPORT_FILE = "nan_report.json"


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the message says where and which checkpoint was kept."""


def _to_float(value: Any) -> float:
    return float(np.asarray(keras.ops.convert_to_numpy(value), np.float64).reshape(-1)[0])


class CheckpointCallback(keras.callbacks.Callback):
    """Saves ``run_checkpoint`` every ``every_n_steps`` optimiser steps and at the end of training.

    The global step starts at ``run_checkpoint.step`` (set by ``restore_latest``) and counts
    training batches across epochs and across ``fit`` calls.

    Args:
      run_checkpoint: what to save.
      every_n_steps: save period in optimiser steps (global step multiples).
    """

    def __init__(self, run_checkpoint: RunCheckpoint, every_n_steps: int):
        super().__init__()
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.run_checkpoint = run_checkpoint
        self.every_n_steps = int(every_n_steps)
        self.global_step = 0
        self._last_saved_step: Optional[int] = None

    def on_train_begin(self, logs=None):
        self.global_step = int(self.run_checkpoint.step.numpy())
        self._last_saved_step = self.global_step

    def on_train_batch_end(self, batch, logs=None):
        self.global_step += 1
        if self.global_step % self.every_n_steps == 0:
            self._save()

    def on_train_end(self, logs=None):
        if self._last_saved_step != self.global_step:
            self._save()

    def _save(self) -> None:
        if self.run_checkpoint.saving_blocked:
            return
        self.run_checkpoint.save(self.global_step)
        self._last_saved_step = self.global_step


class NanGuard(keras.callbacks.Callback):
    """Stops training on the first non-finite loss and keeps the last good checkpoint.

    On a NaN/inf in any ``*loss*`` log value (every log value if none is named so) after a
    training batch it: stops training, blocks further checkpoint saves, restores the models and
    optimisers to the last good checkpoint (if there is one), and writes
    ``<model_dir>/nan_report.json`` (step, epoch, batch, the offending logs, the checkpoint kept).
    At the end of training it raises :class:`NonFiniteLossError` (``raise_at_end=True``), so a
    program exits non-zero with a clear message. Put it BEFORE ``CheckpointCallback`` in the
    callback list so the bad step is never saved.

    Args:
      run_checkpoint: the run's checkpoint (its ``model_dir`` receives the report).
      raise_at_end: raise :class:`NonFiniteLossError` from ``on_train_end``.
    """

    def __init__(self, run_checkpoint: RunCheckpoint, raise_at_end: bool = True):
        super().__init__()
        self.run_checkpoint = run_checkpoint
        self.raise_at_end = raise_at_end
        self.report: Optional[dict] = None
        self._epoch = 0
        self._global_step = 0

    @property
    def triggered(self) -> bool:
        return self.report is not None

    @property
    def report_path(self) -> str:
        return os.path.join(self.run_checkpoint.model_dir, NAN_REPORT_FILE)

    def on_train_begin(self, logs=None):
        if not self.triggered:
            self._global_step = int(self.run_checkpoint.step.numpy())

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.triggered:
            return
        self._global_step += 1
        values = {key: _to_float(value) for key, value in (logs or {}).items()}
        watched = {key: value for key, value in values.items() if "loss" in key} or values
        bad = {key: value for key, value in watched.items() if not math.isfinite(value)}
        if not bad:
            return
        self.model.stop_training = True
        self.run_checkpoint.block_saving(f"non-finite loss at step {self._global_step}")
        kept = self.run_checkpoint.latest_path
        if kept is not None:
            self.run_checkpoint.restore(kept)
        self.report = {
            "global_step": self._global_step,
            "epoch": self._epoch,
            "batch_in_epoch": int(batch),
            "non_finite": {key: str(value) for key, value in bad.items()},
            "logs": {key: str(value) for key, value in values.items()},
            "checkpoint_kept": kept,
        }
        io_utils.atomic_write_json(self.report_path, self.report)

    def on_train_end(self, logs=None):
        if self.triggered and self.raise_at_end:
            raise NonFiniteLossError(self.message())

    def message(self) -> str:
        if self.report is None:
            return "no non-finite loss seen"
        kept = self.report["checkpoint_kept"] or "none (no checkpoint had been saved yet)"
        return (f"non-finite loss {self.report['non_finite']} at global step "
                f"{self.report['global_step']} (epoch {self.report['epoch']}); training stopped. "
                f"Last good checkpoint kept: {kept}. Details: {self.report_path}. Lower the "
                "learning rate, check the input data for NaNs, or disable --mixed_precision, "
                "then re-run to resume from the kept checkpoint")


class PreemptedError(Exception):
    """Training stopped on a termination signal after saving a checkpoint (programs exit 0)."""


class TerminationRequest:
    """Remembers a termination signal (SIGTERM: what Kubernetes, Slurm and spot VMs send)
    instead of dying at once, so the step in flight finishes and a checkpoint is saved.

    Use :meth:`installed` around training; the handler is only installed in the main thread
    (signals are delivered there) and the previous one is put back afterwards.
    """

    def __init__(self):
        self.signal_number: Optional[int] = None

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    def _handle(self, signal_number, frame) -> None:
        del frame
        self.signal_number = signal_number

    @contextlib.contextmanager
    def installed(self, signals: Sequence[int] = (signal.SIGTERM,)) -> Iterator["TerminationRequest"]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {number: signal.signal(number, self._handle) for number in signals}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


class PreemptionCheckpoint(keras.callbacks.Callback):
    """Saves a checkpoint at the current step and stops training when termination was requested.

    At most the step in flight when the signal arrived is lost (it completes, then is saved).
    Under ``MultiWorkerMirroredStrategy`` (pass ``strategy`` and ``scratch_dir``) TensorFlow's
    ``PreemptionCheckpointHandler`` (``strategy.preemption_handler``) agrees on the step over the
    cluster: a SIGTERM to ANY worker makes every worker save at the same step (the chief into
    the run directory, the others into their temporary ones) and stop; the program exits 0 and
    the same command resumes.

    Attributes:
      preempted_at: the global step saved on preemption (None while not preempted).
    """

    def __init__(self, run_checkpoint: RunCheckpoint, request: TerminationRequest,
                 strategy: Any = None, scratch_dir: Optional[str] = None):
        super().__init__()
        self.run_checkpoint = run_checkpoint
        self.request = request
        self.strategy = strategy
        self.scratch_dir = scratch_dir
        self.preemption_handler: Any = None
        self.global_step = 0
        self.preempted_at: Optional[int] = None

    def on_train_begin(self, logs=None):
        self.global_step = int(self.run_checkpoint.step.numpy())
        if self.preemption_handler is None and self.strategy is not None and self.scratch_dir:
            self.preemption_handler = strategy_lib.preemption_handler(
                self.strategy, lambda: self.request.requested, self._save, self._stop,
                self.scratch_dir)

    def _save(self) -> None:
        if not self.run_checkpoint.saving_blocked:
            self.run_checkpoint.save(self.global_step)

    def _stop(self) -> None:
        self.preempted_at = self.global_step
        self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        self.global_step += 1
        if self.preemption_handler is not None:
            if self.preempted_at is None:
                self.preemption_handler.save_checkpoint_if_preempted()
            return
        if self.request.requested and self.preempted_at is None:
            self._save()
            self._stop()


class TensorBoardImageGrid(keras.callbacks.Callback):
    """Writes image grids of a fixed batch to TensorBoard every ``every_n_epochs`` epochs.

    Args:
      log_dir: TensorBoard log directory (a ``images`` sub-folder is used).
      batch: a fixed input batch (e.g. one validation batch), passed to ``render_fn``.
      render_fn: ``render_fn(model, batch) -> {name: float32 [N, H, W, 1 or 3] in [0, 1]}``.
      every_n_epochs: period.
      max_images: images per grid.
    """

    def __init__(self, log_dir: str, batch: Any,
                 render_fn: Callable[[keras.Model, Any], Mapping[str, Any]],
                 every_n_epochs: int = 1, max_images: int = 4):
        super().__init__()
        self.log_dir = os.path.join(log_dir, "images")
        self.batch = batch
        self.render_fn = render_fn
        self.every_n_epochs = max(1, int(every_n_epochs))
        self.max_images = max_images
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        images = self.render_fn(self.model, self.batch)
        with self._writer.as_default():
            for name, value in images.items():
                value = tf.clip_by_value(tf.convert_to_tensor(value, tf.float32), 0.0, 1.0)
                tf.summary.image(name, value[: self.max_images], step=epoch + 1,
                                 max_outputs=self.max_images)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()


@dataclasses.dataclass(frozen=True)
class FitPhase:
    """One ``fit`` call: epochs ``[initial_epoch, epochs)`` of ``steps_per_epoch`` steps each,
    starting after ``skip_steps`` already-consumed batches."""

    initial_epoch: int
    epochs: int
    steps_per_epoch: int
    skip_steps: int

    @property
    def num_steps(self) -> int:
        return (self.epochs - self.initial_epoch) * self.steps_per_epoch


def resume_phases(restored_step: int, total_steps: int, steps_per_epoch: int) -> list[FitPhase]:
    """The ``fit`` calls that take a run from ``restored_step`` to exactly ``total_steps``.

    Epoch e (0-based) covers global steps ``[e * steps_per_epoch, (e + 1) * steps_per_epoch)``.
    A resume inside an epoch first finishes that epoch (a short ``fit``), then runs the whole
    epochs, then a short last epoch if ``total_steps`` is not a multiple of ``steps_per_epoch``.

    Returns:
      Up to three phases; empty when ``restored_step >= total_steps``.
    """
    if steps_per_epoch < 1 or total_steps < 0 or restored_step < 0:
        raise ValueError(f"bad schedule: restored_step={restored_step}, total_steps={total_steps}, "
                         f"steps_per_epoch={steps_per_epoch}")
    phases = []
    step = restored_step
    while step < total_steps:
        epoch, offset = divmod(step, steps_per_epoch)
        epoch_end = min((epoch + 1) * steps_per_epoch, total_steps)
        if offset or epoch_end - step < steps_per_epoch:
            phases.append(FitPhase(epoch, epoch + 1, epoch_end - step, step))
            step = epoch_end
            continue
        full_epochs = (total_steps - step) // steps_per_epoch
        phases.append(FitPhase(epoch, epoch + full_epochs, steps_per_epoch, step))
        step += full_epochs * steps_per_epoch
    return phases


def fit_resumable(model: keras.Model, dataset_fn: Callable[[int], tf.data.Dataset],
                  phases: Sequence[FitPhase], callbacks: Sequence[keras.callbacks.Callback] = (),
                  validation_fn: Optional[Callable[[], tf.data.Dataset]] = None,
                  verbose: Any = "auto") -> list[keras.callbacks.History]:
    """Runs ``model.fit`` once per phase.

    Args:
      model: a compiled model.
      dataset_fn: ``dataset_fn(skip_steps)`` -> an infinite dataset positioned after
        ``skip_steps`` batches (deterministic order, so resumed runs see the same batches).
      phases: from :func:`resume_phases`.
      callbacks: passed to every ``fit`` call (they see several train begin/end events).
      validation_fn: builds the validation dataset (evaluated at the end of every epoch).

    Returns:
      The ``History`` of every phase.
    """
    histories = []
    for phase in phases:
        history = model.fit(dataset_fn(phase.skip_steps), epochs=phase.epochs,
                            initial_epoch=phase.initial_epoch,
                            steps_per_epoch=phase.steps_per_epoch, callbacks=list(callbacks),
                            validation_data=validation_fn() if validation_fn else None,
                            verbose=verbose)
        histories.append(history)
        if model.stop_training:
            break
    return histories
