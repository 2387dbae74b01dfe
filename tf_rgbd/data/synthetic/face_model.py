"""The linear 3D face model used by the synthetic generator.

``vertices = mean + sum_k identity_coeffs[k] * identity_basis[k]
                  + sum_j expression_coeffs[j] * expression_basis[j]``  (model frame, mm)

Model frame: x to the image's right for a frontal face, y down, z away from the camera (the
face looks toward -z), y = 0 on the eye line (see ``parametric_head``). Coefficients are unit
scaled: ``identity_coeffs ~ N(0, 1)`` gives plausible faces.

Two sources:

* :meth:`FaceModel.parametric` (default): the project's own head (license-clean), with a back
  of the head, neck, ears, per-vertex parts for appearance, and named identity/expression modes.
* :meth:`FaceModel.from_3ddfa_dir`: a 3D morphable model in 3DDFA's NumPy layout that the user
  provides (its license is the user's to honour; see BUILD.md). It has no back of the head, so
  large yaw looks like a mask.
"""
from __future__ import annotations

import collections
import os
from typing import Callable, Hashable, Optional, Sequence

import cv2
import numpy as np
import scipy.sparse

from tf_rgbd.data.synthetic import parametric_head
from tf_rgbd.data.synthetic.parametric_head import PART, PART_MASK_CLASS, PARTS

# Landmark order of ``landmarks5`` (schema.py): image-left first for a frontal face.
LANDMARK_NAMES = ("left_eye", "right_eye", "nose_tip", "left_mouth_corner",
                  "right_mouth_corner")
# Nose-tip depth of the parametric head (model frame), where a loaded model's nose tip is put.
_PARAMETRIC_NOSE_TIP_Z = -122.0
# Appearance weights every model provides (float32 [V] in [0, 1]).
APPEARANCE_WEIGHT_NAMES = ("sclera", "iris", "pupil", "lash", "brow", "lip", "mouth_interior",
                           "nostril", "hair", "blush", "cavity")


class BoundedCache:
    """A small least-recently-used memo (results never depend on whether it hit)."""

    def __init__(self, max_entries: int = 64):
        self._max_entries = max_entries
        self._entries: collections.OrderedDict = collections.OrderedDict()

    def get(self, key: Hashable, compute: Callable[[], object]):
        """Returns the cached value of ``key``, computing and storing it on a miss."""
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = compute()
        self._entries[key] = value
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return value


def _read_only(array: np.ndarray, dtype) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=dtype)
    array.setflags(write=False)
    return array


