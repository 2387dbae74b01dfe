"""Face preprocessing with MediaPipe 0.10.21 (bundled models, fully offline).

Pipeline for one RGB image (optionally with a registered depth map and a mask):

1. **Detection**: BlazeFace (``mp.solutions.face_detection``) short range (model 0: faces
   that fill a fair part of the image, >= ~15% of its long side, "within ~2 m") and full range
   (model 1: faces down to ~7% of the long side, "within ~5 m"). ``detector="auto"`` runs
   both and merges them by non-maximum suppression (boxes overlapping by IoU >
   ``nms_iou_threshold`` are one face; the higher score wins), so a group photo gets its near
   and its far faces; ``short`` / ``full`` run one model. Detections below ``min_score`` are
   dropped. Then ``multiple_faces``:

   * ``largest``: the largest face is used unless a second face is nearly as large (box area
     >= ``ambiguous_face_ratio`` x the largest's), in which case the image is skipped as
     ``multiple_faces`` (we cannot tell which one is the subject);
   * ``skip``: every image with more than one face is skipped as ``multiple_faces``;
   * ``all``: every face is used (:meth:`FaceAnalyzer.analyze_all`,
     :meth:`FacePreprocessor.align_all`), largest first; faces below ``min_face_px`` are left
     out (``tiny_face`` only when none is left).
2. **Landmarks**: the MediaPipe face mesh (478 points with ``refine_landmarks``) run on a crop
   around the chosen face; 5 points are taken from it (iris centres, nose tip, mouth corners,
   image-left first). A mesh whose nose tip falls outside the detection box belongs to a
   neighbouring face (group photos) and is not used. When there is no mesh the detector's own
   key points give the eyes and the nose tip, and the mouth corners are placed either side of
   its mouth centre.
3. **Alignment**: a similarity transform (least squares, Umeyama) maps the 5 points onto the
   standard 112x112 ArcFace template scaled to ``image_size``; ``crop="depthnet"`` uses a
   looser crop (the template shrunk by ``DEPTHNET_CROP_TIGHTNESS`` about the crop centre, so
   the whole head fits, as DepthNet inputs need). The same warp is applied to the depth map
   (nearest neighbour, so 0 = "no data" is never blended with a surface) and to the mask.
4. **Pseudo ground-truth segmentation** from the mesh, drawn in the aligned crop: filled convex
   hulls of the face oval -> skin (1), brows (2), eyes (3), nose (5), lips -> mouth (6), painted
   in that order; everything else is background (0). Class 4 (glasses) is never produced: the
   face mesh has no notion of eyewear. This replaces the paper's BiSeNet pseudo labels.

No face, a tiny face (shorter box side < ``min_face_px``) and ambiguous multiple faces raise
:class:`tf_rgbd.data.errors.SkipExample` (``no_face``, ``tiny_face``, ``multiple_faces``) so the
dataset builder counts them in the manifest instead of crashing.

MediaPipe graphs are created lazily, once per process, by :class:`FaceAnalyzer` (never at
import time, never shared across processes: the object pickles without them) and closed by
:meth:`FaceAnalyzer.close` (or when the analyzer is garbage collected / the process exits).
"""
from __future__ import annotations

import dataclasses
import weakref
from typing import Optional

import cv2
import numpy as np

from tf_rgbd.data.errors import MultipleFacesError, NoFaceError, TinyFaceError

# The InsightFace/ArcFace 5-point template for 112x112 crops (x, y): left eye, right eye, nose
# tip, left mouth corner, right mouth corner (image left/right), the order of schema.landmarks5.
ARCFACE_TEMPLATE_112 = np.array([
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041]], np.float64)
ARCFACE_SIZE = 112
# "depthnet" crops: the template shrunk toward the crop centre so forehead, chin and ears fit.
DEPTHNET_CROP_TIGHTNESS = 0.7
CROPS = ("arcface", "depthnet")
DETECTORS = ("auto", "short", "full")
MULTIPLE_FACES = ("largest", "skip", "all")
# BlazeFace model_selection of each detector setting.
_DETECTOR_MODELS = {"auto": (0, 1), "short": (0,), "full": (1,)}

