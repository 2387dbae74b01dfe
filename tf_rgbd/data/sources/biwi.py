"""Source ``biwi``: the Biwi Kinect Head Pose database (Kinect v1, 24 sequences, 20 people).

Layout (``kinect_head_pose_db/hpdb``): ``<input_dir>/<sequence>/frame_00004_depth.bin``,
``frame_00004_rgb.png``, ``frame_00004_pose.txt`` and per sequence ``depth.cal`` / ``rgb.cal``.
Depth frames are run-length encoded (:mod:`datasets.formats.biwi_bin`) and registered onto the
RGB camera with the calibration files (``rgb.cal`` extrinsics map depth-camera points to the
RGB camera: ``R p + t``). The crop is centred on the annotated head centre; yaw/pitch/roll come
from the annotated rotation (converted to this project's convention assuming Biwi's camera axes
x right, y down, z forward).

Subjects: sequences 15, 18, 21 and 22 are second recordings of the people of sequences 03,
05, 02 and 07 (the database's documentation); they get the same subject and session 2. Other
folder names are taken as their own subject.

Splits: every subject in ``train`` (DepthNet / pose training data; ``--heldout_subjects``). No
recognition protocol.
"""
from __future__ import annotations

import os
import re

from tf_rgbd.data.sources import layout, rgbd_frames
from tf_rgbd.config.data import BuildConfig

DATASET_NAME = "biwi"
# sequence -> (subject, session); the people of the database (F = female, M = male).
SEQUENCE_SUBJECTS = {
    "01": "F01", "02": "F02", "03": "F03", "04": "F04", "05": "F05", "06": "F06",
    "07": "M01", "08": "M02", "09": "M03", "10": "M04", "11": "M05", "12": "M06",
    "13": "M07", "14": "M08", "15": "F03", "16": "M09", "17": "M10", "18": "F05",
    "19": "M11", "20": "M12", "21": "F02", "22": "M01", "23": "M13", "24": "M14"}
SECOND_RECORDINGS = {"15", "18", "21", "22"}
DEPTH_PATTERN = r"frame_(\d+)_depth\.bin"


def sequence_subject(sequence: str) -> tuple[str, int]:
    """(subject, session) of a sequence folder name."""
    if sequence in SEQUENCE_SUBJECTS:
        return SEQUENCE_SUBJECTS[sequence], 2 if sequence in SECOND_RECORDINGS else 1
    return sequence, 1


def find_tasks(config: BuildConfig) -> list[rgbd_frames.FrameTask]:
    root = layout.require_input_dir(config)
    tasks = []
    for depth_path in layout.find_files(root, DEPTH_PATTERN):
        folder = os.path.dirname(depth_path)
        frame = re.fullmatch(DEPTH_PATTERN, os.path.basename(depth_path)).group(1)
        sequence = os.path.basename(folder)
        subject, session = sequence_subject(sequence)
        pose = os.path.join(folder, f"frame_{frame}_pose.txt")
        tasks.append(rgbd_frames.FrameTask(
            example_id=f"{subject}/{sequence}/{frame}", depth_path=depth_path,
            rgb_path=os.path.join(folder, f"frame_{frame}_rgb.png"), subject=subject,
            session=session, pose_path=pose if os.path.exists(pose) else None,
            depth_calibration=os.path.join(folder, "depth.cal"),
            rgb_calibration=os.path.join(folder, "rgb.cal")))
    if not tasks:
        raise layout.no_files_error(config, "<sequence>/frame_*_depth.bin frames")
    return tasks


def plan(config: BuildConfig):
    return rgbd_frames.frames_plan(config, DATASET_NAME, find_tasks(config), default_heldout=0)
