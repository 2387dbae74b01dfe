"""The dataset sources against hand-made fixtures (tests/data/fixtures/, see its README.md):
file naming (subject / session / expression), metadata tables, and whole builds through
``build_dataset`` (``use_mediapipe=False``) from fixture files copied into a tiny dataset tree.

Scan renders (Bosphorus, FRGC, BU-3DFE, Texas) are checked through values that follow from the
files alone: the depth range (the nearest point is rendered ``camera_distance_mm`` = 600 mm
away, the farthest 600 + its z distance to the nearest) and that the render is upright (every
scan texture / colour grid is red in its upper half and blue in its lower half, so a row flip
or a wrong texture direction anywhere in the chain shows as blue on top).
"""
import os
import shutil

import numpy as np
import pytest

from tests.datasets import common
from tf_rgbd.data import image_io
from tf_rgbd.data.sources import (bu3dfe, folder, frgc, lock3dface, scan, texas3dfr,
                                  vggface2)
from tf_rgbd.config.data import BuildConfig

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "fixtures")
CAMERA_DISTANCE_MM = scan.ScanRenderConfig().camera_distance_mm


def fixture(relative: str) -> str:
    return os.path.join(FIXTURES, relative)


def lay_out(root, files: dict) -> str:
    """Copies fixtures into a dataset tree: {destination relative to root: fixture path}."""
    for destination, source in files.items():
        path = os.path.join(root, destination)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copyfile(fixture(source), path)
    return str(root)


def check_upright_render(example, max_depth_span_mm: float):
    """Depth in [600, 600 + span] mm on the face, red in its top row, blue in its bottom row."""
    depth, rgb = example.depth, example.rgb
    covered = depth > 0
    assert covered.sum() >= 5, example.example_id
    assert depth[covered].min() >= CAMERA_DISTANCE_MM - 1e-3
    assert depth[covered].max() <= CAMERA_DISTANCE_MM + max_depth_span_mm + 1e-3
    rows = np.flatnonzero(covered.any(axis=1))
    top = rgb[rows[0]][covered[rows[0]]].astype(float).mean(axis=0)
    bottom = rgb[rows[-1]][covered[rows[-1]]].astype(float).mean(axis=0)
    assert top[0] > 200 and top[2] < 50, (example.example_id, top)       # red on top
    assert bottom[2] > 200 and bottom[0] < 50, (example.example_id, bottom)


# ---------------------------------------------------------------------------------------------
# Bosphorus: bs<subject>_<type>_<code>_<index>.bnt + .png texture.

def test_bosphorus_build_labels_depth_and_texture(tmp_path):
    root = lay_out(tmp_path / "in", {
        f"bs001/{stem}.{ext}": f"bosphorus/bs001_N_N_0.{ext}"
        for stem in ("bs001_N_N_0", "bs001_E_HAPPY_0", "bs001_YR_R45_0") for ext in ("bnt", "png")})
    manifest, examples = common.build_and_read(source="bosphorus", input_dir=root,
                                               output_dir=str(tmp_path / "out"),
                                               use_mediapipe=False)
    assert manifest["class_names"] == ["bs001"] and list(examples) == ["test"]
    by_id = {e.example_id: e for e in examples["test"]}
    assert set(by_id) == {"bs001/bs001_N_N_0", "bs001/bs001_E_HAPPY_0", "bs001/bs001_YR_R45_0"}
    assert by_id["bs001/bs001_E_HAPPY_0"].expression == "happiness"
    assert (by_id["bs001/bs001_YR_R45_0"].yaw_deg, by_id["bs001/bs001_N_N_0"].yaw_deg) == (45.0,
                                                                                          0.0)
    # z spans 41..53 mm on the fixture grid: depth 600..612 mm.
    check_upright_render(by_id["bs001/bs001_N_N_0"], 53.0 - 41.0)
    protocol = common.read_protocol(str(tmp_path / "out"), "bosphorus_test")
    assert protocol["gallery"] == ["bs001/bs001_N_N_0"]
    assert protocol["probes"]["setting1_expression"] == ["bs001/bs001_E_HAPPY_0"]


# ---------------------------------------------------------------------------------------------
# FRGC v2: <subject:5 digits>d<number>.abs(.gz) + .ppm, session folders, expression list.

