"""RGBDRecognizerTrainer: gradient routing, overfitting a batch, full run + resume + evaluation."""
import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_rgbd import config as config_lib
from tf_rgbd.config.recognizer import (RecognizerEvalConfig, RecognizerExperimentConfig,
                                       RecognizerLossConfig, RecognizerModelConfig, SGDConfig)
from tf_rgbd.config.run import RunConfig
from tf_rgbd.data import protocol as protocol_lib
from tf_rgbd.data import schema, writer
from tf_rgbd.eval import recognition
from tf_rgbd.models import blocks
from tf_rgbd.training import recognizer_training, rgbd_trainer

SIZE = 32
NUM_IDS = 4


def _model_config(**overrides):
    values = dict(backbone="tiny", image_size=SIZE, embedding_dim=16, dropout_rate=0.0)
    values.update(overrides)
    return RecognizerModelConfig(**values)


def _batch(batch=8, seed=0):
    rng = np.random.default_rng(seed)
    return {"rgb": tf.constant(rng.uniform(-1, 1, (batch, SIZE, SIZE, 3)), tf.float32),
            "depth": tf.constant(rng.uniform(0, 1, (batch, SIZE, SIZE, 1)), tf.float32),
            "mask": tf.one_hot(rng.integers(0, 7, (batch, SIZE, SIZE)), 7),
            "label": tf.constant(np.arange(batch) % NUM_IDS, tf.int32)}


def _trainer(loss_config=RecognizerLossConfig(), learning_rate=0.1, **model_overrides):
    keras.utils.set_random_seed(0)
    optimizer_config = SGDConfig(learning_rate=learning_rate, lr_decay_epochs=())
    trainer, _ = rgbd_trainer.build_trainer(_model_config(**model_overrides), loss_config,
                                            optimizer_config, NUM_IDS, steps_per_epoch=10)
    return trainer


def _nonzero(gradient):
    return gradient is not None and bool(np.any(np.abs(np.asarray(gradient)) > 0))


@pytest.mark.parametrize("cmfl_stop_gradient", [True, False])
def test_gradient_routing(cmfl_stop_gradient):
    trainer = _trainer(RecognizerLossConfig(cmfl_stop_gradient=cmfl_stop_gradient))
    recognizer = trainer.recognizer
    rgb_only, depth_only = recognizer.branch_variables("rgb"), recognizer.branch_variables("depth")
    shared = {"sam": recognizer.spatial_attention.trainable_variables,
              "mask_encoder": recognizer.mask_encoder.trainable_variables,
              "identity_classifier": recognizer.identity_classifier.trainable_variables}
    batch = _batch()
    with tf.GradientTape(persistent=True) as tape:
        results = trainer.compute_branch_losses(batch, training=True)
    total = {branch: results[f"total_{branch}"] for branch in ("rgb", "depth")}
    if cmfl_stop_gradient:
        # With the default stop-gradients each total is blind to the other branch.
        assert not any(_nonzero(g) for g in tape.gradient(total["rgb"], depth_only))
        assert not any(_nonzero(g) for g in tape.gradient(total["depth"], rgb_only))
    assert any(_nonzero(g) for g in tape.gradient(total["rgb"], rgb_only))
    assert any(_nonzero(g) for g in tape.gradient(total["depth"], depth_only))
    for name, variables in shared.items():
        for branch in ("rgb", "depth"):
            assert any(_nonzero(g) for g in tape.gradient(total[branch], variables)), (name, branch)
    # The trainer's routed update: depth-only variables get exactly dL_total^D, RGB-only ones
    # dL_total^RGB, shared ones the sum -- also when CMFL lets gradients cross branches.
    keras.utils.set_random_seed(1)
    _, routed = trainer.routed_gradients(batch)
    routed = {id(variable): gradient for gradient, variable in routed}
    keras.utils.set_random_seed(1)
    with tf.GradientTape(persistent=True) as tape:
        results = trainer.compute_branch_losses(batch, training=True)
    for branch, own in (("rgb", rgb_only), ("depth", depth_only)):
        for gradient, variable in zip(tape.gradient(results[f"total_{branch}"], own), own):
            if gradient is not None:
                np.testing.assert_allclose(routed[id(variable)], gradient, rtol=1e-3, atol=1e-5)
    sam_kernel = recognizer.spatial_attention.trainable_variables[0]
    # (1e-3: the one-pass routing of separable branches sums the same terms in another order;
    # measured up to 1.6e-4 relative. A wrong routing is off by a whole branch's gradient.)
    expected = (tape.gradient(results["total_rgb"], sam_kernel)
                + tape.gradient(results["total_depth"], sam_kernel))
    np.testing.assert_allclose(routed[id(sam_kernel)], expected, rtol=1e-3, atol=1e-5)


