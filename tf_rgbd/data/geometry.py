"""Camera geometry for depth maps: intrinsics, point clouds <-> depth maps, pose augmentation.

Conventions used everywhere in this module (and by ``tf_rgbd.data.rasterize`` and the synthetic
generator):

* **Camera frame**: x to the image's right, y down, z forward (away from the camera, into the
  scene), in millimetres. Depth maps hold camera z (not the ray length), 0 = no data.
* **Pixels**: pixel ``(row, col)`` has its centre at image coordinates ``(u, v) = (col, row)``
  (OpenCV's convention), so a point projects to ``u = fx * x / z + cx``, ``v = fy * y / z + cy``
  and a centred camera has ``cx = (width - 1) / 2``.
* **Head pose** (``rotation_matrix``), for a face looking at the camera (its nose toward -z):
  ``yaw > 0`` turns the face toward the image's left (the nose tip moves to smaller ``u``, as in
  ``schema.py``); ``pitch > 0`` tilts the face up (the nose tip moves up the image);
  ``roll > 0`` rotates the face clockwise in the image (the top of the head moves to the
  image's right). The rotation is ``R = Rz(roll) @ Ry(yaw) @ Rx(-pitch)``: pitch is applied
  first, then yaw, then roll, all about camera axes through the rotation centre.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import cv2
import numpy as np


@dataclasses.dataclass(frozen=True)
class CameraIntrinsics:
    """A pinhole camera (no distortion).

    Attributes:
      fx, fy: focal lengths in pixels.
      cx, cy: principal point in pixels (pixel centres at integer coordinates).
    """

    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self):
        if not (self.fx > 0 and self.fy > 0):
            raise ValueError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")

    @classmethod
    def for_face_crop(cls, image_size: int, face_distance_mm: float = 500.0,
                      face_width_mm: float = 220.0) -> "CameraIntrinsics":
        """A centred camera whose ``image_size`` square crop spans ``face_width_mm`` at
        ``face_distance_mm`` (so a face at that distance fills the crop like an aligned crop).

        Args:
          image_size: side of the square image in pixels.
          face_distance_mm: camera z of the face plane.
          face_width_mm: width of the scene covered by the crop at that distance.
        """
        if image_size <= 0 or face_distance_mm <= 0 or face_width_mm <= 0:
            raise ValueError(
                f"for_face_crop needs positive sizes, got image_size={image_size}, "
                f"face_distance_mm={face_distance_mm}, face_width_mm={face_width_mm}")
        focal = image_size * face_distance_mm / face_width_mm
        centre = (image_size - 1) / 2.0
        return cls(fx=focal, fy=focal, cx=centre, cy=centre)

    def scaled(self, factor: float) -> "CameraIntrinsics":
        """The intrinsics of the same camera after resizing the image by ``factor``.

        Pixel centres stay at integer coordinates, so ``c' = (c + 0.5) * factor - 0.5``.
        """
        if factor <= 0:
            raise ValueError(f"scale factor must be positive, got {factor}")
        return CameraIntrinsics(fx=self.fx * factor, fy=self.fy * factor,
                                cx=(self.cx + 0.5) * factor - 0.5,
                                cy=(self.cy + 0.5) * factor - 0.5)

    def project(self, points_mm: np.ndarray) -> np.ndarray:
        """Camera-frame points float [N, 3] (z > 0) -> pixel coords float64 [N, 2] (u, v)."""
        points = np.asarray(points_mm, np.float64)
        z = points[:, 2]
        return np.stack([self.fx * points[:, 0] / z + self.cx,
                         self.fy * points[:, 1] / z + self.cy], axis=-1)

    def unproject(self, u: np.ndarray, v: np.ndarray, z_mm: np.ndarray) -> np.ndarray:
        """Back-projects pixel coords and camera z (same shapes) to points float64 [..., 3]."""
        z = np.asarray(z_mm, np.float64)
        return np.stack([(np.asarray(u, np.float64) - self.cx) * z / self.fx,
                         (np.asarray(v, np.float64) - self.cy) * z / self.fy, z], axis=-1)


def depth_to_points(depth_mm: np.ndarray, intrinsics: CameraIntrinsics
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Back-projects every pixel with depth > 0 to the camera frame.

    Args:
      depth_mm: float [H, W] camera z in mm, 0 (or negative/NaN) = no data.
      intrinsics: the camera of the depth map.
    Returns:
      points_mm: float32 [N, 3] (x right, y down, z forward), row-major pixel order.
      pixel_rc: int64 [N, 2] (row, col) of each point.
    """
    depth = np.asarray(depth_mm)
    if depth.ndim != 2:
        raise ValueError(f"depth_mm must be [H, W], got shape {depth.shape}")
    valid = np.isfinite(depth) & (depth > 0)
    rows, cols = np.nonzero(valid)
    points = intrinsics.unproject(cols, rows, depth[rows, cols])
    return points.astype(np.float32), np.stack([rows, cols], axis=-1).astype(np.int64)


