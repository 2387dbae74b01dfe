"""Depth comparison tables: one common support, its coverage, deltas on metric depth
(issue 10, defect 4)."""
import math

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tf_rgbd.data import writer
from tf_rgbd.eval import depth as depth_eval
from tf_rgbd.metrics.depth import TABLE_COLUMNS

SIZE = 32
HIGHER_IS_BETTER = ("delta", "mask_")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Faces with a deep relief in mm (600-760 mm): far pixels have small normalised values."""
    directory = str(tmp_path_factory.mktemp("depth_table"))

    def produce(index):
        example = helpers.make_face_example(index, size=SIZE, label=index % 2)
        yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
        radius = ((yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2) ** 0.5
        depth = np.where(example.depth > 0, 600.0 + 12.0 * radius, 0.0).astype(np.float32)
        return [helpers.make_face_example(index, size=SIZE, label=index % 2, depth=depth)]

    results = {split: writer.write_split(directory, split, list(range(start, start + 6)),
                                         produce, num_shards=1, progress=False)
               for split, start in (("train", 0), ("test", 100))}
    writer.write_manifest(directory, "relief", ["s000", "s001"], results)
    return directory


def _noisy_truth(batch):
    depth = batch["depth"]
    noise = tf.random.stateless_uniform(tf.shape(depth), [1, 2], -0.03, 0.03)
    return {"depth": tf.where(depth > 0, tf.clip_by_value(depth + noise, 0.01, 1.0), 0.0)}


def _one_correct_pixel(batch):
    depth = batch["depth"]
    centre = np.zeros(depth.shape, np.float32)
    centre[:, SIZE // 2, SIZE // 2, :] = 1.0
    return {"depth": depth * centre}


def _best(results, column):
    rows = {name: row[column] for name, row in results.items()
            if column in row and not math.isnan(row[column])}
    pick = max if column.startswith(HIGHER_IS_BETTER) else min
    return pick(rows, key=rows.get) if rows else None


def test_a_degenerate_predictor_wins_no_column_and_the_support_is_reported(data_dir):
    results = depth_eval.evaluate_depth_models(
        data_dir, {"good": _noisy_truth, "one pixel": _one_correct_pixel}, image_size=SIZE,
        batch_size=4)
    for column in TABLE_COLUMNS:
        assert _best(results, column) != "one pixel", (column, results)
    assert results["one pixel"]["coverage"] < 0.05
    assert results["good"]["coverage"] > 0.95
    assert not results["one pixel"]["in_common_support"]
    # Every compared method is measured on one support; its coverage is reported.
    support = {row["support_coverage"] for row in results.values()}
    assert len(support) == 1 and 0.5 < support.pop() <= 1.0


def test_deltas_are_on_metric_depth_when_it_is_known(data_dir):
    # 10 mm too far everywhere: within 2% of z (600-760 mm), so every pixel passes delta<1.25;
    # on the normalised scale the far pixels (d ~ 0.1) would fail.
    def ten_mm_too_far(batch):
        depth = batch["depth"]
        return {"depth": tf.where(depth > 0, tf.maximum(depth - 10.0 / 200.0, 0.005), 0.0)}

    results = depth_eval.evaluate_depth_models(data_dir, {"shifted": ten_mm_too_far},
                                               image_size=SIZE, batch_size=6,
                                               include_mean_face=False)
    row = results["shifted"]
    assert row["delta_scale_mm"] == 1.0
    assert row["delta_1.25"] == pytest.approx(1.0)
    assert row["rmse_mm"] == pytest.approx(10.0, abs=1.5)
