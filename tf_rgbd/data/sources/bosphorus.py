"""Source ``bosphorus``: the Bosphorus 3D face database (``.bnt`` range scans + ``.png``).

Layout: ``<input_dir>/**/bs001_E_HAPPY_0.bnt`` with its texture ``bs001_E_HAPPY_0.png``
beside it (the name stored in the .bnt header is tried first). Name fields
``<subject>_<type>_<code>_<index>``:

* ``N_N``: neutral; ``E_<EMOTION>``: anger, disgust, fear, happy, sadness, surprise;
  ``LFAU_*``, ``UFAU_*``, ``CAU_*``: action units (expression ``au_<code>``);
* ``YR_R10|R20|R30|R45|R90|L45|L90``: yaw (R = toward the subject's right = image left =
  positive yaw in this project's convention, L negative);
* ``PR_U|SU|D|SD``: pitch up / strong up / down / strong down (+-20, +-35 degrees: nominal
  values, the database gives no exact angle); ``CR_RU|RD``: yaw +45 with pitch +-20;
* ``O_EYE|MOUTH|GLASSES|HAIR``: occlusion ``hand_eye``, ``hand_mouth``, ``glasses``, ``hair``.

Grid rows: :func:`tf_rgbd.data.formats.bnt.read_bnt` returns them top-first (the files store
them bottom-first); the renders use the xyz coordinates, so they are upright either way.

Texture v direction: the .bnt stores (u, v) in [0, 1]; whether v grows up or down the image is
decided per file from the sign of its correlation with y (up in the scan), so both conventions
render correctly.

Splits: every subject in ``test`` (an evaluation database; ``--heldout_subjects`` to change).
Protocol ``bosphorus_<split>``: gallery = first neutral scan per subject; probe subsets
``setting1_expression`` (every expression scan: the six emotions AND the action units
LFAU/UFAU/CAU, i.e. the paper's 2,797 probes on the full database) and ``setting2_all``
(every other scan).
"""
from __future__ import annotations

import os
import re

import numpy as np

from tf_rgbd.data.formats import bnt
from tf_rgbd.data.sources import layout, scan
from tf_rgbd.config.data import BuildConfig
from tf_rgbd.data import image_io

DATASET_NAME = "bosphorus"
FILE_PATTERN = r"(bs\d{3})_([A-Z]+)_([A-Z0-9]+)_(\d+)\.bnt"
EMOTIONS = {"ANGER": "anger", "DISGUST": "disgust", "FEAR": "fear", "HAPPY": "happiness",
            "SADNESS": "sadness", "SURPRISE": "surprise"}
YAW_CODES = {"R10": 10.0, "R20": 20.0, "R30": 30.0, "R45": 45.0, "R90": 90.0, "L45": -45.0,
             "L90": -90.0}
PITCH_CODES = {"U": 20.0, "SU": 35.0, "D": -20.0, "SD": -35.0}
CROSS_CODES = {"RU": (45.0, 20.0), "RD": (45.0, -20.0)}
OCCLUSIONS = {"EYE": "hand_eye", "MOUTH": "hand_mouth", "GLASSES": "glasses", "HAIR": "hair"}