class FaceModel:
    """A linear face model with per-vertex parts, mask classes and 5 landmark vertices.

    Attributes (read-only arrays):
      mean_vertices: float32 [V, 3] mean shape, model frame, mm.
      triangles: int32 [F, 3], outward normals ``(v1 - v0) x (v2 - v0)``.
      identity_basis: float32 [K, V, 3] mm per unit coefficient.
      expression_basis: float32 [E, V, 3] mm per unit coefficient.
      parts: uint8 [V] indices into ``parametric_head.PARTS`` (appearance).
      mask_classes: uint8 [V] schema mask class per vertex (0..6).
      appearance_weights: dict name -> float32 [V] (``APPEARANCE_WEIGHT_NAMES``).
      landmark_vertices: int64 [5] vertices of ``LANDMARK_NAMES``.
      identity_mode_names, expression_mode_names: names of the basis rows.
      has_back_of_head: whether the mesh is a closed head (profiles look right).
      memo: bounded cache for per-identity derived data (shapes, albedo).
    """

    def __init__(self, mean_vertices: np.ndarray, triangles: np.ndarray,
                 identity_basis: np.ndarray, expression_basis: np.ndarray, parts: np.ndarray,
                 appearance_weights: dict, landmark_vertices: Sequence[int],
                 identity_mode_names: Sequence[str], expression_mode_names: Sequence[str],
                 has_back_of_head: bool, source: str):
        num_vertices = np.asarray(mean_vertices).shape[0]
        self.mean_vertices = _read_only(mean_vertices, np.float32)
        self.triangles = _read_only(triangles, np.int32)
        self.identity_basis = _read_only(identity_basis, np.float32)
        self.expression_basis = _read_only(expression_basis, np.float32)
        self.parts = _read_only(parts, np.uint8)
        self.mask_classes = _read_only(PART_MASK_CLASS[self.parts], np.uint8)
        missing = [name for name in APPEARANCE_WEIGHT_NAMES if name not in appearance_weights]
        if missing:
            raise ValueError(f"appearance_weights lacks {missing}")
        self.appearance_weights = {name: _read_only(appearance_weights[name], np.float32)
                                   for name in APPEARANCE_WEIGHT_NAMES}
        self.landmark_vertices = _read_only(landmark_vertices, np.int64)
        self.identity_mode_names = tuple(identity_mode_names)
        self.expression_mode_names = tuple(expression_mode_names)
        self.has_back_of_head = has_back_of_head
        self.source = source
        for name, array in (("identity_basis", self.identity_basis),
                            ("expression_basis", self.expression_basis)):
            if array.ndim != 3 or array.shape[1:] != (num_vertices, 3):
                raise ValueError(f"{name} must be [K, {num_vertices}, 3], got {array.shape}")
        if self.triangles.max(initial=0) >= num_vertices:
            raise ValueError("triangles index vertices beyond the mean shape")
        if self.landmark_vertices.shape != (5,):
            raise ValueError(f"landmark_vertices must hold 5 indices, got "
                             f"{self.landmark_vertices.shape}")
        faces = np.arange(self.triangles.shape[0]).repeat(3)
        self._vertex_face_incidence = scipy.sparse.csr_matrix(
            (np.ones(faces.size, np.float32), (self.triangles.reshape(-1), faces)),
            shape=(num_vertices, self.triangles.shape[0]))
        self._triangle_columns = tuple(np.ascontiguousarray(self.triangles[:, k])
                                       for k in range(3))
        self.memo = BoundedCache()

    # ------------------------------------------------------------------ constructors
    @classmethod
    def parametric(cls, dense_step_deg: float = 1.6) -> "FaceModel":
        """The project's own parametric head (see ``parametric_head``); ~0.5 s to build."""
        head = parametric_head.build_parametric_head(dense_step_deg)
        return cls(head.vertices, head.triangles, head.identity_basis, head.expression_basis,
                   head.parts, head.appearance_weights, head.landmark_vertices,
                   parametric_head.IDENTITY_MODE_NAMES, parametric_head.EXPRESSION_MODE_NAMES,
                   has_back_of_head=True, source="parametric")

    @classmethod
    def from_3ddfa_dir(cls, path: str, units_per_mm: Optional[float] = None,
                       y_up: bool = True, mode_rms_mm: float = 2.5) -> "FaceModel":
        """Loads a morphable model stored in 3DDFA's NumPy layout.

        Expected files in ``path`` (``.npy``; V vertices, flattened as x0, y0, z0, x1, ...):

        * mean shape: ``u.npy`` [3V] (or [3V, 1]), or ``u_shp.npy`` + ``u_exp.npy`` (summed);
        * identity basis: ``w_shp.npy`` [3V, K] (or ``w_shp_sim.npy``);
        * expression basis: ``w_exp.npy`` [3V, E] (or ``w_exp_sim.npy``);
        * triangles: ``tri.npy`` [F, 3] or [3, F] (0-based, or 1-based as in MATLAB files);
        * landmarks: ``keypoints.npy`` (3DDFA's ``keypoints_sim.npy`` layout: 68 x 3 indices
          into the flattened array) or ``landmarks68.npy`` (68 vertex indices), in the iBUG
          68-point order;
        * optional ``vertex_labels.npy`` [V] schema mask classes 0..6; without it the classes
          come from the 68 landmarks (brows, eyes, nose, mouth polygons, face oval = skin).

        Args:
          path: the directory.
          units_per_mm: model units per millimetre; default guesses 1000 (micrometres, as in
            the Basel Face Model) when the mean shape spans more than 2000 units, else 1.
          y_up: the model's y axis points up and z toward the viewer (BFM); converted to this
            project's y-down, z-away frame by a 180 degree rotation about x.
          mode_rms_mm: each basis column is rescaled so a unit coefficient moves the vertices
            by this RMS distance (identity), or 1.2x this (expression).
        Raises:
          FileNotFoundError / ValueError naming the missing or malformed file.
        """
        def load(*names, required=True):
            for name in names:
                file = os.path.join(path, name)
                if os.path.exists(file):
                    return np.load(file, allow_pickle=False)
            if required:
                raise FileNotFoundError(
                    f"{path}: none of {names} found; see FaceModel.from_3ddfa_dir for the layout")
            return None

        mean = load("u.npy", required=False)
        if mean is None:
            mean = load("u_shp.npy").reshape(-1) + load("u_exp.npy").reshape(-1)
        mean = np.asarray(mean, np.float64).reshape(-1)
        if mean.size % 3:
            raise ValueError(f"{path}: the mean shape has {mean.size} values, not a multiple of 3")
        num_vertices = mean.size // 3
        w_shp = np.asarray(load("w_shp.npy", "w_shp_sim.npy"), np.float64)
        w_exp = np.asarray(load("w_exp.npy", "w_exp_sim.npy"), np.float64)
        for name, basis in (("w_shp", w_shp), ("w_exp", w_exp)):
            if basis.ndim != 2 or basis.shape[0] != 3 * num_vertices:
                raise ValueError(f"{path}: {name} must be [3V={3 * num_vertices}, K], "
                                 f"got {basis.shape}")
        triangles = np.asarray(load("tri.npy"), np.int64)
        if triangles.ndim != 2 or 3 not in triangles.shape:
            raise ValueError(f"{path}: tri.npy must be [F, 3] or [3, F], got {triangles.shape}")
        if triangles.shape[1] != 3:
            triangles = triangles.T
        if triangles.min() == 1 or triangles.max() == num_vertices:
            triangles = triangles - 1
        keypoints = load("keypoints.npy", required=False)
        if keypoints is not None:
            keypoints = np.asarray(keypoints, np.int64).reshape(-1)
            landmarks68 = keypoints[::3] // 3 if keypoints.size == 204 else keypoints // 3
        else:
            landmarks68 = np.asarray(load("landmarks68.npy"), np.int64).reshape(-1)
        if landmarks68.size != 68:
            raise ValueError(f"{path}: expected 68 landmarks, got {landmarks68.size}")

        scale = units_per_mm
        if scale is None:
            extent = np.ptp(mean.reshape(-1, 3), axis=0).max()
            scale = 1000.0 if extent > 2000.0 else 1.0
        axis_flip = np.array([1.0, -1.0, -1.0]) if y_up else np.ones(3)
        vertices = mean.reshape(-1, 3) / scale * axis_flip

        def to_basis(columns, rms_mm):
            basis = columns.T.reshape(columns.shape[1], num_vertices, 3) / scale * axis_flip
            rms = np.sqrt(np.mean(np.sum(basis ** 2, axis=-1), axis=-1))
            return basis * (rms_mm / np.maximum(rms, 1e-12))[:, None, None]

        identity_basis = to_basis(w_shp, mode_rms_mm)
        expression_basis = to_basis(w_exp, 1.2 * mode_rms_mm)
        # Place the eyes' midpoint at x = y = 0 and the nose tip at the parametric head's depth.
        eye_left = vertices[landmarks68[36:42]].mean(axis=0)
        eye_right = vertices[landmarks68[42:48]].mean(axis=0)
        nose_tip = vertices[landmarks68[30]]
        offset = -np.array([(eye_left[0] + eye_right[0]) / 2, (eye_left[1] + eye_right[1]) / 2,
                            nose_tip[2] - _PARAMETRIC_NOSE_TIP_Z])
        vertices = vertices + offset

        labels = load("vertex_labels.npy", required=False)
        parts = _parts_from_landmarks(vertices, landmarks68, labels)
        weights = {name: np.zeros(num_vertices, np.float32) for name in APPEARANCE_WEIGHT_NAMES}
        for weight, part_names in (("sclera", ("eye_white", "iris", "pupil")),
                                   ("iris", ("iris", "pupil")), ("pupil", ("pupil",)),
                                   ("brow", ("brow",)), ("lip", ("lip",)),
                                   ("mouth_interior", ("mouth_interior",)),
                                   ("nostril", ("nostril",)), ("hair", ("hair",))):
            weights[weight] = np.isin(parts, [PART[p] for p in part_names]).astype(np.float32)
        eye_vertices = [int(np.argmin(np.linalg.norm(vertices - centre, axis=1)))
                        for centre in (eye_left + offset, eye_right + offset)]
        landmark_vertices = eye_vertices + [int(landmarks68[30]), int(landmarks68[48]),
                                            int(landmarks68[54])]
        return cls(vertices, triangles, identity_basis, expression_basis, parts, weights,
                   landmark_vertices,
                   [f"shape_{k}" for k in range(identity_basis.shape[0])],
                   [f"expression_{k}" for k in range(expression_basis.shape[0])],
                   has_back_of_head=False, source=f"3ddfa:{os.path.abspath(path)}")

    # ------------------------------------------------------------------ properties
    @property
    def num_vertices(self) -> int:
        return self.mean_vertices.shape[0]

    @property
    def vertex_face_incidence(self) -> scipy.sparse.csr_matrix:
        """float32 [V, F] sparse: 1 where vertex v is a corner of triangle f."""
        return self._vertex_face_incidence

    @property
    def num_identity_modes(self) -> int:
        return self.identity_basis.shape[0]

    @property
    def num_expression_modes(self) -> int:
        return self.expression_basis.shape[0]

    # ------------------------------------------------------------------ geometry
    def shape(self, identity_coeffs: np.ndarray,
              expression_coeffs: Optional[np.ndarray] = None) -> np.ndarray:
        """Vertices float32 [V, 3] (model frame, mm) of an identity with an expression.

        Args:
          identity_coeffs: float [K] (fewer values are zero-padded).
          expression_coeffs: float [E] or None for neutral.
        """
        vertices = self.identity_shape(identity_coeffs)
        if expression_coeffs is not None and np.any(expression_coeffs):
            vertices = vertices + np.einsum(
                "k,kvc->vc",
                self._padded(expression_coeffs, self.num_expression_modes, "expression"),
                self.expression_basis)
        return vertices

    def identity_shape(self, identity_coeffs: np.ndarray) -> np.ndarray:
        """Neutral vertices float32 [V, 3] of an identity (memoised, read-only)."""
        coeffs = self._padded(identity_coeffs, self.num_identity_modes, "identity")

        def compute():
            vertices = self.mean_vertices + np.einsum("k,kvc->vc", coeffs, self.identity_basis)
            vertices.setflags(write=False)
            return vertices

        return self.memo.get(("identity_shape", coeffs.tobytes()), compute)

    def vertex_normals(self, vertices: np.ndarray) -> np.ndarray:
        """Unit area-weighted vertex normals float32 [V, 3] (pointing out of the head)."""
        vertices = np.asarray(vertices, np.float32)
        x, y, z = vertices[:, 0], vertices[:, 1], vertices[:, 2]
        t0, t1, t2 = self._triangle_columns
        ax, ay, az = x[t0], y[t0], z[t0]
        e1x, e1y, e1z = x[t1] - ax, y[t1] - ay, z[t1] - az
        e2x, e2y, e2z = x[t2] - ax, y[t2] - ay, z[t2] - az
        face_normals = np.stack([e1y * e2z - e1z * e2y, e1z * e2x - e1x * e2z,
                                 e1x * e2y - e1y * e2x], axis=1)
        normals = self._vertex_face_incidence @ face_normals
        length = np.sqrt(np.einsum("vk,vk->v", normals, normals))
        return (normals / np.maximum(length, 1e-9)[:, None]).astype(np.float32)

    def landmarks(self, vertices: np.ndarray) -> np.ndarray:
        """The 5 landmark points float [5, 3] of ``vertices``."""
        return np.asarray(vertices)[self.landmark_vertices]

    @staticmethod
    def _padded(coeffs, size: int, what: str) -> np.ndarray:
        coeffs = np.asarray(coeffs, np.float32).reshape(-1)
        if coeffs.size > size:
            raise ValueError(f"{coeffs.size} {what} coefficients given but the model has "
                             f"{size} {what} modes")
        return np.pad(coeffs, (0, size - coeffs.size))


