"""The one training runner: resume without re-decoding, exact recognizer resume, precision and
XLA paths, schedule arithmetic, refusing an incompatible run directory."""
import dataclasses
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.training.depth_test_utils import tiny_model_config, write_tiny_dataset
from tf_rgbd.config.depthnet import DepthTrainingConfig
from tf_rgbd.config.recognizer import (RecognizerExperimentConfig, RecognizerLossConfig,
                                       RecognizerModelConfig, SGDConfig)
from tf_rgbd.config.run import RunConfig
from tf_rgbd.data import pipeline
from tf_rgbd.models import loading
from tf_rgbd.training import depth_training, recognizer_training, runner
from tf_rgbd.training.checkpointing import CHECKPOINT_SUBDIR

SIZE = 16


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_dataset(str(tmp_path_factory.mktemp("data")), size=SIZE, train=12, test=4)


def _count_decodes(monkeypatch):
    """Wraps the pipeline's record decoder so every decoded record increments a counter."""
    calls = {"count": 0}
    original = pipeline._decode_record

    def bump():
        calls["count"] += 1
        return np.int64(0)

    def counting(shard, index, serialized, *args):
        counted = tf.py_function(bump, [], tf.int64)
        with tf.control_dependencies([counted]):
            return original(shard, tf.identity(index), serialized, *args)

    monkeypatch.setattr(pipeline, "_decode_record", counting)
    return calls


def test_resumed_dataset_skips_records_before_decoding_and_keeps_the_augmentation(
        data_dir, monkeypatch):
    """A run resumed at step N must not decode the N * batch records it skips, and must see
    exactly the batch (same records, same augmentation) the uninterrupted run saw."""
    options = dict(batch_size=4, image_size=SIZE, augment=True, shuffle=True, repeat=True,
                   seed=5, deterministic=True, drop_remainder=True)
    skip_batches = 25                      # 100 records: 8 passes over the 12 training records
    uninterrupted = pipeline.make_dataset(data_dir, "train", **options)
    expected = list(uninterrupted.take(skip_batches + 1).as_numpy_iterator())[-1]

    calls = _count_decodes(monkeypatch)
    resumed = pipeline.make_dataset(data_dir, "train", skip_examples=skip_batches * 4, **options)
    iterator = iter(resumed)
    first = {key: value.numpy() for key, value in next(iterator).items()}
    del iterator
    # Parallel map + prefetch may decode a few batches ahead, never the 100 skipped records.
    assert 4 <= calls["count"] <= 40, calls
    for key in ("rgb", "depth", "mask", "label", "landmarks5"):
        np.testing.assert_array_equal(first[key], expected[key], err_msg=key)


def _recognizer_experiment(data_dir, model_dir, **run):
    values = dict(data_dir=data_dir, model_dir=model_dir, batch_size=4, epochs=2,
                  steps_per_epoch=3, checkpoint_every_steps=2, augment=True, seed=3,
                  verbose="0", run_eagerly=True)
    values.update(run)
    return RecognizerExperimentConfig(
        model=RecognizerModelConfig(backbone="tiny", image_size=SIZE, embedding_dim=8,
                                    dropout_rate=0.4),
        loss=RecognizerLossConfig(), optimizer=SGDConfig(learning_rate=0.05,
                                                         lr_decay_epochs=(1,)),
        run=RunConfig(**values), variant="full")


class _Interrupt(Exception):
    pass


class _InterruptAtStep(keras.callbacks.Callback):
    """Stops the process's training with an exception after ``step`` steps (as a kill would,
    after the step's checkpoint was written)."""

    def __init__(self, step):
        super().__init__()
        self.step, self.seen = step, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.step:
            raise _Interrupt()


def _checkpoint_values(model_dir):
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(
        os.path.join(model_dir, CHECKPOINT_SUBDIR)))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")}


def test_interrupted_and_resumed_recognizer_run_equals_the_uninterrupted_one(data_dir, tmp_path):
    straight = _recognizer_experiment(data_dir, str(tmp_path / "straight"))
    runner.run(straight, recognizer_training.RecognizerTrainingTask(straight))

    interrupted = _recognizer_experiment(data_dir, str(tmp_path / "interrupted"))
    with pytest.raises(_Interrupt):
        runner.run(interrupted, recognizer_training.RecognizerTrainingTask(interrupted),
                   extra_callbacks=[_InterruptAtStep(4)])
    summary = recognizer_training.run_training(interrupted)
    assert (summary["start_step"], summary["total_steps"]) == (4, 6)

    want, got = _checkpoint_values(straight.run.model_dir), _checkpoint_values(
        interrupted.run.model_dir)
    assert set(want) == set(got)
    # The optimiser's iteration count and momentum slots are part of what must be equal.
    optimizer_state = [name for name in want if name.startswith("optimizer/_variables/")]
    assert len(optimizer_state) > 10 and "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE" in want
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)


def _depth_config(data_dir, model_dir, **run):
    values = dict(data_dir=data_dir, model_dir=model_dir, batch_size=4, steps=2,
                  steps_per_epoch=2, val_split="", checkpoint_every_steps=2, verbose="0",
                  run_eagerly=True)
    values.update(run)
    return DepthTrainingConfig(
        model=tiny_model_config(image_size=SIZE, base_filters=4, max_filters=8,
                                discriminator_filters=4, discriminator_downsamples=1),
        run=RunConfig(**values))


