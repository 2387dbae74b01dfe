"""Tests of tf_rgbd.data.rasterize: analytic depth, coverage, z-buffer, culling, labels."""
import numpy as np
import pytest

from tf_rgbd.data import rasterize
from tf_rgbd.data.geometry import CameraIntrinsics

INTRINSICS = CameraIntrinsics(fx=80.0, fy=80.0, cx=15.5, cy=15.5)
SIZE = 32


def _plane_mesh(depth_of_xy, cells=6, extent_mm=400.0):
    """A grid of camera-facing triangles over x, y in [-extent, extent] with z = f(x, y)."""
    coords = np.linspace(-extent_mm, extent_mm, cells + 1)
    x, y = np.meshgrid(coords, coords)
    vertices = np.stack([x, y, depth_of_xy(x, y)], axis=-1).reshape(-1, 3)
    index = np.arange((cells + 1) ** 2).reshape(cells + 1, cells + 1)
    a, b = index[:-1, :-1].ravel(), index[:-1, 1:].ravel()
    c, d = index[1:, :-1].ravel(), index[1:, 1:].ravel()
    triangles = np.concatenate([np.stack([a, c, b], -1), np.stack([b, c, d], -1)])
    return vertices, triangles


def _ray_directions():
    rows, cols = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    return (cols - INTRINSICS.cx) / INTRINSICS.fx, (rows - INTRINSICS.cy) / INTRINSICS.fy


def test_tilted_plane_depth_matches_the_analytic_ray_intersection():
    # Plane z = 500 + 0.3 x - 0.2 y, i.e. n . p = 500 with n = (-0.3, 0.2, 1).
    vertices, triangles = _plane_mesh(lambda x, y: 500.0 + 0.3 * x - 0.2 * y)
    out = rasterize.rasterize_mesh(vertices, triangles, INTRINSICS, SIZE, SIZE)
    dx, dy = _ray_directions()
    analytic = 500.0 / (-0.3 * dx + 0.2 * dy + 1.0)
    assert out.coverage.all()
    np.testing.assert_allclose(out.depth_mm, analytic, rtol=1e-5)
    assert out.depth_mm.dtype == np.float32 and out.triangle_index.dtype == np.int32


def test_interpolation_is_perspective_correct():
    vertices, triangles = _plane_mesh(lambda x, y: 450.0 + 0.5 * x)
    out = rasterize.rasterize_mesh(vertices, triangles, INTRINSICS, SIZE, SIZE,
                                   vertex_attributes=vertices[:, :1])
    dx, _ = _ray_directions()
    surface_x = dx * out.depth_mm   # the 3D x of the visible surface point of each pixel
    np.testing.assert_allclose(out.attributes[..., 0], surface_x, atol=1e-2)


def test_single_triangle_coverage_matches_a_brute_force_inside_test():
    triangle = np.array([[-60.0, -40.0, 300.0], [10.0, 50.0, 300.0], [70.0, -30.0, 300.0]])
    out = rasterize.rasterize_mesh(triangle, np.array([[0, 1, 2]]), INTRINSICS, SIZE, SIZE,
                                   cull_backfaces=False)
    uv = INTRINSICS.project(triangle)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]

    def edge(a, b):
        return (b[0] - a[0]) * (rows - a[1]) - (b[1] - a[1]) * (cols - a[0])

    e0, e1, e2 = edge(uv[0], uv[1]), edge(uv[1], uv[2]), edge(uv[2], uv[0])
    inside = ((e0 >= 0) & (e1 >= 0) & (e2 >= 0)) | ((e0 <= 0) & (e1 <= 0) & (e2 <= 0))
    np.testing.assert_array_equal(out.coverage, inside)
    np.testing.assert_allclose(out.depth_mm[inside], 300.0, rtol=1e-6)
    np.testing.assert_allclose(out.barycentric[inside].sum(axis=-1), 1.0, atol=1e-5)


def test_shared_edges_leave_no_cracks():
    rng = np.random.default_rng(1)
    vertices, triangles = _plane_mesh(lambda x, y: 600.0 + 20.0 * np.sin(x / 90.0), cells=40)
    vertices[:, :2] += rng.uniform(-3, 3, (vertices.shape[0], 2))   # irregular tiny triangles
    out = rasterize.rasterize_mesh(vertices, triangles, INTRINSICS, SIZE, SIZE)
    assert out.coverage.all()


