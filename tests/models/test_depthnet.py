"""DepthNetGenerator: shapes, ranges, UNet depth from the image size, save/load round trips."""
import numpy as np
import pytest

from tests import helpers
from tf_rgbd.models.blocks import level_filters, unet_levels
from tf_rgbd.models.depthnet import DepthNetGenerator


def test_unet_depth_follows_the_image_size():
    assert unet_levels(64) == 4      # 64 -> 4
    assert unet_levels(112) == 4     # 112 -> 7
    assert unet_levels(256) == 6     # 256 -> 4
    assert unet_levels(32) == 3
    with pytest.raises(ValueError):
        unet_levels(6)
    assert [level_filters(level, 16, 64) for level in range(4)] == [16, 32, 64, 64]


def test_generator_outputs_shapes_ranges_and_round_trips(tmp_path):
    model = DepthNetGenerator(image_size=32, base_filters=8, max_filters=32)
    inputs = {"rgb": helpers.random_images(2, 32, 3)}
    outputs = helpers.run_model_checks(
        model, inputs, {"rgb_recon": (2, 32, 32, 3), "depth": (2, 32, 32, 1),
                        "mask": (2, 32, 32, 7)}, tmp_path)
    assert np.abs(outputs["rgb_recon"]).max() <= 1 and np.abs(outputs["depth"]).max() <= 1
    assert outputs["mask"].min() >= 0 and outputs["mask"].max() <= 1
    # Per-class sigmoid, not softmax: the class probabilities need not sum to 1.
    assert not np.allclose(outputs["mask"].sum(-1), 1.0, atol=1e-3)
    assert len(model.encoder.down_blocks) == 3
    # A bare tensor works as well as the dict.
    helpers.assert_outputs_close(model(inputs["rgb"]), outputs)


def test_no_mask_branch_has_no_mask_output(tmp_path):
    model = DepthNetGenerator(image_size=48, base_filters=4, max_filters=16,
                              use_mask_branch=False, norm="none")
    outputs = helpers.run_model_checks(
        model, {"rgb": helpers.random_images(1, 48, 3)},
        {"rgb_recon": (1, 48, 48, 3), "depth": (1, 48, 48, 1)}, tmp_path)
    assert "mask" not in outputs and model.mask_head is None


def test_112_pixel_generator_with_batch_norm(tmp_path):
    model = DepthNetGenerator(image_size=112, base_filters=4, max_filters=8, norm="batch")
    helpers.run_model_checks(model, {"rgb": helpers.random_images(1, 112, 3)},
                             {"depth": (1, 112, 112, 1), "mask": (1, 112, 112, 7)}, tmp_path)


def test_decoders_are_separate_but_share_the_encoder():
    model = DepthNetGenerator(image_size=32, base_filters=4, max_filters=8)
    model(helpers.random_images(1, 32, 3))
    face = {id(v) for v in model.face_decoder.weights}
    auxiliary = {id(v) for v in model.auxiliary_decoder.weights}
    assert face and auxiliary and not face & auxiliary
    # depth and mask heads read the same auxiliary trunk; rgb has its own decoder.
    assert model.depth_head.kernel.shape[2] == model.mask_head.kernel.shape[2] == 4


def test_mixed_precision_outputs_gradients_and_float32_files(tmp_path):
    helpers.run_precision_checks(
        lambda: DepthNetGenerator(image_size=32, base_filters=4, max_filters=8),
        {"rgb": helpers.random_images(2, 32, 3)}, tmp_path)
