"""Bosphorus ``.bnt`` range scans.

Layout (little endian): uint16 nrows, uint16 ncols, float64 zmin, uint16 len, ``len`` bytes of
the texture image file name, uint32 count (= nrows * ncols * 5), then ``count`` float64 values
forming an N x 5 column-major array (N = nrows * ncols): all x, then all y, z, u, v. Point
``i`` is file row ``i // ncols``, column ``i % ncols``. Background points have z = zmin.
(u, v) in [0, 1] index the ``.png`` texture.

Row order: the Bosphorus release stores the rows **bottom-first** (file row 0 is the bottom of
the face: y, which points up in the scan frame, grows with the file row). :func:`read_bnt`
returns the grid **top-first**, like an image (row 0 = the top of the face), so anything that
uses the grid directly (a preview, a depth-map path) is upright. The file's order is decided
from the data: the rows are flipped when the valid points' y grows with the row index (so a
grid written top-first by another tool is kept as it is); ``BntScan.rows_flipped`` says which.
Columns are kept (x grows with the column: image left to right for a frontal scan).
"""
from __future__ import annotations

import dataclasses
import os
import struct

import numpy as np

from tf_rgbd.data import image_io
from tf_rgbd.data.errors import MalformedFileError

REASON = "malformed_bnt"
_HEADER = struct.Struct("<HHdH")


@dataclasses.dataclass(frozen=True)
class BntScan:
    """A parsed ``.bnt`` file.

    Attributes:
      xyz: float64 [nrows, ncols, 3] coordinates (mm), rows top-first (row 0 = largest y).
      uv: float64 [nrows, ncols, 2] texture coordinates in [0, 1], same grid.
      valid: bool [nrows, ncols] (z != zmin), same grid.
      zmin: the background z.
      image_file: the texture file name stored in the header.
      rows_flipped: True when the file stored the rows bottom-first (the Bosphorus order) and
        they were reversed.
    """

    xyz: np.ndarray
    uv: np.ndarray
    valid: np.ndarray
    zmin: float
    image_file: str
    rows_flipped: bool = False


def rows_are_bottom_first(y: np.ndarray, valid: np.ndarray) -> bool:
    """Whether y (up) grows with the row index over the valid cells of a [R, C] grid: the
    correlation of y with the row index is positive."""
    rows = np.nonzero(valid)[0].astype(np.float64)
    if rows.size < 2 or np.ptp(rows) == 0:
        return False
    values = y[valid]
    correlation = np.corrcoef(rows, values)[0, 1]
    return bool(np.isfinite(correlation) and correlation > 0)


def read_bnt(path: str) -> BntScan:
    """Parses a ``.bnt`` file.

    Raises:
      SkipExample: missing_file, empty_file, malformed_bnt (short header, ``count`` not equal to
        nrows * ncols * 5, fewer data bytes than ``count`` says: a truncated file).
    """
    data = image_io.read_file_bytes(path)
    if len(data) < _HEADER.size:
        raise MalformedFileError(REASON, f"{path}: {len(data)} bytes, shorter than the "
                                  f"{_HEADER.size}-byte header (truncated)")
    nrows, ncols, zmin, name_length = _HEADER.unpack_from(data, 0)
    offset = _HEADER.size
    if len(data) < offset + name_length + 4:
        raise MalformedFileError(REASON, f"{path}: truncated inside the image-name/count header")
    image_file = data[offset:offset + name_length].decode("latin-1").rstrip("\x00")
    offset += name_length
    (count,) = struct.unpack_from("<I", data, offset)
    offset += 4
    expected = nrows * ncols * 5
    if count != expected:
        raise MalformedFileError(REASON, f"{path}: count {count} != nrows * ncols * 5 = {nrows} * "
                                  f"{ncols} * 5 = {expected}")
    if nrows == 0 or ncols == 0:
        raise MalformedFileError(REASON, f"{path}: empty grid {nrows} x {ncols}")
    available = (len(data) - offset) // 8
    if available < count:
        raise MalformedFileError(REASON, f"{path}: {available} float64 values after the header, "
                                  f"count says {count} (truncated file)")
    values = np.frombuffer(data, "<f8", count=count, offset=offset)
    columns = values.reshape(5, nrows * ncols)          # column-major N x 5
    grid = columns.reshape(5, nrows, ncols)
    xyz = np.moveaxis(grid[:3], 0, -1).astype(np.float64)
    uv = np.moveaxis(grid[3:], 0, -1).astype(np.float64)
    valid = (grid[2] != zmin) & np.all(np.isfinite(grid[:3]), axis=0)
    flip = rows_are_bottom_first(xyz[..., 1], valid)
    if flip:
        xyz, uv, valid = xyz[::-1].copy(), uv[::-1].copy(), valid[::-1].copy()
    return BntScan(xyz=xyz, uv=uv, valid=valid, zmin=float(zmin),
                   image_file=os.path.basename(image_file), rows_flipped=flip)
