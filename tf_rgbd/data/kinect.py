"""Kinect-style RGB-D frames: calibration files, registration and the dynamic face crop.

The face crop follows "Learning to Generate Facial Depth Maps" (Pini et al.): a box of
``w_H = f_x * R_x / D`` by ``h_H = f_y * R_y / D`` pixels, where ``D`` is the distance (camera z,
mm) of the point the box is centred on, ``f_x, f_y`` the focal lengths (pixels) and ``R_x, R_y``
the physical size of the face region (mm, about 200 mm). The crop therefore covers the same
physical area whatever the subject's distance; it is then resized to the output size (RGB
bilinear, depth nearest so that 0 = "no data" never blends with a surface).

The box is centred on the **face centre**, at the height of the nose tip, not on the head
centre: the head centre lies behind and above the face (about at the eyes' height), and a
200 mm box around it ends ~100 mm below the eyes, cutting the chin of longer faces (chin to
eyes is 105-130 mm in adults). Around the nose tip the same box spans ~65 mm above the eyes
(the hairline) to ~100 mm below the nose (below the chin). Where the face centre comes from:

* Biwi: the annotated head centre and rotation (``*_pose.txt``), moved to the face centre by
  the nominal offset :data:`HEAD_CENTRE_TO_FACE_CENTRE_MM` in the head's frame
  (:func:`face_centre_from_head_centre`);
* Pandora / Lock3DFace / folders: MediaPipe on the RGB frame, and **when the face mesh is found
  the box is sized from its 478 points** (forehead to chin): centred on their bounding box and
  enlarged (never shrunk, aspect kept) so that every point lies inside with a margin of
  :data:`LANDMARK_MARGIN` x their extent; without a mesh the detection box (brows to chin) is
  used the same way. ``D`` = median valid depth around the centre. When the RGB frame shows no
  face, the depth-only locator :func:`locate_head_in_depth`: the top of the nearest
  foreground blob, then the nose tip (the nearest surface 100-220 mm below the top; nominally
  :data:`HEAD_TOP_TO_FACE_CENTRE_MM` below it).

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
# Nominal adult head geometry (mm) used to centre the crop on the face. Top of the head
# (vertex) to the eyes ~120 mm, eyes to the nose tip ~35 mm: the face centre is ~155 mm below
# the top of the head.
HEAD_TOP_TO_FACE_CENTRE_MM = 155.0
# The depth-only locator looks for the nose tip (the nearest surface) this far below the top
# of the head (mm): below the forehead, above the chin.
NOSE_SEARCH_BELOW_TOP_MM = (100.0, 220.0)
# Head centre (Biwi's annotation: inside the head, about at the eyes' height) to the face
# centre, in the head's frame (x right, y down, z away from the camera for a frontal head):
# 35 mm down (the nose tip's height), 70 mm toward the face (between the eyes' and the nose
# tip's depth, so the point stays on the face when the head turns).
HEAD_CENTRE_TO_FACE_CENTRE_MM = (0.0, 35.0, -70.0)
# Sizing from landmarks: the box holds every landmark with this fraction of their extent as
# margin on each side.
LANDMARK_MARGIN = 0.1


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
                  face_height_mm: float = DEFAULT_FACE_SIZE_MM,
                  landmarks_uv: Optional[np.ndarray] = None,
                  margin: float = LANDMARK_MARGIN) -> tuple[float, float, float, float]:
    """The dynamic crop box (x, y, w, h) in pixels: ``w = fx * R_x / D``, ``h = fy * R_y / D``,
    centred on ``center_uv`` (pixel coordinates of the face centre).

    Args:
      landmarks_uv: optional float [N, 2] pixel positions that must lie inside the crop (the
        face mesh, or the detection box corners): the box is then centred on their bounding
        box and enlarged by one factor on both axes (the aspect ``R_x : R_y`` kept, never
        shrunk) until each lies ``margin`` x their extent inside.
    """
    if not distance_mm > 0:
        raise SkipExample("no_head_depth", f"head distance must be > 0 mm, got {distance_mm}")
    width = intrinsics.fx * face_width_mm / distance_mm
    height = intrinsics.fy * face_height_mm / distance_mm
    u, v = float(center_uv[0]), float(center_uv[1])
    if landmarks_uv is not None and len(landmarks_uv):
        points = np.asarray(landmarks_uv, np.float64).reshape(-1, 2)
        low, high = points.min(axis=0), points.max(axis=0)
        u, v = (low + high) / 2.0
        needed = (high - low) * (1.0 + 2.0 * margin)
        factor = max(1.0, needed[0] / width, needed[1] / height)
        width, height = width * factor, height * factor
    return (u + 0.5 - width / 2.0, v + 0.5 - height / 2.0, width, height)


def face_centre_from_head_centre(head_centre_mm: np.ndarray, rotation: np.ndarray
                                 ) -> np.ndarray:
    """The face centre (float64 [3], camera frame, mm) of a head whose centre and rotation are
    annotated (Biwi): ``c + R @ HEAD_CENTRE_TO_FACE_CENTRE_MM``.

    Args:
      head_centre_mm: float [3] the head centre in the camera frame (x right, y down, z
        forward).
      rotation: float [3, 3] the head rotation (head frame -> camera frame; identity = facing
        the camera), as in :func:`pose_angles_from_rotation`.
    """
    return (np.asarray(head_centre_mm, np.float64)
            + np.asarray(rotation, np.float64) @ np.asarray(HEAD_CENTRE_TO_FACE_CENTRE_MM))


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
    """Depth-only face locator for a single person facing a Kinect.

    The foreground is everything within ``foreground_range_mm`` of the nearest valid depth
    (5th percentile); its largest connected blob is the person; the head is the top
    ``face_height`` of that blob. The face centre is at the height of the nose tip: the
    nearest surface between :data:`NOSE_SEARCH_BELOW_TOP_MM` below the blob's top (the nose is
    the nearest point of a face turned toward the camera), or, when that band has no depth,
    :data:`HEAD_TOP_TO_FACE_CENTRE_MM` below the top.

    Returns:
      ((u, v) face centre in pixels: the head's median column, the nose tip's row; D = the
      median depth of the head in mm).
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
    mm_to_rows = intrinsics.fy / distance
    centre_row = top - 0.5 + HEAD_TOP_TO_FACE_CENTRE_MM * mm_to_rows
    band = ((rows >= top + NOSE_SEARCH_BELOW_TOP_MM[0] * mm_to_rows)
            & (rows <= top + NOSE_SEARCH_BELOW_TOP_MM[1] * mm_to_rows))
    if band.any():
        band_depth = depth_mm[rows[band], cols[band]]
        nearest_in_band = float(np.percentile(band_depth, 0.5))
        centre_row = float(np.median(rows[band][band_depth <= nearest_in_band + 5.0]))
    return (float(np.median(cols[in_head])), float(centre_row)), distance


