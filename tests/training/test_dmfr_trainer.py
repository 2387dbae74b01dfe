"""One tiny training step per DMFR phase (pre-training, both baselines, meta, disentangle,
filter) on paired batches, the batch layout each phase reads, and the paired input stream."""
import numpy as np
import pytest
import tensorflow as tf

from tf_rgbd.config.dmfr import DMFRLossConfig, DMFRModelConfig
from tf_rgbd.config.recognizer import SGDConfig
from tf_rgbd.models.dmfr import dmfr_network_from_config
from tf_rgbd.training import dmfr_training
from tf_rgbd.training.dmfr_trainer import DMFRTrainer, build_trainer

SIZE, COUNT, CLASSES, BATCH = 32, 12, 3, 8
MODEL = DMFRModelConfig(image_size=SIZE, embedding_dim=8, disentangle_dim=8)


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    images = lambda *shape: rng.uniform(-1, 1, shape).astype(np.float32)  # noqa: E731
    return {"real": images(COUNT, SIZE, SIZE, 3), "label": np.arange(COUNT) % CLASSES,
            "pose_same": images(COUNT, SIZE, SIZE, 3),
            "pose_novel": images(COUNT, 2, SIZE, SIZE, 3),
            "quality": images(COUNT, SIZE, SIZE, 3)}


def test_paired_stream_keeps_rows_aligned_and_resumes_exactly(arrays):
    tagged = dict(arrays)
    # Tag every image with its row (constant image = row / COUNT) to check the pairing.
    rows = (np.arange(COUNT, dtype=np.float32) / COUNT)[:, None, None, None]
    for key in ("real", "pose_same", "quality"):
        tagged[key] = np.broadcast_to(rows, (COUNT, SIZE, SIZE, 3)).copy()
    tagged["pose_novel"] = np.broadcast_to(rows[:, None], (COUNT, 2, SIZE, SIZE, 3)).copy()
    batches = list(dmfr_training.paired_domain_dataset(tagged, 4, seed=3).take(4)
                   .as_numpy_iterator())
    for batch in batches:
        row = np.rint(batch["real"][:, 0, 0, 0] * COUNT).astype(int)
        for key in ("pose_same", "pose_novel", "quality"):
            np.testing.assert_allclose(batch[key][:, 0, 0, 0], batch["real"][:, 0, 0, 0])
        np.testing.assert_array_equal(batch["label"], row % CLASSES)
    resumed = next(iter(dmfr_training.paired_domain_dataset(tagged, 4, seed=3,
                                                            skip_examples=8)))
    np.testing.assert_array_equal(resumed["real"], batches[2]["real"])


@pytest.mark.parametrize("phase", ["pretrain", "real", "mixed", "meta", "disentangle",
                                   "filter"])
def test_one_training_step_per_phase_moves_the_weights(phase, arrays):
    mode = phase if phase in ("meta", "disentangle", "filter") else "none"
    network = dmfr_network_from_config(MODEL, mode, CLASSES)
    trainer, _ = build_trainer(network, phase, DMFRLossConfig(),
                               SGDConfig(learning_rate=0.05, lr_decay_epochs=()), 10)
    batch = next(iter(dmfr_training.paired_domain_dataset(arrays, BATCH, seed=0,
                                                          real_only=phase in ("pretrain",
                                                                              "real"))))
    variables = trainer.trainable_variables_of_phase()
    before = [np.array(variable) for variable in variables]
    logs = trainer.train_step(batch)                      # eager: no tracing in the test
    assert all(np.isfinite(float(value)) for value in logs.values()), logs
    moved = [not np.allclose(old, np.array(new)) for old, new in zip(before, variables)]
    assert sum(moved) >= len(moved) // 2, f"{phase}: only {sum(moved)}/{len(moved)} moved"
    paths = [variable.path for variable in variables]
    if phase == "pretrain":                               # pre-training trains softmax only
        assert network.cosface.class_weights.path not in paths
    else:                                                 # the CosFace prototypes w move
        assert moved[paths.index(network.cosface.class_weights.path)]
    expected = {"meta": {"loss_train", "loss_test"}, "disentangle": {"loss_recons"},
                "filter": {"loss_flt"}}.get(phase, set())
    assert expected <= set(logs)


def test_meta_test_domain_is_drawn_per_step_and_phases_check_their_module():
    network = dmfr_network_from_config(MODEL, "meta", CLASSES)
    trainer, optimizer = build_trainer(network, "meta", DMFRLossConfig(),
                                       SGDConfig(learning_rate=0.05, lr_decay_epochs=()), 10)
    draws = set()
    for step in range(8):
        optimizer.iterations.assign(step)
        draws.add(bool(trainer.meta_test_is_pose()))
    assert draws == {True, False}
    with pytest.raises(ValueError, match="mode='filter'"):
        DMFRTrainer(network, "filter")
    tf.debugging.assert_equal(tf.shape(DMFRTrainer._halves({
        "real": tf.zeros([8, 2, 2, 3]), "label": tf.zeros([8], tf.int32),
        "pose_novel": tf.zeros([8, 2, 2, 3]), "quality": tf.ones([8, 2, 2, 3])})[2])[0], 4)
