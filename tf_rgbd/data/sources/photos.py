"""Photographs (optionally with a registered depth PNG) -> aligned face crops.

Shared by the ``vggface2`` and ``folder`` sources: MediaPipe detection + face mesh, 5-point
similarity alignment (``--crop``), the same warp for the depth, the mesh segmentation as mask
(:class:`tf_rgbd.data.faces.FacePreprocessor`). Known 5 landmarks (VGGFace2's) replace the
detection; a known face box restricts detection to that box.
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


class PhotoProducer:
    """PhotoTask -> [FaceExample]. Picklable (MediaPipe graphs are created per process)."""

    def __init__(self, dataset: str, labels: dict, face_config: faces.FaceConfig):
        self.dataset = dataset
        self.labels = labels
        self.preprocess = faces.FacePreprocessor(face_config)

    def __call__(self, task: PhotoTask) -> list[schema.FaceExample]:
        rgb = image_io.read_rgb(task.rgb_path)
        depth = None
        if task.depth_path:
            depth = image_io.read_depth_png_mm(task.depth_path, 1.0, expected_shape=rgb.shape[:2])
        if task.landmarks5 is not None:
            aligned = self.preprocess(rgb, depth, task.example_id,
                                      landmarks5=np.asarray(task.landmarks5, np.float64))
        elif task.box is not None:
            x, y, w, h = task.box
            side = max(w, h) * BOX_CONTEXT
            offset = (x + w / 2 - side / 2, y + h / 2 - side / 2)
            matrix = faces.crop_box_matrix((offset[0], offset[1], side, side), int(round(side)))
            size = int(round(side))
            crop_rgb = faces.warp_rgb(rgb, matrix, size)
            crop_depth = None if depth is None else faces.warp_depth(depth, matrix, size)
            aligned = self.preprocess(crop_rgb, crop_depth, task.example_id)
        else:
            aligned = self.preprocess(rgb, depth, task.example_id)
        return [schema.FaceExample(
            example_id=task.example_id, rgb=aligned.rgb, depth=aligned.depth, mask=aligned.mask,
            landmarks5=aligned.landmarks5, label=self.labels[task.subject], subject=task.subject,
            dataset=self.dataset, domain="real")]