def test_frgc_names_sessions_and_expression_list():
    labels = frgc.parse_name(os.path.join("nd1", "Fall2003range", "04200d74.abs"))
    assert labels == {"subject": "04200", "recording": "04200d74", "session": 2}
    assert frgc.parse_name(os.path.join("nd1", "Spring2004range", "04201d302.abs.gz"))[
        "session"] == 3
    assert frgc.parse_name(os.path.join("nd1", "Spring2003range", "02463d562.abs"))[
        "session"] == 1
    assert frgc.read_expression_list(fixture("frgc/expressions.txt")) == {
        "04200d74": "neutral", "04200d76": "happiness", "04201d302": "surprise"}


def test_frgc_build_sessions_expressions_and_depth(tmp_path):
    root = lay_out(tmp_path / "in", {
        "Fall2003range/04200d74.abs": "frgc/04200d74.abs",
        "Fall2003range/04200d74.ppm": "frgc/04200d74.ppm",
        "Spring2004range/04200d76.abs.gz": "frgc/04200d76.abs.gz",
        "Spring2004range/04200d76.ppm": "frgc/04200d74.ppm"})
    manifest, examples = common.build_and_read(
        source="frgc", input_dir=root, output_dir=str(tmp_path / "out"), use_mediapipe=False,
        expression_list=fixture("frgc/expressions.txt"))
    assert manifest["class_names"] == ["04200"]
    by_id = {e.example_id: e for e in examples["test"]}
    assert (by_id["04200/04200d74"].session, by_id["04200/04200d74"].expression) == (2, "neutral")
    assert (by_id["04200/04200d76"].session, by_id["04200/04200d76"].expression) == (
        3, "happiness")
    for example in by_id.values():
        check_upright_render(example, 1048.0 - 1040.125)        # Z spans -1048 .. -1040.125


# ---------------------------------------------------------------------------------------------
# BU-3DFE: F0001_<EXPR><intensity><ethnicity>_F3D.wrl + _F2D.bmp.

def test_bu3dfe_names():
    assert bu3dfe.parse_name("F0001_NE00WH_F3D.wrl") == {
        "subject": "F0001", "expression": "neutral", "intensity": 0, "ethnicity": "WH"}
    assert bu3dfe.parse_name("M0044_HA03AE_F3D.wrl")["expression"] == "happiness_3"


def test_bu3dfe_build_labels_depth_and_texture(tmp_path):
    root = lay_out(tmp_path / "in", {
        "F0001/F0001_NE00WH_F3D.wrl": "bu3dfe/F0001_NE00WH_F3D.wrl",
        "F0001/F0001_NE00WH_F2D.bmp": "bu3dfe/F0001_NE00WH_F2D.bmp",
        # A second scan whose url names a texture that exists under the first scan's name.
        "F0001/F0001_HA03WH_F3D.wrl": "bu3dfe/F0001_NE00WH_F3D.wrl"})
    _, examples = common.build_and_read(source="bu3dfe", input_dir=root,
                                        output_dir=str(tmp_path / "out"), use_mediapipe=False)
    by_id = {e.example_id: e for e in examples["test"]}
    assert by_id["F0001/F0001_NE00WH"].expression == "neutral"
    assert by_id["F0001/F0001_HA03WH"].expression == "happiness_3"
    # z spans 40..44.5 mm; the top of the quad samples t = 1 (texture top, red).
    check_upright_render(by_id["F0001/F0001_NE00WH"], 44.5 - 40.0)


# ---------------------------------------------------------------------------------------------
# Texas 3DFR: <n>_Range.png (value * 0.32 mm) + <n>_Portrait.png, metadata CSV.

TEXAS_MM = 0.32


def texas_range_values(offset: int = 0) -> np.ndarray:
    """The fixture's range image (README): 150 + row - |col - 16| // 4, background 0 in the
    top-left 4 x 4 block; the 16-bit file adds 1000."""
    rows, cols = np.indices((24, 32))
    values = 150 + rows - np.abs(cols - 16) // 4 + offset
    values[:4, :4] = 0
    return values


