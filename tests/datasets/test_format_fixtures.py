"""The file-format parsers against hand-made fixtures (tests/data/fixtures/, see its README.md).

The fixtures were written from each format's public description, not by
``tf_rgbd.testing.format_writers``, so a misreading shared by the project's readers and its
test writers fails here. Expected values come from the fixture's documented layout, never from
running the readers. Where a reader's output depends on a documented *choice* of the reader
(not on the file), the test says so and keeps that assertion apart (``PINS`` in its name).

Source-level behaviour (file naming, CSV tables, whole builds) is in
test_format_fixtures_sources.py.
"""
import gzip
import math
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from tf_rgbd.data import image_io, kinect
from tf_rgbd.data.formats import abs_format, biwi_bin, bnt, wrl

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "fixtures")


def fixture(relative: str) -> str:
    return os.path.join(FIXTURES, relative)


def read_bytes(relative: str) -> bytes:
    with open(fixture(relative), "rb") as handle:
        return handle.read()


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """[(type, data)] of a PNG, checking the signature and every CRC (PNG spec, section 5)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        kind = data[offset + 4:offset + 8]
        body = data[offset + 8:offset + 8 + length]
        (crc,) = struct.unpack_from(">I", data, offset + 8 + length)
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks.append((kind, body))
        offset += 12 + length
    return chunks


def png_comparable(data: bytes) -> list:
    """A PNG's chunks with IDAT decompressed (zlib builds may deflate differently)."""
    chunks = png_chunks(data)
    idat = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    return [(kind, body) for kind, body in chunks if kind != b"IDAT"] + [(b"IDAT*", idat)]


# ---------------------------------------------------------------------------------------------
# The fixtures themselves.

