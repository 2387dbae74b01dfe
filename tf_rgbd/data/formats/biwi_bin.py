"""Biwi Kinect Head Pose compressed depth frames (``frame_XXXXX_depth.bin``) and pose files.

Depth layout (little endian): int32 width, int32 height, then run-length blocks until the
width * height pixels are filled: int32 n_empty (pixels set to 0), int32 n_full, then n_full
int16 depths in mm (0 = invalid). Pose files (``frame_XXXXX_pose.txt``): a 3x3 rotation matrix
on lines 0-2, a blank line, the head centre (x y z, mm, depth camera frame) on line 4.
"""
from __future__ import annotations

import struct

import numpy as np

from tf_rgbd.data import image_io
from tf_rgbd.data.errors import MalformedFileError, MissingFileError

REASON = "malformed_biwi_bin"
MAX_SIDE = 4096


def read_depth_bin(path: str) -> np.ndarray:
    """Decodes a Biwi depth ``.bin`` into float32 [height, width] mm (0 = no data).

    Raises:
      SkipExample: missing_file, empty_file, malformed_biwi_bin (bad size, a run-length block
        running past the image, a truncated block, or fewer pixels than width * height).
    """
    data = image_io.read_file_bytes(path)
    if len(data) < 8:
        raise MalformedFileError(REASON, f"{path}: {len(data)} bytes, no width/height header")
    width, height = struct.unpack_from("<ii", data, 0)
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise MalformedFileError(REASON, f"{path}: implausible size {width} x {height}")
    total = width * height
    depth = np.zeros(total, np.int16)
    offset, filled, block = 8, 0, 0
    while filled < total:
        if offset + 8 > len(data):
            raise MalformedFileError(REASON, f"{path}: truncated at block {block} ({filled} of {total} "
                                      "pixels decoded)")
        empty, full = struct.unpack_from("<ii", data, offset)
        offset += 8
        if empty < 0 or full < 0:
            raise MalformedFileError(REASON, f"{path}: block {block} has negative run lengths "
                                      f"({empty}, {full})")
        if filled + empty + full > total:
            raise MalformedFileError(REASON, f"{path}: run-length block {block} runs past the image "
                                      f"({filled} + {empty} empty + {full} full > {width} x "
                                      f"{height} = {total} pixels)")
        filled += empty
        if offset + 2 * full > len(data):
            raise MalformedFileError(REASON, f"{path}: truncated inside block {block} ({full} depth "
                                      "values announced)")
        depth[filled:filled + full] = np.frombuffer(data, "<i2", count=full, offset=offset)
        offset += 2 * full
        filled += full
        block += 1
    depth = depth.reshape(height, width).astype(np.float32)
    depth[depth < 0] = 0.0
    return depth


def read_pose(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads ``*_pose.txt``: (rotation float64 [3, 3], head centre float64 [3] mm).

    Raises:
      SkipExample: missing_file, malformed_pose.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            lines = [line for line in handle.read().splitlines()]
    except FileNotFoundError as error:
        raise MissingFileError("missing_file", f"{path} does not exist") from error
    rows = [line.split() for line in lines if line.strip()]
    try:
        numbers = [[float(v) for v in row] for row in rows]
    except ValueError as error:
        raise MalformedFileError("malformed_pose", f"{path}: {error}") from error
    if len(numbers) < 4 or any(len(row) != 3 for row in numbers[:4]):
        raise MalformedFileError("malformed_pose", f"{path}: expected 3 rotation rows and a centre "
                                            "row of 3 numbers each")
    return np.array(numbers[:3]), np.array(numbers[3])