def _shifted(image: np.ndarray, d_row: int, d_col: int, fill) -> np.ndarray:
    """``out[r, c] = image[r + d_row, c + d_col]`` with ``fill`` outside the image."""
    out = np.full_like(image, fill)
    height, width = image.shape[:2]
    dst_r = slice(max(0, -d_row), min(height, height - d_row))
    dst_c = slice(max(0, -d_col), min(width, width - d_col))
    src_r = slice(max(0, d_row), min(height, height + d_row))
    src_c = slice(max(0, d_col), min(width, width + d_col))
    out[dst_r, dst_c] = image[src_r, src_c]
    return out


def nearest_per_pixel(pixel_index: np.ndarray, depth: np.ndarray, num_pixels: int
                      ) -> np.ndarray:
    """The z-buffer test: for every pixel that has entries, the index of its nearest entry.

    Args:
      pixel_index: int [N] flat pixel index of each entry (0..num_pixels-1).
      depth: float [N] depth of each entry.
      num_pixels: number of pixels.
    Returns:
      int64 [P] indices into the entries, one per covered pixel, in increasing pixel order;
      exact depth ties go to the lowest entry index (deterministic).
    """
    nearest = np.full(num_pixels, np.inf)
    np.minimum.at(nearest, pixel_index, depth)
    candidates = np.flatnonzero(depth == nearest[pixel_index])
    first = np.full(num_pixels, pixel_index.size, np.int64)
    np.minimum.at(first, pixel_index[candidates], candidates)
    return first[first < pixel_index.size]


def fill_depth_holes(depth_mm: np.ndarray, values: Optional[np.ndarray] = None,
                     max_hole_px: int = 1) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Fills small interior holes (0 pixels surrounded by data) of a splatted depth map.

    A hole pixel is one that a morphological closing of the valid-pixel mask with a
    ``(2 * max_hole_px + 1)`` square would cover, so the silhouette does not grow. Each hole
    pixel takes the depth (and values) of its nearest-in-depth valid 8-neighbour, repeated
    ``max_hole_px`` times.

    Args:
      depth_mm: float [H, W], 0 = empty.
      values: optional [H, W, K] carried along with the depth.
      max_hole_px: largest hole radius to fill, in pixels (0 disables filling).
    Returns:
      (depth_mm, values) with the holes filled (new arrays).
    """
    depth = np.array(depth_mm, copy=True)
    values = None if values is None else np.array(values, copy=True)
    if max_hole_px <= 0:
        return depth, values
    valid = (depth > 0).astype(np.uint8)
    kernel = np.ones((2 * max_hole_px + 1, 2 * max_hole_px + 1), np.uint8)
    closed = cv2.morphologyEx(valid, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_CONSTANT,
                              borderValue=0).astype(bool)
    offsets = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]
    for _ in range(max_hole_px):
        holes = closed & (depth <= 0)
        if not holes.any():
            break
        search = np.where(depth > 0, depth, np.inf)
        candidates = np.stack([_shifted(search, dr, dc, np.inf) for dr, dc in offsets])
        best = np.argmin(candidates, axis=0)
        best_depth = np.take_along_axis(candidates, best[None], axis=0)[0]
        fill = holes & np.isfinite(best_depth)
        if values is not None:
            shifted_values = np.stack([_shifted(values, dr, dc, 0) for dr, dc in offsets])
            chosen = np.take_along_axis(shifted_values, best[None, ..., None], axis=0)[0]
            values[fill] = chosen[fill]
        depth[fill] = best_depth[fill]
    return depth, values


def points_to_depth(points_mm: np.ndarray, intrinsics: CameraIntrinsics, height: int,
                    width: int, values: Optional[np.ndarray] = None, fill_holes_px: int = 0
                    ) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Projects a point cloud to a depth map by z-buffered point splatting (nearest point wins).

    Args:
      points_mm: float [N, 3] camera-frame points; points with z <= 0 are ignored.
      intrinsics: the target camera.
      height, width: size of the depth map in pixels.
      values: optional [N, K] per-point values (e.g. RGB, mask class) carried to the winning
        pixel; the output keeps their dtype.
      fill_holes_px: fill interior holes up to this radius (see ``fill_depth_holes``) so rotated
        clouds are not speckled; 0 keeps the raw splat.
    Returns:
      depth_mm: float32 [H, W], 0 where no point landed.
      values_img: [H, W, K] (0 where empty) or None when ``values`` is None.
    """
    points = np.asarray(points_mm, np.float64).reshape(-1, 3)
    if values is not None:
        values = np.asarray(values)
        if values.ndim == 1:
            values = values[:, None]
        if values.shape[0] != points.shape[0]:
            raise ValueError(f"values has {values.shape[0]} rows but there are "
                             f"{points.shape[0]} points; pass one row per point")
    depth = np.zeros((height, width), np.float32)
    values_img = None if values is None else np.zeros((height, width, values.shape[1]),
                                                      values.dtype)
    in_front = points[:, 2] > 0
    if in_front.any():
        uv = intrinsics.project(points[in_front])
        cols = np.rint(uv[:, 0]).astype(np.int64)
        rows = np.rint(uv[:, 1]).astype(np.int64)
        inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
        index = np.flatnonzero(in_front)[inside]
        pixel = rows[inside] * width + cols[inside]
        z = points[index, 2]
        winners = nearest_per_pixel(pixel, z, height * width)
        depth.reshape(-1)[pixel[winners]] = z[winners]
        if values_img is not None:
            values_img.reshape(-1, values.shape[1])[pixel[winners]] = values[index[winners]]
    if fill_holes_px > 0:
        depth, values_img = fill_depth_holes(depth, values_img, fill_holes_px)
    return depth, values_img


