"""Tests of tf_rgbd.data.geometry: intrinsics, point clouds <-> depth maps, pose augmentation."""
import cv2
import numpy as np
import pytest

from tf_rgbd.data import geometry, pose_augment
from tf_rgbd.data.geometry import CameraIntrinsics

SIZE = 64


def _face_like_depth(size=SIZE, distance_mm=500.0):
    """A smooth bump (a 'nose' at the image centre-left) on an ellipsoidal cap, 0 outside."""
    intrinsics = CameraIntrinsics.for_face_crop(size, distance_mm, 200.0)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    x = (cols - intrinsics.cx) * distance_mm / intrinsics.fx
    y = (rows - intrinsics.cy) * distance_mm / intrinsics.fy
    inside = (x / 70.0) ** 2 + (y / 90.0) ** 2 < 1.0
    cap = 60.0 * np.sqrt(np.clip(1.0 - (x / 70.0) ** 2 - (y / 90.0) ** 2, 0.0, 1.0))
    nose = 25.0 * np.exp(-(x ** 2 + (y - 10.0) ** 2) / (2 * 12.0 ** 2))
    depth = np.where(inside, distance_mm - cap - nose, 0.0).astype(np.float32)
    return depth, intrinsics


def test_for_face_crop_maps_face_width_to_the_image_edges():
    intrinsics = CameraIntrinsics.for_face_crop(112, face_distance_mm=500.0, face_width_mm=200.0)
    uv = intrinsics.project(np.array([[-100.0, 0.0, 500.0], [100.0, 0.0, 500.0]]))
    np.testing.assert_allclose(uv[:, 0], [-0.5, 111.5], atol=1e-9)
    np.testing.assert_allclose(uv[:, 1], [55.5, 55.5], atol=1e-9)


def test_scaled_keeps_pixel_centres_consistent():
    intrinsics = CameraIntrinsics(fx=100.0, fy=120.0, cx=31.5, cy=31.5)
    doubled = intrinsics.scaled(2.0)
    assert (doubled.fx, doubled.fy, doubled.cx, doubled.cy) == (200.0, 240.0, 63.5, 63.5)
    point = np.array([[10.0, -5.0, 400.0]])
    np.testing.assert_allclose((intrinsics.project(point) + 0.5) * 2.0 - 0.5,
                               doubled.project(point))


def test_invalid_intrinsics_raise_with_a_reason():
    with pytest.raises(ValueError, match="focal"):
        CameraIntrinsics(fx=0.0, fy=1.0, cx=0.0, cy=0.0)
    with pytest.raises(ValueError, match="positive"):
        CameraIntrinsics.for_face_crop(0)


def test_depth_to_points_to_depth_round_trip_is_exact():
    depth, intrinsics = _face_like_depth()
    points, pixel_rc = geometry.depth_to_points(depth, intrinsics)
    assert points.dtype == np.float32 and points.shape == (np.count_nonzero(depth), 3)
    np.testing.assert_array_equal(depth[pixel_rc[:, 0], pixel_rc[:, 1]], points[:, 2])
    values = np.arange(points.shape[0], dtype=np.int64)
    restored, value_image = geometry.points_to_depth(points, intrinsics, SIZE, SIZE, values)
    np.testing.assert_allclose(restored, depth, rtol=1e-6)
    np.testing.assert_array_equal(value_image[pixel_rc[:, 0], pixel_rc[:, 1], 0], values)


def test_points_to_depth_keeps_the_nearest_point():
    intrinsics = CameraIntrinsics(fx=100.0, fy=100.0, cx=2.0, cy=2.0)
    points = np.array([[0.0, 0.0, 500.0], [0.0, 0.0, 300.0], [0.0, 0.0, 400.0]])
    depth, values = geometry.points_to_depth(points, intrinsics, 5, 5, np.array([[1], [2], [3]]))
    assert depth[2, 2] == 300.0 and values[2, 2, 0] == 2
    assert np.count_nonzero(depth) == 1


