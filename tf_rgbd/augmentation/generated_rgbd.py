"""2D -> RGB-D augmentation: a trained depth generator over a TFRecord dataset writes a new
dataset with the generated depth D* and mask M* (the library side of
``python -m training.augment_dataset``).

For every input example (RGB is enough) the output example has:

- ``rgb``: the input resized to the generator's size S, background zeroed by the predicted
  mask (as in the paper; by the predicted depth when the generator has no mask branch);
- ``depth`` = D*: the tanh depth clipped to [0, 1], 0 on predicted background,
  ``depth_units="normalized"``;
- ``mask`` = M*: argmax of the per-class mask probabilities (class indices 0..6);
- ``domain="generated"``; label, subject, attributes, landmarks (rescaled to S) and
  coefficients kept; with ``keep_gt_depth`` the source's ground-truth depth, normalised and
  resized exactly like ``tf_rgbd.data.pipeline`` does, in ``gt_depth``.

Sharding follows the input (one output shard per input shard), shards are written atomically
and a re-run skips verified shards; ``protocols/`` is copied (example ids are kept).
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import time
from typing import Iterator, Optional, Sequence

import numpy as np
import tensorflow as tf

from tf_rgbd.data import pipeline, schema, writer
from tf_rgbd.metrics.depth import MIN_VALID_PREDICTION


@dataclasses.dataclass
class AugmentStats:
    """Counters of one run (examples through the generator and generator seconds)."""

    examples: int = 0
    generator_seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.examples / max(self.generator_seconds, 1e-9)


def generated_examples(generator, sources, inputs: dict, keep_gt_depth: bool,
                       forward=None) -> list:
    """Turns one batch of source examples into generated RGB-D examples.

    Args:
      generator: the depth generator (outputs ``depth`` and optionally ``mask``).
      sources: the batch's decoded ``schema.FaceExample`` s (metadata, landmarks, rgb size).
      inputs: the same batch from ``pipeline.make_dataset`` (numpy): ``rgb`` [B, S, S, 3] in
        [-1, 1] and, with ``keep_gt_depth``, ``depth`` [B, S, S, 1] normalised, ``has_depth``.
      keep_gt_depth: store ``inputs["depth"]`` as ``gt_depth`` for examples that have depth.
      forward: optional compiled ``rgb -> outputs`` function (default: ``generator`` itself).

    Returns:
      The generated ``FaceExample`` s, in order.
    """
    outputs = (forward or (lambda rgb: generator(rgb, training=False)))(inputs["rgb"])
    depth = np.clip(np.asarray(outputs["depth"], np.float32)[..., 0], 0.0, 1.0)
    if "mask" in outputs:
        classes = np.argmax(np.asarray(outputs["mask"]), axis=-1).astype(np.uint8)
        face = classes != 0
    else:
        classes = None
        face = depth >= MIN_VALID_PREDICTION
    depth = np.where(face, depth, 0.0).astype(np.float32)
    rgb_uint8 = np.clip(np.round((np.asarray(inputs["rgb"]) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    size = rgb_uint8.shape[1]
    examples = []
    for index, source in enumerate(sources):
        landmarks = source.landmarks5
        if landmarks is not None:
            height, width = source.rgb.shape[:2]
            landmarks = np.asarray(landmarks, np.float32) * np.array([size / width, size / height],
                                                                     np.float32)
        gt_depth = None
        if keep_gt_depth and bool(inputs["has_depth"][index]):
            gt_depth = np.asarray(inputs["depth"][index, ..., 0], np.float32)
        examples.append(dataclasses.replace(
            source, rgb=rgb_uint8[index] * face[index][..., None].astype(np.uint8),
            depth=depth[index], depth_units="normalized",
            mask=None if classes is None else classes[index], domain="generated",
            landmarks5=landmarks, neutral_depth=None, gt_depth=gt_depth, rgb_format="png"))
    return examples


class ShardAugmenter:
    """The writer's ``produce``: task = one input shard path -> its generated examples.

    Args:
      generator: the loaded depth generator.
      image_size: S, the generator's input size.
      batch_size: examples per generator call.
      keep_gt_depth: see :func:`generated_examples`.
      depth_range_mm: the pipeline's normalisation span for the ground truth.
    """

    def __init__(self, generator, image_size: int, batch_size: int = 32,
                 keep_gt_depth: bool = False, depth_range_mm: float = 200.0):
        self.generator = generator
        self.image_size = image_size
        self.batch_size = batch_size
        self.keep_gt_depth = keep_gt_depth
        self.depth_range_mm = depth_range_mm
        self.stats = AugmentStats()
        self._forward = tf.function(lambda rgb: generator(rgb, training=False),
                                    reduce_retracing=True)

    def __call__(self, shard_path: str) -> Iterator:
        sources = [schema.decode_example_numpy(record)
                   for record in tf.data.TFRecordDataset(shard_path).as_numpy_iterator()]
        modalities = ("rgb", "depth") if self.keep_gt_depth else ("rgb",)
        batches = pipeline.make_dataset(
            shard_path, split=None, batch_size=self.batch_size, image_size=self.image_size,
            modalities=modalities, deterministic=True, with_metadata=True,
            depth_range_mm=self.depth_range_mm,
            zero_fill=("depth",))  # examples without depth get no gt_depth (has_depth checked)
        position = 0
        for batch in batches.as_numpy_iterator():
            count = len(batch["rgb"])
            chunk = sources[position:position + count]
            ids = [value.decode() for value in batch["example_id"]]
            if [source.example_id for source in chunk] != ids:
                raise RuntimeError(f"{shard_path}: records {position}..{position + count} came "
                                   "back in a different order from tf.data; cannot pair them")
            started = time.time()
            examples = generated_examples(self.generator, chunk, batch, self.keep_gt_depth,
                                          self._forward)
            self.stats.generator_seconds += time.time() - started
            self.stats.examples += count
            position += count
            yield from examples


class ShardAugmenterFactory:
    """Makes a :class:`ShardAugmenter` with the generator loaded from its file: what each
    Apache Beam worker calls once (``DoFn.setup``), so the generator is loaded once per worker,
    not once per shard. Picklable (holds only the path and settings)."""

    def __init__(self, generator_path: str, image_size: int, batch_size: int = 32,
                 keep_gt_depth: bool = False, depth_range_mm: float = 200.0):
        self.generator_path = generator_path
        self.image_size = image_size
        self.batch_size = batch_size
        self.keep_gt_depth = keep_gt_depth
        self.depth_range_mm = depth_range_mm

    def __call__(self) -> ShardAugmenter:
        from tf_rgbd.models.loading import load_depth_generator  # noqa: PLC0415 (on the worker)
        return ShardAugmenter(load_depth_generator(self.generator_path), self.image_size,
                              self.batch_size, self.keep_gt_depth, self.depth_range_mm)


def augment_dataset(generator, data_dir: str, output_dir: str,
                    splits: Optional[Sequence[str]] = None, batch_size: int = 32,
                    keep_gt_depth: bool = False, depth_range_mm: float = 200.0,
                    dataset_name: str = "", generator_path: str = "",
                    progress: bool = True, runner: str = "local", beam_options: str = "",
                    num_workers: int = 0) -> tuple[dict, AugmentStats]:
    """Writes the generated RGB-D version of ``data_dir`` to ``output_dir``.

    With ``runner="beam"`` the input shards are the tasks of one Apache Beam pipeline
    (:mod:`tf_rgbd.data.beam_writer`; ``beam_options`` / ``num_workers`` as there): each Beam
    worker loads the generator from ``generator_path`` once (``DoFn.setup``) and writes the
    same shards and sidecars as the local path. The throughput counters are then the examples
    written over the pipeline's wall time (start-up included).

    Returns:
      (the output manifest, the generator throughput counters).
    """
    manifest = pipeline.read_manifest(data_dir)
    splits = list(splits or manifest["splits"])
    unknown = sorted(set(splits) - set(manifest["splits"]))
    if unknown:
        raise KeyError(f"{data_dir}: no split(s) {unknown}; it has {sorted(manifest['splits'])}")
    image_size = int(generator.get_config().get("image_size") or generator.input_shape[1])
    produce = ShardAugmenter(generator, image_size, batch_size, keep_gt_depth, depth_range_mm)
    results = {}
    tasks = {split: [os.path.join(data_dir, shard["name"])
                     for shard in manifest["splits"][split]["shards"]] for split in splits}
    if runner == "beam":
        if not generator_path:
            raise ValueError("runner=beam loads the generator on every Beam worker: pass its "
                             "file (--generator)")
        from tf_rgbd.data import beam_writer  # noqa: PLC0415 (optional extra)
        beam_result = beam_writer.write_splits_with_beam(
            output_dir, tasks, ShardAugmenterFactory(generator_path, image_size, batch_size,
                                                     keep_gt_depth, depth_range_mm),
            {split: len(shards) for split, shards in tasks.items()}, task_name=os.path.basename,
            beam_options=beam_options, num_workers=num_workers)
        for split, shards in tasks.items():
            results[split] = beam_writer.collect_split(output_dir, split, shards, len(shards),
                                                       os.path.basename, beam_result)
        produce.stats.examples = sum(
            shard.count for result in results.values() for shard in result.shards
            if not shard.reused)
        produce.stats.generator_seconds = beam_result.seconds
    elif runner == "local":
        for split, shards in tasks.items():
            results[split] = writer.write_split(output_dir, split, shards, produce,
                                                num_shards=len(shards), num_workers=1,
                                                task_name=os.path.basename, progress=progress)
    else:
        raise ValueError(f"runner must be 'local' or 'beam', got {runner!r}")
    protocols = os.path.join(data_dir, "protocols")
    if os.path.isdir(protocols):
        shutil.copytree(protocols, os.path.join(output_dir, "protocols"), dirs_exist_ok=True)
    output_manifest = writer.write_manifest(
        output_dir, dataset_name or f"{manifest['dataset']}_generated", manifest["class_names"],
        results, extra={"source_dir": os.path.abspath(data_dir), "source_dataset": manifest["dataset"],
                        "generator": generator_path, "image_size": image_size,
                        "keep_gt_depth": keep_gt_depth, "depth_range_mm": depth_range_mm,
                        "images_per_second": round(produce.stats.images_per_second, 2)})
    return output_manifest, produce.stats
