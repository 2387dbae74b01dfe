"""The ``folder`` source: <subject>/<image> photos with optional <image>_depth.png."""
import numpy as np
import pytest

skimage_data = pytest.importorskip("skimage.data")

from tests.datasets import common
from tf_rgbd.testing import format_writers as writers  # noqa: E402


def test_build_with_depth_skips_and_protocol(tmp_path):
    photo = skimage_data.astronaut()
    depth = np.zeros(photo.shape[:2], np.uint16)
    depth[60:220, 150:320] = 750
    writers.write_image_tree(str(tmp_path / "in"), {
        "alice/a.png": photo, "alice/a_depth.png": depth, "alice/b.jpg": photo,
        "bob/1.png": photo, "bob/2.png": photo,
        "bob/blank.png": np.full((64, 64, 3), 128, np.uint8),
        "bob/3.png": photo, "bob/3_depth.png": depth[:100]})       # wrong depth size
    manifest, examples = common.build_and_read(
        source="folder", input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out"),
        heldout_subjects=1, image_size=64)
    assert manifest["class_names"] == ["alice", "bob"]
    assert [e.example_id for e in examples["train"]] == ["alice/a", "alice/b"]
    with_depth = examples["train"][0]
    assert with_depth.depth is not None and set(np.unique(with_depth.depth)) == {0.0, 750.0}
    assert examples["train"][1].depth is None
    skipped = manifest["splits"]["test"]["skipped"]
    assert skipped["no_face"]["count"] == 1 and skipped["depth_size_mismatch"]["count"] == 1
    protocol = common.read_protocol(str(tmp_path / "out"), "folder_test")
    assert protocol["gallery"] == ["bob/1"] and protocol["probes"] == {"all": ["bob/2"]}
