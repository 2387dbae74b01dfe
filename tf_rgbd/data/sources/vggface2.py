"""Source ``vggface2``: VGGFace2 (2D photographs, 9131 identities).

Layout: ``<input_dir>/train/n000002/0001_01.jpg`` and ``<input_dir>/test/...`` (the split is
the folder; images in any format OpenCV decodes, :data:`tf_rgbd.data.image_io.IMAGE_EXTENSIONS`,
every other file of a class folder counted as ``unsupported_extension``); anywhere under
``input_dir``: ``loose_bb_train.csv`` / ``loose_bb_test.csv`` (``NAME_ID,X,Y,W,H``),
``loose_landmark_train.csv`` / ``_test.csv`` (``NAME_ID,P1X,P1Y,...,P5Y``: left eye, right
eye, nose, left and right mouth corner in image coordinates) and ``identity_meta.csv``
(``Class_ID, Name, Sample_Num, Flag, Gender``; names may contain commas). ``NAME_ID`` is
``n000002/0001_01``.

Alignment: the provided 5 landmarks when present (then MediaPipe only draws the mask on the
aligned crop), else MediaPipe inside the loose box, else MediaPipe on the whole image. No depth:
records have ``has_depth = 0`` (the 2D->RGB-D augmentation fills it later).

Splits: ``train`` and ``test`` as in the release (disjoint identities; labels index the sorted
union of class ids). No protocol (training data).
"""
from __future__ import annotations

import csv
import os
import re

from tf_rgbd.data.sources import layout, photos
from tf_rgbd.data.sources import BuildPlan
from tf_rgbd.config.data import BuildConfig
from tf_rgbd.data import image_io

DATASET_NAME = "vggface2"
SPLITS = ("train", "test")


def read_identity_meta(path: str) -> dict[str, dict]:
    """identity_meta.csv -> {class_id: {name, sample_num, flag, gender}}.

    Robust to commas inside names: the first field is the class id and the last three are
    Sample_Num, Flag and Gender; everything between is the name (quotes stripped). A trailing
    comma (``n000001, "14th_Dalai_Lama",424,0, m,``, a published form) is ignored.
    """
    identities = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle):
            raw = line.rstrip("\r\n").split(",")
            while raw and not raw[-1].strip():
                raw = raw[:-1]
            fields = [field.strip() for field in raw]
            if len(fields) < 5 or (number == 0 and not re.fullmatch(r"n\d+", fields[0])):
                continue
            class_id, sample_num, flag, gender = fields[0], fields[-3], fields[-2], fields[-1]
            name = ",".join(raw[1:-3]).strip().strip('"').strip()
            identities[class_id] = {"name": name, "sample_num": int(sample_num) if
                                    sample_num.isdigit() else None, "flag": flag,
                                    "gender": gender}
    return identities


def read_rows(path: str, expected_values: int) -> dict[str, tuple]:
    """``NAME_ID,v1,...`` CSV -> {NAME_ID: (floats)} (header and malformed rows skipped)."""
    rows = {}
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        for row in csv.reader(handle):
            if len(row) != expected_values + 1:
                continue
            try:
                rows[row[0].strip().strip('"')] = tuple(float(v) for v in row[1:])
            except ValueError:
                continue  # header
    return rows


def _find_one(root: str, name: str):
    found = layout.find_files(root, re.escape(name))
    return found[0] if found else None


def find_tasks(config: BuildConfig) -> dict[str, list[photos.PhotoTask]]:
    root = layout.require_input_dir(config)
    splits = {}
    for split in SPLITS:
        folder = os.path.join(root, split)
        if not os.path.isdir(folder):
            continue
        boxes_path = _find_one(root, f"loose_bb_{split}.csv")
        marks_path = _find_one(root, f"loose_landmark_{split}.csv")
        boxes = read_rows(boxes_path, 4) if boxes_path else {}
        marks = read_rows(marks_path, 10) if marks_path else {}
        images, others = layout.find_files_in_subject_folders(folder)
        tasks = []
        for path in images + others:   # others: skipped by the producer, counted
            relative = os.path.relpath(path, folder).replace(os.sep, "/")
            name_id = os.path.splitext(relative)[0]
            landmarks = marks.get(name_id)
            tasks.append(photos.PhotoTask(
                example_id=f"{split}/{name_id}", rgb_path=path, subject=relative.split("/")[0],
                landmarks5=None if landmarks is None else tuple(zip(landmarks[0::2],
                                                                    landmarks[1::2])),
                box=boxes.get(name_id)))
        if images:
            splits[split] = sorted(tasks, key=lambda task: task.rgb_path)
    if not splits:
        raise layout.no_files_error(config, "train|test/<class_id>/<image> images")
    return splits


def plan(config: BuildConfig) -> BuildPlan:
    splits = find_tasks(config)
    subjects = sorted({task.subject for tasks in splits.values() for task in tasks
                       if image_io.is_image_file(task.rgb_path)})
    meta_path = _find_one(config.input_dir, "identity_meta.csv")
    identities = read_identity_meta(meta_path) if meta_path else {}
    return BuildPlan(
        dataset_name=DATASET_NAME, class_names=subjects, splits=splits,
        produce=photos.PhotoProducer(DATASET_NAME, layout.labels_of(subjects),
                                     layout.face_config(config)),
        task_name=lambda task: task.rgb_path,
        extra={"identity_names": {s: identities[s]["name"] for s in subjects if s in identities},
               "with_landmarks": {k: sum(t.landmarks5 is not None for t in v)
                                  for k, v in splits.items()},
               "unsupported_files": sum(not image_io.is_image_file(t.rgb_path)
                                        for v in splits.values() for t in v)})