def parse_name(path: str) -> dict:
    """Labels of ``bs001_E_HAPPY_0.bnt`` (subject, expression, occlusion, yaw, pitch, index)."""
    match = re.fullmatch(FILE_PATTERN, os.path.basename(path), re.IGNORECASE)
    if match is None:
        raise ValueError(f"{path}: not a Bosphorus name like bs001_E_HAPPY_0.bnt")
    subject, kind, code, index = match.groups()
    kind, code = kind.upper(), code.upper()
    labels = {"subject": subject.lower(), "expression": "neutral", "occlusion": "none",
              "yaw_deg": 0.0, "pitch_deg": 0.0, "index": int(index), "tag": f"{kind}_{code}"}
    if kind == "E":
        labels["expression"] = EMOTIONS.get(code, code.lower())
    elif kind in ("LFAU", "UFAU", "CAU"):
        labels["expression"] = f"au_{kind.lower()}_{code.lower()}"
    elif kind == "YR" and code in YAW_CODES:
        labels["yaw_deg"] = YAW_CODES[code]
    elif kind == "PR" and code in PITCH_CODES:
        labels["pitch_deg"] = PITCH_CODES[code]
    elif kind == "CR" and code in CROSS_CODES:
        labels["yaw_deg"], labels["pitch_deg"] = CROSS_CODES[code]
    elif kind == "O":
        labels["occlusion"] = OCCLUSIONS.get(code, code.lower())
    elif kind != "N":
        labels["expression"] = f"{kind.lower()}_{code.lower()}"
    return labels


def texture_pixels(parsed: bnt.BntScan, width: int, height: int) -> np.ndarray:
    """(u, v) -> (x, y) texture pixels; v's direction from its correlation with y."""
    u, v = parsed.uv[..., 0], parsed.uv[..., 1]
    valid = parsed.valid
    v_grows_up = False
    if valid.sum() > 2:
        correlation = np.corrcoef(v[valid], parsed.xyz[..., 1][valid])[0, 1]
        v_grows_up = bool(np.isfinite(correlation) and correlation > 0)
    rows = (1.0 - v) if v_grows_up else v
    return np.stack([u * width - 0.5, rows * height - 0.5], axis=-1)


def load_scan(task: scan.ScanTask, max_edge_mm: float = 10.0) -> scan.TexturedScan:
    path = task.paths[0]
    parsed = bnt.read_bnt(path)
    folder = os.path.dirname(path)
    texture_file = os.path.join(folder, parsed.image_file) if parsed.image_file else ""
    if not texture_file or not os.path.exists(texture_file):
        texture_file = os.path.splitext(path)[0] + ".png"
    texture = image_io.read_rgb(texture_file)
    height, width = texture.shape[:2]
    return scan.scan_from_grid(parsed.xyz, parsed.valid, max_edge_mm, texture=texture,
                               texcoords_px=texture_pixels(parsed, width, height))


def find_tasks(config: BuildConfig) -> list[scan.ScanTask]:
    root = layout.require_input_dir(config)
    tasks = []
    for path in layout.find_files(root, FILE_PATTERN):
        labels = parse_name(path)
        stem = os.path.splitext(os.path.basename(path))[0]
        tasks.append(scan.ScanTask(
            example_id=f"{labels['subject']}/{stem}", paths=(path,), subject=labels["subject"],
            expression=labels["expression"], occlusion=labels["occlusion"],
            yaw_deg=labels["yaw_deg"], pitch_deg=labels["pitch_deg"]))
    if not tasks:
        raise layout.no_files_error(config, "bs*_*.bnt scans")
    return tasks


def _is_expression(record) -> bool:
    """Setting 1: an emotion (E_*) or action-unit (LFAU/UFAU/CAU) scan, unoccluded."""
    return ((record.expression in EMOTIONS.values() or record.expression.startswith("au_"))
            and record.occlusion == "none")


def _gallery_candidate(record) -> bool:
    # N_N scans are the neutral ones; their ids contain "_N_N_".
    return "_N_N_" in record.example_id.upper()


def make_protocols(records):
    def build(split_records, split):
        return layout.first_neutral_protocol(
            split_records, DATASET_NAME, split, f"{DATASET_NAME}_{split}",
            probe_subsets={"setting1_expression": _is_expression,
                           "setting2_all": lambda record: True},
            include=lambda record: not scan.is_augmented_id(record.example_id),
            neutral=_gallery_candidate)
    return layout.protocols_per_split(records, build)


def plan(config: BuildConfig):
    return scan.scan_plan(config, DATASET_NAME, find_tasks(config), load_scan, None,
                          make_protocols)