def _parts_from_landmarks(vertices: np.ndarray, landmarks68: np.ndarray,
                          labels: Optional[np.ndarray]) -> np.ndarray:
    """Parts of a morphable model from its mask labels, or from 68-landmark polygons."""
    num_vertices = vertices.shape[0]
    eye_centres = [vertices[landmarks68[36:42]].mean(axis=0),
                   vertices[landmarks68[42:48]].mean(axis=0)]
    iris_distance = np.min([np.hypot(vertices[:, 0] - c[0], vertices[:, 1] - c[1])
                            for c in eye_centres], axis=0)
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.shape != (num_vertices,) or labels.min() < 0 or labels.max() > 6:
            raise ValueError(f"vertex_labels.npy must be [V={num_vertices}] classes 0..6")
        class_part = np.array([PART["neck"], PART["skin"], PART["brow"], PART["eye_white"],
                               PART["skin"], PART["nose"], PART["lip"]], np.uint8)
        parts = class_part[labels]
    else:
        # Rasterise the landmark polygons on a 0.5 mm grid over the frontal (x, y) plane.
        resolution = 0.5
        xy = vertices[:, :2]
        origin = xy.min(axis=0) - 5.0
        size = np.ceil((xy.max(axis=0) - origin + 5.0) / resolution).astype(int)
        pixel = np.clip(((xy - origin) / resolution).astype(int), 0, size - 1)

        def region(indices, thickness=0):
            canvas = np.zeros((size[1], size[0]), np.uint8)
            polygon = ((vertices[landmarks68[list(indices)], :2] - origin) / resolution)
            polygon = np.round(polygon).astype(np.int32)
            if thickness:
                cv2.polylines(canvas, [polygon], False, 1, int(thickness / resolution))
            else:
                cv2.fillPoly(canvas, [cv2.convexHull(polygon)], 1)
            return canvas[pixel[:, 1], pixel[:, 0]].astype(bool)

        front = vertices[:, 2] < np.percentile(vertices[:, 2], 85)
        jaw = list(range(17)) + [26, 25, 24, 19, 18, 17]
        parts = np.full(num_vertices, PART["neck"], np.uint8)
        parts[region(jaw) & front] = PART["skin"]
        parts[region(range(17, 22), 4.0) | region(range(22, 27), 4.0)] = PART["brow"]
        parts[region([27, 31, 32, 33, 34, 35]) | region([27, 28, 29, 30, 31, 35])] = PART["nose"]
        parts[region(range(48, 60))] = PART["lip"]
        parts[region(range(60, 68))] = PART["mouth_interior"]
        parts[region(range(36, 42)) | region(range(42, 48))] = PART["eye_white"]
    eyes = parts == PART["eye_white"]
    parts[eyes & (iris_distance < parametric_head.IRIS_RADIUS)] = PART["iris"]
    parts[eyes & (iris_distance < parametric_head.PUPIL_RADIUS)] = PART["pupil"]
    return parts


__all__ = ["FaceModel", "BoundedCache", "LANDMARK_NAMES", "APPEARANCE_WEIGHT_NAMES", "PARTS",
           "PART", "PART_MASK_CLASS"]
