"""Reading source images with OpenCV, turning every kind of bad file into a clear, counted skip.

Each function raises :class:`tf_rgbd.data.errors.SkipExample` with a stable ``reason``
(``missing_file``, ``empty_file``, ``corrupt_image``, ``nan_depth``, ``depth_size_mismatch``...)
so builders count bad inputs per reason instead of crashing.
"""
from __future__ import annotations

import os
from typing import Optional

import cv2
import numpy as np

from tf_rgbd.data.errors import CorruptImageError, InvalidDepthError, MissingFileError


def read_file_bytes(path: str) -> bytes:
    """The whole file; raises SkipExample ``missing_file`` or ``empty_file`` (zero bytes)."""
    if not os.path.exists(path):
        raise MissingFileError("missing_file", f"{path} does not exist")
    data = open(path, "rb").read()
    if not data:
        raise MissingFileError("empty_file", f"{path} is a zero-byte file")
    return data


def _is_truncated(data: bytes) -> bool:
    """PNG files end with an IEND chunk and JPEG files with an EOI marker; OpenCV decodes
    truncated files partially (grey rows) instead of failing, so check the trailer."""
    if data.startswith(b"\x89PNG"):
        return not data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82")
    if data.startswith(b"\xff\xd8"):
        return not data.rstrip(b"\x00").endswith(b"\xff\xd9")
    return False


def read_rgb(path: str) -> np.ndarray:
    """Reads a colour image as uint8 [H, W, 3] RGB (grey and BGRA inputs are converted).

    Raises:
      SkipExample: missing_file, empty_file, corrupt_image (undecodable or truncated).
    """
    data = read_file_bytes(path)
    if _is_truncated(data):
        raise CorruptImageError("corrupt_image", f"{path} is truncated (no end-of-image marker)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise CorruptImageError("corrupt_image", f"{path} cannot be decoded as an image")
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(float(image.max()), 1.0))
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def check_depth_mm(depth_mm: np.ndarray, where: str,
                   expected_shape: Optional[tuple[int, int]] = None) -> np.ndarray:
    """Validates a depth map (float mm, 0 = no data); returns it as float32 [H, W].

    Raises:
      SkipExample: nan_depth (NaN/inf values), negative_depth, depth_size_mismatch (differs from
        ``expected_shape``, e.g. the RGB image's), no_valid_depth (all zero).
    """
    depth = np.asarray(depth_mm, np.float32)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise InvalidDepthError("bad_depth_shape", f"{where}: depth must be [H, W], got {depth.shape}")
    if not np.all(np.isfinite(depth)):
        raise InvalidDepthError("nan_depth", f"{where}: {int(np.sum(~np.isfinite(depth)))} NaN/inf "
                                       "depth values")
    if np.any(depth < 0):
        raise InvalidDepthError("negative_depth", f"{where}: negative depth values")
    if expected_shape is not None and depth.shape != tuple(expected_shape):
        raise InvalidDepthError("depth_size_mismatch",
                          f"{where}: depth {depth.shape} but RGB {tuple(expected_shape)}")
    if not np.any(depth > 0):
        raise InvalidDepthError("no_valid_depth", f"{where}: depth map has no valid (non-zero) pixel")
    return depth


def read_depth_png_mm(path: str, scale_mm: float = 1.0,
                      expected_shape: Optional[tuple[int, int]] = None) -> np.ndarray:
    """Reads a 16-bit (or 8-bit) 1-channel depth PNG; returns float32 [H, W] mm (0 = no data).

    Args:
      scale_mm: millimetres per PNG unit (1.0 for Kinect-style mm PNGs).
      expected_shape: (H, W) the depth must have (the RGB image's), else depth_size_mismatch.
    """
    data = read_file_bytes(path)
    if _is_truncated(data):
        raise CorruptImageError("corrupt_image", f"{path} is truncated (no end-of-image marker)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise CorruptImageError("corrupt_image", f"{path} cannot be decoded as a depth PNG")
    if image.ndim == 3:
        raise InvalidDepthError("bad_depth_shape", f"{path}: depth PNG must have 1 channel, has "
                                             f"{image.shape[2]}")
    return check_depth_mm(image.astype(np.float32) * np.float32(scale_mm), path, expected_shape)


def read_depth_npy_mm(path: str, expected_shape: Optional[tuple[int, int]] = None) -> np.ndarray:
    """Reads a float depth map in mm from ``.npy`` (NaN marks no data in some tools: rejected)."""
    read_file_bytes(path)
    try:
        depth = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise CorruptImageError("corrupt_depth", f"{path}: {error}") from error
    return check_depth_mm(depth, path, expected_shape)