# Face mesh indices (MediaPipe canonical face model; "right" = the subject's right = image left).
MESH_RIGHT_IRIS_CENTRE = 468
MESH_LEFT_IRIS_CENTRE = 473
MESH_NOSE_TIP = 1
MESH_MOUTH_RIGHT_CORNER = 61     # image left
MESH_MOUTH_LEFT_CORNER = 291     # image right
MESH_RIGHT_EYE_CORNERS = (33, 133)
MESH_LEFT_EYE_CORNERS = (362, 263)

# Mask classes (schema.MASK_CLASSES) painted from mesh regions, in painting order.
MASK_SKIN, MASK_BROWS, MASK_EYES, MASK_NOSE, MASK_MOUTH = 1, 2, 3, 5, 6

# BlazeFace key points: right eye, left eye, nose tip, mouth centre, right ear, left ear.
_DETECTION_KEYPOINTS = 6
# Mouth corners from the detector's mouth centre: +-0.415 x the eye vector (the template's
# mouth width / eye distance = 29.18 / 35.24 = 0.83).
_MOUTH_HALF_WIDTH_PER_EYE_DISTANCE = 0.415


@dataclasses.dataclass(frozen=True)
class FaceConfig:
    """Settings of face detection, landmarks and alignment.

    Attributes:
      image_size: side of the aligned square crop in pixels (the ArcFace template is scaled
        from 112).
      crop: ``arcface`` (tight, the recognition crop) or ``depthnet`` (looser, whole head).
      min_score: minimum BlazeFace detection score in [0, 1].
      detector: ``auto`` (short and full range, merged by non-maximum suppression),
        ``short`` or ``full``.
      min_face_px: faces whose detection box is shorter than this (pixels, either side) are
        skipped as ``tiny_face``.
      multiple_faces: ``largest`` (keep the largest unless ambiguous), ``skip`` (any image with
        more than one face) or ``all`` (every face).
      ambiguous_face_ratio: with ``largest``, skip when the second face's box area is at least
        this fraction of the largest's (> 1: never).
      nms_iou_threshold: ``auto``: detections of the two models whose boxes overlap by more
        than this intersection-over-union are the same face.
      mesh_crop_scale: the face mesh runs on a square crop this many times the detection box.
    """

    image_size: int = ARCFACE_SIZE
    crop: str = "arcface"
    min_score: float = 0.5
    detector: str = "auto"
    min_face_px: int = 20
    multiple_faces: str = "largest"
    ambiguous_face_ratio: float = 0.8
    nms_iou_threshold: float = 0.3
    mesh_crop_scale: float = 2.0

    def __post_init__(self):
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {self.crop!r}")
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {self.detector!r}")
        if self.multiple_faces not in MULTIPLE_FACES:
            raise ValueError(f"multiple_faces must be one of {MULTIPLE_FACES}, got "
                             f"{self.multiple_faces!r}")
        if not self.ambiguous_face_ratio > 0:
            raise ValueError(f"ambiguous_face_ratio must be > 0, got {self.ambiguous_face_ratio}")
        if not 0.0 < self.nms_iou_threshold < 1.0:
            raise ValueError(f"nms_iou_threshold must be in (0, 1), got {self.nms_iou_threshold}")
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {self.min_score}")
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {self.image_size}")


@dataclasses.dataclass(frozen=True)
class FaceDetection:
    """One detected face in image pixels.

    Attributes:
      box: float (x, y, width, height) in pixels.
      score: detector confidence in [0, 1].
      keypoints: float [6, 2] BlazeFace key points (x, y) in pixels.
    """

    box: tuple
    score: float
    keypoints: np.ndarray

    @property
    def area(self) -> float:
        return float(self.box[2] * self.box[3])

    def contains(self, point_xy, margin: float = 0.0) -> bool:
        """Whether the (x, y) pixel position lies inside the box grown by ``margin`` x its
        size on every side."""
        x, y, w, h = self.box
        return bool(x - margin * w <= point_xy[0] <= x + (1 + margin) * w
                    and y - margin * h <= point_xy[1] <= y + (1 + margin) * h)


@dataclasses.dataclass(frozen=True)
class FaceAnalysis:
    """Detection + landmarks of the chosen face of an image.

    Attributes:
      detection: the chosen face.
      landmarks5: float64 [5, 2] (x, y) pixels, schema order.
      mesh: float64 [478, 2] (or [468, 2]) face-mesh points in pixels, or None when the mesh
        found no face (then ``landmarks5`` comes from the detector's key points).
      num_faces: faces found above ``min_score`` in the image.
      face_index: rank of this face by box area (0 = the largest).
    """

    detection: FaceDetection
    landmarks5: np.ndarray
    mesh: Optional[np.ndarray]
    num_faces: int
    face_index: int = 0


