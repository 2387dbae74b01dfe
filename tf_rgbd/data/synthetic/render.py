"""Rendering synthetic RGB-D face examples (``schema.FaceExample``) from a ``SampleSpec``.

One sample = the identity's shape + expression, occluders, per-vertex shading, one z-buffer
pass for RGB / depth / mask (occluders included, so the three stay consistent), a random
background, sensor noise and an optional degradation, plus a second depth-only pass of the
neutral, unoccluded face at the same pose (``neutral_depth``).

Camera: ``CameraIntrinsics.for_face_crop(image_size, face_distance_mm, face_width_mm)``. The
head rotates about a point inside it (``FRAMING_POINT_MM``), which stays at a fixed place in the
crop, like a face aligner would keep it; for a frontal mean face the eyes sit on row
``EYE_ROW_FRACTION * image_size``.

RGB: stored as PNG (``rgb_format = "png"``); the ``jpeg`` degradation is applied to the pixels
(encode + decode at low quality) before that, so every record decodes the same way.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
from typing import Iterable, Iterator, Optional, Sequence

import cv2
import numpy as np

from tf_rgbd.data import geometry, rasterize, schema
from tf_rgbd.data.synthetic import appearance, occluders, plan
from tf_rgbd.data.synthetic.config import SampleSpec, SyntheticConfig, subject_name
from tf_rgbd.data.synthetic.face_model import FaceModel
from tf_rgbd.data.synthetic.parametric_head import EXPRESSION_MODE_NAMES

# Model-frame point about which the head rotates; it keeps its place in the crop.
FRAMING_POINT_MM = np.array([0.0, 40.0, -40.0])
# Model z of the face plane that sits at ``face_distance_mm`` for a frontal face.
FACE_PLANE_Z_MM = -88.0
# Row of the eyes of a frontal mean face, as a fraction of the image size.
EYE_ROW_FRACTION = 0.43


@dataclasses.dataclass(frozen=True)
class IdentityAssets:
    """Everything about one identity that does not change between its images.

    Attributes:
      coeffs: float32 [K] identity coefficients.
      neutral_vertices: float32 [V, 3] neutral shape (model frame).
      neutral_normals: float32 [V, 3] its unit vertex normals.
      appearance: colours and per-vertex albedo.
      eyeglasses: the identity's clear eyeglasses, or None.
      temple_half_width: |x| of the head side at eye level (mm).
    """

    coeffs: np.ndarray
    neutral_vertices: np.ndarray
    neutral_normals: np.ndarray
    appearance: appearance.IdentityAppearance
    eyeglasses: Optional[occluders.OccluderMesh]
    temple_half_width: float


@dataclasses.dataclass(frozen=True)
class RenderedSample:
    """A rendered example plus the extra layers tests and tools look at.

    Attributes:
      example: the ``schema.FaceExample``.
      occluder_map: bool [S, S] pixels where an occluder (glasses, hand, scarf, hair) is
        visible.
      clean_depth: float32 [S, S] depth (mm) before sensor noise and degradation.
      landmarks3d: float32 [5, 3] the landmarks in the camera frame.
    """

    example: schema.FaceExample
    occluder_map: np.ndarray
    clean_depth: np.ndarray
    landmarks3d: np.ndarray


def _rotate(points: np.ndarray, rotation: np.ndarray, offset=None) -> np.ndarray:
    """``points @ rotation.T (+ offset)`` column by column (3x faster than einsum here, and
    no multithreaded BLAS call, which stalls on a busy CPU). Keeps the points' dtype."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    out = np.empty_like(points)
    for row in range(3):
        r0, r1, r2 = (points.dtype.type(value) for value in rotation[row])
        out[:, row] = r0 * x + r1 * y + r2 * z
        if offset is not None:
            out[:, row] += points.dtype.type(offset[row])
    return out


