"""Contact sheets of dataset examples: RGB | depth (turbo colours) | mask (class palette).

``python -m datasets.build --preview=PATH`` writes one for every source that can list a few
examples; the demo report shows it.
"""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

from tf_rgbd import io_utils
from tf_rgbd.data import schema

MASK_PALETTE = np.array([[0, 0, 0], [230, 190, 160], [120, 70, 30], [60, 140, 255],
                         [250, 220, 40], [220, 60, 60], [190, 40, 160]], np.uint8)


def colorize_depth(depth_mm: np.ndarray) -> np.ndarray:
    """Depth float [H, W] (0 = empty) -> uint8 RGB [H, W, 3], near = warm (turbo), empty black."""
    valid = depth_mm > 0
    image = np.zeros(depth_mm.shape + (3,), np.uint8)
    if not valid.any():
        return image
    near, far = np.percentile(depth_mm[valid], [1, 99])
    scaled = np.clip((far - depth_mm) / max(far - near, 1e-6), 0, 1)
    coloured = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    image[valid] = cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB)[valid]
    return image


def write_preview_sheet(examples: Sequence[schema.FaceExample], path: str,
                        max_per_row: int = 6, panel_size: Optional[int] = None) -> str:
    """Writes a contact sheet PNG: one row per identity (in order of first appearance), each
    example as three panels RGB | depth (turbo, near = red) | mask (palette).

    The file is written to a temporary name in the same directory and renamed, so readers never
    see a partial PNG. Returns ``path``.
    """
    if not examples:
        raise ValueError("write_preview_sheet needs at least one example")
    rows: dict = {}
    for example in examples:
        row = rows.setdefault(example.label, [])
        if len(row) < max_per_row:
            row.append(example)
    size = panel_size or max(e.rgb.shape[0] for e in examples)
    gap = 2

    def panel(image):
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_NEAREST)

    tile_width = 3 * size + 2 * gap
    width = max(len(r) for r in rows.values()) * (tile_width + 3 * gap)
    sheet = np.full((len(rows) * (size + gap), width, 3), 255, np.uint8)
    for row_index, row in enumerate(rows.values()):
        top = row_index * (size + gap)
        for column, example in enumerate(row):
            left = column * (tile_width + 3 * gap)
            depth = example.depth if example.depth is not None else np.zeros(example.rgb.shape[:2])
            mask = example.mask if example.mask is not None else np.zeros(example.rgb.shape[:2],
                                                                          np.uint8)
            for k, image in enumerate((example.rgb, colorize_depth(depth), MASK_PALETTE[mask])):
                x = left + k * (size + gap)
                sheet[top:top + size, x:x + size] = panel(image)
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode the preview sheet for {path}")
    io_utils.atomic_write_bytes(path, buffer.tobytes())
    return path
