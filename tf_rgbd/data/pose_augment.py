"""Re-rendering an RGB-D face at a new head pose (the paper's pose augmentation, and the
2D -> 3D -> new-pose route of generated training samples).

The depth map becomes a point cloud (:func:`tf_rgbd.data.geometry.depth_to_points`), which is
rotated about a point inside the head and projected back with the same camera, either as a
z-buffered triangle mesh (:mod:`tf_rgbd.data.rasterize`) or as splatted points. Pose
conventions are :mod:`tf_rgbd.data.geometry`'s.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from tf_rgbd.data import rasterize
from tf_rgbd.data.geometry import (CameraIntrinsics, depth_to_points, grid_triangles,
                                   points_to_depth, rotate_points)


def augment_pose(depth_mm: np.ndarray, intrinsics: CameraIntrinsics, yaw_deg: float,
                 pitch_deg: float, rgb: Optional[np.ndarray] = None,
                 mask: Optional[np.ndarray] = None, roll_deg: float = 0.0,
                 center_mm: Optional[np.ndarray] = None,
                 head_center_behind_face_mm: float = 80.0, method: str = "mesh",
                 max_depth_step_mm: float = 20.0, fill_holes_px: int = 2) -> dict:
    """Re-renders an RGB-D face at a new head pose (the paper's pose augmentation).

    The depth map becomes a point cloud, which is rotated about the head centre and projected
    back with the same camera; RGB and mask values travel with their points. Two re-projection
    methods:

    * ``mesh`` (default): neighbouring pixels are connected into triangles (not across depth
      jumps larger than ``max_depth_step_mm``) and rasterised with a z-buffer, so the result has
      no speckle and correct self-occlusion; RGB is interpolated, the mask takes the nearest
      vertex's class.
    * ``points``: z-buffered point splatting with ``fill_holes_px`` hole filling.

    Args:
      depth_mm: float [H, W] camera z in mm, 0 = no data.
      intrinsics: the camera of the images.
      yaw_deg, pitch_deg, roll_deg: rotation to apply (conventions in the module docstring).
      rgb: optional uint8 [H, W, 3].
      mask: optional uint8 [H, W] class indices.
      center_mm: float [3] rotation centre; default: the median x/y of the valid points and
        their median z plus ``head_center_behind_face_mm`` (a point inside the head).
      method: ``mesh`` or ``points``.
    Returns:
      dict with ``depth`` float32 [H, W] (0 = empty), ``rgb`` uint8 [H, W, 3] or None,
      ``mask`` uint8 [H, W] or None (0 where empty).
    """
    if method not in ("mesh", "points"):
        raise ValueError(f"method must be 'mesh' or 'points', got {method!r}")
    depth = np.asarray(depth_mm, np.float32)
    height, width = depth.shape
    for name, image in (("rgb", rgb), ("mask", mask)):
        if image is not None and np.asarray(image).shape[:2] != (height, width):
            raise ValueError(f"{name} has shape {np.asarray(image).shape} but depth is "
                             f"{depth.shape}; resample it onto the depth grid first")
    points, pixel_rc = depth_to_points(depth, intrinsics)
    result = {"depth": np.zeros_like(depth),
              "rgb": None if rgb is None else np.zeros_like(np.asarray(rgb)),
              "mask": None if mask is None else np.zeros_like(np.asarray(mask))}
    if points.shape[0] == 0:
        return result
    if center_mm is None:
        center_mm = np.median(points, axis=0).astype(np.float64)
        center_mm[2] += head_center_behind_face_mm
    rotated = rotate_points(points, yaw_deg, pitch_deg, roll_deg, center=center_mm)

    if method == "points":
        columns = []
        if rgb is not None:
            columns.append(np.asarray(rgb)[pixel_rc[:, 0], pixel_rc[:, 1]].astype(np.float32))
        if mask is not None:
            columns.append(np.asarray(mask)[pixel_rc[:, 0], pixel_rc[:, 1], None]
                           .astype(np.float32))
        values = np.concatenate(columns, axis=1) if columns else None
        new_depth, new_values = points_to_depth(rotated, intrinsics, height, width, values,
                                                fill_holes_px=fill_holes_px)
        result["depth"] = new_depth
        if rgb is not None:
            result["rgb"] = np.clip(np.rint(new_values[..., :3]), 0, 255).astype(np.uint8)
        if mask is not None:
            result["mask"] = np.rint(new_values[..., -1]).astype(np.uint8)
        return result

    valid = depth > 0
    vertices = np.zeros((height * width, 3), np.float64)
    vertices[pixel_rc[:, 0] * width + pixel_rc[:, 1]] = rotated
    triangles = grid_triangles(valid, depth, max_depth_step_mm)
    attributes = None
    if rgb is not None:
        attributes = np.asarray(rgb, np.float32).reshape(-1, 3)
    labels = None if mask is None else np.asarray(mask).reshape(-1)
    # Rotation can turn some of the grid away from the camera: keep both sides.
    raster = rasterize.rasterize_mesh(vertices, triangles, intrinsics, height, width,
                                      vertex_attributes=attributes, vertex_labels=labels,
                                      cull_backfaces=False)
    result["depth"] = raster.depth_mm
    if rgb is not None:
        result["rgb"] = np.clip(np.rint(raster.attributes), 0, 255).astype(np.uint8)
    if mask is not None:
        result["mask"] = raster.labels.astype(np.asarray(mask).dtype)
    return result