def test_normalised_residual_attention_trains_through_the_config():
    """The model config's attention options reach the recognizer; the shared SAM (conv and
    both per-stage BNs) gets the sum of both branches' gradients and both BN slots update."""
    trainer = _trainer(sam_normalization="batch", attention_mode="residual")
    recognizer = trainer.recognizer
    sam = recognizer.spatial_attention
    assert (sam.normalization, recognizer.attention_mode) == ("batch", "residual")
    _, routed = trainer.routed_gradients(_batch())
    routed = {id(variable): gradient for gradient, variable in routed}
    assert all(_nonzero(routed.get(id(variable))) for variable in sam.trainable_variables)
    # The training-mode forward pass updates both stages' BN statistics.
    assert all(float(norm.moving_mean.numpy()[0]) != 0.0 for norm in sam.norms)


def test_overfits_a_tiny_batch():
    trainer = _trainer()
    batch = _batch()
    history = trainer.fit(tf.data.Dataset.from_tensors(batch).repeat(), steps_per_epoch=60,
                          epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    results = trainer.compute_branch_losses(batch, training=False)
    for key in ("acc_rgb", "acc_depth", "acc_fused"):
        assert float(results[key]) == 1.0, {k: float(v) for k, v in results.items()}


def test_single_branch_trains_no_style_classifier_and_no_disentanglement():
    # issue 10, defect 2: one image branch -> L_cls is the identity loss alone, no L_dis.
    trainer = _trainer(modalities=("depth",))
    results = trainer.compute_branch_losses(_batch(), training=True)
    assert "dis_depth" not in results
    assert float(results["cls_depth"]) == pytest.approx(float(results["id_depth"]), rel=1e-6)
    assert not any(name.startswith("loss_dis") for name in trainer.tracker_names)
    _, routed = trainer.routed_gradients(_batch())
    style = {id(v) for v in trainer.recognizer.style_classifier.trainable_variables}
    assert not any(id(variable) in style for _, variable in routed)


def test_learning_rate_schedule_steps_down():
    schedule = rgbd_trainer.learning_rate_schedule(
        SGDConfig(learning_rate=0.1, lr_decay_epochs=(6, 10, 17)), steps_per_epoch=5)
    values = [float(schedule(step)) for step in (0, 29, 31, 49, 51, 84, 86)]
    np.testing.assert_allclose(values, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001, 0.0001], rtol=1e-6)
    optimizer = rgbd_trainer.build_optimizer(SGDConfig(), steps_per_epoch=5)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer.momentum == pytest.approx(0.9)
    # The paper's weight decay, coupled into the gradient (tests/training/test_optimizers.py).
    assert optimizer.l2 == pytest.approx(5e-4) and not optimizer.weight_decay


# --- end to end on a tiny written dataset ------------------------------------------------------

