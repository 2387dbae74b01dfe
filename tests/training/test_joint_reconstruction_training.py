"""The three phases of joint reconstruction training: the targets, what each phase trains and
that its loss falls. Training through the runner, resuming a phase and reusing finished ones
are tested on the runs of ``run_seed(quick=True)`` (tests/experiments/
test_joint_reconstruction.py), which trains every phase through the runner anyway."""
import dataclasses
import keras
import numpy as np
import pytest

from tests.joint_data import tiny_joint_dataset
from tf_rgbd.config.joint_reconstruction import JointReconstructionConfig
from tf_rgbd.config.run import RunConfig
from tf_rgbd.models.joint_reconstruction import joint_model_from_config
from tf_rgbd.training import joint_reconstruction_training as jt


def _config(model_dir="", **overrides):
    fields = dict(run=RunConfig(data_dir=tiny_joint_dataset(), model_dir=model_dir, batch_size=4,
                                augment=False, verbose="0", checkpoint_every_steps=1,
                                run_eagerly=True),
                  num_shape_vertices=16, phase1_steps=1, phase2_steps=1,
                  phase3_steps=2)
    fields.update(overrides)
    return JointReconstructionConfig(**fields)


@pytest.fixture(scope="module")
def prepared():
    config = _config()
    labels = jt.training_labels(config.run.data_dir, "train")
    targets = jt.load_shape_targets(config, "train")
    config = jt.resolve_config(config, targets, labels)
    batch = next(iter(jt.make_joint_dataset(config, "train", targets, labels)))
    return config, targets, labels, batch


def test_targets_and_batches(prepared):
    config, targets, labels, batch = prepared
    assert (config.latent_id_dim, config.latent_res_dim, config.num_classes) == (36, 7, 4)
    assert targets.shape.shape == targets.neutral.shape == (len(targets.example_ids), 16, 3)
    mean = jt.mean_neutral_shape(config, targets)
    by_identity = targets.neutral_by_label()
    np.testing.assert_allclose(mean, np.mean(list(by_identity.values()), axis=0), rtol=1e-6)
    rows = [targets.example_ids.index(i.decode()) for i in batch["example_id"].numpy()]
    np.testing.assert_allclose(batch["shape"].numpy() * config.shape_unit_mm,
                               targets.shape[rows], rtol=1e-6)
    np.testing.assert_allclose(batch["latent"].numpy()[:, :36], targets.identity_coeffs[rows])
    with pytest.raises(ValueError, match="augment"):
        jt.make_joint_dataset(dataclasses.replace(
            config, run=dataclasses.replace(config.run, augment=True)), "train", targets,
            training=True)


def _snapshot(layer):
    return [np.array(w) for w in layer.weights]


def _moved(before, layer):
    return any(not np.array_equal(b, np.array(w)) for b, w in zip(before, layer.weights))


def test_each_phase_trains_its_own_part_and_its_loss_falls(prepared):
    config, targets, _, batch = prepared
    model = joint_model_from_config(config, 16, 3)
    model.set_mean_shape(jt.mean_neutral_shape(config, targets) / config.shape_unit_mm)
    parts = {"encoder": model.encoder, "f_id": model.decoders["id"],
             "f_res": model.decoders["res"], "classifier": model.classifier}
    expected = {1: {"encoder"}, 2: {"f_id", "f_res"},
                3: {"encoder", "f_id", "f_res", "classifier"}}
    keras.utils.set_random_seed(0)

    def train(phase, identification_loss, steps):
        trainer = jt.JointReconstructionTrainer(model, phase, config.lambda_r,
                                                identification_loss, config.shape_unit_mm)
        trainer.compile(optimizer=keras.optimizers.Adam(3e-3), run_eagerly=True)
        before = {name: _snapshot(layer) for name, layer in parts.items()}
        losses = [float(trainer.train_step(batch)["loss"]) for _ in range(steps)]
        return losses, {name for name, layer in parts.items() if _moved(before[name], layer)}

    for phase in (1, 2, 3):
        losses, moved = train(phase, True, 3)
        # The logged loss is the running mean: it falls only if the batch loss does.
        assert losses[-1] < losses[0], (phase, losses)
        assert moved == expected[phase], (phase, moved)
    # Without the identification loss (disentangle row) phase III leaves the classifier.
    _, moved = train(3, False, 1)
    assert moved == {"encoder", "f_id", "f_res"}


def test_depth_map_shapes_pool_valid_pixels_by_hand():
    depth = np.array([[0.5, 0.5, 0, 0], [0.5, 0, 0, 0], [1.0, 0, 0.2, 0.2], [0, 0, 0.2, 0.2]],
                     np.float32)
    batch = {"depth": depth[None, ..., None], "neutral_depth": np.full((1, 4, 4, 1), 0.4,
                                                                       np.float32)}
    shape, neutral, weights = jt.depth_map_shapes(batch, grid=2, depth_range_mm=100.0)
    # Cells: (3 valid of 4, mean 0.5), (none), (1 of 4: less than half), (all, 0.2).
    np.testing.assert_allclose(shape.numpy()[0, :, 0], [50.0, 0.0, 100.0, 20.0], rtol=1e-6)
    np.testing.assert_allclose(neutral.numpy()[0, :, 0], [40.0] * 4, rtol=1e-6)
    np.testing.assert_array_equal(weights.numpy()[0], [1, 0, 0, 1])
    with pytest.raises(ValueError, match="depth_grid"):
        jt.depth_map_shapes(batch, grid=3, depth_range_mm=100.0)
