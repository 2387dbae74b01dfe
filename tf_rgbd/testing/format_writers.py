"""Test helpers: write small files in each real dataset's documented format from known geometry.

The known geometry is the project's parametric head (``tf_rgbd.data.synthetic.parametric_head``)
coloured by part. It is converted to each dataset's coordinate convention and sampled the way
the scanner would (a mesh for BU-3DFE, range grids for Bosphorus/FRGC/Texas, Kinect depth
frames for Biwi/Pandora/Lock3DFace), so a reader test can compare what the reader renders with
a render of the original mesh.
"""
from __future__ import annotations

import functools
import gzip
import os
import struct
from typing import Optional

import cv2
import numpy as np

from tf_rgbd.data.sources import scan
from tf_rgbd.data import rasterize
from tf_rgbd.data.geometry import CameraIntrinsics
from tf_rgbd.data.synthetic import parametric_head

# Per-part RGB colours (parametric_head.PARTS order).
PART_COLORS = np.array([
    [60, 42, 30],     # hair
    [205, 160, 135],  # skin
    [195, 150, 125],  # neck
    [200, 150, 130],  # ear
    [70, 48, 35],     # brow
    [235, 235, 230],  # eye_white
    [80, 110, 150],   # iris
    [15, 15, 15],     # pupil
    [210, 158, 132],  # nose
    [110, 60, 55],    # nostril
    [175, 80, 85],    # lip
    [70, 25, 25],     # mouth_interior
], np.uint8)


@functools.lru_cache(maxsize=2)
def known_head(dense_step_deg: float = 2.4) -> parametric_head.ParametricHead:
    return parametric_head.build_parametric_head(dense_step_deg)


def head_scan(dense_step_deg: float = 2.4) -> scan.TexturedScan:
    """The parametric head in the scan frame (x right, y up, z toward the scanner), coloured."""
    head = known_head(dense_step_deg)
    vertices = head.vertices.astype(np.float64) * np.array([1.0, -1.0, -1.0])
    return scan.TexturedScan(vertices=vertices, triangles=head.triangles.astype(np.int64),
                             vertex_colors=PART_COLORS[head.parts])


def head_in_camera(distance_mm: float, dense_step_deg: float = 2.4) -> scan.TexturedScan:
    """The head in a camera frame (x right, y down, z forward), its origin ``distance_mm`` away."""
    head = known_head(dense_step_deg)
    vertices = head.vertices.astype(np.float64) + np.array([0.0, 0.0, distance_mm])
    return scan.TexturedScan(vertices=vertices, triangles=head.triangles.astype(np.int64),
                             vertex_colors=PART_COLORS[head.parts])


def render_camera(mesh: scan.TexturedScan, intrinsics: CameraIntrinsics, height: int,
                  width: int) -> tuple[np.ndarray, np.ndarray]:
    """(depth float32 mm, rgb uint8) of a camera-frame mesh."""
    raster = rasterize.rasterize_mesh(mesh.vertices, mesh.triangles, intrinsics, height, width,
                                      vertex_attributes=mesh.vertex_colors.astype(np.float32),
                                      cull_backfaces=False)
    rgb = np.clip(np.rint(raster.attributes), 0, 255).astype(np.uint8)
    rgb[~raster.coverage] = 0
    return raster.depth_mm, rgb


# ---------------------------------------------------------------------------------------------
# Range grids (Bosphorus, FRGC): a perspective "scanner" 800 mm in front of the head.

SCANNER_DISTANCE_MM = 800.0


def scanner_grid(rows: int = 160, cols: int = 128, mm_per_px: float = 1.6) -> dict:
    """A range grid of the head: xyz float64 [R, C, 3] in the scan frame, valid, colours."""
    focal = SCANNER_DISTANCE_MM / mm_per_px
    intrinsics = CameraIntrinsics(focal, focal, (cols - 1) / 2.0, (rows - 1) / 2.0 - 10)
    depth, rgb = render_camera(head_in_camera(SCANNER_DISTANCE_MM), intrinsics, rows, cols)
    v, u = np.indices((rows, cols), dtype=np.float64)
    camera_points = intrinsics.unproject(u, v, depth)
    valid = depth > 0
    xyz = np.stack([camera_points[..., 0], -camera_points[..., 1],
                    SCANNER_DISTANCE_MM - camera_points[..., 2]], axis=-1)
    return {"xyz": xyz, "valid": valid, "rgb": rgb}


