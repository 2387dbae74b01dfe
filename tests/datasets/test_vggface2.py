"""VGGFace2 reader: folder layout, bounding-box / landmark CSVs and identity_meta.csv parsing."""
import os

import numpy as np
import pytest

skimage_data = pytest.importorskip("skimage.data")

from tf_rgbd.data.sources import vggface2# noqa: E402
from tests.datasets import common
from tf_rgbd.testing import format_writers as writers  # noqa: E402
from tf_rgbd.data import faces  # noqa: E402


def test_identity_meta_with_commas_in_names(tmp_path):
    path = tmp_path / "identity_meta.csv"
    path.write_text('Class_ID, Name, Sample_Num, Flag, Gender\n'
                    'n000001, "14th_Dalai_Lama", 424, 0, m\n'
                    'n000002, "Lee, Jr., Harry", 315, 1, m\n'
                    'n000003,A_B,12,1,f\n')
    meta = vggface2.read_identity_meta(str(path))
    assert meta["n000002"] == {"name": "Lee, Jr., Harry", "sample_num": 315, "flag": "1",
                               "gender": "m"}
    assert meta["n000001"]["name"] == "14th_Dalai_Lama" and len(meta) == 3


def test_build_aligns_with_landmarks_box_or_mediapipe(tmp_path):
    root = tmp_path / "in"
    photo = skimage_data.astronaut()
    noise = np.random.default_rng(1).integers(0, 255, photo.shape, dtype=np.uint8)
    writers.write_image_tree(str(root), {
        "train/n000001/0001_01.jpg": photo,       # landmarks given
        "train/n000001/0002_01.jpg": photo,       # box only
        "train/n000002/0001_01.jpg": noise,       # no face: skipped
        "train/n000002/0002_01.PPM": photo,       # any format OpenCV decodes
        "train/n000002/Thumbs.db": b"\x00" * 16,  # not an image: counted
        "test/n000009/0001_01.jpg": photo})       # nothing: MediaPipe on the whole image
    with faces.FaceAnalyzer() as analyzer:
        landmarks = analyzer.analyze(photo).landmarks5
    os.makedirs(root / "bb_landmark")
    (root / "bb_landmark" / "loose_landmark_train.csv").write_text(
        "NAME_ID,P1X,P1Y,P2X,P2Y,P3X,P3Y,P4X,P4Y,P5X,P5Y\n"
        '"n000001/0001_01",' + ",".join(f"{v:.2f}" for v in landmarks.reshape(-1)) + "\n")
    (root / "bb_landmark" / "loose_bb_train.csv").write_text(
        "NAME_ID,X,Y,W,H\n\"n000001/0002_01\",160,60,120,150\n\"n000002/0001_01\",1,1,50,50\n")
    (root / "identity_meta.csv").write_text(
        "Class_ID, Name, Sample_Num, Flag, Gender\nn000001, \"Collins, Eileen\", 2, 1, f\n")
    manifest, examples = common.build_and_read(
        source="vggface2", input_dir=str(root), output_dir=str(tmp_path / "out"),
        image_size=112)
    assert manifest["class_names"] == ["n000001", "n000002", "n000009"]
    assert manifest["extra"]["identity_names"] == {"n000001": "Collins, Eileen"}
    skipped = manifest["splits"]["train"]["skipped"]
    assert skipped["no_face"]["count"] == 1
    assert skipped["unsupported_extension"] == {
        "count": 1, "first": [str(root / "train" / "n000002" / "Thumbs.db")]}
    assert [e.example_id for e in examples["train"]] == ["train/n000001/0001_01",
                                                         "train/n000001/0002_01",
                                                         "train/n000002/0002_01"]
    assert examples["test"][0].label == 2
    for example in examples["train"] + examples["test"]:
        eyes = example.landmarks5[:2]
        assert np.abs(eyes - faces.ARCFACE_TEMPLATE_112[:2]).max() < 4.0, example.example_id
        assert example.depth is None and example.mask is not None
