"""FRGC v2 reader: .abs(.gz) range grids + .ppm textures written from the parametric head."""
import os

import numpy as np
import pytest

from tf_rgbd.data.sources import frgc
from tf_rgbd.data.formats import abs_format
from tf_rgbd.data.sources import scan
from tests.datasets import common
from tf_rgbd.testing import format_writers as writers
from tf_rgbd.data import errors
from tf_rgbd.data.errors import SkipExample

RECORDINGS = [("Fall2003range", "04200d74", "neutral"), ("Fall2003range", "04200d80", "smiling"),
              ("Spring2004range", "04201d10", "BlankStare"), ("Spring2004range", "04201d12",
                                                              "Surprise")]


def _write(root, gz_index=1):
    grid = writers.scanner_grid()
    for index, (folder, recording, _) in enumerate(RECORDINGS):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        suffix = ".abs.gz" if index == gz_index else ".abs"
        writers.write_abs(os.path.join(root, folder, recording + suffix), grid["xyz"],
                          grid["valid"])
        writers.write_rgb(os.path.join(root, folder, recording + ".ppm"), grid["rgb"])
    listing = os.path.join(root, "expressions.txt")
    with open(listing, "w", encoding="utf-8") as handle:
        handle.write("recording expression\n")
        handle.writelines(f"{r} {e}\n" for _, r, e in RECORDINGS)
    return grid, listing


def test_abs_round_trip_plain_and_gzip(tmp_path):
    grid, _ = _write(str(tmp_path))
    for name in ("Fall2003range/04200d74.abs", "Fall2003range/04200d80.abs.gz"):
        parsed = abs_format.read_abs(str(tmp_path / name))
        np.testing.assert_array_equal(parsed.valid, grid["valid"])
        np.testing.assert_allclose(parsed.xyz[parsed.valid], grid["xyz"][grid["valid"]],
                                   atol=1e-5)


def test_build_depth_sessions_expressions_protocol(tmp_path):
    _, listing = _write(str(tmp_path / "in"))
    manifest, examples = common.build_and_read(
        source="frgc", input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out"),
        expression_list=listing)
    assert manifest["example_count"] == 4 and manifest["class_names"] == ["04200", "04201"]
    by_id = {e.example_id: e for e in examples["test"]}
    assert by_id["04200/04200d74"].session == 2 and by_id["04201/04201d12"].session == 3
    assert by_id["04201/04201d10"].expression == "neutral"   # BlankStare
    assert by_id["04200/04200d80"].expression == "smiling"
    loaded = frgc.load_scan(scan.ScanTask(
        "x", (str(tmp_path / "in" / "Fall2003range" / "04200d74.abs"),), "04200"))
    tip = scan.nose_tip(loaded.vertices, loaded.triangles)
    expected = scan.render_scan(writers.head_scan(), scan.ScanRenderConfig(image_size=64), tip=tip)
    error, coverage = common.median_depth_error(by_id["04200/04200d74"].depth, expected.depth)
    assert error < 1.0 and coverage > 0.97, (error, coverage)
    protocol = common.read_protocol(str(tmp_path / "out"), "frgc_test")
    assert protocol["gallery"] == ["04200/04200d74", "04201/04201d10"]
    assert protocol["probes"]["non_neutral"] == ["04200/04200d80", "04201/04201d12"]


def test_abs_with_wrong_number_of_values(tmp_path):
    grid = writers.scanner_grid(rows=12, cols=10)
    path = str(tmp_path / "04200d74.abs")
    writers.write_abs(path, grid["xyz"], grid["valid"], drop_values=7)
    writers.write_rgb(str(tmp_path / "04200d74.ppm"), grid["rgb"])
    with pytest.raises(SkipExample, match=r"04200d74.abs: 473 values, expected 4 \* 12 \* 10 = "
                                          r"480") as error:
        abs_format.read_abs(path)
    assert error.value.reason == "malformed_abs"
    manifest, _ = common.build_and_read(source="frgc", input_dir=str(tmp_path),
                                        output_dir=str(tmp_path / "out"), use_mediapipe=False)
    assert manifest["splits"]["test"]["skipped"]["malformed_abs"]["count"] == 1
    with pytest.raises(errors.BuildError, match="04200d74.abs: 473 values"):
        common.build_and_read(source="frgc", input_dir=str(tmp_path), on_error="fail",
                              output_dir=str(tmp_path / "out2"), use_mediapipe=False)
