"""Fixed-topology 3D shape targets of synthetic examples, recomputed from their coefficients.

A synthetic record stores the generator's ``identity_coeffs`` and ``expression_coeffs``
(float32, exactly the values the renderer used). The mesh is linear in them
(``face_model``), so the shape of an example and the neutral shape of its identity are::

    shape   = model.shape(identity_coeffs, expression_coeffs)[vertices]     # [N, 3] mm
    neutral = model.identity_shape(identity_coeffs)[vertices]               # [N, 3] mm

in the model frame (pose-free, as a 3DMM's shape is). ``vertices`` is a fixed subset of the
face region (:func:`face_vertex_subset`), the same for every example: the fixed topology the
decoders of the joint reconstruction model predict.

Why recompute instead of storing vertices in the TFRecords (no schema change): the
recomputation is exact (same float32 coefficients, same float32 arithmetic as the renderer,
pinned bit for bit by ``tests/data/test_shape_targets.py``), costs no bytes per record (two
[N, 3] float lists would add ~12 kB per example at N = 512), and
:func:`check_against_landmarks` verifies that a dataset was rendered with the model at hand
(the record's own 2D landmarks must equal the recomputed 3D landmarks projected with the
record's pose), so a dataset built with another face model (``--morphable_model_dir``) or an
older parametric head is refused instead of giving silently wrong targets.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from tf_rgbd.data.synthetic.config import SampleSpec, SyntheticConfig
from tf_rgbd.data.synthetic.face_model import FaceModel
from tf_rgbd.data.synthetic.render import SyntheticRenderer

# Mask classes (schema.MASK_CLASSES) of the face region: skin, brows, eyes, nose, mouth.
FACE_MASK_CLASSES = (1, 2, 3, 5, 6)
# A face-region vertex must lie this far (mm) or less behind the nose tip (drops ears/sides).
MAX_DEPTH_BEHIND_NOSE_MM = 70.0
# |landmark error| (pixels) tolerated by check_against_landmarks (the record stores float32).
LANDMARK_TOLERANCE_PX = 0.05


class ShapeTargetError(ValueError):
    """The coefficients of a record do not fit the face model (the message says why)."""


def face_vertex_subset(model: FaceModel, num_vertices: int) -> np.ndarray:
    """int64 [n] indices of ``num_vertices`` (or all, if fewer) face-region vertices.

    Face region: vertices of the face mask classes no more than ``MAX_DEPTH_BEHIND_NOSE_MM``
    behind the nose tip (model frame); the subset is every k-th of them in index order, so it
    is deterministic and spread over the face.
    """
    if num_vertices < 1:
        raise ValueError(f"num_vertices must be >= 1, got {num_vertices}")
    nose_z = float(model.mean_vertices[model.landmark_vertices[2], 2])
    face = np.flatnonzero(np.isin(model.mask_classes, FACE_MASK_CLASSES)
                          & (model.mean_vertices[:, 2] <= nose_z + MAX_DEPTH_BEHIND_NOSE_MM))
    if face.size == 0:
        raise ValueError(f"face model {model.source}: no face-region vertex")
    if face.size <= num_vertices:
        return face.astype(np.int64)
    picks = np.floor(np.arange(num_vertices) * (face.size / num_vertices)).astype(np.int64)
    return face[picks].astype(np.int64)


def _checked(coeffs, size: int, what: str, example_id: str) -> np.ndarray:
    coeffs = np.asarray(coeffs, np.float32).reshape(-1)
    if coeffs.size == 0:
        raise ShapeTargetError(f"{example_id}: no {what} coefficients in the record; mesh "
                               "shape targets need a synthetic dataset (use the depth-map "
                               "shape for real data)")
    if coeffs.size != size:
        raise ShapeTargetError(f"{example_id}: {coeffs.size} {what} coefficients but the face "
                               f"model has {size} {what} modes; was the dataset built with "
                               "another face model (--morphable_model_dir)?")
    return coeffs


def shape_targets(model: FaceModel, vertices: np.ndarray, identity_coeffs,
                  expression_coeffs, example_id: str = "example") -> tuple[np.ndarray, np.ndarray]:
    """(shape, neutral) float32 [n, 3] mm of one example (see the module docstring)."""
    identity = _checked(identity_coeffs, model.num_identity_modes, "identity", example_id)
    expression = _checked(expression_coeffs, model.num_expression_modes, "expression",
                          example_id)
    neutral = model.identity_shape(identity)
    full = model.shape(identity, expression) if np.any(expression) else neutral
    return (np.asarray(full[vertices], np.float32), np.asarray(neutral[vertices], np.float32))


def check_against_landmarks(model: FaceModel, config: SyntheticConfig, example_id: str,
                            identity_coeffs, expression_coeffs, yaw_deg: float,
                            pitch_deg: float, roll_deg: float, image_size: int,
                            landmarks5: np.ndarray) -> float:
    """Projects the recomputed landmarks with the record's pose and returns the largest pixel
    error against the record's ``landmarks5``.

    Raises:
      ShapeTargetError: the error exceeds ``LANDMARK_TOLERANCE_PX`` (the dataset was rendered
        with another face model or camera: its shape targets cannot be recomputed here).
    """
    identity = _checked(identity_coeffs, model.num_identity_modes, "identity", example_id)
    expression = _checked(expression_coeffs, model.num_expression_modes, "expression",
                          example_id)
    config = SyntheticConfig(**{**config.__dict__, "image_size": int(image_size)})
    renderer = SyntheticRenderer(model, config)
    spec = SampleSpec(identity=0, image_index=0, kind="gallery", session=1,
                      expression="neutral", expression_weights=(), yaw_deg=float(yaw_deg),
                      pitch_deg=float(pitch_deg), roll_deg=float(roll_deg), occlusion="none",
                      occluder_variant=0, degradation="none", degradation_strength=0.0,
                      lighting=None, background_id=0, wears_glasses=False, shift=(0.0, 0.0),
                      scale=1.0, seed=0)
    rotation, translation = renderer.pose(spec)
    vertices = model.shape(identity, expression) if np.any(expression) else \
        model.identity_shape(identity)
    from tf_rgbd.data.synthetic.render import _to_camera  # noqa: PLC0415 (same package)
    projected = renderer.intrinsics.project(_to_camera(model.landmarks(vertices), rotation,
                                                       translation))
    error = float(np.max(np.abs(projected - np.asarray(landmarks5, np.float64).reshape(5, 2))))
    if not error <= LANDMARK_TOLERANCE_PX:
        raise ShapeTargetError(
            f"{example_id}: the face model {model.source} does not reproduce the record's "
            f"landmarks (max error {error:.3f} px > {LANDMARK_TOLERANCE_PX}); the dataset was "
            "rendered with another face model or camera (pass its --morphable_model_dir)")
    return error


def mean_shape(neutral_shapes: Sequence[np.ndarray]) -> np.ndarray:
    """float32 mean of identity neutral shapes (each [n, C]): the s-bar of the paper."""
    if not len(neutral_shapes):
        raise ValueError("mean_shape needs at least one neutral shape")
    return np.mean(np.stack([np.asarray(s, np.float64) for s in neutral_shapes]), axis=0
                   ).astype(np.float32)
