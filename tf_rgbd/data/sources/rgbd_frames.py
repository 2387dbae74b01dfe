"""Kinect RGB-D frames (Biwi, Pandora, Lock3DFace) -> dynamic face crops with labels.

One task is one frame: a depth file (16-bit mm PNG or Biwi ``.bin``), its RGB frame and what
the reader knows (subject, session, attributes, optionally the annotated head centre and
calibration files). The producer:

1. reads depth (mm; a 16-bit PNG, or 8-bit with ``--depth_8bit_scale_mm``, else skipped as
   ``depth_not_16bit``) and RGB;
2. puts both on one grid: Biwi depth is registered onto the RGB camera with its calibration
   files; for PNG datasets the RGB frame must be registered to the depth (same size) or, when
   the sizes differ (raw Kinect v2 colour 1920x1080 vs depth 512x424), the depth is
   re-projected onto the colour grid with nominal intrinsics (depth 365 px / colour 84.1 deg
   horizontal field of view) and no baseline: an approximation, good to a few pixels at 1 m,
   documented in BUILD.md;
3. finds the face centre (the annotated head centre moved to the face, else MediaPipe on RGB
   -- the box then sized from the face mesh --, else the depth-only locator) and cuts the
   dynamic crop ``w = f_x R_x / D`` (:mod:`tf_rgbd.data.kinect`);
4. labels the crop with MediaPipe (mesh mask + 5 landmarks: the frame's mesh carried into the
   crop when step 3 found one, else MediaPipe on the crop); without a mesh the mask and
   landmarks are left unknown (the crop itself is kept).
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Optional, Sequence

import numpy as np

from tf_rgbd.data import faces, image_io, kinect, schema
from tf_rgbd.data.errors import InvalidDepthError, SkipExample
from tf_rgbd.data.formats import biwi_bin
from tf_rgbd.data.geometry import CameraIntrinsics
from tf_rgbd.data.sources import BuildPlan, layout

KINECT2_COLOR_HFOV_DEG = 84.1


@dataclasses.dataclass(frozen=True)
class FrameTask:
    """One RGB-D frame.

    Attributes:
      example_id: unique id (``<subject>/<video>/<frame>``).
      depth_path, rgb_path: the files.
      subject: subject name; session: 1-based.
      expression, occlusion, yaw_deg, pitch_deg, roll_deg: labels known from the dataset.
      pose_path: Biwi ``*_pose.txt`` (head rotation + centre), or None.
      depth_calibration, rgb_calibration: Biwi ``depth.cal`` / ``rgb.cal``, or None.
    """

    example_id: str
    depth_path: str
    rgb_path: str
    subject: str
    session: int = 1
    expression: str = "neutral"
    occlusion: str = "none"
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    roll_deg: float = 0.0
    pose_path: Optional[str] = None
    depth_calibration: Optional[str] = None
    rgb_calibration: Optional[str] = None


def read_depth_mm(path: str, depth_8bit_scale_mm: float = 0.0) -> np.ndarray:
    """Depth in mm from a Biwi ``.bin`` or a 16-bit PNG (float32 [H, W], 0 = no data); an
    8-bit PNG only with ``depth_8bit_scale_mm`` > 0 (else SkipExample ``depth_not_16bit``)."""
    if path.lower().endswith(".bin"):
        return image_io.check_depth_mm(biwi_bin.read_depth_bin(path), path)
    return image_io.read_depth_png_mm(path, scale_mm=1.0,
                                      depth_8bit_scale_mm=depth_8bit_scale_mm)


def _color_intrinsics(width: int, height: int) -> CameraIntrinsics:
    focal = (width / 2.0) / math.tan(math.radians(KINECT2_COLOR_HFOV_DEG / 2.0))
    return CameraIntrinsics(fx=focal, fy=focal, cx=(width - 1) / 2.0, cy=(height - 1) / 2.0)


class FrameProducer:
    """FrameTask -> [FaceExample] (see the module docstring). Picklable.

    Args:
      dataset: dataset name; labels: subject -> label.
      crop: the dynamic crop settings.
      face_config: MediaPipe settings (for locating and labelling the face).
      use_mediapipe: False = depth-only location and no mask/landmarks.
      focal_px: depth focal length for PNG datasets (0 = nominal by width).
      depth_8bit_scale_mm: mm per unit of 8-bit depth PNGs (0 = skip them).
    """

    def __init__(self, dataset: str, labels: dict, crop: kinect.FaceCropConfig,
                 face_config: faces.FaceConfig, use_mediapipe: bool = True,
                 focal_px: float = 0.0, depth_8bit_scale_mm: float = 0.0):
        self.dataset = dataset
        self.labels = labels
        self.crop = crop
        self.use_mediapipe = use_mediapipe
        self.focal_px = focal_px
        self.depth_8bit_scale_mm = depth_8bit_scale_mm
        self.analyzer = faces.FaceAnalyzer(face_config) if use_mediapipe else None

    def _registered_frame(self, task: FrameTask, depth: np.ndarray, rgb: np.ndarray
                          ) -> tuple[np.ndarray, CameraIntrinsics, Optional[tuple]]:
        """(depth on the RGB grid, intrinsics of that grid, face centre (u, v, D) from the
        annotated head pose, or None)."""
        if task.depth_calibration and task.rgb_calibration:
            depth_cal = kinect.read_calibration(task.depth_calibration)
            rgb_cal = kinect.read_calibration(task.rgb_calibration)
            registered = kinect.register_depth_to_color(
                depth, depth_cal.intrinsics, rgb_cal.intrinsics, rgb_cal.rotation,
                rgb_cal.translation, rgb.shape[:2])
            head = None
            if task.pose_path:
                rotation, centre = biwi_bin.read_pose(task.pose_path)
                face = kinect.face_centre_from_head_centre(centre, rotation)
                face = rgb_cal.rotation @ face + rgb_cal.translation
                if face[2] <= 0:
                    raise SkipExample("bad_pose", f"{task.pose_path}: head centre behind the "
                                                  "camera")
                u, v = rgb_cal.intrinsics.project(face[None])[0]
                head = (u, v, float(face[2]))
            return registered, rgb_cal.intrinsics, head
        depth_intrinsics = kinect.nominal_intrinsics(depth.shape[1], depth.shape[0],
                                                     self.focal_px or None)
        if depth.shape == rgb.shape[:2]:
            return depth, depth_intrinsics, None
        color = _color_intrinsics(rgb.shape[1], rgb.shape[0])
        registered = kinect.register_depth_to_color(depth, depth_intrinsics, color, np.eye(3),
                                                    np.zeros(3), rgb.shape[:2])
        return registered, color, None

    def __call__(self, task: FrameTask) -> list[schema.FaceExample]:
        depth = read_depth_mm(task.depth_path, self.depth_8bit_scale_mm)
        rgb = image_io.read_rgb(task.rgb_path)
        depth, intrinsics, head = self._registered_frame(task, depth, rgb)
        if head is None:
            location = kinect.locate_face(self.analyzer, rgb, depth, intrinsics, self.crop,
                                          task.example_id)
        else:
            location = kinect.FaceLocation((head[0], head[1]), head[2], "annotation")
        crop = kinect.crop_face(depth, intrinsics, location.center_uv, location.distance_mm,
                                self.crop, rgb=rgb, landmarks_uv=location.landmarks_uv)
        if not np.any(crop.depth > 0):
            raise InvalidDepthError("no_valid_depth", f"{task.example_id}: the face crop has no depth")
        mask = landmarks = None
        mesh = None
        if location.mesh is not None:      # the frame's mesh, carried into the crop
            mesh = faces.transform_points(crop.matrix, location.mesh)
        elif self.analyzer is not None:
            try:
                mesh = self.analyzer.analyze(crop.rgb, task.example_id).mesh
            except SkipExample:
                mesh = None
        if mesh is not None:
            size = self.crop.image_size
            mask = faces.segment_from_mesh(mesh, size, size)
            landmarks = faces.landmarks5_from_mesh(mesh).astype(np.float32)
        yaw, pitch, roll = task.yaw_deg, task.pitch_deg, task.roll_deg
        if task.pose_path:
            rotation, _ = biwi_bin.read_pose(task.pose_path)
            yaw, pitch, roll = kinect.pose_angles_from_rotation(rotation)
        return [schema.FaceExample(
            example_id=task.example_id, rgb=crop.rgb, depth=crop.depth, mask=mask,
            landmarks5=landmarks, label=self.labels[task.subject], subject=task.subject,
            dataset=self.dataset, domain="real", expression=task.expression,
            occlusion=task.occlusion, session=task.session, yaw_deg=yaw, pitch_deg=pitch,
            roll_deg=roll)]


_DEPTH_WORD = re.compile(r"depth", re.IGNORECASE)


def rgb_candidates(depth_path: str) -> list[str]:
    """Possible RGB files of a depth file: ``depth`` -> ``rgb``/``color`` in the path (last
    occurrence first, matching case), with .png/.jpg extensions."""
    stem = re.sub(r"\.(png|bin)$", "", depth_path, flags=re.IGNORECASE)
    matches = list(_DEPTH_WORD.finditer(stem))
    stems = []
    for words in (("rgb", "RGB", "Rgb"), ("color", "COLOR", "Color")):
        for match in reversed(matches):
            word = match.group(0)
            replacement = words[1] if word.isupper() else words[2] if word[0].isupper() else words[0]
            stems.append(stem[:match.start()] + replacement + stem[match.end():])
        if len(matches) > 1:
            replaced = stem
            for match in reversed(matches):
                word = match.group(0)
                replacement = words[1] if word.isupper() else words[2] if word[0].isupper() \
                    else words[0]
                replaced = replaced[:match.start()] + replacement + replaced[match.end():]
            stems.append(replaced)
    if not matches:
        stems.append(stem)
    return [s + ext for s in stems for ext in (".png", ".jpg", ".jpeg")]


def pair_frames(depth_paths: Sequence[str]) -> list[tuple[str, str]]:
    """(depth, rgb) pairs; depth files without an RGB frame are dropped."""
    pairs = []
    for depth_path in depth_paths:
        rgb = next((c for c in rgb_candidates(depth_path) if os.path.exists(c)), None)
        if rgb is not None:
            pairs.append((depth_path, rgb))
    return pairs


def every_nth_frame(tasks: Sequence[FrameTask], stride: int) -> list[FrameTask]:
    """Keeps every ``stride``-th frame of each video (tasks grouped by folder, in order)."""
    if stride <= 1:
        return list(tasks)
    kept, seen = [], {}
    for task in tasks:
        video = os.path.dirname(task.depth_path)
        index = seen.get(video, 0)
        seen[video] = index + 1
        if index % stride == 0:
            kept.append(task)
    return kept


def frames_plan(config, dataset: str, tasks: Sequence[FrameTask], default_heldout,
                make_protocols=None, extra: Optional[dict] = None):
    """The BuildPlan of a frame dataset (splits by subject; the crop from the flags)."""
    tasks = every_nth_frame(tasks, config.frame_stride)
    splits, subjects = layout.split_by_subject(tasks, lambda task: task.subject,
                                               config.heldout_subjects, default_heldout)
    crop = kinect.FaceCropConfig(image_size=config.image_size,
                                 face_width_mm=config.face_width_mm,
                                 face_height_mm=config.face_height_mm)
    producer = FrameProducer(dataset, layout.labels_of(subjects), crop,
                             layout.face_config(config), use_mediapipe=config.use_mediapipe,
                             focal_px=config.kinect_focal_px,
                             depth_8bit_scale_mm=config.depth_8bit_scale_mm)
    return BuildPlan(
        dataset_name=dataset, class_names=subjects, splits=splits, produce=producer,
        task_name=lambda task: task.depth_path, make_protocols=make_protocols,
        extra={"crop": dataclasses.asdict(crop), "frame_stride": config.frame_stride,
               **(extra or {})})
