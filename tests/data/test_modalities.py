"""Dataset keys -> model inputs: which key feeds the depth branch, and picking inputs."""
import pytest

from tf_rgbd.data import modalities


def test_select_inputs_and_depth_key():
    batch = {"rgb": 1, "gt_depth": 2, "depth": 3, "mask": 4, "label": 5}
    assert modalities.select_inputs(batch, ("rgb", "depth"), "gt_depth") == {
        "rgb": 1, "depth": 2}
    manifest = {"dataset": "d", "splits": {
        "test": {"histograms": {"domain": {"generated": 4}}},
        "train": {"histograms": {"domain": {"synthetic": 4}}}}}
    assert modalities.resolve_depth_key(manifest, "test", "generated") == "depth"
    assert modalities.resolve_depth_key(manifest, "test", "gt") == "gt_depth"
    assert modalities.resolve_depth_key(manifest, "train", "gt") == "depth"
    with pytest.raises(ValueError, match="augmented"):
        modalities.resolve_depth_key(manifest, "train", "generated")