def _face(identity, index, rng):
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    face = (yy - SIZE / 2) ** 2 / 0.16 + (xx - SIZE / 2) ** 2 / 0.12 < SIZE ** 2
    colour = np.array([60 + 50 * identity, 200 - 40 * identity, 90 + 30 * (identity % 2)])
    rgb = np.clip(colour + rng.normal(0, 12, (SIZE, SIZE, 3)), 0, 255) * face[..., None]
    bump = 40.0 * np.exp(-((yy - 10 - 3 * identity) ** 2 + (xx - 16) ** 2) / 30.0)
    depth = np.where(face, 600.0 - bump - rng.uniform(0, 2, (SIZE, SIZE)), 0.0)
    mask = np.where(face, 1, 0).astype(np.uint8)
    mask[12:15, 9:23] = 3  # eyes
    mask[22:25, 12:20] = 6  # mouth
    expression = ("neutral", "smile", "neutral")[index % 3]
    return schema.FaceExample(
        example_id=f"id{identity}_{index}", rgb=rgb.astype(np.uint8), label=identity,
        subject=f"s{identity}", dataset="tiny", domain="synthetic", depth=depth.astype(np.float32),
        mask=mask, expression=expression, yaw_deg=float(10 * (index % 2)))


def _write_tiny_dataset(directory):
    rng = np.random.default_rng(0)

    def produce(task):
        identity, index = task
        yield _face(identity, index, rng)

    splits = {
        "train": writer.write_split(directory, "train",
                                    [(i, k) for i in range(NUM_IDS) for k in range(6)], produce,
                                    num_shards=2, progress=False),
        "test": writer.write_split(directory, "test",
                                   [(i, k) for i in range(NUM_IDS) for k in range(6, 9)],
                                   produce, num_shards=1, progress=False)}
    writer.write_manifest(directory, "tiny", [f"s{i}" for i in range(NUM_IDS)], splits)
    protocol = protocol_lib.Protocol(
        name="tiny_protocol", dataset="tiny", split="test",
        gallery=tuple(f"id{i}_6" for i in range(NUM_IDS)),
        probes={"expression": tuple(f"id{i}_7" for i in range(NUM_IDS)),
                "pose": tuple(f"id{i}_8" for i in range(NUM_IDS))})
    protocol_lib.save_protocol(protocol, protocol_lib.protocol_path(directory, "tiny_protocol"))


def _experiment(data_dir, model_dir, **run_overrides):
    run = dict(data_dir=data_dir, model_dir=model_dir, batch_size=8, epochs=1,
               steps_per_epoch=3, checkpoint_every_steps=2, augment=True, verbose="0",
               run_eagerly=True)
    run.update(run_overrides)
    return RecognizerExperimentConfig(
        model=_model_config(), loss=RecognizerLossConfig(),
        optimizer=SGDConfig(learning_rate=0.05, lr_decay_epochs=(1,)), run=RunConfig(**run),
        variant="full")


