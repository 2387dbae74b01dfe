"""Small schema.FaceExample factories that import no TensorFlow (safe in spawned workers)."""
from typing import Any

import numpy as np


def make_face_example(index: int, size: int = 32, label: int = 0, with_depth: bool = True,
                      with_mask: bool = True, **overrides: Any):
    """A small, fully populated schema.FaceExample with a depth 'bump' and a centred mask.

    RGB encodes ``index`` so examples are distinguishable after decoding (pixel [0, 0, 0]).
    """
    from tf_rgbd.data import schema

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    radius = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) ** 0.5
    face = radius < size * 0.4
    rgb = np.full((size, size, 3), 40, np.uint8)
    rgb[face] = (200, 150, 120)
    rgb[0, 0] = (index % 256, label % 256, 7)
    depth = np.where(face, 600.0 + radius * 2.0, 0.0).astype(np.float32)
    mask = np.where(face, 1, 0).astype(np.uint8)
    mask[int(size * 0.4):int(size * 0.6), int(size * 0.45):int(size * 0.55)] = 5  # nose
    landmarks = np.array([[0.35, 0.4], [0.65, 0.4], [0.5, 0.55], [0.38, 0.7], [0.62, 0.7]],
                         np.float32) * size
    fields = dict(example_id=f"test/{index:05d}", rgb=rgb, label=label, subject=f"s{label:03d}",
                  dataset="unit", domain="synthetic", depth=depth if with_depth else None,
                  mask=mask if with_mask else None, landmarks5=landmarks)
    fields.update(overrides)
    return schema.FaceExample(**fields)
