"""Kinect-style RGB-D frames: calibration files, registration and the dynamic face crop.

The face crop follows "Learning to Generate Facial Depth Maps" (Pini et al.): a box of
``w_H = f_x * R_x / D`` by ``h_H = f_y * R_y / D`` pixels around the head centre, where ``D`` is
the head centre's distance (camera z, mm), ``f_x, f_y`` the focal lengths (pixels) and
``R_x, R_y`` the physical size of the face region (mm, about 200 mm). The crop therefore covers
the same physical area whatever the subject's distance; it is then resized to the output size
(RGB bilinear, depth nearest so that 0 = "no data" never blends with a surface).

Where the head centre comes from:

* Biwi: the annotated head centre (``*_pose.txt``), mm in the depth camera frame;
* Pandora / Lock3DFace / folders: MediaPipe on the RGB frame (box centre; ``D`` = median valid
  depth inside the box's inner half), or, when the RGB frame finds no face, the depth-only
  locator :func:`locate_head_in_depth` (top of the nearest foreground blob).

Camera conventions are those of :mod:`tf_rgbd.data.geometry` (x right, y down, z forward, mm).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import cv2
import numpy as np

from tf_rgbd.data import faces
from tf_rgbd.data import geometry
from tf_rgbd.data.geometry import CameraIntrinsics
from tf_rgbd.data.errors import InvalidDepthError, MissingFileError, SkipExample

# Nominal depth focal lengths (pixels) by depth image width when no calibration is given:
# Kinect v2 (512x424, ~70.6 deg horizontal field of view) and Kinect v1 (640x480).
NOMINAL_FOCAL_PX_BY_WIDTH = {512: 365.0, 640: 575.8}
DEFAULT_FACE_SIZE_MM = 200.0


@dataclasses.dataclass(frozen=True)
class KinectCalibration:
    """One camera of a Kinect rig (Biwi ``depth.cal`` / ``rgb.cal``).

    Attributes:
      intrinsics: pinhole intrinsics.
      rotation: float64 [3, 3] and translation: float64 [3] (mm): the extrinsics as stored
        (for Biwi's ``rgb.cal``: depth-camera point -> RGB-camera point, ``R @ p + t``).
    """

    intrinsics: CameraIntrinsics
    rotation: np.ndarray
    translation: np.ndarray


@dataclasses.dataclass(frozen=True)
class FaceCropConfig:
    """Settings of the dynamic face crop.

    Attributes:
      image_size: output side in pixels.
      face_width_mm, face_height_mm: ``R_x`` and ``R_y``.
      distance_window_px: half size of the window whose median depth gives ``D`` when the
        centre comes from an image position.
    """

    image_size: int = 112
    face_width_mm: float = DEFAULT_FACE_SIZE_MM
    face_height_mm: float = DEFAULT_FACE_SIZE_MM
    distance_window_px: int = 5

    def __post_init__(self):
        if self.face_width_mm <= 0 or self.face_height_mm <= 0:
            raise ValueError(f"face size must be positive, got {self.face_width_mm} x "
                             f"{self.face_height_mm} mm")


def _numbers(line: str, count: int, path: str, line_number: int) -> list[float]:
    try:
        values = [float(token) for token in line.split()]
    except ValueError as error:
        raise SkipExample("bad_calibration", f"{path} line {line_number}: {error}") from error
    if len(values) != count:
        raise SkipExample("bad_calibration", f"{path} line {line_number}: expected {count} "
                                             f"numbers, found {len(values)}")
    return values


def read_calibration(path: str) -> KinectCalibration:
    """Reads a Biwi-style ``.cal`` file.

    Layout (line numbers from 0): 0-2 the 3x3 intrinsic matrix, 4 distortion (ignored), 6-8 the
    3x3 rotation, 10 the translation (mm), 12 the image size (ignored).

    Raises:
      SkipExample: missing_file, bad_calibration (wrong number of lines/values, zero focal).
    """
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError as error:
        raise MissingFileError("missing_file", f"{path} does not exist") from error
    if len(lines) < 11:
        raise SkipExample("bad_calibration", f"{path}: {len(lines)} lines, expected >= 11 "
                                             "(intrinsics 0-2, rotation 6-8, translation 10)")
    matrix = np.array([_numbers(lines[i], 3, path, i) for i in range(3)])
    rotation = np.array([_numbers(lines[i], 3, path, i) for i in range(6, 9)])
    translation = np.array(_numbers(lines[10], 3, path, 10))
    if matrix[0, 0] <= 0 or matrix[1, 1] <= 0:
        raise SkipExample("bad_calibration", f"{path}: non-positive focal length in the "
                                             "intrinsic matrix")
    return KinectCalibration(
        intrinsics=CameraIntrinsics(fx=matrix[0, 0], fy=matrix[1, 1], cx=matrix[0, 2],
                                    cy=matrix[1, 2]),
        rotation=rotation, translation=translation)


def nominal_intrinsics(width: int, height: int, focal_px: Optional[float] = None
                       ) -> CameraIntrinsics:
    """A centred pinhole camera for a depth image without calibration.

    Args:
      focal_px: focal length in pixels; default by width (``NOMINAL_FOCAL_PX_BY_WIDTH``: Kinect
        v2 at 512 px, v1 at 640 px; otherwise a 70 deg horizontal field of view).
    """
    if focal_px is None:
        focal_px = NOMINAL_FOCAL_PX_BY_WIDTH.get(
            int(width), (width / 2.0) / math.tan(math.radians(35.0)))
    return CameraIntrinsics(fx=focal_px, fy=focal_px, cx=(width - 1) / 2.0, cy=(height - 1) / 2.0)


def pose_angles_from_rotation(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a head rotation in the convention of
    :func:`tf_rgbd.data.geometry.rotation_matrix` (``R = Rz(roll) Ry(yaw) Rx(-pitch)``).

    Exact inverse of ``rotation_matrix`` for |yaw| < 90 degrees.
    """
    r = np.asarray(rotation, np.float64)
    yaw = math.degrees(math.asin(float(np.clip(-r[2, 0], -1.0, 1.0))))
    roll = math.degrees(math.atan2(r[1, 0], r[0, 0]))
    pitch = -math.degrees(math.atan2(r[2, 1], r[2, 2]))
    return yaw, pitch, roll


def face_crop_box(center_uv, distance_mm: float, intrinsics: CameraIntrinsics,
                  face_width_mm: float = DEFAULT_FACE_SIZE_MM,
                  face_height_mm: float = DEFAULT_FACE_SIZE_MM) -> tuple[float, float, float, float]:
    """The dynamic crop box (x, y, w, h) in pixels: ``w = fx * R_x / D``, ``h = fy * R_y / D``,
    centred on ``center_uv`` (pixel coordinates of the head centre)."""
    if not distance_mm > 0:
        raise SkipExample("no_head_depth", f"head distance must be > 0 mm, got {distance_mm}")
    width = intrinsics.fx * face_width_mm / distance_mm
    height = intrinsics.fy * face_height_mm / distance_mm
    u, v = float(center_uv[0]), float(center_uv[1])
    return (u + 0.5 - width / 2.0, v + 0.5 - height / 2.0, width, height)


def median_depth_around(depth_mm: np.ndarray, center_uv, half_window_px: int) -> float:
    """Median of the valid depth in a square window around ``center_uv`` (0 if none)."""
    height, width = depth_mm.shape
    u, v = int(round(center_uv[0])), int(round(center_uv[1]))
    window = depth_mm[max(0, v - half_window_px):min(height, v + half_window_px + 1),
                      max(0, u - half_window_px):min(width, u + half_window_px + 1)]
    valid = window[window > 0]
    return float(np.median(valid)) if valid.size else 0.0


def locate_head_in_depth(depth_mm: np.ndarray, intrinsics: CameraIntrinsics,
                         face_height_mm: float = DEFAULT_FACE_SIZE_MM,
                         foreground_range_mm: float = 400.0) -> tuple[tuple[float, float], float]:
    """Depth-only head locator for a single person facing a Kinect.

    The foreground is everything within ``foreground_range_mm`` of the nearest valid depth
    (5th percentile); its largest connected blob is the person; the head is the top
    ``face_height`` of that blob.

    Returns:
      ((u, v) head centre in pixels, D in mm).
    Raises:
      SkipExample: no_valid_depth / no_head when nothing plausible is found.
    """
    valid = depth_mm > 0
    if not valid.any():
        raise InvalidDepthError("no_valid_depth", "depth map has no valid pixel")
    nearest = float(np.percentile(depth_mm[valid], 5))
    foreground = (valid & (depth_mm < nearest + foreground_range_mm)).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(foreground, connectivity=8)
    if count < 2:
        raise SkipExample("no_head", "no foreground blob in the depth map")
    blob = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    rows, cols = np.nonzero(labels == blob)
    top = rows.min()
    distance = float(np.median(depth_mm[rows, cols][rows < top + 10])) if rows.size else 0.0
    if distance <= 0:
        raise SkipExample("no_head", "the foreground blob has no depth")
    head_height_px = intrinsics.fy * face_height_mm / distance
    in_head = rows < top + head_height_px
    distance = float(np.median(depth_mm[rows[in_head], cols[in_head]]))
    center = (float(np.median(cols[in_head])), float(top + head_height_px / 2.0))
    return center, distance


def register_depth_to_color(depth_mm: np.ndarray, depth_intrinsics: CameraIntrinsics,
                            color_intrinsics: CameraIntrinsics, rotation: np.ndarray,
                            translation: np.ndarray, color_shape: tuple[int, int],
                            fill_holes_px: int = 1) -> np.ndarray:
    """Resamples a depth map onto the colour camera's pixel grid (z-buffered splatting).

    Points ``p`` of the depth camera go to ``R @ p + t`` in the colour camera frame.

    Returns:
      float32 [H_color, W_color] colour-camera z in mm, 0 = no data.
    """
    points, _ = geometry.depth_to_points(depth_mm, depth_intrinsics)
    moved = points.astype(np.float64) @ np.asarray(rotation, np.float64).T + np.asarray(
        translation, np.float64)
    registered, _ = geometry.points_to_depth(moved, color_intrinsics, color_shape[0],
                                             color_shape[1], fill_holes_px=fill_holes_px)
    return registered


@dataclasses.dataclass(frozen=True)
class KinectFaceCrop:
    """A dynamic face crop.

    Attributes:
      rgb: uint8 [S, S, 3] or None.
      depth: float32 [S, S] mm, 0 = no data.
      box: (x, y, w, h) crop box in source pixels.
      distance_mm: D.
      intrinsics: the camera of the crop (for re-projection).
    """

    rgb: Optional[np.ndarray]
    depth: np.ndarray
    box: tuple
    distance_mm: float
    intrinsics: CameraIntrinsics


def crop_face(depth_mm: np.ndarray, intrinsics: CameraIntrinsics, center_uv,
              distance_mm: float, config: FaceCropConfig,
              rgb: Optional[np.ndarray] = None) -> KinectFaceCrop:
    """Cuts the dynamic face box out of a registered RGB-D frame and resizes it.

    Args:
      depth_mm: float [H, W] mm (0 = no data).
      intrinsics: the camera of ``depth_mm`` (and ``rgb``, which must be on the same grid).
      center_uv: head centre (u, v) in pixels.
      distance_mm: D, the head centre's camera z.
      config: crop settings.
      rgb: optional uint8 [H, W, 3] registered to the depth.
    Returns:
      KinectFaceCrop; depth pixels farther than D + 2 R_x (the background behind the head)
      are set to 0.
    """
    box = face_crop_box(center_uv, distance_mm, intrinsics, config.face_width_mm,
                        config.face_height_mm)
    size = config.image_size
    matrix = faces.crop_box_matrix(box, size)
    depth = faces.warp_depth(depth_mm, matrix, size)
    depth[depth > distance_mm + 2.0 * config.face_width_mm] = 0.0
    crop_rgb = None if rgb is None else faces.warp_rgb(np.ascontiguousarray(rgb), matrix, size)
    crop_intrinsics = CameraIntrinsics(fx=intrinsics.fx * matrix[0, 0],
                                       fy=intrinsics.fy * matrix[1, 1],
                                       cx=intrinsics.cx * matrix[0, 0] + matrix[0, 2],
                                       cy=intrinsics.cy * matrix[1, 1] + matrix[1, 2])
    return KinectFaceCrop(rgb=crop_rgb, depth=depth, box=box, distance_mm=float(distance_mm),
                          intrinsics=crop_intrinsics)


def locate_face(analyzer: Optional[faces.FaceAnalyzer], rgb: Optional[np.ndarray],
                depth_mm: np.ndarray, intrinsics: CameraIntrinsics, config: FaceCropConfig,
                where: str) -> tuple[tuple[float, float], float, str]:
    """Head centre (u, v), distance D (mm) and how it was found (``mediapipe`` | ``depth``).

    MediaPipe on the registered RGB frame first (box centre, D = median valid depth over the
    inner half of the box); the depth-only locator when there is no RGB or no face in it.
    """
    if analyzer is not None and rgb is not None:
        detections = analyzer.detect(rgb)
        if detections:
            x, y, w, h = detections[0].box
            center = (x + w / 2.0, y + h / 2.0)
            distance = median_depth_around(depth_mm, center, max(2, int(min(w, h) / 4)))
            if distance > 0:
                return center, distance, "mediapipe"
    center, distance = locate_head_in_depth(depth_mm, intrinsics, config.face_height_mm)
    return center, distance, "depth"
