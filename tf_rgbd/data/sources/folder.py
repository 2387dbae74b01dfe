"""Source ``folder``: your own photos, ``<input_dir>/<subject>/<image>.<ext>``.

``<ext>``: any still-image format OpenCV decodes (``.jpg .jpeg .png .bmp .ppm .pgm .tif .tiff
.webp``... :data:`tf_rgbd.data.image_io.IMAGE_EXTENSIONS`, case-insensitive). Every other
file of a subject folder is counted in the manifest as ``unsupported_extension``.

An optional ``<image>_depth.png`` (16-bit, mm, same size as the photo; ``.tif``/``.tiff``/
``.pgm`` also found) beside a photo adds depth, warped with the same alignment; 8-bit depth is
skipped as ``depth_not_16bit`` unless ``--depth_8bit_scale_mm`` gives its scale. Faces are
found and aligned with MediaPipe (``--crop``, ``--min_score``, ``--multiple_faces``,
``--ambiguous_face_ratio``); images without a usable face are skipped and counted.
``--multiple_faces=all`` makes every face its own example (``<subject>/<image>#face<k>``), for
unlabelled photo folders and identification galleries.

Splits: every subject in ``train``; ``--heldout_subjects=N`` puts the last N subjects in
``test`` with protocol ``folder_test`` (gallery = each subject's first image, probes = the rest).
"""
from __future__ import annotations

import os

from tf_rgbd.data.sources import layout, photos
from tf_rgbd.data.sources import BuildPlan
from tf_rgbd.config.data import BuildConfig

DATASET_NAME = "folder"
# <image>_depth.<ext>: 16-bit depth beside a photo (searched in this order).
DEPTH_SUFFIXES = ("_depth.png", "_depth.tif", "_depth.tiff", "_depth.pgm")


def _is_depth_file(path: str) -> bool:
    return path.lower().endswith(DEPTH_SUFFIXES)


def _depth_beside(path: str):
    stem = os.path.splitext(path)[0]
    for suffix in DEPTH_SUFFIXES:
        for candidate in (stem + suffix, stem + suffix.upper()):
            if os.path.exists(candidate):
                return candidate
    return None


def _task(root: str, path: str, depth_path=None) -> photos.PhotoTask:
    relative = os.path.relpath(path, root).replace(os.sep, "/")
    return photos.PhotoTask(example_id=os.path.splitext(relative)[0], rgb_path=path,
                            subject=relative.split("/")[0], depth_path=depth_path)


def _find_all_tasks(config: BuildConfig
                    ) -> tuple[list[photos.PhotoTask], list[photos.PhotoTask]]:
    """(photo tasks, tasks of the other files in subject folders)."""
    root = layout.require_input_dir(config)
    images, others = layout.find_files_in_subject_folders(root)
    tasks = [_task(root, path, _depth_beside(path)) for path in images
             if not _is_depth_file(path)]
    if not tasks:
        found = f" ({len(others)} files with other extensions)" if others else ""
        raise layout.no_files_error(config, f"<subject>/<image> photos{found}")
    return tasks, [_task(root, path) for path in others]


def find_tasks(config: BuildConfig) -> list[photos.PhotoTask]:
    """The photos of ``<input_dir>/<subject>/``, sorted by path."""
    return _find_all_tasks(config)[0]


def find_unsupported_tasks(config: BuildConfig) -> list[photos.PhotoTask]:
    """The other files of the subject folders (not images, not depth files): the producer
    skips each as ``unsupported_extension``, so the manifest counts them."""
    return _find_all_tasks(config)[1]


def make_protocols(records):
    def build(split_records, split):
        return layout.first_neutral_protocol(split_records, DATASET_NAME, split,
                                             f"{DATASET_NAME}_{split}",
                                             neutral=lambda record: True)
    return layout.protocols_per_split({"test": records.get("test", ())}, build)


def plan(config: BuildConfig) -> BuildPlan:
    tasks, unsupported = _find_all_tasks(config)
    splits, subjects = layout.split_by_subject(tasks, lambda task: task.subject,
                                               config.heldout_subjects, 0)
    splits = layout.add_unsupported_files(splits, unsupported, lambda task: task.subject,
                                          lambda task: task.rgb_path)
    return BuildPlan(
        dataset_name=DATASET_NAME, class_names=subjects, splits=splits,
        produce=photos.PhotoProducer(DATASET_NAME, layout.labels_of(subjects),
                                     layout.face_config(config),
                                     depth_8bit_scale_mm=config.depth_8bit_scale_mm),
        task_name=lambda task: task.rgb_path, make_protocols=make_protocols,
        extra={"with_depth": sum(task.depth_path is not None for task in tasks),
               "unsupported_files": len(unsupported)})
