"""Source ``bu3dfe``: BU-3DFE (Binghamton University 3D Facial Expression) VRML scans.

Layout: ``<input_dir>/**/F0001_AN01WH_F3D.wrl`` with the texture ``F0001_AN01WH_F2D.bmp``
beside it (or the file named by the wrl's ImageTexture url). Name fields: subject (``F0001``,
``M0044``), expression code (AN anger, DI disgust, FE fear, HA happiness, NE neutral, SA
sadness, SU surprise), intensity 01-04 (NE: 00), ethnicity code (ignored), ``F3D``. Expression
labels are ``<expression>_<intensity>`` (``happiness_3``) or ``neutral``.

Each scan is rendered frontally (and at ``--poses``) by :mod:`datasets.formats.scan`.
Splits: every subject in ``test`` (default), so the protocol is the paper's: gallery = the
100 neutral scans, probes = the 2,400 expression scans, over all subjects.
``--heldout_subjects=10`` keeps the former split for depth evaluation (the last 10 subjects in
``test``, the others in ``train``). Protocols (per split): gallery = each subject's first
neutral scan, probes = every other frontal scan (``protocols/bu3dfe_<split>.json``).
"""
from __future__ import annotations

import os
import re

import numpy as np

from tf_rgbd.data.formats import wrl
from tf_rgbd.data.sources import layout, scan
from tf_rgbd.config.data import BuildConfig
from tf_rgbd.data import image_io

DATASET_NAME = "bu3dfe"
# None: every subject in ``test`` (the recognition protocol over all 100 subjects).
DEFAULT_HELDOUT_SUBJECTS = None
# ``--heldout_subjects`` of the depth-evaluation split (train DepthNet on the other subjects).
DEPTH_EVAL_HELDOUT_SUBJECTS = 10
EXPRESSIONS = {"AN": "anger", "DI": "disgust", "FE": "fear", "HA": "happiness", "NE": "neutral",
               "SA": "sadness", "SU": "surprise"}
FILE_PATTERN = r"([FM]\d{4})_([A-Z]{2})(\d{2})([A-Z]{2})_F3D\.wrl"


def parse_name(path: str) -> dict:
    """Labels of ``F0001_AN01WH_F3D.wrl``: subject, expression, intensity, ethnicity."""
    match = re.fullmatch(FILE_PATTERN, os.path.basename(path), re.IGNORECASE)
    if match is None:
        raise ValueError(f"{path}: not a BU-3DFE scan name like F0001_AN01WH_F3D.wrl")
    subject, code, intensity, ethnicity = match.groups()
    code = code.upper()
    if code not in EXPRESSIONS:
        raise ValueError(f"{path}: unknown expression code {code!r}; known {sorted(EXPRESSIONS)}")
    expression = EXPRESSIONS[code]
    if code != "NE":
        expression = f"{expression}_{int(intensity)}"
    return {"subject": subject.upper(), "expression": expression, "intensity": int(intensity),
            "ethnicity": ethnicity.upper()}


def texture_path(wrl_path: str, mesh: wrl.WrlMesh) -> str:
    folder = os.path.dirname(wrl_path)
    if mesh.texture_url:
        candidate = os.path.join(folder, os.path.basename(mesh.texture_url))
        if os.path.exists(candidate):
            return candidate
    stem = re.sub(r"_F3D\.wrl$", "", os.path.basename(wrl_path), flags=re.IGNORECASE)
    return os.path.join(folder, stem + "_F2D.bmp")


def mesh_to_scan(mesh: wrl.WrlMesh, texture) -> scan.TexturedScan:
    """Per-corner texture coordinates -> unshared vertices (one per triangle corner)."""
    if texture is None or mesh.texcoords is None or mesh.tex_triangles is None:
        return scan.TexturedScan(vertices=mesh.points, triangles=mesh.triangles)
    height, width = texture.shape[:2]
    corners = mesh.triangles.reshape(-1)
    st = mesh.texcoords[mesh.tex_triangles.reshape(-1)]
    # VRML: s to the right, t up from the bottom edge; pixel centres at integer coordinates.
    texcoords_px = np.stack([st[:, 0] * width - 0.5, (1.0 - st[:, 1]) * height - 0.5], axis=-1)
    return scan.TexturedScan(vertices=mesh.points[corners],
                             triangles=np.arange(corners.size).reshape(-1, 3),
                             texture=texture, texcoords_px=texcoords_px.astype(np.float32))


def load_scan(task: scan.ScanTask) -> scan.TexturedScan:
    mesh = wrl.read_wrl(task.paths[0])
    texture = image_io.read_rgb(texture_path(task.paths[0], mesh))
    return mesh_to_scan(mesh, texture)


def find_tasks(config: BuildConfig) -> list[scan.ScanTask]:
    root = layout.require_input_dir(config)
    tasks = []
    for path in layout.find_files(root, FILE_PATTERN):
        labels = parse_name(path)
        stem = os.path.basename(path)[:-len("_F3D.wrl")]
        tasks.append(scan.ScanTask(example_id=f"{labels['subject']}/{stem}", paths=(path,),
                                   subject=labels["subject"], expression=labels["expression"]))
    if not tasks:
        raise layout.no_files_error(config, "*_F3D.wrl scans")
    return tasks


def make_protocols(records):
    def build(split_records, split):
        return layout.first_neutral_protocol(
            split_records, DATASET_NAME, split, f"{DATASET_NAME}_{split}",
            include=lambda record: not scan.is_augmented_id(record.example_id))
    return layout.protocols_per_split(records, build)


def plan(config: BuildConfig):
    return scan.scan_plan(config, DATASET_NAME, find_tasks(config), load_scan,
                          DEFAULT_HELDOUT_SUBJECTS, make_protocols)