# The traced step (what production runs) under each policy; the other runs of this file train
# eagerly (RunConfig.run_eagerly: tracing costs more than their few steps).
PRECISION_RUNS = {"mixed_float16": dict(mixed_precision="mixed_float16", run_eagerly=False),
                  "mixed_bfloat16": dict(mixed_precision="mixed_bfloat16", run_eagerly=False),
                  "xla": dict(jit_compile=True, run_eagerly=False)}


def _assert_finite_and_decreasing(history, key):
    values = history[key]
    assert len(values) >= 2 and np.isfinite(values).all(), (key, values)
    assert values[-1] < values[0], (key, values)


@pytest.mark.parametrize("arch,precision", [("depthnet", "mixed_bfloat16"),
                                            ("depthnet", "mixed_float16"), ("depthnet", "xla"),
                                            ("cgan", "mixed_bfloat16")])
def test_depth_run_under_mixed_precision_and_xla(data_dir, tmp_path, arch, precision):
    """A few epochs (2 steps each) under the policy: finite losses, the generator's falling."""
    run = dict(PRECISION_RUNS[precision], steps=6)
    before = keras.mixed_precision.global_policy().name
    config = _depth_config(data_dir, str(tmp_path / "run"), **run)
    # lr 2e-3 (BUILD.md's small-budget setting): at 2e-4 six steps barely move the tiny GAN.
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, arch=arch),
                                 optimizer=dataclasses.replace(config.optimizer,
                                                               learning_rate=2e-3))
    result = depth_training.train_depth_model(config)
    _assert_finite_and_decreasing(result.history, "g_loss")
    assert np.isfinite(result.history["d_loss"]).all()
    assert result.summary["mixed_precision"] == run.get("mixed_precision", "float32")
    # The run leaves no global state behind, and its generator file serves in float32.
    assert keras.mixed_precision.global_policy().name == before
    generator = loading.load_depth_generator(result.outputs["generator"])
    assert not loading.uses_mixed_precision(generator)


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16", "xla"])
def test_recognizer_run_under_mixed_precision_and_xla(data_dir, tmp_path, precision):
    """The recognizer trains under each policy (float16 with loss scaling) with a finite,
    falling loss, and its .keras files reload as float32 models."""
    # The whole training split (12 faces) in every batch, no dropout, no augmentation: with
    # batches of 4 random faces, 2-step epoch means of ArcFace (s = 64) jump by +-50% in float32
    # too, and "the loss fell" was a coin flip (it had failed for mixed_bfloat16, seed 3).
    # Measured on the full batch, steps 1-6: float32 73.5 96.7 83.0 38.9 61.1 36.9,
    # mixed_bfloat16 73.3 93.8 109.3 57.3 82.4 62.1 (same first loss; bf16 rounding is
    # amplified by the margin head from step 2 on, as between 1 and 2 workers).
    # mixed_float16: dynamic loss scaling starts at 2^15 and skips the steps whose scaled
    # gradients overflow float16, halving the scale each time (with batches of 4 the loss
    # "fell" with no update at all: measured 73.497 73.500 73.509 over the first 6 skipped
    # steps on the full batch), so it gets more steps.
    epochs = 8 if precision == "mixed_float16" else 3
    experiment = _recognizer_experiment(data_dir, str(tmp_path / "run"), epochs=epochs,
                                        steps_per_epoch=2, augment=False, batch_size=12,
                                        **PRECISION_RUNS[precision])
    experiment = dataclasses.replace(
        experiment, model=dataclasses.replace(experiment.model, dropout_rate=0.0),
        # lr 0.01: ArcFace (s = 64) at 0.05 jumps between 2-step epochs.
        optimizer=SGDConfig(learning_rate=0.01, lr_decay_epochs=()))
    result = runner.run(experiment, recognizer_training.RecognizerTrainingTask(experiment))
    assert np.isfinite(result.history["loss"]).all(), result.history["loss"]
    assert keras.mixed_precision.global_policy().name == "float32"
    for name in ("recognizer", "inference"):
        model = loading.load_keras_model(result.outputs[name])
        assert not loading.uses_mixed_precision(model), name
    _assert_finite_and_decreasing(result.history, "loss")


def test_schedule_and_refusing_a_changed_model(data_dir, tmp_path):
    assert runner.schedule(RunConfig(batch_size=4, epochs=3), example_count=10) == (2, 6)
    assert runner.schedule(RunConfig(batch_size=4, steps=5, steps_per_epoch=8), 10) == (5, 5)
    config = _depth_config(data_dir, str(tmp_path / "run"))
    depth_training.train_depth_model(config)
    changed = dataclasses.replace(config, model=dataclasses.replace(config.model,
                                                                    base_filters=8))
    with pytest.raises(ValueError, match="started with model"):
        depth_training.train_depth_model(changed)
    with pytest.raises(KeyError, match="no split 'nope'"):
        depth_training.train_depth_model(dataclasses.replace(
            config, run=dataclasses.replace(config.run, train_split="nope")))
