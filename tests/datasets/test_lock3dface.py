"""Lock3DFace reader: <subject>_Kinect_<VAR>_<n>DEPTH/RGB frame folders, protocol by variation."""
import numpy as np
import pytest

from tf_rgbd.data.sources import lock3dface
from tests.datasets import common
from tf_rgbd.testing import format_writers as writers
from tf_rgbd.data import kinect

VIDEOS = ["002_Kinect_NU_1", "002_Kinect_FE_1", "002_Kinect_PS_1", "002_Kinect_OC_1",
          "002_Kinect_TM_1", "003_Kinect_NU_1", "003_Kinect_TM_2"]


def test_parse_video():
    assert lock3dface.parse_video("/x/002_Kinect_OC_3DEPTH/7.png") == {
        "subject": "002", "variation": "OC", "video_index": 3}
    with pytest.raises(ValueError):
        lock3dface.parse_video("/x/other/7.png")


def test_build_labels_and_protocol(tmp_path):
    camera = kinect.nominal_intrinsics(256, 212, 182.5)
    depth, rgb = writers.kinect_frame(950.0, camera, 212, 256)
    files = {}
    for video in VIDEOS:
        for frame in (1, 2, 3):
            files[f"{video}DEPTH/{frame}.png"] = np.rint(depth).astype(np.uint16)
            files[f"{video}RGB/{frame}.jpg"] = rgb
    writers.write_image_tree(str(tmp_path / "in"), files)
    manifest, examples = common.build_and_read(
        source="lock3dface", input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out"),
        kinect_focal_px=182.5, frame_stride=2, use_mediapipe=False)
    assert manifest["example_count"] == 2 * len(VIDEOS) and list(examples) == ["test"]
    by_id = {e.example_id: e for e in examples["test"]}
    assert set(by_id) >= {"002/002_NU_1/000001", "002/002_NU_1/000003"}
    assert by_id["002/002_TM_1/000001"].session == 2
    assert by_id["002/002_FE_1/000001"].expression == "expression"
    assert by_id["002/002_OC_1/000003"].occlusion == "occluded"
    assert by_id["002/002_NU_1/000001"].depth.max() > 0
    protocol = common.read_protocol(str(tmp_path / "out"), "lock3dface_test")
    assert protocol["gallery"] == ["002/002_NU_1/000001", "003/003_NU_1/000001"]
    assert protocol["probes"]["neutral"] == ["002/002_NU_1/000003", "003/003_NU_1/000003"]
    assert protocol["probes"]["pose"] == ["002/002_PS_1/000001", "002/002_PS_1/000003"]
    assert protocol["probes"]["time"] == ["002/002_TM_1/000001", "002/002_TM_1/000003",
                                          "003/003_TM_2/000001", "003/003_TM_2/000003"]
    assert set(protocol["probes"]) == {"neutral", "expression", "pose", "occlusion", "time"}


def test_8bit_depth_frames_are_skipped_unless_their_scale_is_given(tmp_path):
    camera = kinect.nominal_intrinsics(256, 212, 182.5)
    depth, rgb = writers.kinect_frame(950.0, camera, 212, 256)
    # An 8-bit export of the same frame (4 mm per unit), as some viewers save it.
    depth_8bit = np.clip(np.rint(depth / 4.0), 0, 255).astype(np.uint8)
    writers.write_image_tree(str(tmp_path / "in"), {
        "002_Kinect_NU_1DEPTH/1.png": np.rint(depth).astype(np.uint16),
        "002_Kinect_NU_1RGB/1.jpg": rgb,
        "002_Kinect_FE_1DEPTH/1.png": depth_8bit, "002_Kinect_FE_1RGB/1.jpg": rgb})
    settings = dict(source="lock3dface", input_dir=str(tmp_path / "in"), kinect_focal_px=182.5,
                    use_mediapipe=False)
    manifest, examples = common.build_and_read(output_dir=str(tmp_path / "out"), **settings)
    assert [e.example_id for e in examples["test"]] == ["002/002_NU_1/000001"]
    skipped = manifest["splits"]["test"]["skipped"]["depth_not_16bit"]
    assert skipped == {"count": 1, "first": [str(tmp_path / "in/002_Kinect_FE_1DEPTH/1.png")]}
    manifest, examples = common.build_and_read(output_dir=str(tmp_path / "out8"),
                                               depth_8bit_scale_mm=4.0, **settings)
    by_id = {e.example_id: e for e in examples["test"]}
    assert manifest["example_count"] == 2
    neutral, scaled = by_id["002/002_NU_1/000001"].depth, by_id["002/002_FE_1/000001"].depth
    both = (neutral > 0) & (scaled > 0)
    assert both.mean() > 0.2 and np.median(np.abs(neutral[both] - scaled[both])) <= 2.0
