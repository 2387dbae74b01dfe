"""The tiny synthetic dataset shared by the joint reconstruction tests (tests/training,
tests/eval, tests/experiments): built once per test process, removed at exit."""
from __future__ import annotations

import atexit
import functools
import shutil
import tempfile


@functools.lru_cache(maxsize=1)
def tiny_joint_dataset() -> str:
    """A synthetic dataset (6 identities x 4 images, 32 px; train 4 + test 2 identities,
    with the lock3dface_style protocol) in a temporary folder; returns its path."""
    from tf_rgbd.config.data import BuildConfig
    from tf_rgbd.data.build import build_dataset

    folder = tempfile.mkdtemp(prefix="tf_rgbd-joint-test-")
    atexit.register(shutil.rmtree, folder, True)
    build_dataset(BuildConfig(source="synthetic", output_dir=f"{folder}/data", num_identities=6,
                              images_per_identity=4, image_size=32, seed=1, num_shards=2,
                              num_workers=1, test_fraction=0.34, use_mediapipe=False),
                  progress=False)
    return f"{folder}/data"
