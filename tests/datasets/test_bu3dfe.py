"""BU-3DFE reader: VRML files written from the parametric head, read back through the CLI path."""
import os

import numpy as np
import pytest

from tf_rgbd.data.sources import bu3dfe
from tf_rgbd.data.formats import wrl
from tf_rgbd.data.sources import scan
from tests.datasets import common
from tf_rgbd.testing import format_writers as writers
from tf_rgbd.data import errors
from tf_rgbd.data.errors import SkipExample

NAMES = [("F0001", "NE00WH"), ("F0001", "HA03WH"), ("M0002", "NE00AE"), ("M0002", "SU04AE")]


def _write_dataset(root, names=NAMES):
    mesh = writers.bu3dfe_mesh()
    for subject, tag in names:
        folder = os.path.join(root, subject)
        os.makedirs(folder, exist_ok=True)
        writers.write_wrl(os.path.join(folder, f"{subject}_{tag}_F3D.wrl"), mesh["points"],
                          mesh["polygons"], mesh["texcoords"], f"{subject}_{tag}_F2D.bmp")
        writers.write_rgb(os.path.join(folder, f"{subject}_{tag}_F2D.bmp"), mesh["texture"])
    return mesh


def test_parse_name():
    assert bu3dfe.parse_name("x/F0001_AN01WH_F3D.wrl") == {
        "subject": "F0001", "expression": "anger_1", "intensity": 1, "ethnicity": "WH"}
    assert bu3dfe.parse_name("M0044_NE00BL_F3D.wrl")["expression"] == "neutral"
    with pytest.raises(ValueError, match="unknown expression"):
        bu3dfe.parse_name("F0001_XX01WH_F3D.wrl")


def test_fan_triangulation_of_quads_and_triangles():
    triangles, polygon = wrl.triangulate_polygons(np.array([0, 1, 2, 3, -1, 4, 5, 6, -1]),
                                                  "f", "coordIndex")
    np.testing.assert_array_equal(triangles, [[0, 1, 2], [0, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(polygon, [0, 0, 1])


def test_build_matches_known_geometry_and_labels(tmp_path):
    mesh = _write_dataset(str(tmp_path / "in"))
    manifest, examples = common.build_and_read(
        source="bu3dfe", input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out"),
        heldout_subjects=1, poses="20:0")
    assert manifest["example_count"] == 8 and manifest["skipped_count"] == 0
    assert manifest["class_names"] == ["F0001", "M0002"]
    by_id = {e.example_id: e for split in examples.values() for e in split}
    assert set(by_id) == {f"{s}/{s}_{t}" + suffix for s, t in NAMES for suffix in ("", "@y+20p+0")}
    smile = by_id["F0001/F0001_HA03WH"]
    assert (smile.expression, smile.label, smile.session) == ("happiness_3", 0, 1)
    assert by_id["M0002/M0002_SU04AE@y+20p+0"].yaw_deg == pytest.approx(20.0)
    assert [e.subject for e in examples["test"]] == ["M0002"] * 4

    # Depth: the reader's render against a render of the ORIGINAL head mesh (its own
    # triangulation), framed the same way.
    loaded = bu3dfe.load_scan(bu3dfe.find_tasks(type("C", (), {
        "input_dir": str(tmp_path / "in"), "source": "bu3dfe"})())[0])
    tip = scan.nose_tip(loaded.vertices, loaded.triangles)
    render = scan.ScanRenderConfig(image_size=64)
    for pose, suffix in (((0, 0), ""), ((20, 0), "@y+20p+0")):
        expected = scan.render_scan(writers.head_scan(), render, *pose, tip=tip)
        written = by_id["F0001/F0001_NE00WH" + suffix]
        error, coverage = common.median_depth_error(written.depth, expected.depth)
        assert error < 1.0, (suffix, error)
        assert coverage > 0.9, (suffix, coverage)
    # Texture: t is measured from the image bottom (VRML); a flip would swap the green ramp.
    frontal = by_id["F0001/F0001_NE00WH"]
    st = mesh["texcoords"]
    height, width = mesh["texture"].shape[:2]
    known = scan.TexturedScan(
        vertices=mesh["points"], triangles=mesh["triangles"], texture=mesh["texture"],
        texcoords_px=np.stack([st[:, 0] * width - 0.5, (1 - st[:, 1]) * height - 0.5], -1))
    expected_rgb = scan.render_scan(known, render, tip=tip).rgb
    face = frontal.depth > 0
    assert np.median(np.abs(frontal.rgb.astype(int) - expected_rgb)[face]) <= 2
    assert frontal.mask is not None and set(np.unique(frontal.mask[face])) <= {1, 2, 3, 5, 6}

    protocol = common.read_protocol(str(tmp_path / "out"), "bu3dfe_train")
    assert protocol["gallery"] == ["F0001/F0001_NE00WH"]
    assert protocol["probes"] == {"all": ["F0001/F0001_HA03WH"]}


def test_default_protocol_is_over_all_subjects(tmp_path):
    # issue 10, defect 7: the paper's protocol (100 neutral gallery scans, 2,400 expression
    # probes) covers every subject; --heldout_subjects=N keeps a depth-evaluation split.
    # 12 subjects (more than the former 10 held out), one expression scan each besides neutral
    # for two of them.
    names = [(f"F{i:04d}", "NE00WH") for i in range(1, 13)] + [("F0001", "HA03WH"),
                                                               ("F0012", "SU04WH")]
    _write_dataset(str(tmp_path / "in"), names)
    _, examples = common.build_and_read(
        source="bu3dfe", input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out"),
        use_mediapipe=False, image_size=32)
    assert list(examples) == ["test"] and len(examples["test"]) == len(names)
    protocol = common.read_protocol(str(tmp_path / "out"), "bu3dfe_test")
    assert len(protocol["gallery"]) == 12
    assert sorted(protocol["probes"]["all"]) == ["F0001/F0001_HA03WH", "F0012/F0012_SU04WH"]


def test_malformed_wrl_is_skipped_and_fatal_with_fail(tmp_path):
    _write_dataset(str(tmp_path / "in"))
    bad = tmp_path / "in" / "F0001" / "F0001_AN01WH_F3D.wrl"
    good = (tmp_path / "in" / "F0001" / "F0001_NE00WH_F3D.wrl").read_text(encoding="latin-1")
    bad.write_text(good.replace("coordIndex [", "coordIndex [ 0, 1, 999999, -1,", 1),
                   encoding="latin-1")
    with pytest.raises(SkipExample, match="F0001_AN01WH_F3D.wrl: coordIndex refers to vertex"):
        wrl.read_wrl(str(bad))
    manifest, _ = common.build_and_read(source="bu3dfe", input_dir=str(tmp_path / "in"),
                                        output_dir=str(tmp_path / "out"), use_mediapipe=False)
    skipped = manifest["splits"]["test"]["skipped"]
    assert skipped["malformed_wrl"]["count"] == 1
    with pytest.raises(errors.BuildError, match="F0001_AN01WH_F3D.wrl"):
        common.build_and_read(source="bu3dfe", input_dir=str(tmp_path / "in"),
                              output_dir=str(tmp_path / "out2"), on_error="fail",
                              use_mediapipe=False)
