"""Shared test helpers: build a source in-process and read the written examples back."""
from __future__ import annotations

import glob
import json
import os
import pickle

import numpy as np
import tensorflow as tf

from tf_rgbd.data import sources
from tf_rgbd.data.build import build_dataset
from tf_rgbd.config.data import BuildConfig
from tf_rgbd.data import schema


def build_and_read(**config_fields) -> tuple[dict, dict[str, list[schema.FaceExample]]]:
    """Runs ``build_dataset(BuildConfig(**config_fields))`` (no progress bar) and returns
    (manifest, {split: examples in shard order}). Also checks that the source's producer
    pickles (multi-process builds send it to worker processes)."""
    config_fields.setdefault("num_shards", 1)
    config_fields.setdefault("image_size", 64)
    config = BuildConfig(**config_fields)
    produce = sources.get_source(config.source).plan(config).produce
    assert type(pickle.loads(pickle.dumps(produce))) is type(produce)
    manifest = build_dataset(config, progress=False)
    examples = {}
    for split in manifest["splits"]:
        paths = sorted(glob.glob(os.path.join(config_fields["output_dir"], f"{split}-*.tfrecord")))
        examples[split] = [schema.decode_example_numpy(record.numpy())
                           for record in tf.data.TFRecordDataset(paths)]
    return manifest, examples


def read_protocol(output_dir: str, name: str) -> dict:
    with open(os.path.join(output_dir, "protocols", f"{name}.json"), encoding="utf-8") as handle:
        return json.load(handle)


def median_depth_error(actual: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """(median |actual - expected| over pixels valid in both, fraction of ``actual``'s valid
    pixels that are valid in ``expected``: a reader must not invent surface)."""
    both = (actual > 0) & (expected > 0)
    assert both.any(), "no pixel has depth in both maps"
    return (float(np.median(np.abs(actual[both] - expected[both]))),
            float(both.sum() / max((actual > 0).sum(), 1)))