@dataclasses.dataclass(frozen=True)
class AlignedFace:
    """An aligned face crop.

    Attributes:
      rgb: uint8 [S, S, 3].
      depth: float32 [S, S] mm (0 = no data), or None.
      mask: uint8 [S, S] class ids 0..6, or None (no mesh).
      landmarks5: float32 [5, 2] in crop pixels.
      matrix: float64 [2, 3] the similarity transform from source to crop pixels.
    """

    rgb: np.ndarray
    depth: Optional[np.ndarray]
    mask: Optional[np.ndarray]
    landmarks5: np.ndarray
    matrix: np.ndarray


# ---------------------------------------------------------------------------------------------
# Geometry: templates, similarity transforms, warps.

def alignment_template(image_size: int = ARCFACE_SIZE, crop: str = "arcface") -> np.ndarray:
    """The 5-point template for a square crop of ``image_size`` pixels, float64 [5, 2]."""
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
    template = ARCFACE_TEMPLATE_112 * (image_size / ARCFACE_SIZE)
    if crop == "depthnet":
        centre = (image_size - 1) / 2.0
        template = centre + (template - centre) * DEPTHNET_CROP_TIGHTNESS
    return template


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``source`` to
    ``target`` (Umeyama 1991, no reflection).

    Args:
      source, target: float [N, 2] corresponding points, N >= 2.
    Returns:
      float64 [2, 3] matrix ``M`` with ``target ~= M @ [x, y, 1]``.
    """
    src = np.asarray(source, np.float64)
    dst = np.asarray(target, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"need matching [N, 2] point sets (N >= 2), got {src.shape} and "
                         f"{dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c ** 2).sum() / src.shape[0]
    if src_var <= 1e-12:
        raise ValueError("source points are all identical: no similarity transform")
    covariance = dst_c.T @ src_c / src.shape[0]
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    scale = (singular * sign).sum() / src_var
    translation = dst_mean - scale * rotation @ src_mean
    return np.concatenate([scale * rotation, translation[:, None]], axis=1)


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Applies a [2, 3] affine matrix to float [N, 2] points."""
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp_rgb(rgb: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Warps uint8 [H, W, 3] into a [size, size, 3] crop (bilinear, black outside)."""
    return cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def warp_depth(depth_mm: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Warps float [H, W] depth (mm, 0 = no data) with nearest-neighbour sampling.

    Nearest sampling never mixes a surface with "no data" or with a surface behind it (a
    bilinear blend would invent depths at every silhouette); pixels outside the source are 0.
    """
    return cv2.warpAffine(np.asarray(depth_mm, np.float32), matrix, (size, size),
                          flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0.0)


def warp_mask(mask: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Warps uint8 [H, W] class ids (nearest neighbour, background outside)."""
    return cv2.warpAffine(np.asarray(mask, np.uint8), matrix, (size, size),
                          flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def crop_box_matrix(box_xywh, size: int) -> np.ndarray:
    """The [2, 3] matrix mapping an axis-aligned box (x, y, w, h) onto a [size, size] crop."""
    x, y, w, h = (float(v) for v in box_xywh)
    sx, sy = size / w, size / h
    # Pixel centres: box edge x maps to -0.5, x + w to size - 0.5.
    return np.array([[sx, 0.0, -0.5 - (x - 0.5) * sx], [0.0, sy, -0.5 - (y - 0.5) * sy]])


def box_iou(box_a, box_b) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = (float(v) for v in box_a)
    bx, by, bw, bh = (float(v) for v in box_b)
    inter_w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    inter_h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = inter_w * inter_h
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def non_max_suppression(detections: list["FaceDetection"], iou_threshold: float
                        ) -> list["FaceDetection"]:
    """Greedy non-maximum suppression: highest score first, dropping every detection whose box
    overlaps a kept one by IoU > ``iou_threshold``. Returns the kept ones, largest box first."""
    kept: list[FaceDetection] = []
    for detection in sorted(detections, key=lambda d: -d.score):
        if all(box_iou(detection.box, other.box) <= iou_threshold for other in kept):
            kept.append(detection)
    return sorted(kept, key=lambda d: -d.area)


# ---------------------------------------------------------------------------------------------
# Segmentation from the face mesh.

def _region_indices() -> list[tuple[int, tuple[int, ...]]]:
    from mediapipe.python.solutions import face_mesh_connections as connections

    def points(*edge_sets):
        return tuple(sorted({index for edges in edge_sets for edge in edges for index in edge}))

    return [
        (MASK_SKIN, points(connections.FACEMESH_FACE_OVAL)),
        (MASK_NOSE, points(connections.FACEMESH_NOSE)),
        (MASK_BROWS, points(connections.FACEMESH_LEFT_EYEBROW)),
        (MASK_BROWS, points(connections.FACEMESH_RIGHT_EYEBROW)),
        (MASK_EYES, points(connections.FACEMESH_LEFT_EYE)),
        (MASK_EYES, points(connections.FACEMESH_RIGHT_EYE)),
        (MASK_MOUTH, points(connections.FACEMESH_LIPS)),  # hull = outer lip line
    ]


def segment_from_mesh(mesh_xy: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pseudo ground-truth face parsing from face-mesh points.

    Each region (face oval, nose, brows, eyes, outer lips) is filled as the convex hull of its
    mesh points, painted in the order skin, nose, brows, eyes, mouth so that inner parts win.
    Class 4 (glasses) is never produced.

    Args:
      mesh_xy: float [468 or 478, 2] mesh points (x, y) in pixels of the output image.
      height, width: output size.
    Returns:
      uint8 [height, width] class ids (schema.MASK_CLASSES).
    """
    mesh_xy = np.asarray(mesh_xy, np.float64)
    if mesh_xy.ndim != 2 or mesh_xy.shape[0] < 468 or mesh_xy.shape[1] != 2:
        raise ValueError(f"mesh_xy must be [468 or 478, 2], got {mesh_xy.shape}")
    mask = np.zeros((height, width), np.uint8)
    # Sub-pixel precision for small crops: 4 fractional bits.
    shift = 4
    for class_id, indices in _region_indices():
        hull = cv2.convexHull(np.round(mesh_xy[list(indices)] * (1 << shift)).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, int(class_id), lineType=cv2.LINE_8, shift=shift)
    return mask


def landmarks5_from_mesh(mesh_xy: np.ndarray) -> np.ndarray:
    """Five points (schema order) from face-mesh points float [468 or 478, 2] -> float [5, 2].

    With the refined mesh (478 points) the eyes are the iris centres; otherwise the midpoints of
    the eye corners.
    """
    mesh_xy = np.asarray(mesh_xy, np.float64)
    if mesh_xy.shape[0] > MESH_LEFT_IRIS_CENTRE:
        image_left_eye = mesh_xy[MESH_RIGHT_IRIS_CENTRE]
        image_right_eye = mesh_xy[MESH_LEFT_IRIS_CENTRE]
    else:
        image_left_eye = mesh_xy[list(MESH_RIGHT_EYE_CORNERS)].mean(axis=0)
        image_right_eye = mesh_xy[list(MESH_LEFT_EYE_CORNERS)].mean(axis=0)
    return np.stack([image_left_eye, image_right_eye, mesh_xy[MESH_NOSE_TIP],
                     mesh_xy[MESH_MOUTH_RIGHT_CORNER], mesh_xy[MESH_MOUTH_LEFT_CORNER]])


def landmarks5_from_detection(detection: FaceDetection) -> np.ndarray:
    """Five points from BlazeFace key points (eyes, nose tip; mouth corners estimated)."""
    keypoints = np.asarray(detection.keypoints, np.float64)
    eyes = keypoints[:2]
    # BlazeFace's "right eye" (the subject's) is image left for a frontal face; order by x.
    if eyes[0, 0] > eyes[1, 0]:
        eyes = eyes[::-1]
    eye_vector = eyes[1] - eyes[0]
    mouth = keypoints[3]
    half = _MOUTH_HALF_WIDTH_PER_EYE_DISTANCE * eye_vector
    return np.stack([eyes[0], eyes[1], keypoints[2], mouth - half, mouth + half])


# ---------------------------------------------------------------------------------------------
# Which detected faces become examples (multiple_faces).

def _no_face_error(config: FaceConfig, where: str) -> NoFaceError:
    return NoFaceError("no_face", f"{where}: no face with score >= {config.min_score} "
                                  f"(--min_score; --face_detector={config.detector})")


def _tiny_face_error(detection: FaceDetection, config: FaceConfig, where: str) -> TinyFaceError:
    return TinyFaceError("tiny_face", f"{where}: face box {detection.box[2]:.0f}x"
                                      f"{detection.box[3]:.0f} px < min_face_px "
                                      f"{config.min_face_px}")


def _is_tiny(detection: FaceDetection, config: FaceConfig) -> bool:
    return min(detection.box[2], detection.box[3]) < config.min_face_px


def subject_face(detections: list[FaceDetection], config: FaceConfig,
                 where: str = "image") -> FaceDetection:
    """The subject's face among ``detections`` (largest first), by ``config.multiple_faces``.

    ``largest`` and ``all``: the largest, unless (``largest`` only) the second largest box has
    at least ``ambiguous_face_ratio`` x its area; ``skip``: the only face.

    Raises:
      SkipExample: ``no_face`` (none), ``multiple_faces`` (the message gives the faces, the
        area ratio and the flag that decided, and suggests only settings other than the
        current one), ``tiny_face`` (the subject's box is below ``min_face_px``).
    """
    if not detections:
        raise _no_face_error(config, where)
    mode = config.multiple_faces
    if len(detections) > 1 and mode == "skip":
        raise MultipleFacesError(
            "multiple_faces",
            f"{where}: {len(detections)} faces and --multiple_faces=skip; use "
            "--multiple_faces=largest to keep the largest face (unless ambiguous), or "
            "--multiple_faces=all to keep every face")
    if len(detections) > 1 and mode == "largest":
        ratio = detections[1].area / max(detections[0].area, 1e-9)
        if ratio >= config.ambiguous_face_ratio:
            raise MultipleFacesError(
                "multiple_faces",
                f"{where}: {len(detections)} faces, the second largest with {ratio:.2f}x the "
                f"largest's box area (>= --ambiguous_face_ratio={config.ambiguous_face_ratio:g})"
                ": which one is the subject is ambiguous; crop the photo to the subject, raise "
                "--ambiguous_face_ratio, or use --multiple_faces=all to keep every face")
    if _is_tiny(detections[0], config):
        raise _tiny_face_error(detections[0], config, where)
    return detections[0]


def every_usable_face(detections: list[FaceDetection], config: FaceConfig,
                      where: str = "image") -> list[tuple[int, FaceDetection]]:
    """``multiple_faces="all"``: [(rank by area, 0 = largest; detection)] of every face not
    below ``min_face_px``.

    Raises:
      SkipExample: ``no_face`` (none), ``tiny_face`` (every face is below ``min_face_px``).
    """
    if not detections:
        raise _no_face_error(config, where)
    usable = [(index, d) for index, d in enumerate(detections) if not _is_tiny(d, config)]
    if not usable:
        raise _tiny_face_error(detections[0], config, where)
    return usable


# ---------------------------------------------------------------------------------------------
# MediaPipe.

def _close_solutions(solutions: dict) -> None:
    for solution in solutions.values():
        try:
            solution.close()
        except (ValueError, RuntimeError):  # already closed
            pass
    solutions.clear()


class FaceAnalyzer:
    """Detects faces and their landmarks with MediaPipe; one instance per process.

    The MediaPipe graphs are created on first use and reused; the object pickles without them
    (each worker process creates its own). Use as a context manager or call :meth:`close`.

    Args:
      config: detection settings (:class:`FaceConfig`).
    """

    def __init__(self, config: FaceConfig = FaceConfig()):
        self.config = config
        self._solutions: dict = {}
        self._finalizer = weakref.finalize(self, _close_solutions, self._solutions)

    def __getstate__(self) -> dict:
        return {"config": self.config}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["config"])

    def __enter__(self) -> "FaceAnalyzer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Releases the MediaPipe graphs (they are re-created if the analyzer is used again)."""
        _close_solutions(self._solutions)

    def _detector(self, model_selection: int):
        key = f"detector{model_selection}"
        if key not in self._solutions:
            import mediapipe as mp
            self._solutions[key] = mp.solutions.face_detection.FaceDetection(
                model_selection=model_selection,
                min_detection_confidence=self.config.min_score)
        return self._solutions[key]

    def _mesh(self):
        if "mesh" not in self._solutions:
            import mediapipe as mp
            self._solutions["mesh"] = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                min_detection_confidence=0.3)
        return self._solutions["mesh"]

    def detect(self, rgb: np.ndarray, detector: Optional[str] = None) -> list[FaceDetection]:
        """All faces above ``min_score``, largest first (both models merged by non-maximum
        suppression with ``detector="auto"``).

        Args:
          rgb: uint8 [H, W, 3] RGB.
          detector: ``auto``, ``short`` or ``full`` instead of ``config.detector`` (the
            graphs are shared: comparing the models costs no extra graph).
        """
        detector = self.config.detector if detector is None else detector
        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {detector!r}")
        rgb = np.ascontiguousarray(rgb)
        height, width = rgb.shape[:2]
        detections: list[FaceDetection] = []
        for model_selection in _DETECTOR_MODELS[detector]:
            result = self._detector(model_selection).process(rgb)
            for found in result.detections or ():
                score = float(found.score[0]) if found.score else 0.0
                if score < self.config.min_score:
                    continue
                box = found.location_data.relative_bounding_box
                keypoints = np.array([[k.x * width, k.y * height]
                                      for k in found.location_data.relative_keypoints])
                if keypoints.shape[0] != _DETECTION_KEYPOINTS:
                    continue
                detections.append(FaceDetection(
                    box=(box.xmin * width, box.ymin * height, box.width * width,
                         box.height * height), score=score, keypoints=keypoints))
        return non_max_suppression(detections, self.config.nms_iou_threshold)

    def mesh_points(self, rgb: np.ndarray, box_xywh) -> Optional[np.ndarray]:
        """Face-mesh points float64 [478, 2] (image pixels) of the face in ``box_xywh``, or None.

        The mesh runs on a square crop ``mesh_crop_scale`` times the box (so it sees this face
        only, large enough for its own detector), resized to 256 pixels.
        """
        x, y, w, h = (float(v) for v in box_xywh)
        side = max(w, h) * self.config.mesh_crop_scale
        crop_size = 256
        matrix = crop_box_matrix((x + w / 2 - side / 2, y + h / 2 - side / 2, side, side),
                                 crop_size)
        crop = warp_rgb(np.ascontiguousarray(rgb), matrix, crop_size)
        result = self._mesh().process(crop)
        if not result.multi_face_landmarks:
            return None
        landmarks = result.multi_face_landmarks[0].landmark
        crop_xy = np.array([[p.x * crop_size, p.y * crop_size] for p in landmarks])
        inverse = cv2.invertAffineTransform(matrix)
        return transform_points(inverse, crop_xy)

    def _analysis(self, rgb: np.ndarray, detection: FaceDetection, num_faces: int,
                  face_index: int) -> FaceAnalysis:
        mesh = self.mesh_points(rgb, detection.box)
        if mesh is not None and not detection.contains(mesh[MESH_NOSE_TIP], margin=0.1):
            mesh = None   # the mesh found a neighbouring face in its crop
        landmarks = (landmarks5_from_detection(detection) if mesh is None
                     else landmarks5_from_mesh(mesh))
        return FaceAnalysis(detection=detection, landmarks5=landmarks, mesh=mesh,
                            num_faces=num_faces, face_index=face_index)

    def analyze(self, rgb: np.ndarray, where: str = "image") -> FaceAnalysis:
        """Detects the subject's face and its landmarks (:func:`subject_face`).

        With ``multiple_faces="all"`` this is the largest face (use :meth:`analyze_all` for
        every face).

        Raises:
          SkipExample: ``no_face``, ``tiny_face`` or ``multiple_faces`` (see the module doc).
        """
        detections = self.detect(rgb)
        chosen = subject_face(detections, self.config, where)
        return self._analysis(rgb, chosen, len(detections), 0)

    def analyze_all(self, rgb: np.ndarray, where: str = "image") -> list[FaceAnalysis]:
        """Every face of the image (largest first) with its landmarks; faces smaller than
        ``min_face_px`` are left out (``face_index`` keeps their rank by area).

        Raises:
          SkipExample: ``no_face``; ``tiny_face`` when every face is below ``min_face_px``.
        """
        detections = self.detect(rgb)
        return [self._analysis(rgb, detection, len(detections), index)
                for index, detection in every_usable_face(detections, self.config, where)]


