"""Source ``texas3dfr``: the Texas 3D Face Recognition database (range + portrait PNG pairs).

Layout: ``<input_dir>/**/<name>`` pairs whose names differ only by ``Range`` / ``Portrait``
(case-insensitive, e.g. ``000123_Range.png`` + ``000123_Portrait.png``). Range images are on the
portrait's pixel grid: value * ``--texas_mm_per_pixel`` (0.32 mm) is the height toward the
camera (nearer = brighter), 0 = background; x/y spacing is the same 0.32 mm.

Subjects and expressions come from a metadata table when one is found in ``input_dir``: a
``.csv``/``.txt`` whose header has a column containing ``subject`` and one containing
``image`` / ``file`` / ``name`` (the pair's number or name); an ``expression`` column is used
when present (``neutral`` / other). Without a table, a pair's subject is its parent folder's
name (``<input_dir>/<subject>/...``).

Splits: the first 12 subjects (sorted) ``train``, the rest ``test`` (``--heldout_subjects``).
Protocol ``texas3dfr_test``: gallery = the first image of each test subject, probes = the rest.
"""
from __future__ import annotations

import csv
import functools
import os
import re

import cv2
import numpy as np

from tf_rgbd.data.sources import layout, scan
from tf_rgbd.config.data import BuildConfig
from tf_rgbd.data import image_io
from tf_rgbd.data.errors import CorruptImageError, InvalidDepthError

DATASET_NAME = "texas3dfr"
TRAINING_SUBJECTS = 12
RANGE_PATTERN = r".*range.*\.png"


def pair_key(path: str) -> str:
    """The pair key: the file name without ``range``/``portrait`` and the extension."""
    name = os.path.splitext(os.path.basename(path))[0]
    return re.sub(r"[_\-]*(range|portrait)[_\-]*", "_", name, flags=re.IGNORECASE).strip("_")


def _digits(text: str) -> str:
    found = re.findall(r"\d+", text)
    return str(int(found[-1])) if found else text


def read_metadata(root: str) -> dict[str, dict]:
    """{pair key or number: {"subject", "expression"}} from a metadata table, or {}."""
    for path in layout.find_files(root, r".*\.(csv|txt)"):
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        lines = [line for line in text.splitlines() if line.strip()]
        if not lines:
            continue
        delimiter = "," if "," in lines[0] else None
        rows = list(csv.reader(lines)) if delimiter else [line.split() for line in lines]
        header = [cell.strip().lower() for cell in rows[0]]
        subject_col = next((i for i, h in enumerate(header) if "subject" in h), None)
        image_col = next((i for i, h in enumerate(header)
                          if any(k in h for k in ("image", "file", "name")) and i != subject_col),
                         None)
        if subject_col is None or image_col is None:
            continue
        expression_col = next((i for i, h in enumerate(header) if "expression" in h), None)
        table = {}
        for row in rows[1:]:
            if len(row) <= max(subject_col, image_col):
                continue
            entry = {"subject": row[subject_col].strip(), "expression": "unknown"}
            if expression_col is not None and len(row) > expression_col:
                value = row[expression_col].strip().lower()
                entry["expression"] = "neutral" if value.startswith("neutral") else value
            key = row[image_col].strip()
            table[pair_key(key)] = entry
            table[_digits(key)] = entry
        if table:
            return table
    return {}


def load_scan(task: scan.ScanTask, mm_per_pixel: float = 0.32,
              max_edge_mm: float = 10.0) -> scan.TexturedScan:
    range_path, portrait_path = task.paths
    portrait = image_io.read_rgb(portrait_path)
    raw = cv2.imread(range_path, cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise CorruptImageError("corrupt_image", f"{range_path} cannot be decoded as a range PNG")
    if raw.ndim == 3:
        raw = raw[..., 0]
    if raw.shape != portrait.shape[:2]:
        raise InvalidDepthError("depth_size_mismatch", f"{range_path}: range {raw.shape} but portrait "
                                                 f"{portrait.shape[:2]}")
    rows, cols = np.indices(raw.shape, dtype=np.float64)
    height = raw.astype(np.float64) * mm_per_pixel
    xyz = np.stack([cols * mm_per_pixel, -rows * mm_per_pixel, height], axis=-1)
    return scan.scan_from_grid(xyz, raw > 0, max_edge_mm, texture=portrait)


def find_tasks(config: BuildConfig) -> list[scan.ScanTask]:
    root = layout.require_input_dir(config)
    metadata = read_metadata(root)
    portraits = {}
    for path in layout.find_files(root, r".*portrait.*\.png"):
        portraits[(os.path.dirname(path), pair_key(path))] = path
    tasks = []
    for range_path in layout.find_files(root, RANGE_PATTERN):
        key = pair_key(range_path)
        portrait = portraits.get((os.path.dirname(range_path), key))
        if portrait is None:
            continue
        entry = metadata.get(key) or metadata.get(_digits(key))
        if entry is None:
            parent = os.path.dirname(os.path.relpath(range_path, root))
            if not parent:
                raise ValueError(f"{range_path}: no metadata table with a subject column in "
                                 f"{root} and the file is not in a per-subject folder")
            entry = {"subject": parent.split(os.sep)[0], "expression": "unknown"}
        tasks.append(scan.ScanTask(example_id=f"{entry['subject']}/{key}",
                                   paths=(range_path, portrait), subject=entry["subject"],
                                   expression=entry["expression"]))
    if not tasks:
        raise layout.no_files_error(config, "*Range*.png + *Portrait*.png pairs")
    return tasks


def make_protocols(records):
    def build(split_records, split):
        return layout.first_neutral_protocol(
            split_records, DATASET_NAME, split, f"{DATASET_NAME}_{split}",
            include=lambda record: not scan.is_augmented_id(record.example_id),
            neutral=lambda record: True)
    return layout.protocols_per_split({"test": records.get("test", ())}, build)


def plan(config: BuildConfig):
    tasks = find_tasks(config)
    subjects = sorted({task.subject for task in tasks})
    return scan.scan_plan(
        config, DATASET_NAME, tasks,
        functools.partial(load_scan, mm_per_pixel=config.texas_mm_per_pixel),
        max(0, len(subjects) - TRAINING_SUBJECTS), make_protocols)