def test_committed_binaries_are_what_make_fixtures_writes(tmp_path):
    """make_fixtures.py (which imports neither tf_rgbd nor numpy/OpenCV) regenerates exactly the
    committed binaries: identical bytes, or for zlib/gzip streams identical decompressed
    bytes (another zlib build may deflate differently)."""
    script = fixture("make_fixtures.py")
    check = ("import runpy, sys; sys.argv = ['make_fixtures.py', '--out', sys.argv[1]]; "
             f"runpy.run_path({script!r}, run_name='__main__'); "
             "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
             "('tf_rgbd', 'numpy', 'cv2', 'PIL')); assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", check, str(tmp_path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    written = sorted(os.path.relpath(os.path.join(folder, name), tmp_path)
                     for folder, _, names in os.walk(tmp_path) for name in names)
    assert len(written) == 13, written
    for relative in written:
        with open(tmp_path / relative, "rb") as handle:
            fresh = handle.read()
        committed = read_bytes(relative)
        if fresh == committed:
            continue
        if relative.endswith(".png"):
            assert png_comparable(fresh) == png_comparable(committed), relative
        elif relative.endswith(".gz"):
            assert gzip.decompress(fresh) == gzip.decompress(committed), relative
        else:
            pytest.fail(f"{relative}: committed bytes differ from make_fixtures.py's output")


def test_16bit_depth_png_bytes_follow_the_png_spec():
    """IHDR: 16 x 12, bit depth 16, colour type 0 (greyscale); samples are big endian."""
    chunks = png_chunks(read_bytes("kinect_png/depth_mm.png"))
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    assert struct.unpack(">IIBBBBB", chunks[0][1]) == (16, 12, 16, 0, 0, 0, 0)
    scanlines = zlib.decompress(chunks[1][1])
    stride = 1 + 16 * 2
    assert len(scanlines) == 12 * stride
    row0, row3 = scanlines[:stride], scanlines[3 * stride:4 * stride]
    assert row0[0] == 0 and row0[-2:] == b"\x12\x34"          # filter None; 4660 = 0x1234 MSB first
    assert row3[1 + 2 * 5:1 + 2 * 6] == b"\x03\xe8"            # 1000 mm


# ---------------------------------------------------------------------------------------------
# Bosphorus .bnt: little-endian uint16 nrows, uint16 ncols, float64 zmin, uint16 len, name,
# uint32 count, count float64 (N x 5 column-major: x, y, z, u, v); rows stored bottom first.

BNT = "bosphorus/bs001_N_N_0.bnt"
BNT_ZMIN = -1000000.0
# Physical grid, TOP row first (README): x by column, y by row, z (None = background).
BNT_X = (-10.0, 0.0, 10.0)
BNT_Y_TOP_FIRST = (15.0, 5.0, -5.0, -15.0)
BNT_Z_TOP_FIRST = ((None, 46.0, 45.0), (44.0, 50.0, 45.0), (43.0, 53.0, 44.0),
                   (41.0, 47.0, None))
# PINS THE READER'S CURRENT CONVENTION: read_bnt returns the grid in file order, i.e. row 0 is
# the BOTTOM row of the face. When the reader switches to top-first rows, set this to False;
# it is used only by test_bnt_row_order_PINS_reader_convention.
BNT_READER_ROWS_BOTTOM_FIRST = False


def test_bnt_bytes_follow_the_documented_layout():
    data = read_bytes(BNT)
    nrows, ncols, zmin, name_length = struct.unpack_from("<HHdH", data, 0)
    assert (nrows, ncols, zmin, name_length) == (4, 3, BNT_ZMIN, 15)
    assert data[14:29] == b"bs001_N_N_0.png"
    (count,) = struct.unpack_from("<I", data, 29)
    assert count == 4 * 3 * 5 and len(data) == 33 + 8 * count
    values = struct.unpack_from("<60d", data, 33)
    x, y, z = values[0:12], values[12:24], values[24:36]
    # The file's first point is the bottom-left one (bottom row first, left to right).
    assert (x[0], y[0], z[0]) == (-10.0, -15.0, 41.0)
    assert (x[2], y[2], z[2]) == (BNT_ZMIN,) * 3                 # bottom-right: background
    assert (x[11], y[11], z[11]) == (10.0, 15.0, 45.0)           # the last point: top-right


def test_read_bnt_grid_values_independent_of_row_order():
    scan = bnt.read_bnt(fixture(BNT))
    assert scan.xyz.shape == (4, 3, 3) and scan.uv.shape == (4, 3, 2)
    assert scan.zmin == BNT_ZMIN and scan.image_file == "bs001_N_N_0.png"
    # Every row holds one physical row, left to right (x increases along columns).
    top_first = np.array([[(x, y, np.nan if z is None else z) for x, z in zip(BNT_X, row)]
                          for y, row in zip(BNT_Y_TOP_FIRST, BNT_Z_TOP_FIRST)])
    valid_top_first = ~np.isnan(top_first[..., 2])
    order = [slice(None), slice(None, None, -1)]                 # top-first or bottom-first
    matches = [np.array_equal(scan.valid, valid_top_first[o]) and np.array_equal(
        scan.xyz[scan.valid], top_first[o][valid_top_first[o]]) for o in order]
    assert any(matches), "the grid is neither the documented rows top-first nor bottom-first"
    assert int(scan.valid.sum()) == 10
    z = scan.xyz[..., 2][scan.valid]
    assert (z.min(), z.max()) == (41.0, 53.0)
    # Background cells are exactly the two documented corners (by their position in space).
    background = scan.xyz[..., 1] == BNT_ZMIN
    assert background.sum() == 2 and not scan.valid[background].any()
    # The nose tip (x 0, y -5, z 53) and its texture coordinates (u, v) = (0.5, 0.625).
    tip = np.argwhere(scan.xyz[..., 2] == 53.0)
    assert tip.shape == (1, 2)
    r, c = tip[0]
    assert tuple(scan.xyz[r, c]) == (0.0, -5.0, 53.0) and tuple(scan.uv[r, c]) == (0.5, 0.625)
    np.testing.assert_array_equal(np.diff(scan.xyz[..., 0][scan.valid.all(axis=1)], axis=-1),
                                  10.0)


def test_bnt_row_order_PINS_reader_convention():
    """The file stores the bottom row first (bnt2abs.py); this pins which row read_bnt returns
    first. Update BNT_READER_ROWS_BOTTOM_FIRST when the reader's convention changes."""
    scan = bnt.read_bnt(fixture(BNT))
    first_row_y = scan.xyz[0, 1, 1]                               # the middle column is valid
    assert first_row_y == (-15.0 if BNT_READER_ROWS_BOTTOM_FIRST else 15.0)


# ---------------------------------------------------------------------------------------------
# FRGC .abs: "<N> rows", "<M> columns", "pixels (flag X Y Z):", then the N*M flags, X, Y, Z
# (each row-major, top row first), invalid points at -999999.

ABS_FLAGS = [[0, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]]
ABS_X = [-15.75, -5.25, 5.25, 15.75]
ABS_Y = [10.5, 0.0, -10.5]
ABS_Z = [[-999999.0, -1046.0, -1045.0, -1047.0], [-1044.0, -1040.125, -1041.0, -1045.0],
         [-1048.0, -1043.0, -1044.0, -999999.0]]


def test_abs_text_follows_the_documented_layout():
    lines = read_bytes("frgc/04200d74.abs").decode("ascii").split("\n")
    assert lines[:3] == ["3 rows", "4 columns", "pixels (flag X Y Z):"]
    assert [len(line.split()) for line in lines[3:7]] == [12, 12, 12, 12] and lines[7:] == [""]
    assert gzip.decompress(read_bytes("frgc/04200d76.abs.gz")) == read_bytes("frgc/04200d74.abs")


@pytest.mark.parametrize("name", ["04200d74.abs", "04200d76.abs.gz"])
def test_read_abs_values(name):
    scan = abs_format.read_abs(fixture("frgc/" + name))
    assert scan.xyz.shape == (3, 4, 3) and scan.xyz.dtype == np.float64
    np.testing.assert_array_equal(scan.valid, np.array(ABS_FLAGS, bool))
    valid = scan.valid
    np.testing.assert_array_equal(scan.xyz[..., 0][valid], np.broadcast_to(ABS_X, (3, 4))[valid])
    np.testing.assert_array_equal(scan.xyz[..., 1][valid],
                                  np.broadcast_to(np.array(ABS_Y)[:, None], (3, 4))[valid])
    np.testing.assert_array_equal(scan.xyz[..., 2], np.array(ABS_Z))
    assert scan.xyz[0, 0].tolist() == [-999999.0] * 3            # invalid points as stored
    z = scan.xyz[..., 2][valid]
    assert (z.min(), z.max()) == (-1048.0, -1040.125)
    assert tuple(scan.xyz[1, 1]) == (-5.25, 0.0, -1040.125)       # row 1, column 1: the tip


# ---------------------------------------------------------------------------------------------
# BU-3DFE VRML 2.0 (ISO/IEC 14772-1:1997, IndexedFaceSet / TextureCoordinate).

WRL_POINTS = [[-10.5, 10.25, 40.0], [10.5, 10.25, 40.0], [10.5, -10.25, 41.0],
              [-10.5, -10.25, 41.0], [0.0, -25.0, 44.5]]
WRL_TEXCOORDS = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [0.5, 0.0]]
# coordIndex [0 1 2 3 -1 3 2 4] fan-triangulated; the last face has no -1 (VRML97 allows it).
WRL_TRIANGLES = [[0, 1, 2], [0, 2, 3], [3, 2, 4]]
# texCoordIndex [1 2 0 3 -1 3 0 4], triangulated the same way.
WRL_TEX_TRIANGLES = [[1, 2, 0], [1, 0, 3], [3, 0, 4]]


def _check_wrl(mesh):
    np.testing.assert_array_equal(mesh.points, WRL_POINTS)
    np.testing.assert_array_equal(mesh.triangles, WRL_TRIANGLES)
    np.testing.assert_array_equal(mesh.texcoords, WRL_TEXCOORDS)
    np.testing.assert_array_equal(mesh.tex_triangles, WRL_TEX_TRIANGLES)
    assert mesh.texture_url == "F0001_NE00WH_F2D.bmp"
    # Per corner (s, t): the top vertices (y = 10.25) have t = 1, the top of the texture.
    corner_st = mesh.texcoords[mesh.tex_triangles.reshape(-1)]
    corner_y = mesh.points[mesh.triangles.reshape(-1), 1]
    assert np.all(corner_st[corner_y > 0, 1] == 1.0) and np.all(corner_st[corner_y < 0, 1] == 0.0)


def test_read_wrl_values():
    _check_wrl(wrl.read_wrl(fixture("bu3dfe/F0001_NE00WH_F3D.wrl")))


def test_read_wrl_fields_in_any_order():
    _check_wrl(wrl.read_wrl(fixture("bu3dfe/texcoord_before_coord.wrl")))


def test_bmp_texture_bytes_are_bottom_up():
    """BITMAPINFOHEADER with a positive height: the first stored row is the image's bottom
    row (here blue; the top half of the image is red); rows padded to 4 bytes (3 px -> 12)."""
    data = read_bytes("bu3dfe/F0001_NE00WH_F2D.bmp")
    magic, size, _, _, offset = struct.unpack_from("<2sIHHI", data, 0)
    width, height, planes, bits = struct.unpack_from("<iiHH", data, 18)
    assert (magic, size, offset, width, height, planes, bits) == (b"BM", 102, 54, 3, 4, 1, 24)
    assert data[offset:offset + 3] == b"\xff\x00\x00"            # B G R of blue, bottom row
    assert data[offset + 36:offset + 39] == b"\x00\x00\xff"       # red, the last (top) row
    rgb = image_io.read_rgb(fixture("bu3dfe/F0001_NE00WH_F2D.bmp"))
    assert rgb.shape == (4, 3, 3)
    assert rgb[0, 0].tolist() == [255, 0, 0] and rgb[3, 2].tolist() == [0, 0, 255]


# ---------------------------------------------------------------------------------------------
# Biwi: run-length depth .bin, pose .txt, depth.cal / rgb.cal.

BIWI = "biwi/12/"
# The Hugging Face card's sample of sequence 12 (huggingface/datasets biwi_kinect_head_pose).
BIWI_DEPTH_K = [[575.816, 0.0, 320.0], [0.0, 575.816, 240.0], [0.0, 0.0, 1.0]]
BIWI_RGB_K = [[517.679, 0.0, 320.0], [0.0, 517.679, 240.5], [0.0, 0.0, 1.0]]
BIWI_RGB_R = [[0.999947, 0.00432361, 0.00929419], [-0.00446314, 0.999877, 0.0150443],
              [-0.009228, -0.015085, 0.999844]]
BIWI_RGB_T = [-24.0198, 5.8896, -13.2308]
BIWI_POSE_R = [[0.980639, 0.109899, 0.162077], [-0.11023, 0.993882, -0.00697376],
               [-0.161851, -0.011027, 0.986754]]
BIWI_POSE_CENTRE = [43.4019, -30.7038, 906.864]
# Angles of BIWI_POSE_R with the formula of the public Biwi loader of Hopenet
# (natanielruiz/deep-head-pose code/datasets.py, class BIWI): roll = atan2(R10, R00),
# yaw = atan2(-R20, sqrt(R21^2 + R22^2)), pitch = -atan2(R21, R22) (README: the numbers).
BIWI_YAW, BIWI_PITCH, BIWI_ROLL = 9.314347, 0.640255, -6.413485
BIWI_PATCH_ROWS, BIWI_PATCH_COLS = range(218, 224), range(345, 351)


def biwi_patch_value(row, col):
    return 900 + 6 * (row - 218) + (col - 345)


def test_biwi_bin_bytes_follow_the_documented_layout():
    data = read_bytes(BIWI + "frame_00003_depth.bin")
    assert struct.unpack_from("<ii", data, 0) == (640, 480)
    assert struct.unpack_from("<ii", data, 8) == (218 * 640 + 345, 6)  # numempty, numfull
    assert struct.unpack_from("<6h", data, 16) == tuple(range(900, 906))
    assert struct.unpack_from("<ii", data, len(data) - 8) == (480 * 640 - (223 * 640 + 351), 0)
    assert len(data) == 8 + 5 * (8 + 12) + 2 * (8 + 6) + 8


def test_read_depth_bin_values():
    depth = biwi_bin.read_depth_bin(fixture(BIWI + "frame_00003_depth.bin"))
    assert depth.shape == (480, 640) and depth.dtype == np.float32
    expected = np.zeros((480, 640), np.float32)
    for row in BIWI_PATCH_ROWS:
        for col in BIWI_PATCH_COLS:
            expected[row, col] = biwi_patch_value(row, col)
    np.testing.assert_array_equal(depth, expected)
    assert (depth[218, 345], depth[223, 350], int((depth > 0).sum())) == (900.0, 935.0, 36)
    # Row 220 is stored as two blocks, the second with numempty = 0.
    assert depth[220, 345:351].tolist() == [912.0, 913.0, 914.0, 915.0, 916.0, 917.0]


def test_read_pose_and_angles():
    rotation, centre = biwi_bin.read_pose(fixture(BIWI + "frame_00003_pose.txt"))
    np.testing.assert_array_equal(rotation, BIWI_POSE_R)
    np.testing.assert_array_equal(centre, BIWI_POSE_CENTRE)
    yaw, pitch, roll = kinect.pose_angles_from_rotation(rotation)
    assert (yaw, pitch, roll) == pytest.approx((BIWI_YAW, BIWI_PITCH, BIWI_ROLL), abs=1e-4)
    # The same numbers straight from the public formula (a check of the constants above).
    r = np.array(BIWI_POSE_R)
    assert math.degrees(math.atan2(-r[2, 0], math.hypot(r[2, 1], r[2, 2]))) == pytest.approx(
        BIWI_YAW, abs=1e-5)


@pytest.mark.parametrize("name, matrix, rotation, translation", [
    ("depth.cal", BIWI_DEPTH_K, np.eye(3).tolist(), [0.0, 0.0, 0.0]),
    ("rgb.cal", BIWI_RGB_K, BIWI_RGB_R, BIWI_RGB_T)])
def test_read_calibration(name, matrix, rotation, translation):
    calibration = kinect.read_calibration(fixture(BIWI + name))
    k = calibration.intrinsics
    assert (k.fx, k.fy, k.cx, k.cy) == (matrix[0][0], matrix[1][1], matrix[0][2], matrix[1][2])
    np.testing.assert_array_equal(calibration.rotation, rotation)
    np.testing.assert_array_equal(calibration.translation, translation)


# ---------------------------------------------------------------------------------------------
# 16-bit depth PNG in millimetres (Lock3DFace / Pandora / folder).

def kinect_depth_expected() -> np.ndarray:
    expected = np.zeros((12, 16), np.float32)
    expected[0, 15] = 4660.0
    expected[3:11, 5:11] = 1000.0
    expected[11, 5:11] = 1234.0
    return expected


def test_read_depth_png_mm_values():
    depth = image_io.read_depth_png_mm(fixture("kinect_png/depth_mm.png"), scale_mm=1.0,
                                       expected_shape=(12, 16))
    assert depth.dtype == np.float32
    np.testing.assert_array_equal(depth, kinect_depth_expected())
    rgb = image_io.read_rgb(fixture("kinect_png/rgb.png"))
    assert rgb.shape == (12, 16, 3) and np.all(rgb == np.array([200, 100, 50], np.uint8))
