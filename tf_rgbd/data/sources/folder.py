"""Source ``folder``: your own photos, ``<input_dir>/<subject>/<image>.{jpg,png}``.

An optional ``<image>_depth.png`` (16-bit, mm, same size as the photo) beside a photo adds
depth, warped with the same alignment. Faces are found and aligned with MediaPipe (``--crop``,
``--min_score``, ``--multiple_faces``); images without a usable face are skipped and counted.

Splits: every subject in ``train``; ``--heldout_subjects=N`` puts the last N subjects in
``test`` with protocol ``folder_test`` (gallery = each subject's first image, probes = the rest).
"""
from __future__ import annotations

import os

from tf_rgbd.data.sources import layout, photos
from tf_rgbd.data.sources import BuildPlan
from tf_rgbd.config.data import BuildConfig

DATASET_NAME = "folder"
IMAGE_PATTERN = r".*\.(jpg|jpeg|png)"
DEPTH_SUFFIX = "_depth.png"


def find_tasks(config: BuildConfig) -> list[photos.PhotoTask]:
    root = layout.require_input_dir(config)
    tasks = []
    for path in layout.find_files(root, IMAGE_PATTERN):
        if path.lower().endswith(DEPTH_SUFFIX):
            continue
        relative = os.path.relpath(path, root).replace(os.sep, "/")
        parts = relative.split("/")
        if len(parts) != 2:
            continue
        depth = os.path.splitext(path)[0] + DEPTH_SUFFIX
        tasks.append(photos.PhotoTask(example_id=os.path.splitext(relative)[0], rgb_path=path,
                                      subject=parts[0],
                                      depth_path=depth if os.path.exists(depth) else None))
    if not tasks:
        raise layout.no_files_error(config, "<subject>/<image>.jpg|png photos")
    return tasks


def make_protocols(records):
    def build(split_records, split):
        return layout.first_neutral_protocol(split_records, DATASET_NAME, split,
                                             f"{DATASET_NAME}_{split}",
                                             neutral=lambda record: True)
    return layout.protocols_per_split({"test": records.get("test", ())}, build)


def plan(config: BuildConfig) -> BuildPlan:
    tasks = find_tasks(config)
    splits, subjects = layout.split_by_subject(tasks, lambda task: task.subject,
                                               config.heldout_subjects, 0)
    return BuildPlan(
        dataset_name=DATASET_NAME, class_names=subjects, splits=splits,
        produce=photos.PhotoProducer(DATASET_NAME, layout.labels_of(subjects),
                                     layout.face_config(config)),
        task_name=lambda task: task.rgb_path, make_protocols=make_protocols,
        extra={"with_depth": sum(task.depth_path is not None for task in tasks)})