def write_bnt(path: str, xyz: np.ndarray, valid: np.ndarray, uv: np.ndarray, image_name: str,
              zmin: float = -1.0e9, count: Optional[int] = None,
              truncate_to: Optional[int] = None) -> None:
    """Writes a Bosphorus ``.bnt`` (``count`` / ``truncate_to`` bytes: malformed variants)."""
    rows, cols = valid.shape
    data = np.concatenate([xyz, uv], axis=-1).reshape(-1, 5).copy()
    data[~valid.reshape(-1), 2] = zmin
    name = image_name.encode("latin-1")
    payload = (struct.pack("<HHdH", rows, cols, zmin, len(name)) + name
               + struct.pack("<I", rows * cols * 5 if count is None else count)
               + np.ascontiguousarray(data.T).astype("<f8").tobytes())  # column-major N x 5
    with open(path, "wb") as handle:
        handle.write(payload if truncate_to is None else payload[:truncate_to])


def write_abs(path: str, xyz: np.ndarray, valid: np.ndarray, drop_values: int = 0) -> None:
    """Writes an FRGC ``.abs`` (gzip when the path ends with .gz); ``drop_values`` removes
    values from the end (a malformed file)."""
    rows, cols = valid.shape
    coords = np.where(valid[..., None], xyz, -999999.0)
    blocks = [valid.astype(int).reshape(rows, cols)] + [coords[..., k] for k in range(3)]
    lines = [f"{rows} rows", f"{cols} columns", "pixels (flag X Y Z):"]
    values = []
    for index, block in enumerate(blocks):
        for row in block:
            values.append(" ".join(str(int(v)) if index == 0 else f"{v:.6f}" for v in row))
    text = "\n".join(lines + values) + "\n"
    if drop_values:
        tokens = text.split(" ")
        text = " ".join(tokens[:-drop_values]) + "\n"
    data = text.encode("latin-1")
    if path.endswith(".gz"):
        with gzip.open(path, "wb") as handle:
            handle.write(data)
    else:
        with open(path, "wb") as handle:
            handle.write(data)


def write_rgb(path: str, rgb: np.ndarray) -> None:
    assert cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)), path


def write_depth_png(path: str, depth_mm: np.ndarray) -> None:
    assert cv2.imwrite(path, np.clip(np.rint(depth_mm), 0, 65535).astype(np.uint16)), path


# ---------------------------------------------------------------------------------------------
# BU-3DFE: the head's frontal grid cells as a VRML mesh with quads and triangles.

