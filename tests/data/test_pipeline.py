"""tf.data pipeline: shapes and ranges, depth normalisation, augmentation consistency, errors."""
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tf_rgbd.data import pipeline, schema, writer


def produce(index):
    with_depth = index % 4 != 3            # every 4th example is a 2D image (no depth, no mask)
    return [helpers.make_face_example(index, size=40, label=index % 5, with_depth=with_depth,
                                      with_mask=with_depth, session=1 + index % 2)]


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pipeline")
    result = writer.write_split(str(directory), "train", list(range(16)), produce, num_shards=4,
                                progress=False)
    writer.write_manifest(str(directory), "unit", [f"s{i:03d}" for i in range(5)],
                          {"train": result})
    return str(directory)


def test_batches_have_the_contracted_shapes_and_ranges(dataset_dir):
    dataset = pipeline.make_dataset(dataset_dir, "train", batch_size=8, image_size=32,
                                    with_metadata=True, deterministic=True,
                                    zero_fill=("depth", "mask"))
    batches = list(dataset)
    assert len(batches) == 2
    batch = batches[0]
    assert batch["rgb"].shape == (8, 32, 32, 3) and batch["rgb"].dtype == tf.float32
    assert batch["depth"].shape == (8, 32, 32, 1)
    assert batch["mask"].shape == (8, 32, 32, 7)
    assert batch["label"].dtype == tf.int32 and batch["landmarks5"].shape == (8, 5, 2)
    rgb = batch["rgb"].numpy()
    assert rgb.min() >= -1.0 and rgb.max() <= 1.0
    depth, has_depth = batch["depth"].numpy(), batch["has_depth"].numpy()
    assert depth.min() >= 0.0 and depth.max() <= 1.0
    for i in range(8):
        if has_depth[i]:
            # Nearest face point is 1, background 0, face pixels strictly positive.
            assert depth[i].max() == pytest.approx(1.0, abs=0.02)
            assert depth[i][0, 0, 0] == 0.0
            face = batch["mask"].numpy()[i, ..., 1:].sum(-1) > 0
            # Resampling may move the face border by one pixel, nothing more.
            assert np.mean(depth[i][face] > 0) > 0.95
        else:
            assert not np.any(depth[i]) and not np.any(batch["mask"].numpy()[i])
    one_hot = batch["mask"].numpy()[has_depth]
    np.testing.assert_array_equal(one_hot.sum(-1), 1.0)
    # Landmarks are rescaled from 40 to 32 pixels.
    np.testing.assert_allclose(batch["landmarks5"].numpy()[0, 0], np.array([0.35, 0.4]) * 32,
                               atol=1e-4)
    assert batch["example_id"].numpy()[0] == b"test/00000"
    assert set(batch["session"].numpy()) == {1, 2}


def test_normalize_depth_matches_the_formula():
    depth = np.zeros((1, 3, 3, 1), np.float32)
    depth[0, 1, 1, 0], depth[0, 0, 1, 0], depth[0, 2, 2, 0] = 500.0, 550.0, 900.0
    normalised = pipeline.normalize_depth(depth, depth_range_mm=200.0).numpy()[0, ..., 0]
    assert normalised[1, 1] == 1.0
    assert normalised[0, 1] == pytest.approx(0.75)
    assert normalised[2, 2] == pytest.approx(pipeline.MIN_FACE_DEPTH)  # clipped, still valid
    assert normalised[0, 0] == 0.0


def test_augmentation_keeps_modalities_and_landmarks_consistent(dataset_dir):
    plain = next(iter(pipeline.make_dataset(dataset_dir, "train", batch_size=16, image_size=40,
                                            deterministic=True, zero_fill=("depth", "mask"))))
    augmented = pipeline.make_dataset(dataset_dir, "train", batch_size=16, image_size=40,
                                      augment=True, seed=3, deterministic=True,
                                      zero_fill=("depth", "mask"))
    first, second = next(iter(augmented)), next(iter(augmented))
    np.testing.assert_array_equal(first["rgb"].numpy(), second["rgb"].numpy())  # seeded
    assert not np.allclose(first["rgb"].numpy(), plain["rgb"].numpy())
    for i in np.flatnonzero(first["has_depth"].numpy()):
        mask = first["mask"].numpy()[i].argmax(-1)
        depth = first["depth"].numpy()[i, ..., 0]
        face = mask > 0
        # Depth and mask still describe the same pixels after flip + crop.
        assert np.mean((depth > 0) == face) > 0.95
        nose_x, nose_y = first["landmarks5"].numpy()[i, 2]
        assert mask[int(round(nose_y)), int(round(nose_x))] == 5, "nose landmark left the nose"
        left_eye, right_eye = first["landmarks5"].numpy()[i, :2]
        assert left_eye[0] < right_eye[0], "flip must swap the eye landmarks"