def test_run_training_resume_and_evaluation(tmp_path):
    data_dir, model_dir = str(tmp_path / "data"), str(tmp_path / "run")
    _write_tiny_dataset(data_dir)
    experiment = _experiment(data_dir, model_dir)
    summary = recognizer_training.run_training(experiment)
    assert summary["total_steps"] == 3 and summary["start_step"] == 0
    for name in ("config.json", "recognizer.keras", "recognizer_inference.keras",
                 "training_summary.json"):
        assert os.path.exists(os.path.join(model_dir, name)), name
    assert os.listdir(os.path.join(model_dir, "logs"))
    saved = config_lib.load_json(RecognizerExperimentConfig, os.path.join(model_dir, "config.json"))
    assert saved.num_classes == NUM_IDS and saved.model == experiment.model

    # One more epoch resumes from the step-3 checkpoint instead of starting over.
    longer = dataclasses.replace(experiment,
                                 run=dataclasses.replace(experiment.run, epochs=2))
    assert recognizer_training.run_training(longer)["start_step"] == 3
    # A different architecture in the same directory is refused.
    with pytest.raises(ValueError, match="model"):
        recognizer_training.run_training(
            dataclasses.replace(longer, model=_model_config(embedding_dim=8)))

    metrics = recognition.evaluate_recognizer(RecognizerEvalConfig(
        data_dir=data_dir, model_dir=model_dir, protocol="tiny_protocol", depth_source="gt",
        batch_size=6, tsne_identities=4, attention_examples=2), progress=False)
    output_dir = metrics["output_dir"]
    with open(os.path.join(output_dir, "recognition_metrics.json"), encoding="utf-8") as handle:
        written = json.load(handle)
    assert set(written["identification"]) == {"rgb", "depth", "fused"}
    for method in ("rgb", "depth", "fused"):
        subsets = written["identification"][method]["subsets"]
        assert set(subsets) == {"expression", "pose"}
        assert all(0.0 <= entry["rank1"] <= 1.0 and len(entry["cmc"]) == 10
                   for entry in subsets.values())
        assert written["verification"][method]["num_genuine"] == 2 * NUM_IDS
        # 24 impostor pairs: FAR 1e-2 and below are unmeasurable -> nan (JSON NaN).
        assert np.isnan(written["verification"][method]["tar_at_far"]["0.01"])
    for picture in ("cmc_methods.png", "cmc_subsets.png", "roc.png", "tsne.png",
                    "attention.png"):
        assert os.path.getsize(os.path.join(output_dir, picture)) > 1000, picture
    assert "expression" in metrics["tables"]["identification"]
    with pytest.raises(ValueError, match="augmented"):
        recognition.evaluate_recognizer(RecognizerEvalConfig(
            data_dir=data_dir, model_dir=model_dir, protocol="tiny_protocol",
            depth_source="generated"))


def test_mirrored_update_equals_single_device_update():
    """Replica scaling: on 2 replicas the all-reduced (summed) routed gradient equals the
    single-device one. Both replicas see identical halves, so batch-norm statistics agree."""
    from tf_rgbd.training import strategy as strategy_lib

    strategy = strategy_lib.build_strategy("mirrored")
    if strategy.num_replicas_in_sync != 2:
        pytest.skip("needs the 2 logical CPUs configured by tests/conftest.py")
    half = _batch(4, seed=3)
    full = {key: tf.concat([value, value], axis=0) for key, value in half.items()}
    single = _trainer()
    with strategy.scope():
        mirrored = _trainer()

    def watched(trainer):
        recognizer = trainer.recognizer
        return [recognizer.spatial_attention.trainable_variables[0],
                recognizer.identity_encoders["rgb"].stem.conv.kernel,
                recognizer.identity_encoders["depth"].head.dense.kernel]

    def gradients_of(trainer, batch):
        _, routed = trainer.routed_gradients(batch)
        by_id = {id(variable): gradient for gradient, variable in routed}
        return [by_id[id(variable)] for variable in watched(trainer)]

    expected = gradients_of(single, full)
    distributed = next(iter(strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors(full).unbatch().batch(8))))
    per_replica = strategy.run(tf.function(lambda batch: gradients_of(mirrored, batch)),
                               args=(distributed,))
    summed = [strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
              for value in per_replica]
    for got, want in zip(summed, expected):
        # Float sums in different orders differ by ~1e-4 of the scale; a missing replica
        # scaling would be off by a factor of 2.
        scale = float(np.max(np.abs(want)))
        assert scale > 0
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-3 * scale)


