"""The Siamese depth verifier: the shared harness, one shared encoder, a symmetric distance."""
import numpy as np
import pytest

from tests import helpers
from tf_rgbd.models.siamese import SiameseDepthVerifier

SIZE = 16


@pytest.fixture(scope="module")
def verifier():
    return SiameseDepthVerifier(backbone="tiny", image_size=SIZE, embedding_dim=8,
                                name="verifier")


def _inputs(seed=0):
    return {"depth_a": helpers.random_images(3, SIZE, 1, seed=seed, low=0.0, high=1.0),
            "depth_b": helpers.random_images(3, SIZE, 1, seed=seed + 1, low=0.0, high=1.0)}


def test_harness(verifier, tmp_path):
    outputs = helpers.run_model_checks(
        verifier, _inputs(), {"embedding_a": (3, 8), "embedding_b": (3, 8), "distance": (3,),
                              "score": (3,)}, tmp_path)
    np.testing.assert_allclose(np.linalg.norm(outputs["embedding_a"], axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(outputs["score"], -outputs["distance"])
    assert np.all((outputs["distance"] >= 0) & (outputs["distance"] <= 2.0 + 1e-6))


def test_one_encoder_for_both_inputs(verifier):
    inputs = _inputs(seed=5)
    outputs = verifier(inputs, training=False)
    swapped = verifier({"depth_a": inputs["depth_b"], "depth_b": inputs["depth_a"]},
                       training=False)
    np.testing.assert_allclose(outputs["distance"], swapped["distance"], atol=1e-6)
    np.testing.assert_allclose(outputs["embedding_b"], verifier.embed(inputs["depth_b"]),
                               atol=1e-6)
    same = verifier({"depth_a": inputs["depth_a"], "depth_b": inputs["depth_a"]},
                    training=False)
    assert np.max(same["distance"]) < 1e-4
    # Exactly one encoder's weights (no second tower).
    assert len(verifier.trainable_weights) == len(verifier.encoder.trainable_weights)