def align_face(rgb: np.ndarray, landmarks5: np.ndarray, image_size: int = ARCFACE_SIZE,
               crop: str = "arcface", depth: Optional[np.ndarray] = None,
               mask: Optional[np.ndarray] = None, mesh: Optional[np.ndarray] = None
               ) -> AlignedFace:
    """Warps an image (and its registered depth and mask) onto the 5-point template.

    Args:
      rgb: uint8 [H, W, 3].
      landmarks5: float [5, 2] (x, y) pixels of ``rgb``, schema order.
      image_size: crop side in pixels.
      crop: ``arcface`` or ``depthnet`` (see :func:`alignment_template`).
      depth: optional float [H, W] mm on the RGB grid (0 = no data).
      mask: optional uint8 [H, W] class ids; when None and ``mesh`` is given, the mask is drawn
        from the mesh in the crop (:func:`segment_from_mesh`).
      mesh: optional float [478, 2] face-mesh points in pixels of ``rgb``.
    Returns:
      AlignedFace.
    """
    matrix = similarity_transform(landmarks5, alignment_template(image_size, crop))
    aligned_depth = None if depth is None else warp_depth(depth, matrix, image_size)
    if mask is not None:
        aligned_mask = warp_mask(mask, matrix, image_size)
    elif mesh is not None:
        aligned_mask = segment_from_mesh(transform_points(matrix, mesh), image_size, image_size)
    else:
        aligned_mask = None
    return AlignedFace(rgb=warp_rgb(rgb, matrix, image_size), depth=aligned_depth,
                       mask=aligned_mask,
                       landmarks5=transform_points(matrix, landmarks5).astype(np.float32),
                       matrix=matrix)


