"""What the real-dataset readers share besides file formats: finding files, subject splits,
pose grids, the MediaPipe settings of a build, and the protocol helpers.
"""
from __future__ import annotations

import os
import re
from typing import Callable, Iterable, Mapping, Optional, Sequence, TypeVar

import numpy as np

from tf_rgbd.config.data import BuildConfig
from tf_rgbd.data import faces, image_io
from tf_rgbd.data import protocol as protocol_lib

TaskT = TypeVar("TaskT")


def require_input_dir(config: BuildConfig) -> str:
    """The existing ``--input_dir`` or a ValueError saying what to pass."""
    if not config.input_dir:
        raise ValueError(f"--source={config.source} reads an existing dataset: pass "
                         "--input_dir=<the dataset's original folder>")
    if not os.path.isdir(config.input_dir):
        raise ValueError(f"--input_dir={config.input_dir} is not a directory")
    return config.input_dir


def find_files(root: str, pattern: str, flags: int = re.IGNORECASE) -> list[str]:
    """Sorted paths under ``root`` (recursive, symlinks followed) whose base name matches
    the regular expression ``pattern`` (full match)."""
    regex = re.compile(pattern, flags)
    found = []
    for folder, _, names in os.walk(root, followlinks=True):
        found.extend(os.path.join(folder, name) for name in names if regex.fullmatch(name))
    return sorted(found)


def find_files_in_subject_folders(root: str) -> tuple[list[str], list[str]]:
    """Files exactly one folder below ``root`` (``<root>/<subject>/<file>``), sorted:
    (images OpenCV decodes by extension, every other file).

    The second list is what the photo sources count as ``unsupported_extension``: nothing in a
    subject folder vanishes without a word.
    """
    images, others = [], []
    for path in find_files(root, r".+"):
        if len(os.path.relpath(path, root).split(os.sep)) != 2:
            continue
        (images if image_io.is_image_file(path) else others).append(path)
    return images, others


def no_files_error(config: BuildConfig, what: str) -> ValueError:
    return ValueError(f"--source={config.source}: no {what} found under {config.input_dir}; "
                      "see BUILD.md ('Real datasets') for the expected layout")


def split_by_subject(tasks: Sequence[TaskT], subject_of: Callable[[TaskT], str],
                     heldout_subjects: int, default_heldout: Optional[int]
                     ) -> tuple[dict[str, list[TaskT]], list[str]]:
    """Splits tasks by subject: the last ``N`` subjects (sorted) -> ``test``, the rest ->
    ``train``; empty splits are left out.

    Args:
      heldout_subjects: the ``--heldout_subjects`` flag (-1 = ``default_heldout``).
      default_heldout: the dataset's default N; None = every subject.
    Returns:
      (split -> tasks in their original order, sorted subject names = class names).
    """
    subjects = sorted({subject_of(task) for task in tasks})
    count = heldout_subjects
    if count < 0:
        count = len(subjects) if default_heldout is None else default_heldout
    count = min(count, len(subjects))
    test = set(subjects[len(subjects) - count:]) if count else set()
    splits = {"train": [t for t in tasks if subject_of(t) not in test],
              "test": [t for t in tasks if subject_of(t) in test]}
    return {name: items for name, items in splits.items() if items}, subjects


def add_unsupported_files(splits: Mapping[str, Sequence[TaskT]], unsupported: Sequence[TaskT],
                          subject_of: Callable[[TaskT], str], name_of: Callable[[TaskT], str]
                          ) -> dict[str, list[TaskT]]:
    """Adds the tasks of files the producer will skip (``unsupported_extension``) to the split
    of their subject (``train`` for a subject with no usable file), so the manifest's
    ``skipped`` table counts them; each split stays in ``name_of`` order."""
    result = {name: list(tasks) for name, tasks in splits.items()}
    split_of = {subject_of(task): name for name, tasks in splits.items() for task in tasks}
    for task in unsupported:
        result.setdefault(split_of.get(subject_of(task), "train"), []).append(task)
    return {name: sorted(tasks, key=name_of) for name, tasks in result.items()}


def _inclusive_range(text: str) -> list[float]:
    parts = [float(v) for v in text.split(":")]
    if len(parts) == 1:
        return parts
    if len(parts) != 3 or parts[2] <= 0:
        raise ValueError(f"pose range {text!r} must be START:STOP:STEP with STEP > 0")
    start, stop, step = parts
    return list(np.arange(start, stop + step * 1e-6, step))


def parse_poses(text: str) -> tuple[tuple[float, float], ...]:
    """Pose-augmentation renders from ``--poses``; the frontal (0, 0) render always comes first.

    ``"30:0,-30:0"`` lists (yaw, pitch) pairs; ``"-30:30:15x-15:15:15"`` is the grid of yaws
    -30..30 step 15 by pitches -15..15 step 15 (inclusive). Empty = frontal only.
    """
    poses: list[tuple[float, float]] = [(0.0, 0.0)]
    text = (text or "").strip()
    if not text:
        return tuple(poses)
    if "x" in text:
        yaw_text, pitch_text = text.split("x", 1)
        grid = [(y, p) for y in _inclusive_range(yaw_text) for p in _inclusive_range(pitch_text)]
    else:
        grid = []
        for item in text.split(","):
            values = item.strip().split(":")
            if len(values) != 2:
                raise ValueError(f"--poses item {item!r} must be yaw:pitch (degrees)")
            grid.append((float(values[0]), float(values[1])))
    for pose in grid:
        pose = (round(float(pose[0]), 3), round(float(pose[1]), 3))
        if pose not in poses:
            poses.append(pose)
    return tuple(poses)


def face_config(config: BuildConfig, image_size: Optional[int] = None) -> faces.FaceConfig:
    """The MediaPipe / alignment settings of a build."""
    return faces.FaceConfig(image_size=image_size or config.image_size, crop=config.crop,
                            min_score=config.min_score, detector=config.face_detector,
                            min_face_px=config.min_face_px, multiple_faces=config.multiple_faces,
                            ambiguous_face_ratio=config.ambiguous_face_ratio)


def labels_of(subjects: Sequence[str]) -> dict[str, int]:
    return {subject: index for index, subject in enumerate(subjects)}


def protocols_per_split(records: Mapping[str, Sequence], build: Callable[[Sequence, str], object]
                        ) -> list:
    """Calls ``build(records, split)`` for every split with records; keeps protocols that have
    a gallery and at least one probe subset."""
    protocols = []
    for split, split_records in records.items():
        if not split_records:
            continue
        protocol = build(split_records, split)
        if protocol.gallery and protocol.probes:
            protocols.append(protocol)
    return protocols


def first_neutral_protocol(records: Iterable, dataset: str, split: str, name: str,
                           probe_subsets: Optional[Mapping[str, Callable]] = None,
                           include: Optional[Callable] = None,
                           neutral: Callable = lambda r: r.expression == "neutral"
                           and r.occlusion == "none" and abs(r.yaw_deg) < 1 and abs(r.pitch_deg) < 1
                           ) -> protocol_lib.Protocol:
    """Gallery = first neutral (frontal, unoccluded) example per subject; probes = the rest
    (or the given subsets)."""
    subsets = probe_subsets or {"all": lambda record: True}
    return protocol_lib.first_match_gallery_protocol(
        records, dataset, name, neutral, subsets, split=split, include=include,
        description=f"{dataset}: gallery = first neutral example per subject; probes: "
                    f"{', '.join(subsets)}")
