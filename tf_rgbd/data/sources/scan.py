"""Textured 3D face scans (BU-3DFE, Bosphorus, FRGC, Texas) -> frontal and posed RGB-D crops.

Every scan reader turns its file into a :class:`TexturedScan` in the **scan frame**: x to the
subject's left (image right), y up, z toward the scanner (the face looks toward +z), mm. The
renderer places a virtual pinhole camera (``CameraIntrinsics.for_face_crop``) on the +z axis
in front of the nose tip (the scan's nearest point), ``camera_distance_mm`` away, so the
``image_size`` crop spans ``face_width_mm`` at the nose-tip plane with the nose tip
``nose_below_center_mm`` below the crop centre, and rasterises the mesh with
:func:`tf_rgbd.data.rasterize.rasterize_mesh` (z-buffer; texture sampled bilinearly through
interpolated texture coordinates). Pose augmentation (the paper's) rotates the mesh about the
head centre (``head_center_behind_nose_mm`` behind the nose tip) by each (yaw, pitch) of
``poses`` before rendering.

Labels: MediaPipe runs on each rendered RGB image; its mesh gives ``landmarks5`` and the
pseudo ground-truth mask (restricted to pixels with depth). When MediaPipe finds no face
(textureless or strongly rotated renders), the geometric fall-back keeps the example: the
mask is skin (1) on every pixel with depth and ``landmarks5`` is left unknown; the nose tip
is still at its known place, the camera framing.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import cv2
import numpy as np

from tf_rgbd.data import faces, geometry, rasterize, schema
from tf_rgbd.data.geometry import CameraIntrinsics
from tf_rgbd.data.sources import BuildPlan, layout

# Spike-robust nose tip: the nearest point after ignoring this fraction of the nearest points.
NOSE_TIP_SPIKE_FRACTION = 5e-4


@dataclasses.dataclass(frozen=True)
class TexturedScan:
    """A triangle mesh in the scan frame (x right, y up, z toward the scanner; mm).

    Attributes:
      vertices: float64 [V, 3].
      triangles: int64 [F, 3].
      texture: uint8 [Ht, Wt, 3] RGB, or None.
      texcoords_px: float32 [V, 2] (x, y) pixel coordinates into ``texture``, or None.
      vertex_colors: uint8 [V, 3] RGB per vertex (used when there is no texture), or None.
    """

    vertices: np.ndarray
    triangles: np.ndarray
    texture: Optional[np.ndarray] = None
    texcoords_px: Optional[np.ndarray] = None
    vertex_colors: Optional[np.ndarray] = None


@dataclasses.dataclass(frozen=True)
class ScanRenderConfig:
    """The virtual camera of scan renders.

    Attributes:
      image_size: output side in pixels.
      face_width_mm: scene width covered by the crop at the nose-tip plane.
      camera_distance_mm: distance from the camera to the nose tip.
      nose_below_center_mm: the nose tip's offset below the crop centre (mm at its plane).
      head_center_behind_nose_mm: rotation centre of pose augmentation behind the nose tip.
      max_edge_mm: grid scans: neighbouring points further apart in z are not connected.
    """

    image_size: int = 112
    face_width_mm: float = 200.0
    camera_distance_mm: float = 600.0
    nose_below_center_mm: float = 15.0
    head_center_behind_nose_mm: float = 100.0
    max_edge_mm: float = 10.0

    def intrinsics(self) -> CameraIntrinsics:
        return CameraIntrinsics.for_face_crop(self.image_size, self.camera_distance_mm,
                                              self.face_width_mm)


@dataclasses.dataclass(frozen=True)
class RenderedScan:
    """One render: rgb uint8 [S, S, 3], depth float32 [S, S] mm (0 = background)."""

    rgb: np.ndarray
    depth: np.ndarray
    yaw_deg: float
    pitch_deg: float


def scan_from_grid(xyz: np.ndarray, valid: np.ndarray, max_edge_mm: float,
                   texture: Optional[np.ndarray] = None,
                   texcoords_px: Optional[np.ndarray] = None) -> TexturedScan:
    """Triangulates a range grid (Bosphorus, FRGC, Texas).

    Args:
      xyz: float [R, C, 3] scan-frame points; valid: bool [R, C].
      max_edge_mm: blocks whose z range exceeds this are not connected (occlusion edges).
      texture: optional uint8 [Ht, Wt, 3]. When ``texcoords_px`` is None the texture must lie
        on the same grid (R x C) and gives per-vertex colours.
      texcoords_px: optional float [R, C, 2] (x, y) pixel coordinates into ``texture``.
    """
    rows, cols = valid.shape
    vertices = np.asarray(xyz, np.float64).reshape(-1, 3)
    triangles = geometry.grid_triangles(valid, np.where(valid, xyz[..., 2], 0.0), max_edge_mm)
    colors = coords = None
    if texture is not None and texcoords_px is None:
        if texture.shape[:2] != (rows, cols):
            texture = cv2.resize(texture, (cols, rows), interpolation=cv2.INTER_AREA)
        colors = texture.reshape(-1, 3)
        texture = None
    elif texcoords_px is not None:
        coords = np.asarray(texcoords_px, np.float32).reshape(-1, 2)
    return TexturedScan(vertices=vertices, triangles=triangles, texture=texture,
                        texcoords_px=coords, vertex_colors=colors)


def nose_tip(vertices: np.ndarray, triangles: Optional[np.ndarray] = None) -> np.ndarray:
    """The scan's nearest point to the scanner (max z), ignoring isolated spikes.

    Only vertices used by a triangle count; the top ``NOSE_TIP_SPIKE_FRACTION`` of z values is
    skipped. Returns float64 [3].
    """
    vertices = np.asarray(vertices, np.float64)
    used = vertices if triangles is None or not len(triangles) else vertices[np.unique(triangles)]
    if used.shape[0] == 0:
        raise ValueError("scan has no vertices")
    order = np.argsort(used[:, 2])
    skip = int(len(order) * NOSE_TIP_SPIKE_FRACTION)
    return used[order[len(order) - 1 - skip]]


def to_camera_frame(vertices: np.ndarray, tip: np.ndarray, config: ScanRenderConfig) -> np.ndarray:
    """Scan frame -> camera frame (x right, y down, z forward) with the nose tip at
    (0, ``nose_below_center_mm``, ``camera_distance_mm``)."""
    relative = np.asarray(vertices, np.float64) - tip
    return np.stack([relative[:, 0], -relative[:, 1] + config.nose_below_center_mm,
                     config.camera_distance_mm - relative[:, 2]], axis=-1)


def _shade(depth: np.ndarray) -> np.ndarray:
    """A grey Lambertian shading of a depth map (for scans without texture)."""
    gy, gx = np.gradient(depth.astype(np.float64))
    normal_z = 1.0 / np.sqrt(gx ** 2 + gy ** 2 + 1.0)
    grey = np.where(depth > 0, 40 + 200 * normal_z, 0).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def render_scan(scan: TexturedScan, config: ScanRenderConfig, yaw_deg: float = 0.0,
                pitch_deg: float = 0.0, tip: Optional[np.ndarray] = None) -> RenderedScan:
    """Renders a scan frontally (or rotated by yaw/pitch about the head centre).

    Args:
      scan: the mesh.
      config: camera settings.
      yaw_deg, pitch_deg: pose augmentation (conventions of ``geometry.rotation_matrix``).
      tip: the framing anchor (scan frame, mm); default :func:`nose_tip` of the scan.
    """
    tip = nose_tip(scan.vertices, scan.triangles) if tip is None else np.asarray(tip, np.float64)
    vertices = to_camera_frame(scan.vertices, tip, config)
    if yaw_deg or pitch_deg:
        center = np.array([0.0, config.nose_below_center_mm,
                           config.camera_distance_mm + config.head_center_behind_nose_mm])
        vertices = geometry.rotate_points(vertices, yaw_deg, pitch_deg, 0.0, center=center)
    size = config.image_size
    attributes = scan.texcoords_px if scan.texture is not None else scan.vertex_colors
    raster = rasterize.rasterize_mesh(vertices, scan.triangles, config.intrinsics(), size, size,
                                      vertex_attributes=None if attributes is None
                                      else np.asarray(attributes, np.float32),
                                      cull_backfaces=False)
    covered = raster.coverage
    if scan.texture is not None and scan.texcoords_px is not None:
        coords = raster.attributes
        rgb = cv2.remap(scan.texture, coords[..., 0].astype(np.float32),
                        coords[..., 1].astype(np.float32), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
    elif scan.vertex_colors is not None:
        rgb = np.clip(np.rint(raster.attributes), 0, 255).astype(np.uint8)
    else:
        rgb = _shade(raster.depth_mm)
    rgb = np.where(covered[..., None], rgb, 0).astype(np.uint8)
    return RenderedScan(rgb=rgb, depth=raster.depth_mm.astype(np.float32),
                        yaw_deg=float(yaw_deg), pitch_deg=float(pitch_deg))


def pose_suffix(yaw_deg: float, pitch_deg: float) -> str:
    """Example-id suffix of a pose-augmented render (empty for the frontal render)."""
    if not yaw_deg and not pitch_deg:
        return ""
    return f"@y{yaw_deg:+.0f}p{pitch_deg:+.0f}"


def is_augmented_id(example_id: str) -> bool:
    return "@y" in example_id


@dataclasses.dataclass(frozen=True)
class ScanLabels:
    """The labels of one scan (the reader's parse of its file name).

    ``yaw_deg``/``pitch_deg`` are the pose the subject had during the scan (Bosphorus pose
    scans); pose augmentation adds to them.
    """

    example_id: str
    label: int
    subject: str
    dataset: str
    expression: str = "neutral"
    occlusion: str = "none"
    session: int = 1
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    roll_deg: float = 0.0


class ScanExampleMaker:
    """Renders a scan at each pose and labels it with MediaPipe (geometric fall-back).

    Picklable; the MediaPipe graphs live in the owned :class:`faces.FaceAnalyzer`, created
    lazily once per process.

    Args:
      render: camera settings.
      poses: (yaw, pitch) degrees to render; (0, 0) is the frontal render.
      face_config: MediaPipe settings (``image_size`` is ignored: labels are drawn at the render
        size).
      use_mediapipe: False skips MediaPipe entirely (geometric labels only).
    """

    def __init__(self, render: ScanRenderConfig, poses: Sequence[tuple[float, float]] = ((0, 0),),
                 face_config: faces.FaceConfig = faces.FaceConfig(), use_mediapipe: bool = True):
        self.render = render
        self.poses = tuple((float(y), float(p)) for y, p in poses)
        self.use_mediapipe = use_mediapipe
        self.analyzer = faces.FaceAnalyzer(face_config) if use_mediapipe else None

    def labels_for(self, rendered: RenderedScan, where: str
                   ) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """(mask uint8 [S, S], landmarks5 float32 [5, 2] or None) of one render."""
        geometric_mask = (rendered.depth > 0).astype(np.uint8)
        if self.analyzer is None:
            return geometric_mask, None
        try:
            analysis = self.analyzer.analyze(rendered.rgb, where)
        except Exception:  # noqa: BLE001 - any MediaPipe failure falls back to geometry
            return geometric_mask, None
        if analysis.mesh is None:
            return geometric_mask, None
        size = self.render.image_size
        mask = faces.segment_from_mesh(analysis.mesh, size, size)
        mask = np.where(rendered.depth > 0, mask, 0).astype(np.uint8)
        return mask, analysis.landmarks5.astype(np.float32)

    def __call__(self, scan: TexturedScan, labels: ScanLabels) -> list[schema.FaceExample]:
        tip = nose_tip(scan.vertices, scan.triangles)
        examples = []
        for yaw, pitch in self.poses:
            rendered = render_scan(scan, self.render, yaw, pitch, tip=tip)
            example_id = labels.example_id + pose_suffix(yaw, pitch)
            mask, landmarks = self.labels_for(rendered, example_id)
            examples.append(schema.FaceExample(
                example_id=example_id, rgb=rendered.rgb, depth=rendered.depth, mask=mask,
                landmarks5=landmarks, label=labels.label, subject=labels.subject,
                dataset=labels.dataset, domain="real", expression=labels.expression,
                occlusion=labels.occlusion, session=labels.session,
                yaw_deg=labels.yaw_deg + yaw, pitch_deg=labels.pitch_deg + pitch,
                roll_deg=labels.roll_deg))
        return examples


# ---------------------------------------------------------------------------------------------
# Building a dataset from scan files (shared by the BU-3DFE, Bosphorus, FRGC and Texas readers).

@dataclasses.dataclass(frozen=True)
class ScanTask:
    """One scan file and the labels parsed from its name (``paths``: the files it needs)."""

    example_id: str
    paths: tuple
    subject: str
    expression: str = "neutral"
    occlusion: str = "none"
    session: int = 1
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0


class ScanProducer:
    """task -> FaceExamples: ``load(task) -> TexturedScan``, then render + label.

    Picklable when ``load`` is a module-level function (or a functools.partial of one).
    """

    def __init__(self, load, maker: ScanExampleMaker, dataset: str, labels: dict):
        self.load = load
        self.maker = maker
        self.dataset = dataset
        self.labels = labels

    def __call__(self, task: ScanTask) -> list[schema.FaceExample]:
        scan = self.load(task)
        return self.maker(scan, ScanLabels(
            example_id=task.example_id, label=self.labels[task.subject], subject=task.subject,
            dataset=self.dataset, expression=task.expression, occlusion=task.occlusion,
            session=task.session, yaw_deg=task.yaw_deg, pitch_deg=task.pitch_deg))


def scan_plan(config, dataset: str, tasks: Sequence[ScanTask], load, default_heldout,
              make_protocols=None, extra: Optional[dict] = None):
    """The BuildPlan of a scan dataset (splits by subject, the renderer from the flags).

    Args:
      config: BuildConfig.
      default_heldout: test-split subjects when ``--heldout_subjects=-1`` (None = all).
      make_protocols: records-by-split -> protocols, or None.
    """
    splits, subjects = layout.split_by_subject(tasks, lambda task: task.subject,
                                               config.heldout_subjects, default_heldout)
    poses = layout.parse_poses(config.poses)
    render = ScanRenderConfig(image_size=config.image_size, face_width_mm=config.face_width_mm)
    maker = ScanExampleMaker(render, poses, layout.face_config(config),
                             use_mediapipe=config.use_mediapipe)
    return BuildPlan(
        dataset_name=dataset, class_names=subjects, splits=splits,
        produce=ScanProducer(load, maker, dataset, layout.labels_of(subjects)),
        task_name=lambda task: task.paths[0], make_protocols=make_protocols,
        extra={"poses": [list(p) for p in poses], "render": dataclasses.asdict(render),
               "subjects_per_split": {k: len({t.subject for t in v}) for k, v in splits.items()},
               **(extra or {})})
