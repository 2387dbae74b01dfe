"""DepthNetGAN / cGAN trainers: the losses fall when overfitting one batch, distributed and
single-device updates agree, test_step metrics equal tf_rgbd.metrics.depth's."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.training.depth_test_utils import IMAGE_SIZE, face_like_batch, tiny_model_config

# Training tests run at 16x16 (a 2-level UNet) to keep the suite fast on a shared CPU.
SMALL = 16
from tf_rgbd.config.depthnet import DepthLossWeights, OptimizerConfig
from tf_rgbd.metrics import depth as depth_metrics
from tf_rgbd.training import depth_training
from tf_rgbd.training import strategy as strategy_lib
from tf_rgbd.training.cgan_trainer import CGANDepthTrainer


def _built_trainer(model_config, optimizer_fn=None, losses=DepthLossWeights()):
    optimizer_fn = optimizer_fn or (lambda: depth_training.make_optimizer(OptimizerConfig()))
    trainer = depth_training.build_depth_trainer(model_config, losses)
    trainer.compile(optimizer_fn(), optimizer_fn())
    trainer.build_for_training(model_config.image_size)
    return trainer


@pytest.mark.parametrize("arch, use_mask_branch, conditional", [
    ("depthnet", True, False), ("depthnet", False, True), ("cgan", False, False)])
def test_training_on_one_fixed_batch_30_times_lowers_generator_loss(arch, use_mask_branch,
                                                                    conditional):
    keras.utils.set_random_seed(0)
    adam = lambda: depth_training.make_optimizer(OptimizerConfig(learning_rate=1e-3))  # noqa: E731
    trainer = _built_trainer(tiny_model_config(arch=arch, use_mask_branch=use_mask_branch,
                                               conditional_discriminators=conditional,
                                               image_size=SMALL, discriminator_downsamples=1),
                             adam)
    batch = face_like_batch(size=SMALL)
    # One step per "epoch": the history holds every step's losses.
    history = trainer.fit(tf.data.Dataset.from_tensors(batch).repeat(), epochs=30,
                          steps_per_epoch=1, verbose=0).history
    g_loss, depth_l1 = history["g_loss"], history["depth_l1"]
    assert np.all(np.isfinite(g_loss)) and np.all(np.isfinite(history["d_loss"]))
    assert np.mean(g_loss[-3:]) < 0.6 * np.mean(g_loss[:3]), g_loss
    assert np.mean(depth_l1[-3:]) < 0.6 * np.mean(depth_l1[:3]), depth_l1
    assert int(trainer.generator_optimizer.iterations) == 30
    assert int(trainer.discriminator_optimizer.iterations) == 30
    if use_mask_branch:
        assert history["mask_bce"][-1] < history["mask_bce"][0]


def test_trainers_have_the_right_parts():
    depthnet = _built_trainer(tiny_model_config(image_size=SMALL))
    assert set(depthnet.discriminators) == {"rgb", "depth", "mask"}
    ablation = _built_trainer(tiny_model_config(image_size=SMALL, use_mask_branch=False))
    assert set(ablation.discriminators) == {"rgb", "depth"}
    assert "mask" not in ablation(face_like_batch(size=SMALL))
    cgan = _built_trainer(tiny_model_config(image_size=SMALL, arch="cgan"))
    assert isinstance(cgan, CGANDepthTrainer)
    assert set(cgan(face_like_batch(size=SMALL))) == {"depth"}
    # Conditional discriminators see the image too: 1 + 3 input channels for D_d.
    conditional = _built_trainer(tiny_model_config(image_size=SMALL, conditional_discriminators=True))
    assert conditional.depth_discriminator.blocks[0].conv.kernel.shape[2] == 4
    assert depthnet.depth_discriminator.blocks[0].conv.kernel.shape[2] == 1


def test_generator_loss_is_the_weighted_sum_of_its_terms():
    trainer = _built_trainer(tiny_model_config(),
                             losses=DepthLossWeights(lambda_depth=3.0, lambda_mask=5.0,
                                                     lambda_adv=7.0, lambda_recon=11.0))
    batch = face_like_batch()
    losses = trainer.compute_losses(batch, trainer.generator(batch["rgb"]), training=False)
    expected = (3 * losses["depth_l1"] + 5 * losses["mask_bce"] + 7 * losses["adv_g"]
                + 11 * losses["recon_l1"])
    np.testing.assert_allclose(float(losses["g_loss"]), float(expected), rtol=1e-6)
    # L_recon is the plain L1 between input and reconstruction.
    outputs = trainer.generator(batch["rgb"])
    np.testing.assert_allclose(float(losses["recon_l1"]),
                               float(tf.reduce_mean(tf.abs(batch["rgb"] - outputs["rgb_recon"]))),
                               rtol=1e-6)


def test_examples_without_depth_do_not_count_in_depth_loss():
    trainer = _built_trainer(tiny_model_config())
    batch = face_like_batch()
    outputs = trainer.generator(batch["rgb"])
    flagged = dict(batch, has_depth=tf.constant([True, False, True, False]),
                   depth=tf.concat([batch["depth"][:1], tf.fill([1, 32, 32, 1], 9.0),
                                    batch["depth"][2:3], tf.fill([1, 32, 32, 1], 9.0)], 0))
    only_valid = {key: tf.gather(value, [0, 2]) for key, value in batch.items()}
    outputs_valid = {key: tf.gather(value, [0, 2]) for key, value in outputs.items()}
    np.testing.assert_allclose(
        float(trainer.compute_losses(flagged, outputs, False)["depth_l1"]),
        float(trainer.compute_losses(only_valid, outputs_valid, False)["depth_l1"]), rtol=1e-5)


def _all_weights(trainer):
    return [np.asarray(v) for v in trainer.generator.weights] + [
        np.asarray(v) for v in trainer.discriminator_variables]


@pytest.mark.parametrize("arch", ["depthnet"])
def test_mirrored_step_equals_single_device_step(arch):
    if len(tf.config.list_logical_devices("CPU")) < 2:
        pytest.skip("needs the 2 logical CPUs configured in tests/conftest.py")
    model_config = tiny_model_config(arch=arch, image_size=SMALL, discriminator_downsamples=1)
    # Plain SGD: an update twice too large (unscaled replica losses) would show; Adam hides it.
    sgd = lambda: keras.optimizers.SGD(0.05)  # noqa: E731
    batch = face_like_batch(batch_size=4, size=SMALL)
    dataset = strategy_lib.make_distributable(tf.data.Dataset.from_tensors(batch).repeat())

    keras.utils.set_random_seed(1)
    single = _built_trainer(model_config, sgd)
    initial = _all_weights(single)
    single.fit(dataset, epochs=1, steps_per_epoch=1, verbose=0)

    strategy = strategy_lib.build_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        mirrored = _built_trainer(model_config, sgd)
        for variable, value in zip(mirrored.generator.weights + mirrored.discriminator_variables,
                                   initial):
            variable.assign(value)
    mirrored.fit(dataset, epochs=1, steps_per_epoch=1, verbose=0)

    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(_all_weights(single), initial))
    assert moved > 1e-3, "the step did not change the weights; the comparison would be vacuous"
    for index, (expected, actual) in enumerate(zip(_all_weights(single), _all_weights(mirrored))):
        np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=0,
                                   err_msg=f"weight {index} differs after one step")


def test_test_step_metrics_equal_the_evaluation_module():
    trainer = _built_trainer(tiny_model_config())
    batches = [face_like_batch(seed=1), face_like_batch(seed=2)]
    dataset = tf.data.Dataset.from_tensor_slices(
        {key: tf.concat([b[key] for b in batches], 0) for key in batches[0]}).batch(4)
    logs = trainer.evaluate(dataset, verbose=0, return_dict=True)
    accumulator = depth_metrics.DepthMetricsAccumulator()
    for batch in batches:
        outputs = trainer.generator(batch["rgb"])
        accumulator.update(outputs["depth"], batch["depth"], batch["mask"], outputs["mask"],
                           has_depth=batch["has_depth"], has_mask=batch["has_mask"])
    expected = accumulator.result()
    for name in ("mse_255_intersection", "mse_255", "delta_1.25", "mask_miou",
                 "mask_pixel_accuracy"):
        np.testing.assert_allclose(logs[name], expected[name], rtol=1e-4, err_msg=name)


def test_image_grid_has_every_panel_in_unit_range():
    trainer = _built_trainer(tiny_model_config())
    images = trainer.render_image_grid(face_like_batch())
    assert set(images) == {"input_rgb", "reconstructed_rgb", "gt_depth", "predicted_depth",
                           "gt_mask", "predicted_mask"}
    for name, image in images.items():
        image = np.asarray(image)
        assert image.shape[:3] == (4, IMAGE_SIZE, IMAGE_SIZE), name
        assert image.min() >= 0 and image.max() <= 1, name


def test_train_depth_model_writes_a_resumable_run(tmp_path):
    import glob
    import json
    import os

    from tests.training.depth_test_utils import write_tiny_dataset
    from tf_rgbd.config.depthnet import DepthTrainingConfig
    from tf_rgbd.config.run import RunConfig
    from tf_rgbd.models.loading import load_depth_generator

    data_dir = write_tiny_dataset(str(tmp_path / "data"), size=SMALL)
    config = DepthTrainingConfig(
        model=tiny_model_config(image_size=SMALL, base_filters=4, max_filters=8,
                                discriminator_filters=4, discriminator_downsamples=1),
        run=RunConfig(data_dir=data_dir, model_dir=str(tmp_path / "run"), batch_size=4,
                      val_split="test", steps=4, steps_per_epoch=2, checkpoint_every_steps=3,
                      verbose="0"))
    result = depth_training.train_depth_model(config)
    assert (result.start_step, result.final_step) == (0, 4)
    run_dir = config.run.model_dir
    with open(os.path.join(run_dir, "config.json")) as handle:
        assert json.load(handle)["model"]["image_size"] == SMALL
    assert sorted(os.path.basename(p) for p in glob.glob(f"{run_dir}/checkpoints/*.index")) == [
        "ckpt-3.index", "ckpt-4.index"]
    assert glob.glob(f"{run_dir}/logs/images/events.*"), "no TensorBoard image grid written"
    assert {"val_mse_255_intersection", "val_mask_miou", "g_loss"} <= set(result.history)
    generator = load_depth_generator(result.outputs["generator"])
    assert set(generator(tf.zeros([1, SMALL, SMALL, 3]))) == {"rgb_recon", "depth", "mask"}
    # Re-running the finished run resumes at its last step and trains no further (exact resume
    # mid-run is tested in test_checkpointing.py).
    again = depth_training.train_depth_model(config)
    assert (again.start_step, again.final_step) == (4, 4)
