"""Source ``frgc``: FRGC v2.0 3D scans (Minolta Vivid ``.abs`` range grids + ``.ppm`` texture).

Layout: ``<input_dir>/**/04200d74.abs`` (or ``.abs.gz``) with the texture ``04200d74.ppm``
(``.ppm.gz``/``.jpg``/``.png`` also accepted) on the same 640x480 grid. The recording id's
first five digits are the subject (``04200``). The acquisition session is 1/2/3 when a parent
folder is named ``Spring2003*``/``Fall2003*``/``Spring2004*`` (else 1).

Expressions are not in the file names: pass ``--expression_list`` (lines ``recording_id
expression``, whitespace or comma separated; ``BlankStare`` counts as neutral). Without it every
scan's expression is ``unknown`` and the gallery is each subject's first scan.

Splits: all subjects in ``test``. Protocol ``frgc_<split>``: gallery = first neutral scan per
subject, probes = the rest (``all``), plus ``neutral`` / ``non_neutral`` subsets when
expressions are known.
"""
from __future__ import annotations

import functools
import gzip
import os
import re

import cv2
import numpy as np

from tf_rgbd.data.formats import abs_format
from tf_rgbd.data.sources import layout, scan
from tf_rgbd.config.data import BuildConfig
from tf_rgbd.data import image_io
from tf_rgbd.data.errors import CorruptImageError, MissingFileError

DATASET_NAME = "frgc"
FILE_PATTERN = r"(\d{5})d(\d+)\.abs(\.gz)?"
SESSIONS = (("spring2003", 1), ("fall2003", 2), ("spring2004", 3))
NEUTRAL_NAMES = {"neutral", "blankstare", "blank_stare"}
TEXTURE_SUFFIXES = (".ppm", ".ppm.gz", ".jpg", ".png")


def parse_name(path: str) -> dict:
    match = re.fullmatch(FILE_PATTERN, os.path.basename(path), re.IGNORECASE)
    if match is None:
        raise ValueError(f"{path}: not an FRGC range name like 04200d74.abs")
    session = 1
    for part in path.lower().split(os.sep):
        for prefix, number in SESSIONS:
            if part.startswith(prefix):
                session = number
    return {"subject": match.group(1), "recording": f"{match.group(1)}d{match.group(2)}",
            "session": session}


def read_expression_list(path: str) -> dict[str, str]:
    """``recording_id expression`` lines -> {recording_id: expression} (neutral normalised)."""
    expressions = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            fields = [f for f in re.split(r"[,\s]+", line.strip()) if f]
            if len(fields) < 2 or fields[0].startswith("#"):
                continue
            if number == 0 and not re.fullmatch(r"\d{5}d\d+", fields[0]):
                continue  # a header line
            expression = fields[1].lower()
            expressions[fields[0]] = "neutral" if expression in NEUTRAL_NAMES else expression
    return expressions


def _read_texture(abs_path: str) -> np.ndarray:
    stem = re.sub(r"\.abs(\.gz)?$", "", abs_path, flags=re.IGNORECASE)
    for suffix in TEXTURE_SUFFIXES:
        candidate = stem + suffix
        if os.path.exists(candidate):
            if candidate.endswith(".gz"):
                with gzip.open(candidate, "rb") as handle:
                    image = cv2.imdecode(np.frombuffer(handle.read(), np.uint8), cv2.IMREAD_COLOR)
                if image is None:
                    raise CorruptImageError("corrupt_image", f"{candidate} cannot be decoded")
                return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            return image_io.read_rgb(candidate)
    raise MissingFileError("missing_file", f"no texture for {abs_path} (tried {TEXTURE_SUFFIXES})")


def load_scan(task: scan.ScanTask, max_edge_mm: float = 10.0) -> scan.TexturedScan:
    parsed = abs_format.read_abs(task.paths[0])
    texture = _read_texture(task.paths[0])
    return scan.scan_from_grid(parsed.xyz, parsed.valid, max_edge_mm, texture=texture)


def find_tasks(config: BuildConfig) -> list[scan.ScanTask]:
    root = layout.require_input_dir(config)
    expressions = read_expression_list(config.expression_list) if config.expression_list else {}
    tasks = []
    for path in layout.find_files(root, FILE_PATTERN):
        labels = parse_name(path)
        expression = expressions.get(labels["recording"], "unknown")
        tasks.append(scan.ScanTask(
            example_id=f"{labels['subject']}/{labels['recording']}", paths=(path,),
            subject=labels["subject"], expression=expression, session=labels["session"]))
    if not tasks:
        raise layout.no_files_error(config, "NNNNNdNN.abs range files")
    return tasks


def make_protocols(records, expressions_known: bool):
    def build(split_records, split):
        subsets = {"all": lambda record: True}
        if expressions_known:
            subsets["neutral"] = lambda record: record.expression == "neutral"
            subsets["non_neutral"] = lambda record: record.expression != "neutral"
        return layout.first_neutral_protocol(
            split_records, DATASET_NAME, split, f"{DATASET_NAME}_{split}", probe_subsets=subsets,
            include=lambda record: not scan.is_augmented_id(record.example_id),
            neutral=(lambda record: record.expression == "neutral") if expressions_known
            else (lambda record: True))
    return layout.protocols_per_split(records, build)


def plan(config: BuildConfig):
    return scan.scan_plan(
        config, DATASET_NAME, find_tasks(config), load_scan, None,
        functools.partial(make_protocols, expressions_known=bool(config.expression_list)),
        extra={"expression_list": config.expression_list})