# A reprojection hole is filled only when the depth pixel it comes from holds a surface within
# this fraction of the filled depth (so an occlusion edge is not bridged).
_REPROJECTION_FILL_TOLERANCE = 0.05


def register_depth_to_color(depth_mm: np.ndarray, depth_intrinsics: CameraIntrinsics,
                            color_intrinsics: CameraIntrinsics, rotation: np.ndarray,
                            translation: np.ndarray, color_shape: tuple[int, int],
                            fill_holes_px: int = 1) -> np.ndarray:
    """Resamples a depth map onto the colour camera's pixel grid (z-buffered splatting).

    Points ``p`` of the depth camera go to ``R @ p + t`` in the colour camera frame.

    Splatting one point per depth pixel leaves gaps where the colour grid is denser than the
    projected depth pixels (magnification, rounding). ``fill_holes_px`` fills those gaps
    (:func:`geometry.fill_depth_holes`), but **only holes that the reprojection created**: a
    filled colour pixel is kept only when, back-projected at its filled depth into the depth
    camera, it lands on a measured depth pixel at that depth (within 5%). Holes of the depth
    map itself (no measurement) stay holes, so under identity extrinsics and intrinsics the
    output equals the input.

    Returns:
      float32 [H_color, W_color] colour-camera z in mm, 0 = no data.
    """
    rotation = np.asarray(rotation, np.float64)
    translation = np.asarray(translation, np.float64)
    points, _ = geometry.depth_to_points(depth_mm, depth_intrinsics)
    moved = points.astype(np.float64) @ rotation.T + translation
    registered, _ = geometry.points_to_depth(moved, color_intrinsics, color_shape[0],
                                             color_shape[1])
    if fill_holes_px <= 0:
        return registered
    filled, _ = geometry.fill_depth_holes(registered, None, fill_holes_px)
    rows, cols = np.nonzero((registered <= 0) & (filled > 0))
    if rows.size == 0:
        return registered
    z = filled[rows, cols].astype(np.float64)
    in_color = color_intrinsics.unproject(cols.astype(np.float64), rows.astype(np.float64), z)
    in_depth = (np.asarray(in_color, np.float64).reshape(-1, 3) - translation) @ rotation
    in_front = in_depth[:, 2] > 0
    uv = np.full((rows.size, 2), -1.0)
    uv[in_front] = depth_intrinsics.project(in_depth[in_front])
    source_cols = np.rint(uv[:, 0]).astype(np.int64)
    source_rows = np.rint(uv[:, 1]).astype(np.int64)
    height, width = depth_mm.shape
    inside = (in_front & (source_cols >= 0) & (source_cols < width)
              & (source_rows >= 0) & (source_rows < height))
    measured = np.zeros(rows.size, np.float64)
    measured[inside] = depth_mm[source_rows[inside], source_cols[inside]]
    keep = (measured > 0) & (np.abs(measured - in_depth[:, 2])
                             <= _REPROJECTION_FILL_TOLERANCE * in_depth[:, 2])
    result = registered.copy()
    result[rows[keep], cols[keep]] = filled[rows[keep], cols[keep]]
    return result


