"""Dataset keys -> model inputs: which key feeds the depth branch, and picking inputs."""
import pytest

from tf_rgbd.data import modalities


def test_select_inputs_and_depth_key():
    batch = {"rgb": 1, "gt_depth": 2, "depth": 3, "mask": 4, "label": 5}
    assert modalities.select_inputs(batch, ("rgb", "depth"), "gt_depth") == {
        "rgb": 1, "depth": 2}
    manifest = {"dataset": "d", "extra": {"keep_gt_depth": True}, "splits": {
        "test": {"histograms": {"domain": {"generated": 4}}},
        "train": {"histograms": {"domain": {"synthetic": 4}}}}}
    assert modalities.resolve_depth_key(manifest, "test", "generated") == "depth"
    assert modalities.resolve_depth_key(manifest, "test", "gt") == "gt_depth"
    assert modalities.resolve_depth_key(manifest, "train", "gt") == "depth"
    with pytest.raises(ValueError, match="augmented"):
        modalities.resolve_depth_key(manifest, "train", "generated")


# --- issue 10, defect 1: a requested modality that is absent is an error, never zeros ---------

def _augmented_manifest(keep_gt_depth):
    return {"dataset": "faces_generated", "extra": {"keep_gt_depth": keep_gt_depth},
            "splits": {"train": {"histograms": {"domain": {"generated": 8},
                                                "has_depth": {"True": 8},
                                                "has_mask": {"True": 8}}}}}


def test_gt_depth_of_an_augmented_set_without_it_is_an_error_naming_dataset_split_flag():
    with pytest.raises(ValueError) as raised:
        modalities.resolve_depth_key(_augmented_manifest(False), "train", "gt")
    message = str(raised.value)
    assert "faces_generated" in message and "'train'" in message
    assert "--keep_gt_depth" in message and "--depth_source" in message
    assert modalities.resolve_depth_key(_augmented_manifest(True), "train", "gt") == "gt_depth"


def test_default_depth_source_of_a_generated_dataset_is_the_generated_depth():
    from tf_rgbd.config.recognizer import RecognizerEvalConfig, RecognizerExperimentConfig

    for default in (RecognizerExperimentConfig().depth_source,
                    RecognizerEvalConfig().depth_source):
        # The paper's setup: train on the augmented 2D set with default flags -> D*.
        assert modalities.resolve_depth_key(_augmented_manifest(False), "train", default) == "depth"
        assert modalities.resolve_depth_key(_augmented_manifest(True), "train", default) == "depth"
    real = {"dataset": "rgbd", "splits": {"train": {"histograms": {
        "domain": {"real": 4}, "has_depth": {"True": 4}}}}}
    assert modalities.resolve_depth_key(real, "train", RecognizerExperimentConfig().depth_source
                                        ) == "depth"


def test_examples_lacking_a_requested_modality_are_refused_unless_zero_filling_is_asked():
    manifest = {"dataset": "mixed", "splits": {"train": {"histograms": {
        "domain": {"real": 4}, "has_depth": {"False": 1, "True": 3},
        "has_mask": {"False": 1, "True": 3}}}}}
    with pytest.raises(ValueError, match="'train'.*mixed.*--zero_fill_missing=mask"):
        modalities.check_modalities_present(manifest, "train", ("rgb", "mask"))
    modalities.check_modalities_present(manifest, "train", ("rgb", "mask"), zero_fill=("mask",))
    no_depth = {"dataset": "photos", "splits": {"train": {"histograms": {
        "domain": {"real": 4}, "has_depth": {"False": 4}}}}}
    with pytest.raises(ValueError, match="photos.*no example with depth"):
        modalities.resolve_depth_key(no_depth, "train", "gt")