def test_fill_holes_fills_interior_holes_without_growing_the_silhouette():
    depth = np.zeros((9, 9), np.float32)
    depth[2:7, 2:7] = 500.0
    depth[4, 4] = 0.0
    filled, _ = geometry.fill_depth_holes(depth, max_hole_px=1)
    assert filled[4, 4] == 500.0
    np.testing.assert_array_equal(filled > 0, np.pad(np.ones((5, 5), bool), 2))


def test_rotation_matrix_is_a_rotation_with_the_documented_signs():
    for angles in [(30, 0, 0), (0, 20, 0), (0, 0, 10), (35, -20, 15)]:
        rotation = geometry.rotation_matrix(*angles)
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
        assert np.isclose(np.linalg.det(rotation), 1.0)
    nose = np.array([0.0, 0.0, -100.0])   # a face looking at the camera (toward -z)
    top_of_head = np.array([0.0, -100.0, 0.0])
    assert (geometry.rotation_matrix(30, 0, 0) @ nose)[0] < 0   # yaw > 0: toward image left
    assert (geometry.rotation_matrix(0, 20, 0) @ nose)[1] < 0   # pitch > 0: face tilts up
    assert (geometry.rotation_matrix(0, 0, 10) @ top_of_head)[0] > 0  # roll > 0: clockwise


def test_rotate_yaw_then_minus_yaw_is_identity():
    rng = np.random.default_rng(0)
    points = rng.normal(0, 50, (100, 3)) + [0, 0, 500]
    center = np.array([0.0, 10.0, 580.0])
    there = geometry.rotate_points(points, 40.0, 0.0, center=center)
    back = geometry.rotate_points(there, -40.0, 0.0, center=center)
    np.testing.assert_allclose(back, points, atol=1e-3)
    default_center = geometry.rotate_points(points, 10.0, 5.0)
    np.testing.assert_allclose(default_center.mean(axis=0), points.mean(axis=0), atol=1e-3)


@pytest.mark.parametrize("method", ["mesh", "points"])
def test_augment_pose_identity_and_yaw_sign(method):
    depth, intrinsics = _face_like_depth()
    rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
    rgb[..., 0] = 200
    mask = (depth > 0).astype(np.uint8)
    same = pose_augment.augment_pose(depth, intrinsics, 0.0, 0.0, rgb=rgb, mask=mask, method=method)
    both = (same["depth"] > 0) & (depth > 0)
    assert both.sum() > 0.95 * np.count_nonzero(depth)
    np.testing.assert_allclose(same["depth"][both], depth[both], atol=0.05)
    assert np.all(same["rgb"][both, 0] == 200) and np.all(same["mask"][both] == 1)

    turned = pose_augment.augment_pose(depth, intrinsics, 30.0, 0.0, rgb=rgb, mask=mask,
                                   method=method)
    nose_col = np.unravel_index(np.argmin(np.where(depth > 0, depth, np.inf)), depth.shape)[1]
    turned_depth = np.where(turned["depth"] > 0, turned["depth"], np.inf)
    turned_nose_col = np.unravel_index(np.argmin(turned_depth), depth.shape)[1]
    assert turned_nose_col < nose_col - 2          # yaw > 0 moves the nose to the image's left
    covered = turned["depth"] > 0
    assert np.all(turned["mask"][covered] == 1) and np.all(turned["rgb"][covered, 0] == 200)
    if method == "mesh":   # the mesh re-projection leaves no speckle inside the face
        interior = cv2.erode(covered.astype(np.uint8), np.ones((7, 7), np.uint8))
        interior = cv2.dilate(interior, np.ones((5, 5), np.uint8)).astype(bool)
        assert interior.sum() > 0.5 * covered.sum()
        assert np.count_nonzero(interior & ~covered) == 0


def test_augment_pose_rejects_mismatched_sizes():
    depth, intrinsics = _face_like_depth()
    with pytest.raises(ValueError, match="rgb"):
        pose_augment.augment_pose(depth, intrinsics, 10.0, 0.0, rgb=np.zeros((8, 8, 3), np.uint8))