@dataclasses.dataclass(frozen=True)
class KinectFaceCrop:
    """A dynamic face crop.

    Attributes:
      rgb: uint8 [S, S, 3] or None.
      depth: float32 [S, S] mm, 0 = no data.
      box: (x, y, w, h) crop box in source pixels.
      distance_mm: D.
      intrinsics: the camera of the crop (for re-projection).
      matrix: float64 [2, 3] source pixels -> crop pixels.
    """

    rgb: Optional[np.ndarray]
    depth: np.ndarray
    box: tuple
    distance_mm: float
    intrinsics: CameraIntrinsics
    matrix: Optional[np.ndarray] = None


def crop_face(depth_mm: np.ndarray, intrinsics: CameraIntrinsics, center_uv,
              distance_mm: float, config: FaceCropConfig,
              rgb: Optional[np.ndarray] = None,
              landmarks_uv: Optional[np.ndarray] = None) -> KinectFaceCrop:
    """Cuts the dynamic face box out of a registered RGB-D frame and resizes it.

    Args:
      depth_mm: float [H, W] mm (0 = no data).
      intrinsics: the camera of ``depth_mm`` (and ``rgb``, which must be on the same grid).
      center_uv: face centre (u, v) in pixels.
      distance_mm: D, the face centre's camera z.
      config: crop settings.
      rgb: optional uint8 [H, W, 3] registered to the depth.
      landmarks_uv: optional float [N, 2] pixels the crop must hold (:func:`face_crop_box`).
    Returns:
      KinectFaceCrop; depth pixels farther than D + 2 R_x (the background behind the head)
      are set to 0.
    """
    box = face_crop_box(center_uv, distance_mm, intrinsics, config.face_width_mm,
                        config.face_height_mm, landmarks_uv=landmarks_uv)
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
                          intrinsics=crop_intrinsics, matrix=matrix)


@dataclasses.dataclass(frozen=True)
class FaceLocation:
    """Where the face of a frame is.

    Attributes:
      center_uv: (u, v) face centre in pixels.
      distance_mm: D, the camera z there.
      method: ``mediapipe``, ``depth`` or ``annotation`` (Biwi's head pose).
      landmarks_uv: float [N, 2] pixels the crop must hold (the face mesh, else the detection
        box corners), or None (depth-only).
      mesh: float [478, 2] face-mesh points in frame pixels, or None.
    """

    center_uv: tuple
    distance_mm: float
    method: str
    landmarks_uv: Optional[np.ndarray] = None
    mesh: Optional[np.ndarray] = None


def _box_corners(box) -> np.ndarray:
    x, y, w, h = (float(v) for v in box)
    return np.array([[x, y], [x + w, y], [x, y + h], [x + w, y + h]])


def locate_face(analyzer: Optional[faces.FaceAnalyzer], rgb: Optional[np.ndarray],
                depth_mm: np.ndarray, intrinsics: CameraIntrinsics, config: FaceCropConfig,
                where: str) -> FaceLocation:
    """The face centre, distance D (mm) and how it was found (``mediapipe`` | ``depth``).

    MediaPipe on the registered RGB frame first: the largest face, its mesh when found (the
    crop is then sized from the mesh: :func:`face_crop_box`), else its detection box; D =
    median valid depth over the inner half of the box around the centre. The depth-only
    locator when there is no RGB, no face in it, or no depth under the face.
    """
    if analyzer is not None and rgb is not None:
        detections = analyzer.detect(rgb)
        if detections:
            detection = detections[0]
            x, y, w, h = detection.box
            mesh = analyzer.mesh_points(rgb, detection.box)
            if mesh is not None and not detection.contains(mesh[faces.MESH_NOSE_TIP], 0.1):
                mesh = None
            points = _box_corners(detection.box) if mesh is None else mesh
            low, high = points.min(axis=0), points.max(axis=0)
            center = (float(low[0] + high[0]) / 2.0, float(low[1] + high[1]) / 2.0)
            distance = median_depth_around(depth_mm, center, max(2, int(min(w, h) / 4)))
            if distance > 0:
                return FaceLocation(center, distance, "mediapipe", points, mesh)
    center, distance = locate_head_in_depth(depth_mm, intrinsics, config.face_height_mm)
    return FaceLocation(center, distance, "depth")
