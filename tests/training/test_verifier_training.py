"""The depth verifier trains through the runner: the contrastive loss falls, the run writes its
model and the identities it held out (never trained on)."""
import json
import os

import pytest

from tests.verification_data import write_identity_dataset
from tf_rgbd.config.run import RunConfig
from tf_rgbd.config.verifier import DepthVerifierTrainingConfig, VerifierModelConfig
from tf_rgbd.models.siamese import SiameseDepthVerifier
from tf_rgbd.training.verifier_training import load_verifier_run, train_depth_verifier


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("verifier")
    data_dir = write_identity_dataset(str(root / "data"), train_identities=6,
                                      test_identities=2, images_per_identity=4)
    config = DepthVerifierTrainingConfig(
        model=VerifierModelConfig(image_size=16, embedding_dim=16),
        run=RunConfig(data_dir=data_dir, model_dir=str(root / "run"), batch_size=16, steps=24,
                      steps_per_epoch=8, checkpoint_every_steps=24, verbose="0"))
    return train_depth_verifier(config)


def test_the_contrastive_loss_falls(run):
    losses = run.history["loss"]
    assert len(losses) == 3 and losses[-1] < 0.7 * losses[0], losses
    assert run.history["genuine_distance"][-1] < run.history["impostor_distance"][-1]


def test_the_run_writes_the_verifier_and_its_held_out_identities(run):
    verifier, config, identities = load_verifier_run(run.model_dir)
    assert isinstance(verifier, SiameseDepthVerifier) and verifier.image_size == 16
    assert config.loss.margin == 1.0
    assert identities["train_identities"] == [0, 1, 2, 3]
    assert identities["val_identities"] == [4, 5]
    with open(os.path.join(run.model_dir, "training_summary.json"), encoding="utf-8") as handle:
        summary = json.load(handle)
    # 4 training identities x 4 images: the held-out ones are not in the training pairs.
    assert summary["train_examples"] == 16 and summary["total_steps"] == 24
