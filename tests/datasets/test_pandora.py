"""Pandora reader: 16-bit mm depth PNGs + RGB frames (Kinect v2 layout) from the parametric head."""
import numpy as np
import pytest

from tf_rgbd.data.sources import rgbd_frames
from tests.datasets import common
from tf_rgbd.testing import format_writers as writers
from tf_rgbd.data import faces, kinect

DEPTH_SIZE = (212, 256)            # half-size Kinect v2 depth, to keep the test small
FOCAL = 182.5                      # half of the nominal 365 px


def _frame():
    camera = kinect.nominal_intrinsics(DEPTH_SIZE[1], DEPTH_SIZE[0], FOCAL)
    depth, rgb = writers.kinect_frame(1000.0, camera, *DEPTH_SIZE)
    return np.rint(depth).astype(np.uint16), rgb, camera


def test_rgb_candidates_follow_the_depth_name():
    candidates = rgbd_frames.rgb_candidates("/d/01/base_1_ID01/DEPTH/000001_DEPTH.png")
    assert "/d/01/base_1_ID01/RGB/000001_RGB.png" in candidates
    assert "/d/x/frame_depth.png" not in rgbd_frames.rgb_candidates("/d/x/frame_depth.png")
    assert "/d/x/frame_rgb.jpg" in rgbd_frames.rgb_candidates("/d/x/frame_depth.png")


@pytest.mark.parametrize("use_mediapipe", [False, True])
def test_build_crops_the_face_like_the_formula(tmp_path, use_mediapipe):
    depth, rgb, camera = _frame()
    files = {}
    for subject in ("01", "02"):
        for frame in (1, 2):
            files[f"{subject}/base_1_ID{subject}/DEPTH/{frame:06d}_DEPTH.png"] = depth
            files[f"{subject}/base_1_ID{subject}/RGB/{frame:06d}_RGB.png"] = rgb
    files["02/base_1_ID02/DEPTH/000009_DEPTH.png"] = depth      # no RGB pair: ignored
    writers.write_image_tree(str(tmp_path / "in"), files)
    manifest, examples = common.build_and_read(
        source="pandora", input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out"),
        kinect_focal_px=FOCAL, frame_stride=2, use_mediapipe=use_mediapipe)
    assert manifest["example_count"] == 2 and manifest["class_names"] == ["01", "02"]
    example = examples["train"][0]
    assert example.example_id == "01/base_1_ID01/DEPTH/000001_DEPTH"
    # Expected: the dynamic crop of the known depth around the located head.
    known = depth.astype(np.float32)
    config = kinect.FaceCropConfig(image_size=64)
    analyzer = faces.FaceAnalyzer() if use_mediapipe else None
    location = kinect.locate_face(analyzer, rgb, known, camera, config, "known")
    assert location.method == ("mediapipe" if use_mediapipe else "depth")
    expected = kinect.crop_face(known, camera, location.center_uv, location.distance_mm, config,
                                landmarks_uv=location.landmarks_uv)
    error, coverage = common.median_depth_error(example.depth, expected.depth)
    assert error < 1.0 and coverage > 0.95, (error, coverage)
    formula = FOCAL * 200.0 / location.distance_mm                      # w = f R / D
    if use_mediapipe:   # sized from the face mesh: never smaller than the formula
        assert expected.box[2] >= formula - 1e-6
    else:
        assert expected.box[2] == pytest.approx(formula)
    if use_mediapipe:   # the parametric head is a face to MediaPipe: mesh mask + landmarks
        assert example.mask is not None and {1, 3, 6} <= set(np.unique(example.mask))
        assert example.landmarks5 is not None


def test_unregistered_full_hd_colour_is_reprojected(tmp_path):
    depth, _, _ = _frame()
    colour_camera = kinect.nominal_intrinsics(480, 270, 480 / 2 / np.tan(np.radians(42.05)))
    _, colour = writers.kinect_frame(1000.0, colour_camera, 270, 480)
    writers.write_image_tree(str(tmp_path / "in"), {"01/s/DEPTH/000001_DEPTH.png": depth,
                                                    "01/s/RGB/000001_RGB.png": colour})
    manifest, examples = common.build_and_read(
        source="pandora", input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out"),
        kinect_focal_px=FOCAL, use_mediapipe=False)
    example = examples["train"][0]
    face = example.depth > 0
    assert face.mean() > 0.2
    # The colour crop shows the head where the depth is (not the black background) and little
    # head where there is no depth: depth and colour are registered.
    painted = example.rgb.max(axis=-1) > 0
    assert painted[face].mean() > 0.95 and painted[~face].mean() < 0.1, (
        painted[face].mean(), painted[~face].mean())
