"""Biwi reader: RLE depth .bin + calibration + pose files written from the parametric head."""
import os

import numpy as np
import pytest

from tf_rgbd.data.sources import biwi, scan
from tf_rgbd.data.formats import biwi_bin
from tests.datasets import common
from tf_rgbd.testing import format_writers as writers
from tf_rgbd.data import errors, faces, geometry, kinect
from tf_rgbd.data.geometry import CameraIntrinsics
from tf_rgbd.data.errors import SkipExample

DEPTH_CAMERA = CameraIntrinsics(fx=290.0, fy=290.0, cx=159.5, cy=119.5)
RGB_CAMERA = CameraIntrinsics(fx=300.0, fy=300.0, cx=161.0, cy=118.0)
TRANSLATION = np.array([25.0, 0.0, 0.0])     # depth camera point -> RGB camera: p + t
# Depth camera frame, mm: the head model's origin (eye height, ear depth), which the head is
# turned about by POSE (yaw, pitch, roll).
HEAD_CENTRE = np.array([0.0, 0.0, 900.0])
POSE = (20.0, -10.0, 5.0)


def _turned_head(shift_mm=np.zeros(3)) -> scan.TexturedScan:
    mesh = writers.head_in_camera(HEAD_CENTRE[2])
    vertices = geometry.rotate_points(mesh.vertices, *POSE, center=HEAD_CENTRE)
    return scan.TexturedScan(vertices=vertices.astype(np.float64) + shift_mm,
                             triangles=mesh.triangles, vertex_colors=mesh.vertex_colors)


def _write(root, sequences=("01", "15")):
    depth, _ = writers.render_camera(_turned_head(), DEPTH_CAMERA, 240, 320)
    # The RGB camera sees the head at R p + t (R = identity here).
    _, rgb = writers.render_camera(_turned_head(TRANSLATION), RGB_CAMERA, 240, 320)
    for sequence in sequences:
        folder = os.path.join(root, sequence)
        os.makedirs(folder, exist_ok=True)
        writers.write_calibration(os.path.join(folder, "depth.cal"), DEPTH_CAMERA, np.eye(3),
                                  np.zeros(3), 320, 240)
        writers.write_calibration(os.path.join(folder, "rgb.cal"), RGB_CAMERA, np.eye(3),
                                  TRANSLATION, 320, 240)
        for frame in ("00003", "00004"):
            with open(os.path.join(folder, f"frame_{frame}_depth.bin"), "wb") as handle:
                handle.write(writers.encode_biwi_depth(depth))
            writers.write_rgb(os.path.join(folder, f"frame_{frame}_rgb.png"), rgb)
            writers.write_pose(os.path.join(folder, f"frame_{frame}_pose.txt"),
                               geometry.rotation_matrix(*POSE), HEAD_CENTRE)
    return depth


def test_sequences_map_to_people_and_sessions():
    assert biwi.sequence_subject("03") == ("F03", 1)
    assert biwi.sequence_subject("15") == ("F03", 2)
    assert biwi.sequence_subject("my_recording") == ("my_recording", 1)


def test_rle_round_trip(tmp_path):
    depth = _write(str(tmp_path))
    decoded = biwi_bin.read_depth_bin(str(tmp_path / "01" / "frame_00003_depth.bin"))
    np.testing.assert_array_equal(decoded, np.rint(depth).astype(np.int16))


def test_build_registers_crops_and_labels(tmp_path):
    _write(str(tmp_path / "in"))
    manifest, examples = common.build_and_read(
        source="biwi", input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out"))
    assert manifest["example_count"] == 4 and manifest["class_names"] == ["F01", "F03"]
    by_id = {e.example_id: e for e in examples["train"]}
    assert set(by_id) == {"F01/01/00003", "F01/01/00004", "F03/15/00003", "F03/15/00004"}
    assert by_id["F03/15/00003"].session == 2 and by_id["F01/01/00003"].session == 1
    example = by_id["F01/01/00003"]
    assert (example.yaw_deg, example.pitch_deg, example.roll_deg) == pytest.approx(POSE, abs=1e-3)
    # Expected: the head rendered directly by the RGB camera, cut with the same dynamic crop
    # centred on the face (the annotated head centre moved to the face centre).
    expected_full, _ = writers.render_camera(_turned_head(TRANSLATION), RGB_CAMERA, 240, 320)
    centre = kinect.face_centre_from_head_centre(HEAD_CENTRE, geometry.rotation_matrix(*POSE))
    centre = centre + TRANSLATION
    u, v = RGB_CAMERA.project(centre[None])[0]
    expected = kinect.crop_face(expected_full, RGB_CAMERA, (u, v), centre[2],
                                kinect.FaceCropConfig(image_size=64))
    error, coverage = common.median_depth_error(example.depth, expected.depth)
    assert error < 1.0 and coverage > 0.95, (error, coverage)
    # The crop is on the face: the turned head's eyes, nose and mouth corners lie in its
    # central part.
    landmarks = _turned_head(TRANSLATION).vertices[writers.known_head().landmark_vertices]
    uv = faces.transform_points(expected.matrix, RGB_CAMERA.project(landmarks))
    assert np.all((uv > 12) & (uv < 52)), uv


def test_rle_block_past_the_image_is_reported(tmp_path):
    _write(str(tmp_path), sequences=("01",))
    path = tmp_path / "01" / "frame_00004_depth.bin"
    data = bytearray(path.read_bytes())
    data[8:12] = (320 * 240).to_bytes(4, "little")    # first block: n_empty = the whole image
    path.write_bytes(bytes(data))
    with pytest.raises(SkipExample, match=r"frame_00004_depth.bin: run-length block 0 runs past"
                                          r" the image") as error:
        biwi_bin.read_depth_bin(str(path))
    assert error.value.reason == "malformed_biwi_bin"
    manifest, _ = common.build_and_read(source="biwi", input_dir=str(tmp_path),
                                        output_dir=str(tmp_path / "out"), use_mediapipe=False)
    assert manifest["example_count"] == 1
    assert manifest["splits"]["train"]["skipped"]["malformed_biwi_bin"]["count"] == 1
    with pytest.raises(errors.BuildError, match="frame_00004_depth.bin: run-length block 0"):
        common.build_and_read(source="biwi", input_dir=str(tmp_path), on_error="fail",
                              output_dir=str(tmp_path / "out2"), use_mediapipe=False)
