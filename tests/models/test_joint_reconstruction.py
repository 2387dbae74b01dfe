"""JointReconstructionModel through the shared model harness, and its shape arithmetic."""
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tf_rgbd.models.joint_reconstruction import JointReconstructionModel, ShapeDecoder

SIZE, POINTS = 32, 10


def _model(**overrides):
    arguments = dict(num_classes=3, num_points=POINTS, channels=3, id_dim=4, res_dim=2,
                     backbone="tiny", image_size=SIZE, embedding_dim=16)
    arguments.update(overrides)
    model = JointReconstructionModel(**arguments)
    model.build()
    return model


@pytest.fixture(scope="module")
def images():
    return tf.random.stateless_uniform([2, SIZE, SIZE, 3], [1, 2], -1.0, 1.0)


def test_disentangled_model_passes_the_harness(images, tmp_path):
    model = _model(decoder_hidden_units=(8,), classifier="arcface")
    model.set_mean_shape(np.arange(POINTS * 3, dtype=np.float32).reshape(POINTS, 3))
    helpers.run_model_checks(model, images, {
        "latent": (2, 6), "identity_features": (2, 4), "logits": (2, 3),
        "shape": (2, POINTS, 3), "delta_id": (2, POINTS, 3), "delta_res": (2, POINTS, 3),
        "neutral_shape": (2, POINTS, 3)}, tmp_path)


def test_shape_is_mean_plus_identity_plus_residual(images):
    model = _model()
    mean = np.random.default_rng(0).normal(size=(POINTS, 3)).astype(np.float32)
    model.set_mean_shape(mean)
    # Untrained decoders start at zero offsets: the prediction is s-bar.
    outputs = model(images, training=False)
    np.testing.assert_allclose(outputs["shape"].numpy(), np.broadcast_to(mean, (2, POINTS, 3)))
    for decoder in model.decoders.values():
        kernel = decoder.output_layer.kernel
        kernel.assign(tf.random.stateless_normal(kernel.shape, [3, 4]))
    outputs = {k: v.numpy() for k, v in model(images, training=False).items()}
    np.testing.assert_allclose(outputs["shape"], mean + outputs["delta_id"] + outputs["delta_res"],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outputs["neutral_shape"], mean + outputs["delta_id"], atol=1e-5)
    np.testing.assert_array_equal(outputs["identity_features"], outputs["latent"][:, :4])
    assert not model.mean_shape.trainable


def test_single_latent_model_has_one_decoder(images):
    model = _model(disentangled=False, channels=1)
    outputs = model(images, training=False)
    helpers.assert_output_shapes(outputs, {"delta": (2, POINTS, 1), "shape": (2, POINTS, 1),
                                           "identity_features": (2, 6), "logits": (2, 3)})
    assert list(model.decoders) == ["all"] and "delta_id" not in outputs
    with pytest.raises(ValueError, match="mean shape"):
        model.set_mean_shape(np.zeros((POINTS, 3)))


def test_decoder_config_round_trip():
    decoder = ShapeDecoder(5, 3, (7,))
    decoder.build((None, 4))
    assert helpers.assert_config_round_trip(decoder).hidden_units == (7,)
