"""Fine-tuning sources (``--init_from``) and loading a trained run's recognizer.

* DepthNet's ``initialize_from`` takes a run directory, a ``.keras`` generator or a checkpoint
  prefix and loads the generator's weights (optimisers stay fresh); a generator of another
  architecture or a directory with nothing to load is an error that says so.
* The recognizer's ``initialize_from`` copies the encoders and re-initialises the classifiers.
* ``load_recognizer`` reads ``recognizer.keras`` and, for a run interrupted before it was
  written, the newest checkpoint — the same weights.
"""
import os
import shutil
import types

import numpy as np
import pytest

from tests.training.depth_test_utils import face_like_batch, tiny_model_config, write_tiny_dataset
from tf_rgbd.config.depthnet import DepthTrainingConfig
from tf_rgbd.config.recognizer import (RecognizerExperimentConfig, RecognizerLossConfig,
                                       RecognizerModelConfig, SGDConfig)
from tf_rgbd.config.recognizer import RECOGNIZER_FILE
from tf_rgbd.config.run import RunConfig
from tf_rgbd.models import loading
from tf_rgbd.models.recognizer import build_inference_model, recognizer_from_config
from tf_rgbd.training import depth_training, recognizer_training
from tf_rgbd.training.checkpointing import CHECKPOINT_SUBDIR

SIZE = 16


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_dataset(str(tmp_path_factory.mktemp("data")), size=SIZE, train=8, test=4)


def _depth_model(**overrides):
    values = dict(image_size=SIZE, base_filters=4, max_filters=8, discriminator_filters=4,
                  discriminator_downsamples=1)
    values.update(overrides)
    return tiny_model_config(**values)


def _fresh_depth_trainer(**overrides):
    trainer = depth_training.build_depth_trainer(_depth_model(**overrides))
    trainer(face_like_batch(batch_size=1, size=SIZE))
    return trainer


def _weights_by_path(layer, prefix: str = "") -> dict:
    """``sublayer/.../variable name`` -> value, from the layer tree (a freshly built and a
    reloaded model differ in variable creation order and in their variables' ``path``)."""
    found = {f"{prefix}{variable.name}": np.asarray(variable)
             for variable in layer._trainable_variables + layer._non_trainable_variables}
    for child in layer._layers:
        found.update(_weights_by_path(child, f"{prefix}{child.name}/"))
    return found


def _assert_same_weights(first, second):
    first, second = _weights_by_path(first), _weights_by_path(second)
    assert sorted(first) == sorted(second) and first
    for path in first:
        np.testing.assert_array_equal(first[path], second[path], err_msg=path)


def test_depth_initialize_from_run_dir_keras_file_and_checkpoint(data_dir, tmp_path):
    model_dir = str(tmp_path / "source")
    depth_training.train_depth_model(DepthTrainingConfig(
        model=_depth_model(), run=RunConfig(data_dir=data_dir, model_dir=model_dir,
                                            batch_size=4, steps=2, steps_per_epoch=2,
                                            val_split="", checkpoint_every_steps=2,
                                            verbose="0", run_eagerly=True)))
    trained = loading.load_depth_generator(os.path.join(model_dir, "generator.keras"))
    checkpoint = os.path.join(model_dir, CHECKPOINT_SUBDIR, "ckpt-2")
    for source, says in ((model_dir, "checkpoint"), (os.path.join(model_dir, "generator.keras"),
                                                     "generator weights"), (checkpoint,
                                                                             "checkpoint")):
        trainer = _fresh_depth_trainer()
        before = _weights_by_path(trainer.generator)
        assert says in depth_training.initialize_from(trainer, source)
        _assert_same_weights(trainer.generator, trained)
        assert any(not np.array_equal(before[path], value)
                   for path, value in _weights_by_path(trained).items())

    with pytest.raises(ValueError, match="does not match this run's architecture"):
        depth_training.initialize_from(_fresh_depth_trainer(base_filters=8),
                                       os.path.join(model_dir, "generator.keras"))
    with pytest.raises(FileNotFoundError, match="no checkpoints/ and no generator.keras"):
        depth_training.initialize_from(_fresh_depth_trainer(), str(tmp_path))


def _recognizer_experiment(data_dir, model_dir, **model):
    values = dict(backbone="tiny", image_size=SIZE, embedding_dim=8, dropout_rate=0.0)
    values.update(model)
    return RecognizerExperimentConfig(
        model=RecognizerModelConfig(**values), loss=RecognizerLossConfig(losses=("cls",)),
        optimizer=SGDConfig(learning_rate=0.05, lr_decay_epochs=()),
        run=RunConfig(data_dir=data_dir, model_dir=model_dir, batch_size=4, epochs=1,
                      steps_per_epoch=2, checkpoint_every_steps=2, seed=1, verbose="0",
                      run_eagerly=True),
        variant="full")


def test_load_recognizer_falls_back_to_the_newest_checkpoint_and_fine_tunes(data_dir, tmp_path):
    model_dir = str(tmp_path / "run")
    recognizer_training.run_training(_recognizer_experiment(data_dir, model_dir))
    batch = face_like_batch(batch_size=2, size=SIZE)
    inputs = {"rgb": batch["rgb"], "depth": batch["depth"], "mask": batch["mask"]}

    from_file, experiment = recognizer_training.load_recognizer(model_dir)
    expected = build_inference_model(from_file, SIZE)(inputs)
    os.remove(os.path.join(model_dir, RECOGNIZER_FILE))       # as if killed before the end
    from_checkpoint, _ = recognizer_training.load_recognizer(model_dir)
    got = build_inference_model(from_checkpoint, SIZE)(inputs)
    for key in expected:
        np.testing.assert_allclose(np.asarray(got[key]), np.asarray(expected[key]), atol=1e-6)

    # Fine-tuning from that run: the encoders are copied, the classifiers are new.
    task = recognizer_training.RecognizerTrainingTask(
        _recognizer_experiment(data_dir, str(tmp_path / "fine_tuned")))
    target = recognizer_from_config(experiment.model, experiment.num_classes)
    classifier_before = {path: value.copy()
                         for path, value in _weights_by_path(target.identity_classifier).items()}
    message = task.initialize_from(
        types.SimpleNamespace(trainer=types.SimpleNamespace(recognizer=target)), model_dir)
    assert "encoder part(s)" in message and "classifiers re-initialised" in message
    for part in ("identity_encoders", "style_encoders"):
        for branch, layer in getattr(target, part).items():
            _assert_same_weights(layer, getattr(from_file, part)[branch])
    _assert_same_weights(target.mask_encoder, from_file.mask_encoder)
    for path, value in _weights_by_path(target.identity_classifier).items():
        np.testing.assert_array_equal(value, classifier_before[path])

    shutil.rmtree(os.path.join(model_dir, CHECKPOINT_SUBDIR))
    with pytest.raises(FileNotFoundError, match="neither recognizer.keras nor checkpoints"):
        recognizer_training.load_recognizer(model_dir)
