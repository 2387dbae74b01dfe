"""Per-database DepthNet fine-tuning (``--finetune_on``): the examples come from the protocol,
and no probe example is ever read (issue 10, defect 6)."""
import numpy as np
import pytest
import tensorflow as tf

from tests.training.depth_test_utils import face_like_batch, tiny_model_config
from tf_rgbd.config.depthnet import DepthTrainingConfig
from tf_rgbd.config.run import RunConfig
from tf_rgbd.data import pipeline, schema, writer
from tf_rgbd.data import protocol as protocol_lib
from tf_rgbd.training.depth_training import train_depth_model

SIZE = 16
GALLERY = ("s0/0", "s1/0")
PROBES = ("s0/1", "s0/2", "s1/1", "s1/2")


def _write_database_with_unreadable_probes(directory):
    """A 3D database (everything in ``test``) whose probe records have truncated RGB: reading
    any of them stops the pipeline with a corrupt-record error."""
    def produce(example_id):
        batch = face_like_batch(batch_size=1, size=SIZE, seed=len(example_id) + ord(example_id[-1]))
        rgb = np.round((batch["rgb"].numpy()[0] + 1) * 127.5).astype(np.uint8)
        normalised = batch["depth"].numpy()[0, ..., 0]
        subject = example_id.split("/")[0]
        return [schema.FaceExample(
            example_id=example_id, rgb=rgb, label=int(subject[1]), subject=subject,
            dataset="db", depth=np.where(normalised > 0, 500 + (1 - normalised) * 200, 0),
            mask=np.argmax(batch["mask"].numpy()[0], -1).astype(np.uint8),
            expression="neutral" if example_id.endswith("0") else "smile")]

    results = {"test": writer.write_split(directory, "test", list(GALLERY + PROBES), produce,
                                          num_shards=1, progress=False)}
    writer.write_manifest(directory, "db", ["s0", "s1"], results)
    protocol_lib.save_protocol(
        protocol_lib.Protocol("db_test", "db", "test", GALLERY, {"expression": PROBES}),
        protocol_lib.protocol_path(directory, "db_test"))
    (shard,) = pipeline.list_shards(directory, "test")
    records = []
    for record in tf.data.TFRecordDataset(shard).as_numpy_iterator():
        example = tf.train.Example.FromString(record)
        if example.features.feature["example_id"].bytes_list.value[0].decode() in PROBES:
            rgb = example.features.feature["rgb"].bytes_list.value[0]
            example.features.feature["rgb"].bytes_list.value[0] = rgb[: len(rgb) // 2]
        records.append(example.SerializeToString())
    with tf.io.TFRecordWriter(shard) as record_writer:
        for record in records:
            record_writer.write(record)


def test_finetune_on_gallery_reads_no_probe_example(tmp_path):
    data_dir = str(tmp_path / "db")
    _write_database_with_unreadable_probes(data_dir)
    # Reading the whole split does reach the (unreadable) probes ...
    with pytest.raises(tf.errors.InvalidArgumentError, match="corrupt"):
        list(pipeline.make_dataset(data_dir, "test", batch_size=6, image_size=SIZE))
    # ... fine-tuning on the gallery never does: the run trains and saves its generator.
    config = DepthTrainingConfig(
        model=tiny_model_config(image_size=SIZE, base_filters=4, max_filters=8,
                                discriminator_filters=4, discriminator_downsamples=1),
        run=RunConfig(data_dir=data_dir, model_dir=str(tmp_path / "run"), train_split="test",
                      val_split="test", batch_size=2, steps=2, checkpoint_every_steps=100,
                      verbose="0", run_eagerly=True),
        finetune_on="gallery")
    result = train_depth_model(config)
    assert result.summary["finetune_examples"] == len(GALLERY)
    assert result.summary["steps_per_epoch"] == 1 and result.final_step == 2
    assert result.config.run.val_split == ""   # validating on the split would read probes
    with pytest.raises(ValueError, match="session1_neutral|gallery"):
        DepthTrainingConfig(finetune_on="probes")
