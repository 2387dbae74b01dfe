"""Photographs (optionally with a registered depth PNG) -> aligned face crops.

Shared by the ``vggface2`` and ``folder`` sources: MediaPipe detection + face mesh, 5-point
similarity alignment (``--crop``), the same warp for the depth, the mesh segmentation as mask
(:class:`tf_rgbd.data.faces.FacePreprocessor`). Known 5 landmarks (VGGFace2's) replace the
detection; a known face box restricts detection to that box.

A task whose file has an extension OpenCV does not decode is skipped as
``unsupported_extension`` (the sources list every file of a subject folder, so none vanishes
uncounted). With ``--multiple_faces=all`` every face of a photo is its own example, id
``<image id>#face<k>`` (k = rank by box area, 0 = the largest), all with the photo's subject.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from tf_rgbd.data import faces, image_io, schema


@dataclasses.dataclass(frozen=True)
class PhotoTask:
    """One image.

    Attributes:
      example_id: unique id; rgb_path: the photo; subject: subject name.
      depth_path: optional 16-bit depth PNG in mm on the photo's grid.
      landmarks5: optional ((x, y), ...) 5 points in photo pixels (schema order).
      box: optional (x, y, w, h) face box in photo pixels.
    """

    example_id: str
    rgb_path: str
    subject: str
    depth_path: Optional[str] = None
    landmarks5: Optional[tuple] = None
    box: Optional[tuple] = None


# The annotated box is enlarged by this factor before detection inside it.
BOX_CONTEXT = 1.6


# With --multiple_faces=all, face k of image <id> is example <id>#face<k>.
FACE_ID_SEPARATOR = "#face"


def face_example_id(image_id: str, face_index: int) -> str:
    """``<image id>#face<k>``: the id of face ``k`` (by box area, 0 = largest) of an image."""
    return f"{image_id}{FACE_ID_SEPARATOR}{face_index}"


class PhotoProducer:
    """PhotoTask -> [FaceExample]. Picklable (MediaPipe graphs are created per process).

    Args:
      dataset: dataset name; labels: subject -> label.
      face_config: MediaPipe / alignment settings (``multiple_faces="all"``: one example per
        face).
      depth_8bit_scale_mm: mm per unit of 8-bit depth PNGs (0 = skip them as
        ``depth_not_16bit``).
    """

    def __init__(self, dataset: str, labels: dict, face_config: faces.FaceConfig,
                 depth_8bit_scale_mm: float = 0.0):
        self.dataset = dataset
        self.labels = labels
        self.every_face = face_config.multiple_faces == "all"
        self.depth_8bit_scale_mm = depth_8bit_scale_mm
        self.preprocess = faces.FacePreprocessor(face_config)

    def _align(self, rgb, depth, where: str) -> list[tuple[int, faces.AlignedFace]]:
        if self.every_face:
            return self.preprocess.align_all(rgb, depth, where)
        return [(0, self.preprocess(rgb, depth, where))]

    def __call__(self, task: PhotoTask) -> list[schema.FaceExample]:
        image_io.check_image_extension(task.rgb_path)
        rgb = image_io.read_rgb(task.rgb_path)
        depth = None
        if task.depth_path:
            depth = image_io.read_depth_png_mm(task.depth_path, 1.0, expected_shape=rgb.shape[:2],
                                               depth_8bit_scale_mm=self.depth_8bit_scale_mm)
        if task.landmarks5 is not None:
            aligned = [(0, self.preprocess(rgb, depth, task.example_id,
                                           landmarks5=np.asarray(task.landmarks5, np.float64)))]
        elif task.box is not None:
            x, y, w, h = task.box
            side = max(w, h) * BOX_CONTEXT
            offset = (x + w / 2 - side / 2, y + h / 2 - side / 2)
            matrix = faces.crop_box_matrix((offset[0], offset[1], side, side), int(round(side)))
            size = int(round(side))
            crop_rgb = faces.warp_rgb(rgb, matrix, size)
            crop_depth = None if depth is None else faces.warp_depth(depth, matrix, size)
            aligned = self._align(crop_rgb, crop_depth, task.example_id)
        else:
            aligned = self._align(rgb, depth, task.example_id)
        return [schema.FaceExample(
            example_id=(face_example_id(task.example_id, index) if self.every_face
                        else task.example_id),
            rgb=face.rgb, depth=face.depth, mask=face.mask, landmarks5=face.landmarks5,
            label=self.labels[task.subject], subject=task.subject, dataset=self.dataset,
            domain="real") for index, face in aligned]