def rotation_matrix(yaw_deg: float, pitch_deg: float, roll_deg: float = 0.0) -> np.ndarray:
    """Head-pose rotation in the camera frame (see the module docstring for the conventions).

    Returns:
      float64 [3, 3] ``R = Rz(roll) @ Ry(yaw) @ Rx(-pitch)``, applied as ``p' = R @ p``.
    """
    yaw, pitch, roll = np.deg2rad([yaw_deg, pitch_deg, roll_deg])
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(-pitch), np.sin(-pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    rot_yaw = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rot_pitch = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    rot_roll = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    return rot_roll @ rot_yaw @ rot_pitch


def rotate_points(points_mm: np.ndarray, yaw_deg: float, pitch_deg: float,
                  roll_deg: float = 0.0, center: Optional[np.ndarray] = None) -> np.ndarray:
    """Rotates points about ``center`` by a head pose.

    Args:
      points_mm: float [N, 3] camera-frame points.
      yaw_deg, pitch_deg, roll_deg: the pose (conventions in the module docstring).
      center: float [3] rotation centre; default the centroid of the points.
    Returns:
      float32 [N, 3] rotated points.
    """
    points = np.asarray(points_mm, np.float64).reshape(-1, 3)
    center = points.mean(axis=0) if center is None else np.asarray(center, np.float64)
    rotation = rotation_matrix(yaw_deg, pitch_deg, roll_deg)
    return ((points - center) @ rotation.T + center).astype(np.float32)


def grid_triangles(valid: np.ndarray, depth_mm: np.ndarray,
                   max_depth_step_mm: float) -> np.ndarray:
    """Triangulates the pixel grid of a depth map (two triangles per 2x2 block of valid pixels).

    Blocks whose depth range exceeds ``max_depth_step_mm`` (occlusion edges) are not connected.

    Args:
      valid: bool [H, W] pixels that have data.
      depth_mm: float [H, W].
      max_depth_step_mm: largest depth range inside a connected 2x2 block.
    Returns:
      int64 [F, 3] indices into the row-major flattened [H * W] grid, wound so that the
      triangles face the camera (see ``rasterize.rasterize_mesh``).
    """
    height, width = valid.shape
    index = np.arange(height * width).reshape(height, width)
    top_left, top_right = index[:-1, :-1], index[:-1, 1:]
    bottom_left, bottom_right = index[1:, :-1], index[1:, 1:]
    corners = np.stack([depth_mm[:-1, :-1], depth_mm[:-1, 1:], depth_mm[1:, :-1],
                        depth_mm[1:, 1:]])
    block_valid = (valid[:-1, :-1] & valid[:-1, 1:] & valid[1:, :-1] & valid[1:, 1:]
                   & (corners.max(axis=0) - corners.min(axis=0) <= max_depth_step_mm))
    # In an image with y down, (top_left, bottom_left, top_right) has negative signed area,
    # which is the camera-facing winding of rasterize_mesh.
    first = np.stack([top_left, bottom_left, top_right], axis=-1)[block_valid]
    second = np.stack([top_right, bottom_left, bottom_right], axis=-1)[block_valid]
    return np.concatenate([first, second]).astype(np.int64)