def test_z_buffer_keeps_the_nearest_triangle_in_any_order():
    near = np.array([[-50.0, -50.0, 300.0], [-50.0, 50.0, 300.0], [50.0, -50.0, 300.0]])
    far = near * [1.5, 1.5, 1.0] + [0.0, 0.0, 200.0]
    vertices = np.concatenate([near, far])
    for triangles in ([[0, 1, 2], [3, 4, 5]], [[3, 4, 5], [0, 1, 2]]):
        out = rasterize.rasterize_mesh(vertices, np.array(triangles), INTRINSICS, SIZE, SIZE,
                                       vertex_labels=np.array([1, 1, 1, 2, 2, 2]))
        near_index = triangles.index([0, 1, 2])
        covered_by_near = out.triangle_index == near_index
        assert covered_by_near.any()
        np.testing.assert_allclose(out.depth_mm[covered_by_near], 300.0, rtol=1e-6)
        np.testing.assert_array_equal(out.labels[covered_by_near], 1)
        assert np.all(out.labels[out.triangle_index == 1 - near_index] == 2)


def test_backfaces_are_culled_unless_asked_not_to():
    facing = np.array([[-50.0, -50.0, 300.0], [-50.0, 50.0, 300.0], [50.0, -50.0, 300.0]])
    front = rasterize.rasterize_mesh(facing, np.array([[0, 1, 2]]), INTRINSICS, SIZE, SIZE)
    back = rasterize.rasterize_mesh(facing, np.array([[0, 2, 1]]), INTRINSICS, SIZE, SIZE)
    both = rasterize.rasterize_mesh(facing, np.array([[0, 2, 1]]), INTRINSICS, SIZE, SIZE,
                                    cull_backfaces=False)
    assert front.coverage.any() and not back.coverage.any()
    np.testing.assert_array_equal(both.coverage, front.coverage)


def test_labels_come_from_the_nearest_vertex_never_interpolated():
    triangle = np.array([[-90.0, -90.0, 300.0], [-90.0, 90.0, 300.0], [90.0, -90.0, 300.0]])
    labels = np.array([0, 3, 6], np.uint8)
    out = rasterize.rasterize_mesh(triangle, np.array([[0, 1, 2]]), INTRINSICS, SIZE, SIZE,
                                   vertex_labels=labels, background_label=255)
    covered = out.coverage
    assert set(np.unique(out.labels[covered])) == {0, 3, 6}
    assert np.all(out.labels[~covered] == 255)
    expected = labels[np.argmax(out.barycentric[covered], axis=-1)]
    np.testing.assert_array_equal(out.labels[covered], expected)
    np.testing.assert_array_equal(
        rasterize.rasterize_labels(out, np.array([[0, 1, 2]]), labels, 255), out.labels)
    for corner, label in enumerate(labels):   # pixels nearest a corner carry its label
        weight = np.where(covered, out.barycentric[..., corner], -1.0)
        assert out.labels[np.unravel_index(np.argmax(weight), weight.shape)] == label


def test_depth_subset_equals_rasterising_the_subset_alone():
    near = np.array([[-50.0, -50.0, 300.0], [-50.0, 50.0, 300.0], [50.0, -50.0, 300.0]])
    vertices, triangles = _plane_mesh(lambda x, y: 500.0 + 0 * x)
    all_vertices = np.concatenate([vertices, near])
    all_triangles = np.concatenate([triangles, [[len(vertices), len(vertices) + 1,
                                                 len(vertices) + 2]]])
    subset = np.arange(len(all_triangles)) < len(triangles)
    out = rasterize.rasterize_mesh(all_vertices, all_triangles, INTRINSICS, SIZE, SIZE,
                                   depth_subset=subset)
    alone = rasterize.rasterize_mesh(vertices, triangles, INTRINSICS, SIZE, SIZE)
    np.testing.assert_array_equal(out.subset_depth_mm, alone.depth_mm)
    assert out.depth_mm.min() == pytest.approx(300.0)


def test_bad_inputs_raise_with_a_reason():
    with pytest.raises(ValueError, match="vertices_mm"):
        rasterize.rasterize_mesh(np.zeros((3, 2)), np.array([[0, 1, 2]]), INTRINSICS, 4, 4)
    with pytest.raises(ValueError, match="only 3 vertices"):
        rasterize.rasterize_mesh(np.zeros((3, 3)), np.array([[0, 1, 5]]), INTRINSICS, 4, 4)


def test_triangles_behind_the_camera_are_dropped():
    vertices = np.array([[-50.0, -50.0, -10.0], [-50.0, 50.0, 300.0], [50.0, -50.0, 300.0]])
    out = rasterize.rasterize_mesh(vertices, np.array([[0, 1, 2]]), INTRINSICS, SIZE, SIZE,
                                   cull_backfaces=False)
    assert not out.coverage.any()