@pytest.mark.parametrize("number, offset", [("000001", 0), ("000002", 1000)])
def test_texas_load_scan_values(number, offset):
    """8-bit (000001) and 16-bit (000002) range PNGs: vertex (col * s, -row * s, value * s)."""
    task = scan.ScanTask("x", (fixture(f"texas3dfr/{number}_Range.png"),
                               fixture(f"texas3dfr/{number}_Portrait.png")), "24")
    loaded = texas3dfr.load_scan(task, mm_per_pixel=TEXAS_MM)
    values = texas_range_values(offset)
    rows, cols = np.indices(values.shape)
    expected = np.stack([cols * TEXAS_MM, -rows * TEXAS_MM, values * TEXAS_MM], -1)
    np.testing.assert_allclose(loaded.vertices, expected.reshape(-1, 3), rtol=0, atol=1e-9)
    used = np.zeros(values.size, bool)
    used[np.unique(loaded.triangles)] = True
    np.testing.assert_array_equal(used.reshape(values.shape), values > 0)
    colours = loaded.vertex_colors.reshape(24, 32, 3)
    assert np.all(colours[:12] == [255, 0, 0]) and np.all(colours[12:] == [0, 0, 255])


def test_texas_metadata_table():
    """Image numbers 1 and 2 of the CSV (a quoted Notes field holds commas) label the pairs
    000001 and 000002: subject 24, Neutral -> neutral, Expressive -> expressive."""
    metadata = texas3dfr.read_metadata(os.path.join(FIXTURES, "texas3dfr"))
    assert metadata["1"] == {"subject": "24", "expression": "neutral"}
    assert metadata["2"] == {"subject": "24", "expression": "expressive"}
    tasks = texas3dfr.find_tasks(BuildConfig(source="texas3dfr",
                                             input_dir=os.path.join(FIXTURES, "texas3dfr")))
    assert [(t.example_id, t.subject, t.expression) for t in tasks] == [
        ("24/000001", "24", "neutral"), ("24/000002", "24", "expressive")]


def test_texas_build_labels_and_depth(tmp_path):
    root = lay_out(tmp_path / "in", {name: f"texas3dfr/{name}" for name in (
        "metadata.csv", "000001_Range.png", "000001_Portrait.png", "000002_Range.png",
        "000002_Portrait.png")})
    # The fixture is 10 x 8 mm: a 40 mm wide render keeps it several pixels wide.
    _, examples = common.build_and_read(source="texas3dfr", input_dir=root,
                                        output_dir=str(tmp_path / "out"), use_mediapipe=False,
                                        face_width_mm=40.0)
    by_id = {e.example_id: e for e in examples["train"]}
    assert set(by_id) == {"24/000001", "24/000002"}
    assert (by_id["24/000001"].expression, by_id["24/000002"].expression) == ("neutral",
                                                                               "expressive")
    values = texas_range_values()
    span = (values.max() - values[values > 0].min()) * TEXAS_MM       # (173 - 147) * 0.32 mm
    for example in by_id.values():
        check_upright_render(example, span)


# ---------------------------------------------------------------------------------------------
# Biwi: <sequence>/frame_XXXXX_{depth.bin,rgb.png,pose.txt} + depth.cal / rgb.cal.

BIWI_FILES = ("frame_00003_depth.bin", "frame_00003_rgb.png", "frame_00003_pose.txt",
              "depth.cal", "rgb.cal")
BIWI_DEPTH_F, BIWI_DEPTH_C = 575.816, (320.0, 240.0)
BIWI_RGB_R = np.array([[0.999947, 0.00432361, 0.00929419], [-0.00446314, 0.999877, 0.0150443],
                       [-0.009228, -0.015085, 0.999844]])
BIWI_RGB_T = np.array([-24.0198, 5.8896, -13.2308])


