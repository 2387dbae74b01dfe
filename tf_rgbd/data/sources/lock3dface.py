"""Source ``lock3dface``: Lock3DFace (Kinect v2 RGB-D videos, 509 subjects, 2 sessions).

Layout: one folder per video and modality named ``<subject>_Kinect_<VAR>_<n><MODALITY>``, e.g.
``002_Kinect_NU_1DEPTH/1.png`` (16-bit depth in mm) and ``002_Kinect_NU_1RGB/1.jpg``, anywhere
under ``input_dir``. ``VAR``: NU neutral, FE expression, PS pose, OC occlusion (session 1),
TM time (session 2, any variation). Every ``--frame_stride``-th frame is used; MediaPipe on the
RGB frame locates the face and the dynamic crop is cut (:mod:`datasets.formats.rgbd_frames`).

Labels: expression ``expression`` for FE, occlusion ``occluded`` for OC, session 2 for TM.
The pose of PS frames is not annotated (yaw stays 0): the protocol uses the variation code.

Splits: every subject in ``test`` (``--heldout_subjects``). Protocol ``lock3dface_<split>``
(the dataset's standard one): gallery = the first frame of each subject's first NU video;
probe subsets ``neutral`` (other NU frames; near-duplicates of the gallery, so REPORT-ONLY: not
in the average nor in the pooled all-probe figures), ``expression`` (FE), ``pose`` (PS),
``occlusion`` (OC), ``time`` (TM).
"""
from __future__ import annotations

import os
import re

from tf_rgbd.data.sources import layout, rgbd_frames
from tf_rgbd.config.data import BuildConfig
from tf_rgbd.data import protocol as protocol_lib

DATASET_NAME = "lock3dface"
VIDEO_PATTERN = re.compile(r"(\d+)_Kinect_(NU|FE|PS|OC|TM)_(\d+)", re.IGNORECASE)
VARIATION_SUBSETS = {"NU": "neutral", "FE": "expression", "PS": "pose", "OC": "occlusion",
                     "TM": "time"}


def parse_video(path: str) -> dict:
    """{subject, variation, video_index} from a path containing ``002_Kinect_NU_1``."""
    matches = VIDEO_PATTERN.findall(path)
    if not matches:
        raise ValueError(f"{path}: no '<subject>_Kinect_<NU|FE|PS|OC|TM>_<n>' folder")
    subject, variation, index = matches[-1]
    return {"subject": subject, "variation": variation.upper(), "video_index": int(index)}


def _frame_key(path: str) -> tuple:
    stem = os.path.splitext(os.path.basename(path))[0]
    return (os.path.dirname(path), int(stem) if stem.isdigit() else stem)


def find_tasks(config: BuildConfig) -> list[rgbd_frames.FrameTask]:
    root = layout.require_input_dir(config)
    depth_files = [p for p in layout.find_files(root, r".*\.png")
                   if re.search(r"depth", os.path.basename(os.path.dirname(p)), re.IGNORECASE)
                   and VIDEO_PATTERN.search(p)]
    depth_files.sort(key=_frame_key)
    tasks = []
    for depth_path, rgb_path in rgbd_frames.pair_frames(depth_files):
        video = parse_video(depth_path)
        variation = video["variation"]
        frame = os.path.splitext(os.path.basename(depth_path))[0]
        video_name = f"{video['subject']}_{variation}_{video['video_index']}"
        frame_id = f"{int(frame):06d}" if frame.isdigit() else frame
        tasks.append(rgbd_frames.FrameTask(
            example_id=f"{video['subject']}/{video_name}/{frame_id}",
            depth_path=depth_path, rgb_path=rgb_path, subject=video["subject"],
            session=2 if variation == "TM" else 1,
            expression="expression" if variation == "FE" else "neutral",
            occlusion="occluded" if variation == "OC" else "none"))
    if not tasks:
        raise layout.no_files_error(config, "<subject>_Kinect_<VAR>_<n>DEPTH/*.png frames")
    return tasks


def variation_of(example_id: str) -> str:
    """The variation code (NU, FE, ...) of an example id written by this reader."""
    return example_id.split("/")[1].split("_")[1]


def make_protocols(records):
    def build(split_records, split):
        subsets = {name: (lambda record, code=code: variation_of(record.example_id) == code)
                   for code, name in VARIATION_SUBSETS.items()}
        return protocol_lib.first_match_gallery_protocol(
            split_records, DATASET_NAME, f"{DATASET_NAME}_{split}",
            lambda record: variation_of(record.example_id) == "NU", subsets, split=split,
            description="Lock3DFace: gallery = first frame of the first NU video per subject; "
                        "probes by variation: NU, FE, PS, OC (session 1), TM (session 2); NU "
                        "(other frames of the gallery video) is reported only: the average "
                        "and the pooled figures use FE, PS, OC, TM",
            report_only=("neutral",))
    return layout.protocols_per_split(records, build)


def plan(config: BuildConfig):
    return rgbd_frames.frames_plan(config, DATASET_NAME, find_tasks(config),
                                   default_heldout=None, make_protocols=make_protocols)
