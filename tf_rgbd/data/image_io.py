"""Reading source images with OpenCV, turning every kind of bad file into a clear, counted skip.

Each function raises :class:`tf_rgbd.data.errors.SkipExample` with a stable ``reason``
(``missing_file``, ``empty_file``, ``corrupt_image``, ``unsupported_extension``, ``nan_depth``,
``depth_not_16bit``, ``depth_size_mismatch``...) so builders count bad inputs per reason
instead of crashing.

Photographs: every still-image format the pinned OpenCV (4.11, ``opencv-python-headless``)
decodes, by extension, case-insensitive (:data:`IMAGE_EXTENSIONS`). Depth images: 16-bit
(``uint16``) 1-channel PNG/TIFF/PGM in depth units (mm unless a scale is given); 8-bit depth is
rejected as ``depth_not_16bit`` unless its scale is stated (``depth_8bit_scale_mm``), because an
8-bit depth file is almost always a display rendering, and read as millimetres it puts the face
3-4x too near.
"""
from __future__ import annotations

import os
from typing import Optional

import cv2
import numpy as np

from tf_rgbd.data.errors import (CorruptImageError, InputFileError, InvalidDepthError,
                                 MissingFileError)

# Still-image extensions OpenCV 4.11 decodes (lower case, with the dot): JPEG, JPEG 2000, PNG,
# Windows bitmaps, the portable any-map family (FRGC ships .ppm), TIFF, WebP, Sun raster.
# Left out: the float high-dynamic-range formats (.hdr/.pic radiance, .pfm, .exr -- the
# last disabled in OpenCV's default build), which are not photographs, and GIF/AVIF, which this
# OpenCV build does not decode.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jp2", ".png", ".bmp", ".dib", ".ppm", ".pgm",
                    ".pbm", ".pnm", ".tif", ".tiff", ".webp", ".sr", ".ras")


def read_file_bytes(path: str) -> bytes:
    """The whole file; raises SkipExample ``missing_file`` or ``empty_file`` (zero bytes)."""
    if not os.path.exists(path):
        raise MissingFileError("missing_file", f"{path} does not exist")
    data = open(path, "rb").read()
    if not data:
        raise MissingFileError("empty_file", f"{path} is a zero-byte file")
    return data


def is_image_file(path: str) -> bool:
    """Whether ``path``'s extension (case-insensitive) is one of :data:`IMAGE_EXTENSIONS`."""
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def check_image_extension(path: str) -> None:
    """Raises SkipExample ``unsupported_extension`` unless :func:`is_image_file`."""
    if not is_image_file(path):
        extension = os.path.splitext(path)[1] or "(no extension)"
        raise InputFileError(
            "unsupported_extension",
            f"{path}: extension {extension} is not an image format this build reads; accepted "
            f"(case-insensitive): {' '.join(IMAGE_EXTENSIONS)}. Convert the file (e.g. to .png) "
            "or move it out of the dataset folder")


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
                      expected_shape: Optional[tuple[int, int]] = None,
                      depth_8bit_scale_mm: float = 0.0) -> np.ndarray:
    """Reads a 16-bit 1-channel depth image (PNG, or TIFF/PGM); returns float32 [H, W] mm
    (0 = no data).

    Args:
      scale_mm: millimetres per unit of a 16-bit image (1.0 for Kinect-style mm PNGs).
      expected_shape: (H, W) the depth must have (the RGB image's), else depth_size_mismatch.
      depth_8bit_scale_mm: millimetres per unit of an 8-bit image; 0 (the default) rejects
        8-bit depth: its values (0..255) cannot be millimetres of a face in front of a camera.
    Raises:
      SkipExample: missing_file, empty_file, corrupt_image, bad_depth_shape (not 1 channel),
        depth_not_16bit (8-bit without ``depth_8bit_scale_mm``, or any other sample type:
        float, signed), and those of :func:`check_depth_mm`.
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
    if image.dtype == np.uint16:
        scale = scale_mm
    elif image.dtype == np.uint8 and depth_8bit_scale_mm > 0:
        scale = depth_8bit_scale_mm
    elif image.dtype == np.uint8:
        raise InvalidDepthError(
            "depth_not_16bit",
            f"{path}: 8-bit depth image (values 0..{int(image.max())}), but depth must be a "
            "16-bit PNG in mm: 8-bit depth is usually a normalised rendering, and read as mm it "
            "would put the face 3-4x too near. Re-export the depth as 16-bit mm, or pass "
            "--depth_8bit_scale_mm=<mm per 8-bit unit> if its scale is known")
    else:
        raise InvalidDepthError(
            "depth_not_16bit",
            f"{path}: depth samples are {image.dtype}, but depth must be a 16-bit (uint16) PNG "
            "in mm; convert it (e.g. metres as float: multiply by 1000 and save as uint16)")
    return check_depth_mm(image.astype(np.float32) * np.float32(scale), path, expected_shape)


def read_depth_npy_mm(path: str, expected_shape: Optional[tuple[int, int]] = None) -> np.ndarray:
    """Reads a float depth map in mm from ``.npy`` (NaN marks no data in some tools: rejected)."""
    read_file_bytes(path)
    try:
        depth = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise CorruptImageError("corrupt_depth", f"{path}: {error}") from error
    return check_depth_mm(depth, path, expected_shape)