def test_fused_batch_norm_training_equals_keras_batch_norm_in_the_whole_recognizer():
    """The fused BN kernel (the default training path) gives the whole recognizer the same
    loss, routed gradients and moving statistics as Keras' op-by-op BatchNormalization, in a
    traced step: every variable, not one layer (a stale note said the model differed by 6%)."""
    batch = _batch(8, seed=5)
    trainers = {"fused": _trainer(), "keras": _trainer()}
    norms = {name: [layer for layer in trainer.recognizer._flatten_layers()
                    if isinstance(layer, blocks.FusedBatchNormalization)]
             for name, trainer in trainers.items()}
    assert norms["fused"], "the recognizer has no batch norm to compare"
    assert blocks.set_fused_batch_norm_training(trainers["keras"].recognizer, False) == len(
        norms["keras"])
    assert all(layer.fused_training for layer in norms["fused"])
    results = {}
    for name, trainer in trainers.items():
        paths = []

        def step(batch, trainer=trainer):
            losses, routed = trainer.routed_gradients(batch)
            paths.extend(variable.path for _, variable in routed)  # once, while tracing
            return losses, [gradient for gradient, _ in routed]

        losses, gradients = tf.function(step)(batch)
        results[name] = ({key: float(value) for key, value in losses.items()},
                         {path: np.asarray(gradient) for path, gradient in zip(paths, gradients)},
                         [np.asarray(layer.moving_variance) for layer in norms[name]])
    fused, reference = results["fused"], results["keras"]
    assert fused[0].keys() == reference[0].keys()
    for key, want in reference[0].items():
        np.testing.assert_allclose(fused[0][key], want, rtol=1e-4, atol=1e-6, err_msg=key)
    assert fused[1].keys() == reference[1].keys()
    # Measured: every gradient within 2e-5 of its own scale. Gradients that are zero in exact
    # arithmetic (a beta feeding a later BN) are rounding noise, judged on the model's scale.
    floor = 1e-3 * max(float(np.max(np.abs(want))) for want in reference[1].values())
    for path, want in reference[1].items():
        scale = max(float(np.max(np.abs(want))), floor)
        np.testing.assert_allclose(fused[1][path], want, rtol=0, atol=1e-3 * scale,
                                   err_msg=path)
    for got, want in zip(fused[2], reference[2]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_run_training_under_mirrored_strategy_fits(tmp_path):
    """fit() under MirroredStrategy (2 logical CPUs) must not choke on the pipeline's bool
    features: Keras reduces the first batch across replicas before training."""
    if len(tf.config.list_logical_devices("CPU")) < 2:
        pytest.skip("needs the 2 logical CPUs configured in tests/conftest.py")
    data_dir, model_dir = str(tmp_path / "data"), str(tmp_path / "run")
    _write_tiny_dataset(data_dir)
    experiment = _experiment(data_dir, model_dir, steps_per_epoch=2, run_eagerly=False,
                             strategy="mirrored", augment=False)
    summary = recognizer_training.run_training(experiment)
    assert summary["total_steps"] == 2
    assert os.path.exists(os.path.join(model_dir, "recognizer.keras"))


def test_identity_classes_are_those_present_in_the_training_split(tmp_path):
    # issue 10, defect 7: a dataset of 5 identities whose training split holds only labels 1
    # and 3 (the others held out): C_id has 2 classes, labels remapped to 0/1.
    from tests import helpers

    data_dir = str(tmp_path / "data")
    labels = [1, 3, 1, 3]
    results = {"train": writer.write_split(
        data_dir, "train", list(range(4)),
        lambda index: [helpers.make_face_example(index, size=SIZE, label=labels[index])],
        num_shards=1, progress=False)}
    writer.write_manifest(data_dir, "gappy", [f"s{i:03d}" for i in range(5)], results)
    experiment = _experiment(data_dir, str(tmp_path / "run"))
    task = recognizer_training.RecognizerTrainingTask(experiment)
    prepared = task.prepare_config(experiment, writer.read_manifest(data_dir))
    assert prepared.num_classes == 2
    assert prepared.depth_source == "gt"   # "auto" resolved on a ground-truth RGB-D dataset
    batch = next(iter(recognizer_training.remap_labels(
        tf.data.Dataset.from_tensor_slices({"label": tf.constant(labels)}).batch(4), (1, 3))))
    assert batch["label"].numpy().tolist() == [0, 1, 0, 1]
