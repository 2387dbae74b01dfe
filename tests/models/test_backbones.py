"""IR-SE backbones from the registry."""
import keras
import numpy as np
import pytest

from tests import helpers
from tf_rgbd.models import backbones


def test_registry_specs():
    assert set(backbones.backbone_names()) >= {"ir_se50", "ir_se18", "tiny"}
    spec = backbones.backbone_spec("ir_se50")
    assert spec.stage_units == (3, 4, 14, 3)
    assert spec.stage_widths == (64, 128, 256, 512)
    with pytest.raises(ValueError, match="unknown backbone"):
        backbones.get_backbone("resnet1000")
    with pytest.raises(ValueError, match="divisible by 16"):
        backbones.check_input_size(100)


def test_tiny_backbone_shapes_hook_and_saving(tmp_path):
    model = backbones.get_backbone("tiny", input_channels=1, embedding_dim=24,
                                   dropout_rate=0.1, name="depth_net")
    images = helpers.random_images(2, 32, 1, low=0.0)
    helpers.run_model_checks(model, images, {"output": (2, 24)}, tmp_path)
    stages = model.forward(images, training=False)
    widths = backbones.backbone_spec("tiny").stage_widths
    for number, size in backbones.stage_resolutions(32).items():
        assert stages[f"stage{number}"].shape == (2, size, size, widths[number - 1])
    # The hook's output is what the next stage sees (zeroing stage 3 changes the embedding).
    zeroed = model.forward(images, training=False,
                           stage_hook=lambda number, maps: maps * 0.0 if number == 3 else maps)
    assert np.all(np.asarray(zeroed["stage3"]) == 0.0)
    assert not np.allclose(zeroed["embedding"], stages["embedding"])
    with pytest.raises(ValueError, match="input channels"):
        model(helpers.random_images(1, 32, 3))


def test_ir_se50_layout_at_112():
    model = backbones.get_backbone("ir_se50", input_channels=3)
    inputs = keras.Input((112, 112, 3))
    outputs = model.forward(inputs)
    assert outputs["stage1"].shape[1:] == (56, 56, 64)
    assert outputs["stage3"].shape[1:] == (14, 14, 256)
    assert outputs["stage4"].shape[1:] == (7, 7, 512)
    assert outputs["embedding"].shape[1:] == (512,)
    assert [len(stage.units) for stage in model.stages] == [3, 4, 14, 3]
    # Head: BN -> dropout -> flatten -> dense (7*7*512 -> 512) -> BN.
    assert model.head.dense.kernel.shape == (7 * 7 * 512, 512)
    assert model.head.dropout.rate == pytest.approx(0.4)