def test_missing_modality_is_an_error_never_zeros_unless_asked(dataset_dir):
    # Every 4th example has no depth and no mask: asking for them without zero_fill stops with
    # an error naming the modality, the shard and the record.
    for key in ("depth", "mask"):
        dataset = pipeline.make_dataset(dataset_dir, "train", batch_size=4, image_size=32,
                                        modalities=("rgb", key), deterministic=True)
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=f"lacks the requested modality .{{0,3}}{key}.*train-0000"):
            list(dataset)
    # RGB alone reads every example; zero_fill reads them all and flags the missing ones.
    assert sum(len(b["rgb"]) for b in pipeline.make_dataset(
        dataset_dir, "train", batch_size=4, image_size=32, modalities=("rgb",))) == 16
    filled = list(pipeline.make_dataset(dataset_dir, "train", batch_size=16, image_size=32,
                                        modalities=("rgb", "depth"), zero_fill=("depth",)))
    assert int(np.sum(~filled[0]["has_depth"].numpy())) == 4


def test_example_ids_select_records_before_decoding(dataset_dir):
    wanted = ["test/00001", "test/00006", "test/00011"]
    batches = list(pipeline.make_dataset(dataset_dir, "train", batch_size=8, image_size=32,
                                         modalities=("rgb",), with_metadata=True,
                                         example_ids=wanted, deterministic=True))
    read = sorted(value.decode() for b in batches for value in b["example_id"].numpy())
    assert read == wanted


def _write_raw_records(path, records):
    with tf.io.TFRecordWriter(path) as record_writer:
        for record in records:
            record_writer.write(record)


def test_corrupt_record_error_names_shard_and_index(tmp_path):
    good = schema.encode_example(helpers.make_face_example(0, size=16))
    proto = tf.train.Example.FromString(good)
    rgb = proto.features.feature["rgb"].bytes_list.value[0]
    proto.features.feature["rgb"].bytes_list.value[0] = rgb[: len(rgb) // 2]   # truncated PNG
    shard = str(tmp_path / "train-00000-of-00001.tfrecord")
    _write_raw_records(shard, [good, good, proto.SerializeToString()])
    dataset = pipeline.make_dataset(str(tmp_path), "train", batch_size=1, image_size=16)
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        for _ in dataset:
            pass
    message = str(error.value)
    assert "train-00000-of-00001.tfrecord" in message and "record index" in message
    assert "] [2]" in message or " 2" in message.split("record index")[1][:12]


def test_depth_of_another_size_is_reported(tmp_path):
    proto = tf.train.Example.FromString(schema.encode_example(helpers.make_face_example(0, size=16)))
    other = tf.train.Example.FromString(schema.encode_example(helpers.make_face_example(0, size=8)))
    proto.features.feature["depth"].CopyFrom(other.features.feature["depth"])
    shard = str(tmp_path / "test-00000-of-00001.tfrecord")
    _write_raw_records(shard, [proto.SerializeToString()])
    with pytest.raises(tf.errors.InvalidArgumentError, match="depth size differs"):
        list(pipeline.make_dataset(str(tmp_path), "test", batch_size=1, image_size=16))


def test_missing_shards_raise_a_helpful_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="build the dataset first"):
        pipeline.make_dataset(str(tmp_path), "train")
    with pytest.raises(ValueError, match="unknown modalities"):
        pipeline.make_dataset(str(tmp_path), "train", modalities=("rgb", "thermal"))


def test_dataset_is_file_sharded_for_distribution(dataset_dir):
    dataset = pipeline.make_dataset(dataset_dir, "train", batch_size=4, image_size=16)
    policy = dataset.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.FILE
