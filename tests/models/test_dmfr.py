"""The DMFR network through the shared harness (shapes, gradients, config and .keras round
trips), the disentangle module's split/reconstruction shapes, and the filter's identity start."""
import numpy as np
import pytest

from tests import helpers
from tf_rgbd.models.dmfr import DMFRNetwork, FeatureFilter

SIZE = 32


@pytest.mark.parametrize("mode", ["disentangle", "filter"])
def test_dmfr_network_passes_the_model_harness(mode, tmp_path):
    network = DMFRNetwork(4, mode=mode, backbone="tiny", image_size=SIZE, embedding_dim=16,
                          disentangle_dim=8, name=f"dmfr_{mode}")
    network.build((None, SIZE, SIZE, 3))
    images = helpers.random_images(2, SIZE, 3)
    expected = {"embedding": (2, 8 if mode == "disentangle" else 16)}
    if mode == "disentangle":
        # M = stage 3 of the tiny backbone (32 channels at S/8); f_id = f_entangle - f_non_id.
        expected.update({"feature_map": (2, SIZE // 8, SIZE // 8, 32),
                         "reconstruction": (2, SIZE // 8, SIZE // 8, 32),
                         "f_entangle": (2, 8), "f_non_id": (2, 8)})
    outputs = helpers.run_model_checks(network, images, expected, tmp_path)
    if mode == "disentangle":
        np.testing.assert_allclose(outputs["embedding"],
                                   outputs["f_entangle"] - outputs["f_non_id"], atol=1e-5)
    assert network.cosface.m3 == pytest.approx(0.4) and network.cosface.m2 == 0.0
    assert network.cosface.class_weights.shape == (expected["embedding"][1], 4)


def test_feature_filter_starts_as_the_identity_and_serialises(tmp_path):
    layer = FeatureFilter(hidden_dim=6)
    features = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    np.testing.assert_allclose(layer(features), features, atol=1e-6)
    helpers.assert_config_round_trip(layer)
    with pytest.raises(ValueError, match="mode"):
        DMFRNetwork(4, mode="bogus")
