"""The ``folder`` source: <subject>/<image> photos with optional <image>_depth.png."""
import numpy as np
import pytest

skimage_data = pytest.importorskip("skimage.data")

from tests.datasets import common
from tf_rgbd.testing import format_writers as writers  # noqa: E402
from tf_rgbd.data import faces  # noqa: E402


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


def test_every_opencv_format_is_built_and_other_files_are_counted(tmp_path):
    photo = skimage_data.astronaut()
    depth_8bit = np.zeros(photo.shape[:2], np.uint8)
    depth_8bit[60:220, 150:320] = 190
    writers.write_image_tree(str(tmp_path / "in"), {
        "carol/a.ppm": photo, "carol/b.PGM": photo[..., 1], "carol/c.bmp": photo,
        "carol/d.tif": photo, "carol/e.TIFF": photo, "carol/f.webp": photo,
        "carol/g.JPG": photo, "carol/g_depth.png": depth_8bit,     # 8-bit depth: rejected
        "carol/notes.txt": b"taken in 2019\n", "carol/clip.gif": b"GIF89a",
        "dave/only.txt": b"nothing usable\n"})
    manifest, examples = common.build_and_read(
        source="folder", input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out"))
    assert manifest["class_names"] == ["carol"]
    assert [e.example_id for e in examples["train"]] == [
        "carol/a", "carol/b", "carol/c", "carol/d", "carol/e", "carol/f"]
    skipped = manifest["splits"]["train"]["skipped"]
    assert skipped["unsupported_extension"]["count"] == 3
    assert sorted(skipped["unsupported_extension"]["first"]) == sorted(
        str(tmp_path / "in" / name) for name in ("carol/clip.gif", "carol/notes.txt",
                                                 "dave/only.txt"))
    assert skipped["depth_not_16bit"] == {"count": 1, "first": [str(tmp_path / "in/carol/g.JPG")]}
    # With the 8-bit depth's scale stated (mm per unit) the photo is built with its depth.
    manifest, examples = common.build_and_read(
        source="folder", input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out8"),
        depth_8bit_scale_mm=4.0)
    by_id = {e.example_id: e for e in examples["train"]}
    assert set(np.unique(by_id["carol/g"].depth)) == {0.0, 760.0}
    assert "depth_not_16bit" not in manifest["splits"]["train"]["skipped"]


def test_multiple_faces_all_makes_every_face_an_example(tmp_path):
    from tests.data.test_faces import group_photo

    group, tiles = group_photo()
    writers.write_image_tree(str(tmp_path / "in"), {"party/group.png": group,
                                                    "party/solo.png": skimage_data.astronaut()})
    manifest, examples = common.build_and_read(
        source="folder", input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out"),
        multiple_faces="all")
    assert [e.example_id for e in examples["train"]] == [
        "party/group#face0", "party/group#face1", "party/group#face2", "party/group#face3",
        "party/solo#face0"]
    for example in examples["train"]:
        assert example.subject == "party" and example.mask is not None
        assert np.abs(example.landmarks5[:2] - 64 / 112 * faces.ARCFACE_TEMPLATE_112[:2]).max() < 3
    # The default (largest) keeps one example per photo: the largest face.
    _, largest = common.build_and_read(
        source="folder", input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out1"))
    assert [e.example_id for e in largest["train"]] == ["party/group", "party/solo"]
    np.testing.assert_array_equal(largest["train"][0].rgb, examples["train"][0].rgb)
