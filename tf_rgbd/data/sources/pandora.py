"""Source ``pandora``: the Pandora head/shoulder pose database (Kinect v2 RGB-D frames).

Layout: ``<input_dir>/<subject>/<sequence>/...`` with 16-bit depth PNGs in mm whose names
contain ``DEPTH`` (``DEPTH/000123_DEPTH.png``) and matching RGB frames where ``DEPTH`` reads
``RGB`` (``RGB/000123_RGB.png``; ``.jpg`` also found). The subject is the first folder under
``input_dir``. MediaPipe on the RGB frame locates the face (depth-only locator otherwise) and
the dynamic crop ``w = f_x R_x / D`` is cut (:mod:`datasets.formats.rgbd_frames`; depth focal
length ``--kinect_focal_px``, nominal 365 px for 512x424 Kinect v2 depth).

Splits: every subject in ``train`` (``--heldout_subjects``). No recognition protocol.
"""
from __future__ import annotations

import os

from tf_rgbd.data.sources import layout, rgbd_frames
from tf_rgbd.config.data import BuildConfig

DATASET_NAME = "pandora"
DEPTH_PATTERN = r".*depth.*\.png"


def find_tasks(config: BuildConfig) -> list[rgbd_frames.FrameTask]:
    root = layout.require_input_dir(config)
    tasks = []
    for depth_path, rgb_path in rgbd_frames.pair_frames(layout.find_files(root, DEPTH_PATTERN)):
        relative = os.path.relpath(depth_path, root)
        parts = relative.split(os.sep)
        if len(parts) < 2:
            continue  # frames must sit in a per-subject folder
        subject = parts[0]
        tasks.append(rgbd_frames.FrameTask(
            example_id=os.path.splitext(relative)[0].replace(os.sep, "/"),
            depth_path=depth_path, rgb_path=rgb_path, subject=subject))
    if not tasks:
        raise layout.no_files_error(config, "<subject>/**/*DEPTH*.png frames with RGB pairs")
    return tasks


def plan(config: BuildConfig):
    return rgbd_frames.frames_plan(config, DATASET_NAME, find_tasks(config), default_heldout=0)
