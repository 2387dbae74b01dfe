"""Bosphorus reader: .bnt range grids written from the parametric head, read back.

The files are written the way the Bosphorus release stores them, rows bottom-first (file row 0
= the bottom of the face), unless a test says otherwise; the reader returns rows top-first.
"""
import os

import numpy as np
import pytest

from tf_rgbd.data.sources import bosphorus
from tf_rgbd.data.formats import bnt
from tf_rgbd.data.sources import scan
from tests.datasets import common
from tf_rgbd.testing import format_writers as writers
from tf_rgbd.data import errors
from tf_rgbd.data.errors import SkipExample

STEMS = ["bs001_N_N_0", "bs001_E_HAPPY_0", "bs001_YR_R45_0", "bs001_O_HAIR_0",
         "bs002_N_N_0", "bs002_E_SURPRISE_0", "bs002_LFAU_9_0"]


def _write(root, v_grows_up=False, bottom_first=True):
    """Writes STEMS; returns the grid top-first (row 0 = the top of the face, as an image)."""
    grid = writers.scanner_grid()
    rows, cols = grid["valid"].shape
    texture = np.repeat(np.repeat(grid["rgb"], 2, axis=0), 2, axis=1)   # 2x the grid
    u = (np.arange(cols) + 0.5) / cols
    v = (np.arange(rows) + 0.5) / rows
    uv = np.stack(np.meshgrid(u, 1.0 - v if v_grows_up else v), axis=-1)
    in_file = (lambda a: a[::-1]) if bottom_first else (lambda a: a)
    for stem in STEMS:
        folder = os.path.join(root, stem[:5])
        os.makedirs(folder, exist_ok=True)
        writers.write_bnt(os.path.join(folder, stem + ".bnt"), in_file(grid["xyz"]),
                          in_file(grid["valid"]), in_file(uv), stem + ".png")
        writers.write_rgb(os.path.join(folder, stem + ".png"), texture)
    return grid


def test_parse_name_tags():
    pose = bosphorus.parse_name("bs010_YR_L45_0.bnt")
    assert (pose["subject"], pose["yaw_deg"], pose["expression"]) == ("bs010", -45.0, "neutral")
    assert bosphorus.parse_name("bs001_E_HAPPY_0.bnt")["expression"] == "happiness"
    assert bosphorus.parse_name("bs001_O_HAIR_0.bnt")["occlusion"] == "hair"
    assert bosphorus.parse_name("bs001_PR_SD_0.bnt")["pitch_deg"] == -35.0
    assert bosphorus.parse_name("bs001_CAU_A22_0.bnt")["expression"] == "au_cau_a22"


@pytest.mark.parametrize("v_grows_up", [False, True])
@pytest.mark.parametrize("bottom_first", [True, False])
def test_bnt_round_trip_rows_top_first_and_texture_direction(tmp_path, v_grows_up, bottom_first):
    grid = _write(str(tmp_path), v_grows_up, bottom_first)
    parsed = bnt.read_bnt(str(tmp_path / "bs001" / "bs001_N_N_0.bnt"))
    # Rows come back top-first whatever the file's order: the grid is an upright image.
    rows = np.nonzero(parsed.valid)[0]
    assert np.corrcoef(rows, parsed.xyz[..., 1][parsed.valid])[0, 1] < -0.9   # y up = row 0 top
    np.testing.assert_array_equal(parsed.valid, grid["valid"])
    np.testing.assert_allclose(parsed.xyz[parsed.valid], grid["xyz"][grid["valid"]])
    assert parsed.rows_flipped == bottom_first
    assert parsed.image_file == "bs001_N_N_0.png"
    task = scan.ScanTask("x", (str(tmp_path / "bs001" / "bs001_N_N_0.bnt"),), "bs001")
    loaded = bosphorus.load_scan(task)
    # Every valid grid vertex samples its own texel: the colours match the grid's.
    colours = scan.render_scan(loaded, scan.ScanRenderConfig(image_size=96))
    assert colours.rgb[colours.depth > 0].mean() > 60
    pixels = loaded.texcoords_px.reshape(grid["valid"].shape + (2,))
    rows, cols = np.nonzero(grid["valid"])
    np.testing.assert_allclose(pixels[rows, cols, 1], 2 * rows + 0.5, atol=1e-6)


def test_build_depth_labels_and_protocol(tmp_path):
    _write(str(tmp_path / "in"))
    manifest, examples = common.build_and_read(
        source="bosphorus", input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out"))
    assert manifest["example_count"] == len(STEMS) and list(examples) == ["test"]
    by_id = {e.example_id: e for e in examples["test"]}
    assert by_id["bs001/bs001_YR_R45_0"].yaw_deg == 45.0
    assert by_id["bs001/bs001_O_HAIR_0"].occlusion == "hair"
    loaded = bosphorus.load_scan(scan.ScanTask(
        "x", (str(tmp_path / "in" / "bs001" / "bs001_N_N_0.bnt"),), "bs001"))
    tip = scan.nose_tip(loaded.vertices, loaded.triangles)
    expected = scan.render_scan(writers.head_scan(), scan.ScanRenderConfig(image_size=64), tip=tip)
    error, coverage = common.median_depth_error(by_id["bs001/bs001_N_N_0"].depth, expected.depth)
    assert error < 1.0 and coverage > 0.97, (error, coverage)
    protocol = common.read_protocol(str(tmp_path / "out"), "bosphorus_test")
    assert protocol["gallery"] == ["bs001/bs001_N_N_0", "bs002/bs002_N_N_0"]
    # Setting 1 = every expression scan, emotions and action units (issue 10, defect 7).
    assert sorted(protocol["probes"]["setting1_expression"]) == [
        "bs001/bs001_E_HAPPY_0", "bs002/bs002_E_SURPRISE_0", "bs002/bs002_LFAU_9_0"]
    assert len(protocol["probes"]["setting2_all"]) == len(STEMS) - 2


def test_malformed_bnt_files(tmp_path):
    grid = writers.scanner_grid(rows=20, cols=16)
    uv = np.zeros(grid["valid"].shape + (2,))
    truncated = str(tmp_path / "bs001_N_N_0.bnt")
    writers.write_bnt(truncated, grid["xyz"], grid["valid"], uv, "a.png", truncate_to=500)
    with pytest.raises(SkipExample, match=r"bs001_N_N_0.bnt: .* \(truncated file\)") as error:
        bnt.read_bnt(truncated)
    assert error.value.reason == "malformed_bnt"
    wrong_count = str(tmp_path / "bs001_E_HAPPY_0.bnt")
    writers.write_bnt(wrong_count, grid["xyz"], grid["valid"], uv, "a.png", count=1234)
    with pytest.raises(SkipExample, match=r"count 1234 != nrows \* ncols \* 5 = 20 \* 16 \* 5"):
        bnt.read_bnt(wrong_count)
    # Through the builder: skipped (counted) by default, fatal with on_error=fail.
    manifest, _ = common.build_and_read(source="bosphorus", input_dir=str(tmp_path),
                                        output_dir=str(tmp_path / "out"), use_mediapipe=False)
    assert manifest["example_count"] == 0
    assert manifest["splits"]["test"]["skipped"]["malformed_bnt"]["count"] == 2
    with pytest.raises(errors.BuildError, match="bs001_E_HAPPY_0.bnt: count 1234"):
        common.build_and_read(source="bosphorus", input_dir=str(tmp_path), on_error="fail",
                              output_dir=str(tmp_path / "out2"), use_mediapipe=False)
