"""A tiny schema-v1 dataset whose depth relief depends on the identity (so a depth verifier can
learn it), written with the project's writer; shared by the verification tests."""
from __future__ import annotations

import numpy as np

from tests.examples import make_face_example


def identity_face(index: int, label: int, size: int = 32):
    """Example ``index`` of identity ``label``: an ellipse whose axes, nose bump and slope are
    the identity's, with a small per-image jitter; the RGB brightness follows the depth."""
    rng = np.random.default_rng(1000 * label + index)
    identity = np.random.default_rng(label)
    ax, ay = identity.uniform(0.25, 0.45, 2) * size
    slope = identity.uniform(1.0, 6.0)
    nose = identity.uniform(5.0, 30.0)
    cy, cx = size / 2 + rng.normal(0, 0.5, 2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    radius = np.sqrt(((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2)
    face = radius < 1.0
    bump = nose * np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (0.02 * size * size)))
    depth = np.where(face, 600.0 + slope * radius * 20.0 - bump + rng.normal(0, 0.3, face.shape),
                     0.0).astype(np.float32)
    shade = np.clip(255 - (depth - 560.0) * 1.5, 0, 255).astype(np.uint8)
    rgb = np.where(face[..., None], np.stack([shade, shade * 3 // 4, shade // 2], -1),
                   30).astype(np.uint8)
    return make_face_example(index, size=size, label=label, depth=depth, rgb=rgb,
                             mask=np.where(face, 1, 0).astype(np.uint8))


def write_identity_dataset(directory: str, train_identities: int = 6, test_identities: int = 2,
                           images_per_identity: int = 4, size: int = 32) -> str:
    """train: identities 0..train_identities-1, test: the next ``test_identities``."""
    from tf_rgbd.data import writer

    def tasks(labels):
        return [(label * images_per_identity + image, label) for label in labels
                for image in range(images_per_identity)]

    def produce(task):
        return [identity_face(task[0], task[1], size)]

    total = train_identities + test_identities
    results = {
        "train": writer.write_split(directory, "train", tasks(range(train_identities)), produce,
                                    num_shards=2, progress=False),
        "test": writer.write_split(directory, "test", tasks(range(train_identities, total)),
                                   produce, num_shards=1, progress=False)}
    writer.write_manifest(directory, "identity_relief", [f"s{i:03d}" for i in range(total)],
                          results)
    return directory
