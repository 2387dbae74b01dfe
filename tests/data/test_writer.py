"""Sharded writer: atomic shards, manifest, skip accounting, resume after an interruption."""
import functools
import json
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tf_rgbd.data import errors, image_io, schema, writer


from tests.data.producers import produce_example, produce_or_fail  # TF-free, spawn-safe


def read_ids(directory, split="train"):
    files = sorted(tf.io.gfile.glob(os.path.join(directory, f"{split}-*.tfrecord")))
    ids = []
    for record in tf.data.TFRecordDataset(files):
        ids.append(schema.decode_example_numpy(record.numpy()).example_id)
    return ids


def test_shards_manifest_and_histograms(tmp_path):
    result = writer.write_split(str(tmp_path), "train", list(range(10)), produce_example,
                                num_shards=3, progress=False)
    assert [s.name for s in result.shards] == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert [s.count for s in result.shards] == [3, 4, 3]
    assert read_ids(tmp_path) == [f"test/{i:05d}" for i in range(10)]
    manifest = writer.write_manifest(str(tmp_path), "unit", ["a", "b", "c"], {"train": result})
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert on_disk["num_classes"] == 3 and on_disk["example_count"] == 10
    split = on_disk["splits"]["train"]
    assert split["histograms"]["expression"] == {"neutral": 10}
    assert split["histograms"]["yaw_deg"] == {"[0,15)": 10}
    for shard in split["shards"]:
        assert len(shard["sha256"]) == 64
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".tmp-")]
    assert "10 examples" in writer.summarize_manifest(on_disk)


def test_skips_are_counted_with_names_and_fail_mode_raises(tmp_path):
    produce = functools.partial(produce_or_fail, bad=frozenset({1, 4}))
    result = writer.write_split(str(tmp_path), "train", list(range(6)), produce, num_shards=2,
                                progress=False)
    assert result.example_count == 4
    assert result.skipped == {"no_face": {"count": 2, "first": ["1", "4"]}}

    def explode(index):
        raise ValueError(f"bad file {index}")

    counted = writer.write_split(str(tmp_path / "b"), "train", [0, 1], explode, num_shards=1,
                                 progress=False)
    assert counted.skipped["ValueError"]["count"] == 2
    with pytest.raises(errors.BuildError, match="task '0': ValueError: bad file 0"):
        writer.write_split(str(tmp_path / "c"), "train", [0, 1], explode, num_shards=1,
                           on_error="fail", progress=False)


def test_interrupted_build_resumes_without_duplicates(tmp_path):
    tasks = list(range(12))
    with pytest.raises(KeyboardInterrupt):
        writer.write_split(str(tmp_path), "train", tasks,
                           functools.partial(produce_or_fail, interrupt_at=7), num_shards=4,
                           progress=False)
    # Shards 0 and 1 (tasks 0..5) completed; shard 2 (tasks 6..8) died half-written.
    complete = sorted(n for n in os.listdir(tmp_path) if n.endswith(".tfrecord"))
    assert complete == ["train-00000-of-00004.tfrecord", "train-00001-of-00004.tfrecord"]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]
    result = writer.write_split(str(tmp_path), "train", tasks, produce_example, num_shards=4,
                                progress=False)
    assert [s.reused for s in result.shards] == [True, True, False, False]
    ids = read_ids(tmp_path)
    assert ids == [f"test/{i:05d}" for i in range(12)] and len(set(ids)) == 12


def test_tampered_shard_is_rewritten(tmp_path):
    writer.write_split(str(tmp_path), "train", list(range(4)), produce_example, num_shards=2,
                       progress=False)
    shard = tmp_path / "train-00001-of-00002.tfrecord"
    shard.write_bytes(shard.read_bytes()[:-10])
    result = writer.write_split(str(tmp_path), "train", list(range(4)), produce_example,
                                num_shards=2, progress=False)
    assert [s.reused for s in result.shards] == [True, False]
    assert read_ids(tmp_path) == [f"test/{i:05d}" for i in range(4)]


def test_two_workers_write_identical_shards(tmp_path):
    one = writer.write_split(str(tmp_path / "one"), "train", list(range(8)), produce_example,
                             num_shards=2, num_workers=1, progress=False)
    two = writer.write_split(str(tmp_path / "two"), "train", list(range(8)), produce_example,
                             num_shards=2, num_workers=2, progress=False)
    assert [s.sha256 for s in one.shards] == [s.sha256 for s in two.shards]


# ----- bad source files, read through image_io by a file-based producer ----------------------

def produce_from_files(paths):
    rgb_path, depth_path = paths
    rgb = image_io.read_rgb(rgb_path)
    if depth_path.endswith(".npy"):
        depth = image_io.read_depth_npy_mm(depth_path, expected_shape=rgb.shape[:2])
    else:
        depth = image_io.read_depth_png_mm(depth_path, expected_shape=rgb.shape[:2])
    name = os.path.basename(rgb_path)
    return [schema.FaceExample(example_id=name, rgb=rgb, label=0, subject="s", dataset="files",
                               depth=depth)]


def test_bad_files_are_skipped_with_reasons(tmp_path):
    good = np.full((16, 16, 3), 128, np.uint8)
    depth = np.full((16, 16), 700, np.uint16)
    png = cv2.imencode(".png", good)[1].tobytes()
    (tmp_path / "good.png").write_bytes(png)
    (tmp_path / "truncated.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "zero.png").write_bytes(b"")
    cv2.imwrite(str(tmp_path / "good_depth.png"), depth)
    cv2.imwrite(str(tmp_path / "small_depth.png"), depth[:8])
    nan_depth = np.full((16, 16), 700.0, np.float32)
    nan_depth[3, 3] = np.nan
    np.save(tmp_path / "nan_depth.npy", nan_depth)
    tasks = [(str(tmp_path / "good.png"), str(tmp_path / "good_depth.png")),
             (str(tmp_path / "truncated.png"), str(tmp_path / "good_depth.png")),
             (str(tmp_path / "zero.png"), str(tmp_path / "good_depth.png")),
             (str(tmp_path / "good.png"), str(tmp_path / "small_depth.png")),
             (str(tmp_path / "good.png"), str(tmp_path / "nan_depth.npy"))]
    out = tmp_path / "out"
    result = writer.write_split(str(out), "train", tasks, produce_from_files, num_shards=1,
                                task_name=lambda task: os.path.basename(task[0]) + "+" +
                                os.path.basename(task[1]), progress=False)
    assert result.example_count == 1
    assert {reason: entry["count"] for reason, entry in result.skipped.items()} == {
        "corrupt_image": 1, "empty_file": 1, "depth_size_mismatch": 1, "nan_depth": 1}
    assert result.skipped["nan_depth"]["first"] == ["good.png+nan_depth.npy"]
    manifest = writer.write_manifest(str(out), "files", ["s"], {"train": result})
    assert manifest["skipped_count"] == 4
    with pytest.raises(errors.BuildError, match="truncated"):
        writer.write_split(str(tmp_path / "strict"), "train", tasks[1:2], produce_from_files,
                           num_shards=1, on_error="fail", progress=False)
