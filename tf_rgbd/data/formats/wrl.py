"""VRML 2.0 ``.wrl`` meshes as written by BU-3DFE (``F0001_AN01WH_F3D.wrl``).

Read: ``Coordinate { point [x y z, ...] }``, ``coordIndex [i, j, k, -1, ...]`` (polygons of any
size ended by -1, fan-triangulated), ``TextureCoordinate { point [s t, ...] }`` with
``texCoordIndex`` (same polygon structure) and ``ImageTexture { url "..._F2D.bmp" }``.
Texture coordinates follow the VRML convention (t = 0 at the bottom of the image).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Optional

import numpy as np

from tf_rgbd.data.errors import MalformedFileError, MissingFileError

REASON = "malformed_wrl"


@dataclasses.dataclass(frozen=True)
class WrlMesh:
    """A parsed IndexedFaceSet.

    Attributes:
      points: float64 [V, 3] vertex coordinates as stored (mm for BU-3DFE).
      triangles: int64 [F, 3] vertex indices (polygons fan-triangulated).
      texcoords: float64 [T, 2] (s, t) in [0, 1], or None.
      tex_triangles: int64 [F, 3] texcoord indices per triangle corner, or None.
      texture_url: the ImageTexture url, or None.
    """

    points: np.ndarray
    triangles: np.ndarray
    texcoords: Optional[np.ndarray]
    tex_triangles: Optional[np.ndarray]
    texture_url: Optional[str]


def _bracket_body(text: str, pattern: str) -> Optional[str]:
    match = re.search(pattern + r"\s*\[", text)
    if match is None:
        return None
    end = text.find("]", match.end())
    if end < 0:
        return ""  # unterminated: reported by the caller as truncated
    return text[match.end():end]


def _numbers(body: str, path: str, what: str, dtype) -> np.ndarray:
    try:
        return np.array(body.replace(",", " ").split(), dtype=np.float64).astype(dtype)
    except ValueError as error:
        raise MalformedFileError(REASON, f"{path}: {what} contains a non-number ({error})") from error


def triangulate_polygons(indices: np.ndarray, path: str, what: str) -> tuple[np.ndarray,
                                                                                np.ndarray]:
    """Fan-triangulates -1-terminated polygons.

    Returns:
      (triangles int64 [F, 3], polygon_of_triangle int64 [F]) so that a parallel index list
      (texCoordIndex) can be triangulated identically.
    """
    indices = np.asarray(indices, np.int64)
    if indices.size and indices[-1] != -1:
        indices = np.append(indices, -1)  # the last polygon may omit its terminator
    ends = np.flatnonzero(indices == -1)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts
    if np.any((lengths > 0) & (lengths < 3)):
        bad = int(np.flatnonzero((lengths > 0) & (lengths < 3))[0])
        raise MalformedFileError(REASON, f"{path}: {what} polygon {bad} has {lengths[bad]} vertices "
                                  "(need >= 3)")
    keep = lengths >= 3
    starts, lengths = starts[keep], lengths[keep]
    triangles, polygon = [], []
    for k in range(1, int(lengths.max(initial=0)) - 1):
        with_k = np.flatnonzero(lengths > k + 1)
        s = starts[with_k]
        triangles.append(np.stack([indices[s], indices[s + k], indices[s + k + 1]], axis=-1))
        polygon.append(with_k)
    if not triangles:
        return np.zeros((0, 3), np.int64), np.zeros(0, np.int64)
    triangles_array, polygon_array = np.concatenate(triangles), np.concatenate(polygon)
    order = np.argsort(polygon_array, kind="stable")
    return triangles_array[order], polygon_array[order]


def read_wrl(path: str) -> WrlMesh:
    """Parses a BU-3DFE VRML 2.0 file.

    Raises:
      SkipExample: missing_file; malformed_wrl (no VRML header, no Coordinate points, a point
        count not divisible by 3, indices out of range, unterminated lists, texCoordIndex with
        a different polygon structure).
    """
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("latin-1")
    except FileNotFoundError as error:
        raise MissingFileError("missing_file", f"{path} does not exist") from error
    if not text.lstrip().startswith("#VRML"):
        raise MalformedFileError(REASON, f"{path}: no '#VRML' header (not a VRML file)")
    text = re.sub(r"#[^\n]*", " ", text)  # comments (after the header check)
    # Not the "Coordinate" inside "TextureCoordinate": VRML97 fields may come in any order.
    coord_body = _bracket_body(text, r"(?<!Texture)Coordinate\s*\{\s*point")
    if coord_body is None:
        raise MalformedFileError(REASON, f"{path}: no 'Coordinate {{ point [...] }}' node")
    index_body = _bracket_body(text, r"\bcoordIndex")
    if index_body is None:
        raise MalformedFileError(REASON, f"{path}: no 'coordIndex [...]' list")
    if not coord_body.strip() or not index_body.strip():
        raise MalformedFileError(REASON, f"{path}: empty or unterminated point/coordIndex list "
                                  "(truncated file?)")
    points = _numbers(coord_body, path, "Coordinate point", np.float64)
    if points.size % 3:
        raise MalformedFileError(REASON, f"{path}: {points.size} coordinate values, not a multiple "
                                  "of 3")
    points = points.reshape(-1, 3)
    triangles, polygons = triangulate_polygons(_numbers(index_body, path, "coordIndex",
                                                        np.int64), path, "coordIndex")
    if triangles.size and (triangles.min() < 0 or triangles.max() >= len(points)):
        raise MalformedFileError(REASON, f"{path}: coordIndex refers to vertex {triangles.max()} but "
                                  f"there are {len(points)} points")

    texcoords = tex_triangles = None
    tex_body = _bracket_body(text, r"TextureCoordinate\s*\{\s*point")
    tex_index_body = _bracket_body(text, r"\btexCoordIndex")
    if tex_body is not None and tex_body.strip():
        texcoords = _numbers(tex_body, path, "TextureCoordinate point", np.float64)
        if texcoords.size % 2:
            raise MalformedFileError(REASON, f"{path}: {texcoords.size} texture coordinate values, "
                                      "not a multiple of 2")
        texcoords = texcoords.reshape(-1, 2)
        if tex_index_body is not None and tex_index_body.strip():
            tex_triangles, tex_polygons = triangulate_polygons(
                _numbers(tex_index_body, path, "texCoordIndex", np.int64), path,
                "texCoordIndex")
            if tex_triangles.shape != triangles.shape or not np.array_equal(tex_polygons,
                                                                            polygons):
                raise MalformedFileError(REASON, f"{path}: texCoordIndex has a different polygon "
                                          "structure from coordIndex")
        elif len(texcoords) == len(points):
            tex_triangles = triangles  # VRML: texcoords indexed like the coordinates
        else:
            raise MalformedFileError(REASON, f"{path}: {len(texcoords)} texture coordinates for "
                                      f"{len(points)} points and no texCoordIndex")
        if tex_triangles.size and tex_triangles.max() >= len(texcoords):
            raise MalformedFileError(REASON, f"{path}: texCoordIndex refers to {tex_triangles.max()} "
                                      f"but there are {len(texcoords)} texture coordinates")
    url = re.search(r"url\s*\[?\s*\"([^\"]+)\"", text)
    return WrlMesh(points=points, triangles=triangles, texcoords=texcoords,
                   tex_triangles=tex_triangles, texture_url=url.group(1) if url else None)

