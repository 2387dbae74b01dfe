"""Builds a TFRecord dataset (shards + manifest.json + protocols/) from a source.

  python -m datasets.build --source=synthetic --output_dir=/tmp/s --num_identities=8 \
      --images_per_identity=6 --image_size=64 --seed=1 --preview=/tmp/s/preview.png

Re-running into the same directory keeps complete, verified shards and rewrites the rest.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Optional

from absl import app, flags

from datasets import sources
from tf_rgbd import config as config_lib
from tf_rgbd.config.data import BuildConfig
from tf_rgbd.data import protocol as protocol_lib
from tf_rgbd.data import writer

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_enum("source", "synthetic", sorted(sources.SOURCES), "Dataset source.")
    flags.DEFINE_string("output_dir", None, "Dataset directory to write.")
    flags.DEFINE_string("input_dir", None, "The source's original folder (real datasets).")
    flags.DEFINE_integer("image_size", 112, "Output image side in pixels.")
    flags.DEFINE_integer("num_shards", 8, "Shards per split.")
    flags.DEFINE_integer("num_workers", 1, "Producer processes.")
    flags.DEFINE_enum("on_error", "skip", ["skip", "fail"], "Bad input: count and skip, or fail.")
    flags.DEFINE_integer("seed", 0, "Seed of every random choice.")
    flags.DEFINE_integer("num_identities", 40, "Synthetic: number of identities.")
    flags.DEFINE_integer("images_per_identity", 30, "Synthetic: images per identity.")
    flags.DEFINE_float("test_fraction", 0.25, "Fraction of identities in the test split.")
    flags.DEFINE_string("preview", None, "Write a contact sheet PNG of a few examples here.")
    flags.DEFINE_string("morphable_model_dir", None,
                        "Synthetic: a 3DDFA-layout morphable model directory (see BUILD.md).")
    flags.DEFINE_integer("heldout_subjects", -1,
                         "Real datasets: last N subjects go to the test split (-1: the "
                         "dataset's default, 0: none).")
    flags.DEFINE_string("poses", "", "3D scans: extra renders, 'yaw:pitch,...' or a grid "
                                     "'-30:30:15x-15:15:15' (degrees, inclusive).")
    flags.DEFINE_float("face_width_mm", 200.0, "Face width R_x (Kinect crop, scan render width).")
    flags.DEFINE_float("face_height_mm", 200.0, "Face height R_y of the Kinect crop.")
    flags.DEFINE_float("min_score", 0.5, "Minimum MediaPipe face detection score.")
    flags.DEFINE_enum("face_detector", "auto", ["auto", "short", "full"],
                      "BlazeFace model: short range, full range, or short then full.")
    flags.DEFINE_enum("multiple_faces", "largest", ["largest", "skip"],
                      "Images with several faces: keep the largest (skip if ambiguous) or skip.")
    flags.DEFINE_integer("min_face_px", 20, "Faces smaller than this are skipped (tiny_face).")
    flags.DEFINE_enum("crop", "arcface", ["arcface", "depthnet"],
                      "Photo alignment crop: tight ArcFace or looser DepthNet.")
    flags.DEFINE_boolean("use_mediapipe", True,
                         "Scans/Kinect: MediaPipe masks and landmarks (else geometric labels).")
    flags.DEFINE_integer("frame_stride", 1, "Video sources: keep every n-th frame.")
    flags.DEFINE_float("kinect_focal_px", 0.0,
                       "Kinect depth focal length (px) without calibration (0: nominal).")
    flags.DEFINE_string("expression_list", None,
                        "FRGC: text/CSV of 'recording_id expression' lines.")
    flags.DEFINE_float("texas_mm_per_pixel", 0.32, "Texas 3DFR range image spacing (mm).")
    flags.mark_flag_as_required("output_dir")


def build_dataset(config: BuildConfig, progress: bool = True) -> dict:
    """Builds the dataset described by ``config``; returns the manifest (also written to disk)."""
    started = time.time()
    plan = sources.get_source(config.source).plan(config)
    os.makedirs(config.output_dir, exist_ok=True)
    results = {}
    # One worker pool for every split: each spawned worker pays the TensorFlow import once.
    with writer.ProducerPool(plan.produce, config.num_workers) as pool:
        for split, tasks in plan.splits.items():
            results[split] = writer.write_split(
                config.output_dir, split, tasks, plan.produce, num_shards=config.num_shards,
                on_error=config.on_error, task_name=plan.task_name, progress=progress, pool=pool)
    protocol_names = []
    if plan.make_protocols is not None:
        records = {split: result.records for split, result in results.items()}
        for protocol in plan.make_protocols(records):
            known = [record.example_id for record in records[protocol.split]]
            protocol_lib.validate_protocol(protocol, known_ids=known)
            protocol_lib.save_protocol(
                protocol, protocol_lib.protocol_path(config.output_dir, protocol.name))
            protocol_names.append(protocol.name)
    preview_path = None
    if config.preview and plan.preview_examples is not None:
        from tf_rgbd.data import synthetic  # the contact sheet writer lives with the generator
        preview_path = config.preview
        synthetic.write_preview_sheet(plan.preview_examples(), preview_path)
    elapsed = time.time() - started
    extra = {"build_config": config_lib.to_dict(config), "protocols": protocol_names,
             "preview": preview_path, "build_seconds": round(elapsed, 2), **plan.extra}
    return writer.write_manifest(config.output_dir, plan.dataset_name, plan.class_names, results,
                                 extra=extra)


def main(argv) -> Optional[int]:
    del argv
    config = config_lib.from_flag_values(BuildConfig, FLAGS)
    manifest = build_dataset(config)
    print(writer.summarize_manifest(manifest))
    num_shards = sum(len(split["shards"]) for split in manifest["splits"].values())
    print(f"wrote {config.output_dir}/manifest.json ({num_shards} shards, "
          f"{manifest['example_count']} examples, {manifest['skipped_count']} skipped, "
          f"{manifest['extra']['build_seconds']:.1f} s); protocols: "
          f"{', '.join(manifest['extra']['protocols']) or 'none'}"
          + (f"; preview: {manifest['extra']['preview']}" if manifest["extra"]["preview"] else ""))
    return 0


if __name__ == "__main__":
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    define_flags()
    app.run(main)