def test_biwi_build_subjects_sessions_pose_and_depth(tmp_path):
    root = lay_out(tmp_path / "in", {f"{sequence}/{name}": f"biwi/12/{name}"
                                     for sequence in ("12", "15") for name in BIWI_FILES})
    manifest, examples = common.build_and_read(source="biwi", input_dir=root,
                                               output_dir=str(tmp_path / "out"),
                                               use_mediapipe=False)
    # Sequence 12 is M06; 15 is the second recording of F03 (the database's subject list).
    assert manifest["class_names"] == ["F03", "M06"]
    by_id = {e.example_id: e for e in examples["train"]}
    assert set(by_id) == {"M06/12/00003", "F03/15/00003"}
    assert (by_id["M06/12/00003"].session, by_id["F03/15/00003"].session) == (1, 2)
    for example in by_id.values():
        # Angles of the annotated rotation (test_format_fixtures.py: BIWI_YAW, ...).
        assert (example.yaw_deg, example.pitch_deg, example.roll_deg) == pytest.approx(
            (9.314347, 0.640255, -6.413485), abs=1e-4)
        assert example.rgb[32, 32].tolist() == [90, 60, 30]
    # PINS the reader's documented convention for rgb.cal (depth-camera point p -> R p + t in
    # the RGB camera): every depth of the crop is the RGB-camera z of one of the 36 patch
    # pixels (depth 900..935 mm at rows 218-223, columns 345-350 of the depth image).
    rows, cols = np.meshgrid(np.arange(218, 224), np.arange(345, 351), indexing="ij")
    z = (900 + 6 * (rows - 218) + (cols - 345)).astype(np.float64)
    points = np.stack([(cols - BIWI_DEPTH_C[0]) * z / BIWI_DEPTH_F,
                       (rows - BIWI_DEPTH_C[1]) * z / BIWI_DEPTH_F, z], -1).reshape(-1, 3)
    rgb_z = (points @ BIWI_RGB_R.T + BIWI_RGB_T)[:, 2]
    depth = by_id["M06/12/00003"].depth
    assert (depth > 0).sum() >= 4
    nearest = np.abs(depth[depth > 0][:, None] - rgb_z[None, :]).min(axis=1)
    assert nearest.max() < 0.06, nearest        # record depth is quantised to 0.1 mm


# ---------------------------------------------------------------------------------------------
# Kinect 16-bit depth PNGs: Lock3DFace, Pandora, folder.

KINECT_PNG = {"depth": "kinect_png/depth_mm.png", "rgb": "kinect_png/rgb.png"}


def test_lock3dface_build_labels_and_depth_mm(tmp_path):
    root = lay_out(tmp_path / "in", {
        "002_Kinect_NU_1DEPTH/1.png": KINECT_PNG["depth"],
        "002_Kinect_NU_1RGB/1.png": KINECT_PNG["rgb"],
        "002_Kinect_FE_1DEPTH/2.png": KINECT_PNG["depth"],
        "002_Kinect_FE_1RGB/2.png": KINECT_PNG["rgb"],
        "002_Kinect_TM_2DEPTH/7.png": KINECT_PNG["depth"],
        "002_Kinect_TM_2RGB/7.png": KINECT_PNG["rgb"]})
    assert lock3dface.parse_video(os.path.join(root, "002_Kinect_TM_2DEPTH", "7.png")) == {
        "subject": "002", "variation": "TM", "video_index": 2}
    manifest, examples = common.build_and_read(source="lock3dface", input_dir=root,
                                               output_dir=str(tmp_path / "out"),
                                               use_mediapipe=False)
    by_id = {e.example_id: e for e in examples["test"]}
    assert set(by_id) == {"002/002_NU_1/000001", "002/002_FE_1/000002", "002/002_TM_2/000007"}
    assert (by_id["002/002_TM_2/000007"].session, by_id["002/002_NU_1/000001"].session) == (2, 1)
    assert by_id["002/002_FE_1/000002"].expression == "expression"
    for example in by_id.values():
        # The crop (depth-only head locator at the top of the blob) sees only 1000 mm pixels:
        # 0x03E8 read as big-endian 16-bit; a byte swap would give 59395, 8 bits 232 or 3.
        assert set(np.unique(example.depth[example.depth > 0])) == {1000.0}
        assert example.rgb[32, 32].tolist() == [200, 100, 50]


def test_pandora_build_subject_and_depth_mm(tmp_path):
    root = lay_out(tmp_path / "in", {
        "10/base_1_ID10/DEPTH/000123_DEPTH.png": KINECT_PNG["depth"],
        "10/base_1_ID10/RGB/000123_RGB.png": KINECT_PNG["rgb"]})
    # A 60 px focal length makes the 200 mm crop 12 px tall: it reaches the 1234 mm row.
    _, examples = common.build_and_read(source="pandora", input_dir=root,
                                        output_dir=str(tmp_path / "out"), use_mediapipe=False,
                                        kinect_focal_px=60.0)
    (example,) = examples["train"]
    assert (example.example_id, example.subject) == ("10/base_1_ID10/DEPTH/000123_DEPTH", "10")
    assert set(np.unique(example.depth[example.depth > 0])) == {1000.0, 1234.0}


