"""RunCheckpoint, the resume schedule, exact kill-and-resume, and the NaN guard."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.training.depth_test_utils import face_like_batch, tiny_model_config
from tf_rgbd.config.depthnet import OptimizerConfig
from tf_rgbd.training import callbacks as callbacks_lib
from tf_rgbd.training import depth_training
from tf_rgbd.training.checkpointing import RunCheckpoint, SavingBlockedError


SIZE = 16


def _trainer(seed=0, base_filters=4):
    keras.utils.set_random_seed(seed)
    trainer = depth_training.build_depth_trainer(tiny_model_config(
        image_size=SIZE, base_filters=base_filters, max_filters=16, discriminator_filters=4,
        discriminator_downsamples=1))
    trainer.compile(depth_training.make_optimizer(OptimizerConfig(learning_rate=1e-3)),
                    depth_training.make_optimizer(OptimizerConfig(learning_rate=1e-3)))
    trainer.build_for_training(SIZE)
    return trainer


def _dataset_fn(skip_steps):
    """Three distinct batches, cycled; positioned after ``skip_steps`` batches."""
    batches = [face_like_batch(batch_size=2, size=SIZE, seed=seed) for seed in range(3)]
    stacked = {key: tf.concat([b[key] for b in batches], 0) for key in batches[0]}
    return tf.data.Dataset.from_tensor_slices(stacked).batch(2).repeat().skip(skip_steps)


def _state(trainer):
    return ([np.asarray(v) for v in trainer.generator.weights]
            + [np.asarray(v) for v in trainer.discriminator_variables]
            + [np.asarray(v) for v in trainer.generator_optimizer.variables]
            + [np.asarray(v) for v in trainer.discriminator_optimizer.variables])


def test_resume_phases_cover_exactly_the_remaining_steps():
    assert callbacks_lib.resume_phases(0, 6, 3) == [callbacks_lib.FitPhase(0, 2, 3, 0)]
    assert callbacks_lib.resume_phases(4, 6, 3) == [callbacks_lib.FitPhase(1, 2, 2, 4)]
    assert callbacks_lib.resume_phases(4, 11, 3) == [
        callbacks_lib.FitPhase(1, 2, 2, 4), callbacks_lib.FitPhase(2, 3, 3, 6),
        callbacks_lib.FitPhase(3, 4, 2, 9)]
    assert callbacks_lib.resume_phases(6, 6, 3) == []
    for restored in range(0, 12):
        phases = callbacks_lib.resume_phases(restored, 12, 5)
        assert sum(phase.num_steps for phase in phases) == 12 - restored
        step = restored
        for phase in phases:
            assert phase.skip_steps == step
            step += phase.num_steps


def test_run_checkpoint_round_trip_and_mismatch(tmp_path):
    trainer = _trainer()
    checkpoint = RunCheckpoint(str(tmp_path), **trainer.checkpoint_trackables())
    assert checkpoint.restore_latest() == 0 and checkpoint.latest_path is None
    trainer.fit(_dataset_fn(0), epochs=1, steps_per_epoch=2, verbose=0)
    path = checkpoint.save(2)
    assert path.endswith("ckpt-2") and checkpoint.latest_path == path

    fresh = _trainer(seed=5)
    restored = RunCheckpoint(str(tmp_path), **fresh.checkpoint_trackables())
    assert restored.restore_latest() == 2
    assert int(fresh.generator_optimizer.iterations) == 2
    assert int(fresh.discriminator_optimizer.iterations) == 2
    for expected, actual in zip(_state(trainer), _state(fresh)):
        np.testing.assert_array_equal(actual, expected)

    # A different architecture must not half-restore silently.
    other = _trainer(base_filters=8)
    with pytest.raises((RuntimeError, ValueError)):
        RunCheckpoint(str(tmp_path), **other.checkpoint_trackables()).restore_latest()

    checkpoint.block_saving("test")
    with pytest.raises(SavingBlockedError):
        checkpoint.save(3)


class _Interrupt(Exception):
    pass


class _InterruptAfter(keras.callbacks.Callback):
    """Simulates a kill after ``steps`` optimiser steps (later callbacks never see the batch)."""

    def __init__(self, steps):
        super().__init__()
        self.steps, self.seen = steps, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.steps:
            raise _Interrupt()


def _run(trainer, model_dir, total_steps, steps_per_epoch, extra=()):
    checkpoint = RunCheckpoint(model_dir, **trainer.checkpoint_trackables())
    start = checkpoint.restore_latest()
    phases = callbacks_lib.resume_phases(start, total_steps, steps_per_epoch)
    callbacks = [callbacks_lib.NanGuard(checkpoint),
                 callbacks_lib.CheckpointCallback(checkpoint, every_n_steps=2), *extra]
    callbacks_lib.fit_resumable(trainer, _dataset_fn, phases, callbacks, verbose=0)
    return start


def test_interrupted_and_resumed_run_equals_uninterrupted_run(tmp_path):
    total, per_epoch = 6, 3
    reference = _trainer()
    _run(reference, str(tmp_path / "reference"), total, per_epoch)
    assert int(reference.generator_optimizer.iterations) == total

    interrupted_dir = str(tmp_path / "interrupted")
    with pytest.raises(_Interrupt):
        _run(_trainer(), interrupted_dir, total, per_epoch, extra=[_InterruptAfter(5)])
    # The kill happened after step 5; the newest checkpoint is step 4 (every 2 steps).
    resumed = _trainer(seed=123)  # a new process would start from other random weights
    start = _run(resumed, interrupted_dir, total, per_epoch)
    assert start == 4
    assert int(resumed.generator_optimizer.iterations) == total
    assert int(resumed.discriminator_optimizer.iterations) == total
    for index, (expected, actual) in enumerate(zip(_state(reference), _state(resumed))):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6,
                                   err_msg=f"state tensor {index} differs after resume")


def test_nan_guard_stops_keeps_last_good_checkpoint_and_reports(tmp_path):
    trainer = _trainer()
    checkpoint = RunCheckpoint(str(tmp_path), **trainer.checkpoint_trackables())
    good = [face_like_batch(batch_size=2, size=SIZE, seed=seed) for seed in range(3)]
    poisoned = dict(good[0], rgb=good[0]["rgb"] * np.nan)
    batches = good + [poisoned] + good
    dataset = tf.data.Dataset.from_tensor_slices(
        {key: tf.stack([b[key] for b in batches]) for key in good[0]})
    guard = callbacks_lib.NanGuard(checkpoint)
    with pytest.raises(callbacks_lib.NonFiniteLossError, match="step 4"):
        trainer.fit(dataset, epochs=1, steps_per_epoch=7, verbose=0,
                    callbacks=[guard, callbacks_lib.CheckpointCallback(checkpoint, 1)])
    assert checkpoint.latest_path.endswith("ckpt-3")
    with open(os.path.join(str(tmp_path), "nan_report.json")) as handle:
        report = json.load(handle)
    assert report["global_step"] == 4 and report["checkpoint_kept"].endswith("ckpt-3")
    assert "g_loss" in report["non_finite"]
    # The in-memory models went back to the last good state.
    assert all(np.all(np.isfinite(v)) for v in _state(trainer))
    assert int(trainer.generator_optimizer.iterations) == 3