def bu3dfe_mesh() -> dict:
    """Front of the head as polygons: quads on even grid columns, two triangles on odd ones.

    Returns dict with ``points`` [V, 3] (scan frame), ``polygons`` (lists), ``triangles``
    [F, 3] (the fan triangulation a reader must produce), ``texcoords`` [V, 2] (s, t),
    ``texture`` uint8 [256, 256, 3].
    """
    head = known_head()
    rows, cols = head.grid_shape
    vertices = head.vertices.astype(np.float64) * np.array([1.0, -1.0, -1.0])
    front = vertices[:, 2] > 30.0
    polygons, triangles = [], []
    for r in range(rows - 1):
        for c in range(cols - 1):
            a, b = r * cols + c, r * cols + c + 1
            d, e = (r + 1) * cols + c, (r + 1) * cols + c + 1
            if not front[[a, b, d, e]].all():
                continue
            if c % 2 == 0:
                polygons.append([a, b, e, d])
                triangles += [[a, b, e], [a, e, d]]
            else:
                polygons += [[a, b, d], [b, e, d]]
                triangles += [[a, b, d], [b, e, d]]
    used = np.unique(np.array(triangles))
    remap = -np.ones(len(vertices), np.int64)
    remap[used] = np.arange(used.size)
    points = np.round(vertices[used], 4)
    lo, hi = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    texcoords = (points[:, :2] - lo) / (hi - lo)
    size = 256
    y, x = np.mgrid[0:size, 0:size]
    texture = np.stack([x * 255 // (size - 1), y * 255 // (size - 1),
                        ((x // 32 + y // 32) % 2) * 200 + 30], axis=-1).astype(np.uint8)
    return {"points": points, "polygons": [list(remap[p]) for p in polygons],
            "triangles": remap[np.array(triangles)], "texcoords": texcoords,
            "texture": texture}


def write_wrl(path: str, points: np.ndarray, polygons: list, texcoords: Optional[np.ndarray],
              texture_url: Optional[str]) -> None:
    """Writes a VRML 2.0 IndexedFaceSet in BU-3DFE's layout (texCoordIndex = coordIndex)."""
    lines = ["#VRML V2.0 utf8", "# written by tests/datasets/writers.py", "Transform {",
             " children [ Shape {"]
    if texture_url:
        lines.append(f'  appearance Appearance {{ texture ImageTexture {{ url "{texture_url}" }} }}')
    lines.append("  geometry IndexedFaceSet { ccw TRUE solid FALSE")
    lines.append("   coord Coordinate { point [")
    lines.extend(f"    {x:.4f} {y:.4f} {z:.4f}," for x, y, z in points)
    lines.append("   ] }")
    index_lines = ["    " + ", ".join(str(int(i)) for i in p) + ", -1," for p in polygons]
    if texcoords is not None:
        lines.append("   texCoord TextureCoordinate { point [")
        lines.extend(f"    {s:.6f} {t:.6f}," for s, t in texcoords)
        lines.append("   ] }")
    lines += ["   coordIndex ["] + index_lines + ["   ]"]
    if texcoords is not None:
        lines += ["   texCoordIndex ["] + index_lines + ["   ]"]
    lines.append("  } } ] }")
    with open(path, "w", encoding="latin-1") as handle:
        handle.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------
# Kinect frames.

def encode_biwi_depth(depth_mm: np.ndarray) -> bytes:
    """Run-length encodes a depth map like Biwi's ``*_depth.bin``."""
    height, width = depth_mm.shape
    flat = np.rint(depth_mm).astype(np.int16).reshape(-1)
    out = [struct.pack("<ii", width, height)]
    index = 0
    while index < flat.size:
        start = index
        while index < flat.size and flat[index] == 0:
            index += 1
        empty = index - start
        start_full = index
        while index < flat.size and flat[index] != 0:
            index += 1
        full = flat[start_full:index]
        out.append(struct.pack("<ii", empty, full.size) + full.astype("<i2").tobytes())
    return b"".join(out)


def write_calibration(path: str, intrinsics: CameraIntrinsics, rotation: np.ndarray,
                      translation: np.ndarray, width: int, height: int) -> None:
    """A Biwi-style ``.cal`` file."""
    k = intrinsics
    rows = [f"{k.fx:.6f} 0 {k.cx:.6f}", f"0 {k.fy:.6f} {k.cy:.6f}", "0 0 1", "", "0 0 0 0", ""]
    rows += [" ".join(f"{v:.9f}" for v in row) for row in rotation]
    rows += ["", " ".join(f"{v:.6f}" for v in translation), "", f"{width} {height}"]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(rows) + "\n")


def write_pose(path: str, rotation: np.ndarray, centre_mm: np.ndarray) -> None:
    rows = [" ".join(f"{v:.6f}" for v in row) for row in rotation]
    rows += ["", " ".join(f"{v:.6f}" for v in centre_mm)]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(rows) + "\n")


def kinect_frame(distance_mm: float, intrinsics: CameraIntrinsics, height: int, width: int,
                 offset_mm=(0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """(depth mm, rgb) of the head seen by a Kinect-like camera, with a far background wall."""
    mesh = head_in_camera(distance_mm)
    shifted = scan.TexturedScan(vertices=mesh.vertices + np.array([offset_mm[0], offset_mm[1],
                                                                   0.0]),
                                triangles=mesh.triangles, vertex_colors=mesh.vertex_colors)
    depth, rgb = render_camera(shifted, intrinsics, height, width)
    return depth, rgb


def write_image_tree(root: str, files: dict) -> None:
    """Writes {relative path: bytes | np.ndarray (PNG/JPEG by extension)}."""
    for relative, content in files.items():
        path = os.path.join(root, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if isinstance(content, bytes):
            with open(path, "wb") as handle:
                handle.write(content)
        elif content.dtype == np.uint16 or content.ndim == 2:
            assert cv2.imwrite(path, content)
        else:
            write_rgb(path, content)