def _to_camera(points: np.ndarray, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Model-frame points float [N, 3] -> camera frame float64 [N, 3] (see ``pose``)."""
    return _rotate(np.asarray(points, np.float64) - FRAMING_POINT_MM, rotation, translation)


def build_face_model(config: SyntheticConfig) -> FaceModel:
    """The face model named by the config (the built-in parametric head by default)."""
    if config.morphable_model_dir:
        return FaceModel.from_3ddfa_dir(config.morphable_model_dir)
    return FaceModel.parametric()


@dataclasses.dataclass(frozen=True)
class _Scene:
    """The face plus its occluders as one mesh (model frame)."""

    vertices: np.ndarray      # float [N, 3] mm
    normals: np.ndarray       # float32 [N, 3]
    albedo: np.ndarray        # float32 [N, 3] linear RGB
    mask_classes: np.ndarray  # uint8 [N]
    triangles: np.ndarray     # int [F, 3]; the face's triangles come first

    @classmethod
    def assemble(cls, model: FaceModel, vertices, normals, albedo,
                 extras: Sequence[occluders.OccluderMesh]) -> "_Scene":
        offsets = np.cumsum([model.num_vertices] + [m.vertices.shape[0] for m in extras])
        return cls(
            vertices=np.concatenate([vertices] + [m.vertices for m in extras]),
            normals=np.concatenate([normals] + [m.normals for m in extras]),
            albedo=np.concatenate([albedo] + [m.albedo for m in extras]),
            mask_classes=np.concatenate([model.mask_classes] + [m.mask_class for m in extras]),
            triangles=np.concatenate([model.triangles] + [
                m.triangles + offset for m, offset in zip(extras, offsets[:-1])]))


class SyntheticRenderer:
    """Renders ``SampleSpec``s of one config with one face model (per-identity data memoised
    in ``model.memo``)."""

    def __init__(self, model: FaceModel, config: SyntheticConfig):
        self.model = model
        self.config = config
        size = config.image_size
        self.intrinsics = geometry.CameraIntrinsics.for_face_crop(
            size, config.face_distance_mm, config.face_width_mm)
        framing_depth = config.face_distance_mm + FRAMING_POINT_MM[2] - FACE_PLANE_Z_MM
        mean_eyes = model.landmarks(model.mean_vertices)[:2].mean(axis=0)
        eye_depth = framing_depth + mean_eyes[2] - FRAMING_POINT_MM[2]
        eye_y_camera = ((EYE_ROW_FRACTION * size - 0.5 - self.intrinsics.cy)
                        * eye_depth / self.intrinsics.fy)
        self.framing_translation = np.array(
            [0.0, eye_y_camera - (mean_eyes[1] - FRAMING_POINT_MM[1]), framing_depth])

    # -------------------------------------------------------------- per identity
    def identity_assets(self, identity: int) -> IdentityAssets:
        """The memoised per-identity shape, albedo and eyeglasses."""
        key = ("identity_assets", self.config.seed, int(identity),
               self.config.glasses_fraction, self.config.session2_fringe_fraction)
        return self.model.memo.get(key, lambda: self._build_identity_assets(identity))

    def _build_identity_assets(self, identity: int) -> IdentityAssets:
        config, model = self.config, self.model
        coeffs = plan.identity_coefficients(config.seed, identity, model.num_identity_modes)
        neutral = model.identity_shape(coeffs)
        looks = appearance.identity_appearance(
            model, plan.make_rng(config.seed, plan.STREAM_IDENTITY_APPEARANCE, identity))
        landmarks = model.landmarks(neutral)
        eye_level = np.abs(neutral[:, 1] - landmarks[:2, 1].mean()) < 8.0
        in_front_of_ears = neutral[:, 2] < landmarks[2, 2] + 100.0
        temple = float(np.abs(neutral[eye_level & in_front_of_ears, 0]).max())
        eyeglasses = None
        if plan.identity_attributes(config, identity)["wears_glasses"]:
            eyeglasses = occluders.glasses(
                landmarks, temple,
                plan.make_rng(config.seed, plan.STREAM_IDENTITY_APPEARANCE, identity, 1),
                sunglasses=False)
        return IdentityAssets(coeffs, neutral, model.vertex_normals(neutral), looks, eyeglasses,
                              temple)

    # -------------------------------------------------------------- per sample
    def expression_coeffs(self, spec: SampleSpec) -> np.ndarray:
        """The model's expression coefficients float32 [E] for a spec."""
        weights = np.asarray(spec.expression_weights, np.float32)
        if self.model.expression_mode_names == EXPRESSION_MODE_NAMES:
            return weights
        if not np.any(weights):
            return np.zeros(self.model.num_expression_modes, np.float32)
        # A morphable model's modes have no names: a random direction of the same strength.
        rng = np.random.default_rng([spec.seed, 7])
        return (rng.standard_normal(self.model.num_expression_modes) * 0.6
                * np.linalg.norm(weights)).astype(np.float32)

    def pose(self, spec: SampleSpec) -> tuple[np.ndarray, np.ndarray]:
        """(rotation [3, 3], translation [3]) taking model points to the camera frame:
        ``camera = (model - FRAMING_POINT_MM) @ rotation.T + translation``."""
        rotation = geometry.rotation_matrix(spec.yaw_deg, spec.pitch_deg, spec.roll_deg)
        translation = self.framing_translation.copy()
        translation[2] /= spec.scale
        translation[0] += spec.shift[0] * self.config.face_width_mm
        translation[1] += spec.shift[1] * self.config.face_width_mm
        return rotation, translation

    def _occluders(self, spec: SampleSpec, assets: IdentityAssets, vertices: np.ndarray,
                   normals: np.ndarray) -> list[occluders.OccluderMesh]:
        rng = np.random.default_rng([spec.seed, spec.occluder_variant])
        landmarks = self.model.landmarks(assets.neutral_vertices)
        meshes = []
        if spec.occlusion == "glasses":
            meshes.append(occluders.glasses(landmarks, assets.temple_half_width, rng,
                                            sunglasses=True))
        elif assets.eyeglasses is not None:
            meshes.append(assets.eyeglasses)
        if spec.occlusion == "hand":
            meshes.append(occluders.hand(landmarks, assets.appearance.skin, rng))
        elif spec.occlusion == "scarf":
            meshes.append(occluders.scarf(vertices, normals, self.model.triangles, landmarks,
                                          rng))
        elif spec.occlusion == "hair":
            # A session-2 fringe is the identity's new hairstyle: the same in all its images.
            fringe_rng = rng if spec.session == 1 else plan.make_rng(
                self.config.seed, plan.STREAM_IDENTITY_APPEARANCE, spec.identity, 3)
            meshes.append(occluders.hair_fringe(vertices, normals, self.model.triangles,
                                                landmarks, assets.appearance.hair, fringe_rng))
        return meshes

    def render(self, spec: SampleSpec) -> RenderedSample:
        """Renders one sample (deterministic in ``spec`` and the config)."""
        model, config = self.model, self.config
        size = config.image_size
        rng = np.random.default_rng(spec.seed)
        assets = self.identity_assets(spec.identity)
        expression = self.expression_coeffs(spec)
        if np.any(expression):
            vertices = model.shape(assets.coeffs, expression)
            normals = model.vertex_normals(vertices)
        else:
            vertices, normals = assets.neutral_vertices, assets.neutral_normals
        albedo = assets.appearance.albedo
        if spec.session == 2:
            change = plan.make_rng(config.seed, plan.STREAM_IDENTITY_APPEARANCE, spec.identity,
                                   2).uniform([0.9, 0.88, 0.86], [1.06, 1.04, 1.02])
            albedo = albedo * change.astype(np.float32)
        extras = self._occluders(spec, assets, vertices, normals)
        scene = _Scene.assemble(model, vertices, normals, albedo, extras)

        rotation, translation = self.pose(spec)
        camera_vertices = _to_camera(scene.vertices, rotation, translation)
        camera_normals = _rotate(scene.normals, rotation)
        colours = appearance.shade(scene.albedo, camera_normals, spec.lighting)
        num_face_triangles = model.triangles.shape[0]
        face_only = None
        if extras and not np.any(expression):
            # The neutral depth is the face without occluders: same pass, face triangles only.
            face_only = np.arange(scene.triangles.shape[0]) < num_face_triangles
        raster = rasterize.rasterize_mesh(camera_vertices, scene.triangles, self.intrinsics,
                                          size, size, vertex_attributes=colours,
                                          vertex_labels=scene.mask_classes,
                                          depth_subset=face_only)
        covered = raster.coverage
        backdrop = appearance.background(spec.background_id, size, rng)
        rgb = appearance.to_srgb_uint8(np.where(covered[..., None], raster.attributes,
                                                backdrop))
        clean_depth = raster.depth_mm
        depth = clean_depth
        if config.depth_noise_mm > 0:
            noise = rng.standard_normal((size, size), dtype=np.float32) * np.float32(
                config.depth_noise_mm)
            depth = np.where(covered, np.maximum(clean_depth + noise, 1.0), 0.0
                             ).astype(np.float32)
        rgb, depth = appearance.degrade(rgb, depth, spec.degradation,
                                        spec.degradation_strength, rng)

        if not np.any(expression):
            neutral_depth = clean_depth if face_only is None else raster.subset_depth_mm
        else:
            neutral_camera = _to_camera(assets.neutral_vertices, rotation, translation)
            neutral_depth = rasterize.rasterize_mesh(neutral_camera, model.triangles,
                                                     self.intrinsics, size, size).depth_mm

        landmarks3d = _to_camera(model.landmarks(vertices), rotation, translation)
        landmarks2d = self.intrinsics.project(landmarks3d).astype(np.float32)
        example = schema.FaceExample(
            example_id=spec.example_id,
            rgb=rgb,
            label=spec.identity,
            subject=subject_name(spec.identity),
            dataset="synthetic",
            domain="synthetic",
            depth=depth.astype(np.float32),
            depth_units="mm",
            mask=raster.labels.astype(np.uint8),
            expression=spec.expression,
            yaw_deg=spec.yaw_deg,
            pitch_deg=spec.pitch_deg,
            roll_deg=spec.roll_deg,
            occlusion=spec.occlusion,
            session=spec.session,
            landmarks5=landmarks2d,
            identity_coeffs=assets.coeffs.copy(),
            expression_coeffs=expression.astype(np.float32),
            neutral_depth=neutral_depth.astype(np.float32),
            rgb_format="png")
        return RenderedSample(example=example,
                              occluder_map=raster.triangle_index >= num_face_triangles,
                              clean_depth=clean_depth,
                              landmarks3d=landmarks3d.astype(np.float32))


def render_sample(model: FaceModel, spec: SampleSpec, config: SyntheticConfig
                  ) -> schema.FaceExample:
    """Renders one ``SampleSpec`` into a ``schema.FaceExample`` (see the module docstring)."""
    return SyntheticRenderer(model, config).render(spec).example


# ------------------------------------------------------------------ many samples

# The renderer of a worker process of ``generate`` (set by the pool initializer, only in those
# processes; they die with the pool).
_worker_renderer: Optional[SyntheticRenderer] = None


def _init_worker(config: SyntheticConfig, model: FaceModel) -> None:
    global _worker_renderer
    cv2.setNumThreads(1)
    _worker_renderer = SyntheticRenderer(model, config)


def _render_identity(identity: int) -> list[schema.FaceExample]:
    renderer = _worker_renderer
    return [renderer.render(spec).example
            for spec in plan.identity_plan(renderer.config, identity)]


def generate(config: SyntheticConfig, identities: Optional[Iterable[int]] = None,
             num_workers: int = 1, model: Optional[FaceModel] = None
             ) -> Iterator[schema.FaceExample]:
    """Yields the examples of ``identities`` (default all) in plan order.

    Args:
      config: the dataset config.
      identities: identity indices to render (each independent of the others).
      num_workers: > 1 renders in that many processes (one identity per task, order kept).
        Workers are started with ``spawn`` and receive the model pickled: ``fork`` deadlocks
        when the parent already ran OpenCV's or TensorFlow's thread pools (a forked child
        inherits their locks held; seen as a hang in ``cv2.setNumThreads``).
      model: the face model (default: built from the config).
    """
    identities = range(config.num_identities) if identities is None else list(identities)
    model = model or build_face_model(config)
    if num_workers <= 1:
        renderer = SyntheticRenderer(model, config)
        for identity in identities:
            for spec in plan.identity_plan(config, identity):
                yield renderer.render(spec).example
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(num_workers, initializer=_init_worker, initargs=(config, model)) as pool:
        for examples in pool.imap(_render_identity, identities):
            yield from examples