def test_folder_pairs_photo_and_16bit_depth(tmp_path):
    root = lay_out(tmp_path / "in", {"alice/photo1.png": KINECT_PNG["rgb"],
                                     "alice/photo1_depth.png": KINECT_PNG["depth"],
                                     "bob/photo2.png": KINECT_PNG["rgb"]})
    tasks = folder.find_tasks(BuildConfig(source="folder", input_dir=root))
    by_id = {task.example_id: task for task in tasks}
    assert set(by_id) == {"alice/photo1", "bob/photo2"}
    assert by_id["bob/photo2"].depth_path is None
    alice = by_id["alice/photo1"]
    assert alice.subject == "alice" and alice.depth_path.endswith("photo1_depth.png")
    rgb = image_io.read_rgb(alice.rgb_path)
    depth = image_io.read_depth_png_mm(alice.depth_path, 1.0, expected_shape=rgb.shape[:2])
    assert (depth[0, 15], depth[3, 5], depth[11, 10], depth[0, 0]) == (4660.0, 1000.0, 1234.0,
                                                                       0.0)


# ---------------------------------------------------------------------------------------------
# VGGFace2: identity_meta.csv, loose_bb_<split>.csv, loose_landmark_<split>.csv.

def test_vggface2_identity_meta_readme_form():
    """The VGGFace2 README's form: ``n000077, "Adhyaksa_Dault", 319, 1, m``."""
    assert vggface2.read_identity_meta(fixture("vggface2/identity_meta.csv")) == {
        "n000001": {"name": "14th_Dalai_Lama", "sample_num": 424, "flag": "0", "gender": "m"},
        "n000002": {"name": "A_Fine_Frenzy", "sample_num": 315, "flag": "1", "gender": "f"},
        "n000077": {"name": "Adhyaksa_Dault", "sample_num": 319, "flag": "1", "gender": "m"}}


def test_vggface2_identity_meta_trailing_commas():
    meta = vggface2.read_identity_meta(fixture("vggface2/identity_meta_trailing_commas.csv"))
    assert meta == {
        "n000001": {"name": "14th_Dalai_Lama", "sample_num": 424, "flag": "0", "gender": "m"},
        "n000002": {"name": "A_Fine_Frenzy", "sample_num": 315, "flag": "1", "gender": "f"},
        "n000003": {"name": "A._A._Gill", "sample_num": 205, "flag": "1", "gender": "m"},
        "n000004": {"name": "Name_With,_Comma", "sample_num": 12, "flag": "1", "gender": "f"}}


def test_vggface2_boxes_and_landmarks(tmp_path):
    assert vggface2.read_rows(fixture("vggface2/loose_bb_train.csv"), 4) == {
        "n000001/0001_01": (60.0, 60.0, 79.0, 109.0),
        "n000001/0002_01": (134.0, 81.0, 207.0, 295.0),
        "n000001/0003_01": (58.0, 32.0, 75.0, 103.0)}
    root = lay_out(tmp_path / "in", {
        "bb_landmark/loose_bb_train.csv": "vggface2/loose_bb_train.csv",
        "bb_landmark/loose_landmark_train.csv": "vggface2/loose_landmark_train.csv",
        # find_tasks lists image files by name only; the bytes are a small real PNG.
        "train/n000001/0001_01.png": KINECT_PNG["rgb"],
        "train/n000001/0002_01.png": KINECT_PNG["rgb"]})
    splits = vggface2.find_tasks(BuildConfig(source="vggface2", input_dir=root))
    by_id = {task.example_id: task for task in splits["train"]}
    assert set(by_id) == {"train/n000001/0001_01", "train/n000001/0002_01"}
    first = by_id["train/n000001/0001_01"]
    assert first.subject == "n000001" and first.box == (60.0, 60.0, 79.0, 109.0)
    assert first.landmarks5 == ((75.81253, 110.2077), (103.1778, 104.6074), (93.5, 125.25),
                                (80.125, 140.0), (101.875, 137.5))
    second = by_id["train/n000001/0002_01"]
    assert second.box == (134.0, 81.0, 207.0, 295.0) and second.landmarks5 is None