class FacePreprocessor:
    """Detect -> landmarks -> align -> segment, the whole chain for one image.

    Picklable; owns one :class:`FaceAnalyzer` (created lazily per process).
    """

    def __init__(self, config: FaceConfig = FaceConfig()):
        self.config = config
        self.analyzer = FaceAnalyzer(config)

    def close(self) -> None:
        self.analyzer.close()

    def __call__(self, rgb: np.ndarray, depth: Optional[np.ndarray] = None,
                 where: str = "image", landmarks5: Optional[np.ndarray] = None) -> AlignedFace:
        """Aligns the subject's face of ``rgb`` (and ``depth`` on the same grid).

        Args:
          rgb: uint8 [H, W, 3].
          depth: optional float [H, W] mm registered to ``rgb``.
          where: names the image in skip messages.
          landmarks5: optional known 5 points (e.g. VGGFace2's); then no detection is run on
            the full image, and the mesh (for the mask) runs on the aligned crop.
        Raises:
          SkipExample: no_face / tiny_face / multiple_faces.
        """
        if landmarks5 is not None:
            aligned = align_face(rgb, landmarks5, self.config.image_size, self.config.crop,
                                 depth=depth)
            size = self.config.image_size
            # The aligned crop is (nearly) all face: the mesh runs on it directly.
            mesh = self.analyzer.mesh_points(aligned.rgb, (0.0, 0.0, size, size))
            if mesh is None:
                return aligned
            return dataclasses.replace(aligned, mask=segment_from_mesh(mesh, size, size))
        analysis = self.analyzer.analyze(rgb, where)
        return align_face(rgb, analysis.landmarks5, self.config.image_size, self.config.crop,
                          depth=depth, mesh=analysis.mesh)

    def align_all(self, rgb: np.ndarray, depth: Optional[np.ndarray] = None,
                  where: str = "image") -> list[tuple[int, AlignedFace]]:
        """Every face of ``rgb`` aligned (``multiple_faces="all"``), largest first.

        Returns:
          [(face index by area, 0 = largest; AlignedFace)], faces below ``min_face_px`` left
          out.
        Raises:
          SkipExample: no_face; tiny_face when no face is large enough.
        """
        return [(analysis.face_index,
                 align_face(rgb, analysis.landmarks5, self.config.image_size, self.config.crop,
                            depth=depth, mesh=analysis.mesh))
                for analysis in self.analyzer.analyze_all(rgb, where)]
