"""cGAN baseline generator (fully convolutional, tanh) and conv + FC discriminator."""
import numpy as np

from tests import helpers
from tf_rgbd.models.cgan_depth import CGANDepthDiscriminator, CGANDepthGenerator


def test_generator_shapes_range_round_trip(tmp_path):
    model = CGANDepthGenerator(image_size=32, base_filters=8, max_filters=32)
    outputs = helpers.run_model_checks(model, {"rgb": helpers.random_images(2, 32, 3)},
                                       {"depth": (2, 32, 32, 1)}, tmp_path)
    assert set(outputs) == {"depth"} and np.abs(outputs["depth"]).max() <= 1
    # Fully convolutional: no dense layers anywhere.
    assert not any("dense" in layer.__class__.__name__.lower() for layer in model._flatten_layers())


def test_discriminator_is_conv_plus_fully_connected(tmp_path):
    model = CGANDepthDiscriminator(base_filters=4, num_downsamples=3, hidden_units=8)
    helpers.run_model_checks(model, helpers.random_images(3, 32, 1, low=0.0),
                             {"output": (3, 1)}, tmp_path)
    assert model.hidden.kernel.shape == (4 * 4 * 16, 8)


def test_mixed_precision_outputs_gradients_and_float32_files(tmp_path):
    helpers.run_precision_checks(
        lambda: CGANDepthGenerator(image_size=32, base_filters=4, max_filters=8),
        {"rgb": helpers.random_images(2, 32, 3)}, tmp_path)
    helpers.run_precision_checks(
        lambda: CGANDepthDiscriminator(base_filters=4, num_downsamples=3, hidden_units=8),
        helpers.random_images(2, 32, 1, low=0.0), tmp_path)
