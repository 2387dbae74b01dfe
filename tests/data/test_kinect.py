"""The dynamic face crop (w = f_x R_x / D), calibration files and pose angles."""
import numpy as np
import pytest

from tf_rgbd.testing import format_writers as writers
from tf_rgbd.data import geometry, kinect
from tf_rgbd.data.geometry import CameraIntrinsics
from tf_rgbd.data.errors import SkipExample

CAMERA = CameraIntrinsics(fx=290.0, fy=290.0, cx=159.5, cy=119.5)


def test_crop_box_follows_the_formula():
    x, y, w, h = kinect.face_crop_box((160.0, 120.0), 1000.0, CAMERA, 200.0, 250.0)
    assert (w, h) == pytest.approx((290.0 * 200 / 1000, 290.0 * 250 / 1000))
    assert (x + w / 2 - 0.5, y + h / 2 - 0.5) == pytest.approx((160.0, 120.0))
    with pytest.raises(SkipExample):
        kinect.face_crop_box((1, 1), 0.0, CAMERA)


def test_same_face_size_whatever_the_distance():
    """A head at 700 mm and at 1400 mm gives nearly the same crop (the point of the method)."""
    config = kinect.FaceCropConfig(image_size=64, face_width_mm=220, face_height_mm=220)
    crops = []
    for distance in (700.0, 1400.0):
        depth, rgb = writers.kinect_frame(distance, CAMERA, 240, 320)
        centre_mm = np.array([0.0, 20.0, distance - 60.0])
        u, v = CAMERA.project(centre_mm[None])[0]
        crops.append(kinect.crop_face(depth, CAMERA, (u, v), centre_mm[2], config, rgb=rgb))
    near, far = (crop.depth > 0 for crop in crops)
    iou = (near & far).sum() / (near | far).sum()
    assert iou > 0.9, iou
    relief_near = crops[0].depth - crops[0].distance_mm
    relief_far = crops[1].depth - crops[1].distance_mm
    both = near & far
    assert np.median(np.abs(relief_near[both] - relief_far[both])) < 3.0


def test_depth_only_locator_finds_the_head():
    depth, _ = writers.kinect_frame(900.0, CAMERA, 240, 320, offset_mm=(80.0, 0.0))
    (u, v), distance = kinect.locate_head_in_depth(depth, CAMERA, 200.0)
    expected_u = CAMERA.project(np.array([[80.0, 0.0, 900.0]]))[0, 0]
    assert abs(u - expected_u) < 8 and 750 < distance < 900


def test_calibration_round_trip_and_registration(tmp_path):
    rotation = geometry.rotation_matrix(2.0, -1.0, 0.5)
    translation = np.array([25.0, -3.0, 1.0])
    path = str(tmp_path / "rgb.cal")
    writers.write_calibration(path, CAMERA, rotation, translation, 320, 240)
    calibration = kinect.read_calibration(path)
    k = calibration.intrinsics
    assert (k.fx, k.fy, k.cx, k.cy) == pytest.approx((290.0, 290.0, 159.5, 119.5))
    np.testing.assert_allclose(calibration.rotation, rotation, atol=1e-8)
    np.testing.assert_allclose(calibration.translation, translation)
    (tmp_path / "bad.cal").write_text("1 2\n")
    with pytest.raises(SkipExample, match="bad.cal"):
        kinect.read_calibration(str(tmp_path / "bad.cal"))
    # Registration with the identity is a no-op on valid pixels.
    small = CAMERA.scaled(0.5)
    depth, _ = writers.kinect_frame(900.0, small, 120, 160)
    same = kinect.register_depth_to_color(depth, small, small, np.eye(3), np.zeros(3),
                                          depth.shape, fill_holes_px=0)
    np.testing.assert_allclose(same, depth, atol=1e-3)


@pytest.mark.parametrize("angles", [(20.0, -10.0, 5.0), (-45.0, 30.0, -15.0), (0.0, 0.0, 0.0)])
def test_pose_angles_invert_rotation_matrix(angles):
    recovered = kinect.pose_angles_from_rotation(geometry.rotation_matrix(*angles))
    assert recovered == pytest.approx(angles, abs=1e-9)
