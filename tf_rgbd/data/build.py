"""Builds a TFRecord dataset (shards + manifest.json + protocols/) from a registered source.

The library side of ``python -m datasets.build``::

    manifest = build_dataset(BuildConfig(source="synthetic", output_dir="/tmp/s",
                                         num_identities=8, images_per_identity=6))

Re-running into the same directory keeps complete, verified shards and rewrites the rest.
"""
from __future__ import annotations

import os
import time

from tf_rgbd import config as config_lib
from tf_rgbd import io_utils
from tf_rgbd.config.data import BuildConfig
from tf_rgbd.data import preview
from tf_rgbd.data import protocol as protocol_lib
from tf_rgbd.data import sources, writer


def build_dataset(config: BuildConfig, progress: bool = True) -> dict:
    """Builds the dataset described by ``config``; returns the manifest (also written to disk).

    The output directory is locked while the build runs: a second build into it is refused
    (``io_utils.LockedError`` naming the owner); a stale lock of a dead build is taken over.
    """
    with io_utils.directory_lock(config.output_dir, f"dataset build ({config.source})"):
        return _build_dataset(config, progress)


def _build_dataset(config: BuildConfig, progress: bool) -> dict:
    started = time.time()
    plan = sources.get_source(config.source).plan(config)
    os.makedirs(config.output_dir, exist_ok=True)
    results = {}
    if config.runner == "beam":
        # The same tasks, producer and shard writer as one Apache Beam pipeline.
        from tf_rgbd.data import beam_writer  # noqa: PLC0415 (optional extra)
        beam_result = beam_writer.write_splits_with_beam(
            config.output_dir, plan.splits, beam_writer.ConstantProducer(plan.produce),
            config.num_shards, config.on_error, plan.task_name, config.beam_options,
            config.num_workers)
        for split, tasks in plan.splits.items():
            results[split] = beam_writer.collect_split(
                config.output_dir, split, tasks, config.num_shards, plan.task_name, beam_result)
    else:
        # One worker pool for every split: each spawned worker pays the TensorFlow import once.
        with writer.ProducerPool(plan.produce, config.num_workers) as pool:
            for split, tasks in plan.splits.items():
                results[split] = writer.write_split(
                    config.output_dir, split, tasks, plan.produce,
                    num_shards=config.num_shards, on_error=config.on_error,
                    task_name=plan.task_name, progress=progress, pool=pool)
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
        preview_path = preview.write_preview_sheet(plan.preview_examples(), config.preview)
    elapsed = time.time() - started
    extra = {"build_config": config_lib.to_dict(config), "protocols": protocol_names,
             "preview": preview_path, "build_seconds": round(elapsed, 2), **plan.extra}
    return writer.write_manifest(config.output_dir, plan.dataset_name, plan.class_names, results,
                                 extra=extra)
