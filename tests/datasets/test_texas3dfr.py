"""Texas 3DFR reader: range + portrait PNG pairs from an orthographic view of the head."""
import os

import numpy as np

from tf_rgbd.data.sources import texas3dfr
from tf_rgbd.data.sources import scan
from tests.datasets import common
from tf_rgbd.testing import format_writers as writers
from tf_rgbd.data.geometry import CameraIntrinsics

MM_PER_PIXEL = 0.8
FAR_MM = 100000.0


def _range_pair():
    """(range uint16, portrait) of the head seen from far away (orthographic, 0.8 mm/pixel),
    and the height reference: value * 0.8 = REF - camera z."""
    rows, cols = 200, 160
    focal = FAR_MM / MM_PER_PIXEL
    intrinsics = CameraIntrinsics(focal, focal, (cols - 1) / 2, (rows - 1) / 2 - 10)
    depth, rgb = writers.render_camera(writers.head_in_camera(FAR_MM), intrinsics, rows, cols)
    reference = depth[depth > 0].max() + 20.0
    heights = np.where(depth > 0, (reference - depth) / MM_PER_PIXEL, 0)
    return np.rint(heights).astype(np.uint16), rgb


def _write(root, subjects=14, images=2):
    range_image, portrait = _range_pair()
    lines = ["Image_Number,Subject_ID,Expression"]
    number = 0
    for subject in range(subjects):
        for image in range(images):
            number += 1
            writers.write_image_tree(root, {f"{number:06d}_Range.png": range_image,
                                            f"{number:06d}_Portrait.png": portrait})
            lines.append(f"{number},{subject + 1:03d},{'Neutral' if image == 0 else 'Smile'}")
    with open(os.path.join(root, "Meta_Data.csv"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def test_build_splits_depth_and_protocol(tmp_path):
    _write(str(tmp_path / "in"))
    manifest, examples = common.build_and_read(
        source="texas3dfr", input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out"),
        texas_mm_per_pixel=MM_PER_PIXEL, use_mediapipe=False)
    assert manifest["example_count"] == 28
    assert len({e.subject for e in examples["train"]}) == 12
    assert {e.subject for e in examples["test"]} == {"013", "014"}
    first = next(e for e in examples["train"] if e.example_id == "001/000001")
    assert first.expression == "neutral"
    loaded = texas3dfr.load_scan(scan.ScanTask(
        "x", (str(tmp_path / "in" / "000001_Range.png"),
              str(tmp_path / "in" / "000001_Portrait.png")), "001"), mm_per_pixel=MM_PER_PIXEL)
    tip = scan.nose_tip(loaded.vertices, loaded.triangles)
    # The known head in the Texas scan frame: x = col * s, y = -row * s, z = height.
    head = writers.head_scan()
    range_image, _ = _range_pair()
    rows, cols = range_image.shape
    depth_grid, _ = writers.render_camera(writers.head_in_camera(FAR_MM), CameraIntrinsics(
        FAR_MM / MM_PER_PIXEL, FAR_MM / MM_PER_PIXEL, (cols - 1) / 2, (rows - 1) / 2 - 10),
        rows, cols)
    reference = depth_grid[depth_grid > 0].max() + 20.0
    shift = np.array([(cols - 1) / 2 * MM_PER_PIXEL, -((rows - 1) / 2 - 10) * MM_PER_PIXEL,
                      reference - FAR_MM])
    known = scan.TexturedScan(vertices=head.vertices + shift, triangles=head.triangles,
                              vertex_colors=head.vertex_colors)
    expected = scan.render_scan(known, scan.ScanRenderConfig(image_size=64), tip=tip)
    error, coverage = common.median_depth_error(first.depth, expected.depth)
    assert error < 1.0 and coverage > 0.97, (error, coverage)
    protocol = common.read_protocol(str(tmp_path / "out"), "texas3dfr_test")
    assert protocol["gallery"] == ["013/000025", "014/000027"]
    assert protocol["probes"]["all"] == ["013/000026", "014/000028"]
