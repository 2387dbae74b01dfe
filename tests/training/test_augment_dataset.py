"""2D -> RGB-D augmentation: output dataset contents, gt_depth normalisation, resumable writes."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tf_rgbd.data import pipeline, schema, writer
from tf_rgbd.models.depthnet import DepthNetGenerator
from tf_rgbd.models.loading import load_depth_generator
from tf_rgbd.augmentation import generated_rgbd as augment_dataset

SOURCE_SIZE = 40
MODEL_SIZE = 32


def _source_example(index: int) -> schema.FaceExample:
    rng = np.random.default_rng(index)
    ys, xs = np.mgrid[0:SOURCE_SIZE, 0:SOURCE_SIZE]
    face = (xs - 20) ** 2 / 150 + (ys - 20) ** 2 / 220 < 1
    depth_mm = np.where(face, 600 + 0.2 * ((xs - 20) ** 2 + (ys - 20) ** 2), 0).astype(np.float32)
    return schema.FaceExample(
        example_id=f"id{index:02d}", rgb=rng.integers(0, 255, (SOURCE_SIZE, SOURCE_SIZE, 3),
                                                       dtype=np.uint8),
        label=index % 3, subject=f"s{index % 3}", dataset="tiny", domain="real",
        depth=depth_mm if index != 4 else None, mask=face.astype(np.uint8),
        expression="smile" if index % 2 else "neutral", yaw_deg=float(index), session=2,
        landmarks5=np.full([5, 2], 10.0, np.float32))


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("source"))
    tasks = list(range(6))
    results = {"train": writer.write_split(directory, "train", tasks,
                                           lambda index: [_source_example(index)], num_shards=2,
                                           progress=False)}
    writer.write_manifest(directory, "tiny", ["s0", "s1", "s2"], results)
    os.makedirs(os.path.join(directory, "protocols"))
    with open(os.path.join(directory, "protocols", "p.json"), "w") as handle:
        json.dump({"gallery": ["id00"]}, handle)
    return directory


@pytest.fixture(scope="module")
def generator_path(tmp_path_factory):
    generator = DepthNetGenerator(image_size=MODEL_SIZE, base_filters=4, max_filters=8)
    generator(tf.zeros([1, MODEL_SIZE, MODEL_SIZE, 3]))
    path = str(tmp_path_factory.mktemp("model") / "generator.keras")
    generator.save(path)
    return path


def _decoded(directory, split="train"):
    examples = []
    for path in pipeline.list_shards(directory, split):
        examples += [schema.decode_example_numpy(r)
                     for r in tf.data.TFRecordDataset(path).as_numpy_iterator()]
    return {example.example_id: example for example in examples}


def test_augmented_dataset_has_generated_depth_mask_and_kept_labels(source_dir, generator_path,
                                                                   tmp_path):
    output = str(tmp_path / "generated")
    generator = load_depth_generator(generator_path)
    manifest, stats = augment_dataset.augment_dataset(generator, source_dir, output, batch_size=4,
                                                      keep_gt_depth=True, progress=False)
    assert stats.examples == 6 and stats.images_per_second > 0
    assert manifest["splits"]["train"]["example_count"] == 6
    assert len(manifest["splits"]["train"]["shards"]) == 2          # one per input shard
    assert manifest["class_names"] == ["s0", "s1", "s2"]
    assert os.path.exists(os.path.join(output, "protocols", "p.json"))

    sources, generated = _decoded(source_dir), _decoded(output)
    assert sorted(generated) == sorted(sources)
    inputs = pipeline.make_dataset(source_dir, "train", batch_size=6, image_size=MODEL_SIZE,
                                   deterministic=True, with_metadata=True,
                                   zero_fill=("depth",)).get_single_element()
    predicted = generator(inputs["rgb"])
    for example_id, example in generated.items():
        source = sources[example_id]
        assert example.domain == "generated" and example.depth_units == "normalized"
        assert (example.label, example.subject, example.expression, example.session,
                example.yaw_deg) == (source.label, source.subject, source.expression,
                                     source.session, source.yaw_deg)
        assert example.rgb.shape == (MODEL_SIZE, MODEL_SIZE, 3)
        np.testing.assert_allclose(example.landmarks5, 10.0 * MODEL_SIZE / SOURCE_SIZE, rtol=1e-5)
        background = example.mask == 0
        assert np.all(example.depth[background] == 0) and np.all(example.rgb[background] == 0)
        assert example.depth.max() <= 1.0
        assert (example.gt_depth is None) == (source.depth is None)
    # M* is the argmax of the generator's mask.
    order = [example_id.decode() for example_id in inputs["example_id"].numpy()]
    stored = np.stack([generated[i].mask for i in order])
    np.testing.assert_array_equal(stored, np.argmax(np.asarray(predicted["mask"]), -1))


def test_gt_depth_is_normalised_exactly_like_the_pipeline(source_dir, generator_path, tmp_path):
    output = str(tmp_path / "generated")
    augment_dataset.augment_dataset(load_depth_generator(generator_path), source_dir, output,
                                    batch_size=4, keep_gt_depth=True, progress=False)
    # Example 4 has no depth (hence no gt_depth): read as zeros on purpose, then compared.
    expected = pipeline.make_dataset(source_dir, "train", batch_size=6, image_size=MODEL_SIZE,
                                     deterministic=True,
                                     zero_fill=("depth",)).get_single_element()
    actual = pipeline.make_dataset(output, "train", batch_size=6, image_size=MODEL_SIZE,
                                   modalities=("rgb", "depth", "gt_depth"),
                                   deterministic=True, zero_fill=("gt_depth",)
                                   ).get_single_element()
    assert 0.9 < float(tf.reduce_max(expected["depth"])) <= 1.0
    # Stored at 1/65535 per unit: equal up to quantisation.
    np.testing.assert_allclose(actual["gt_depth"], expected["depth"], atol=2e-5)


def test_rerun_reuses_verified_shards(source_dir, generator_path, tmp_path):
    output = str(tmp_path / "generated")
    generator = load_depth_generator(generator_path)
    augment_dataset.augment_dataset(generator, source_dir, output, progress=False)
    _, stats = augment_dataset.augment_dataset(generator, source_dir, output, progress=False)
    assert stats.examples == 0   # nothing regenerated
    with pytest.raises(KeyError, match="no split"):
        augment_dataset.augment_dataset(generator, source_dir, output, splits=["dev"],
                                        progress=False)


def test_beam_augmentation_writes_what_the_local_one_writes(source_dir, generator_path,
                                                            tmp_path):
    """The augmentation as an Apache Beam pipeline (DirectRunner, 2 processes, the generator
    loaded from its file once per Beam worker): the same shards byte for byte."""
    pytest.importorskip("apache_beam", reason="apache_beam is not installed: pip install -e "
                        "'.[beam]' (apache-beam==2.77.0) to test the Beam augmentation")
    generator = load_depth_generator(generator_path)
    local, beam = str(tmp_path / "local"), str(tmp_path / "beam")
    augment_dataset.augment_dataset(generator, source_dir, local, batch_size=4,
                                    keep_gt_depth=True, progress=False)
    manifest, stats = augment_dataset.augment_dataset(
        generator, source_dir, beam, batch_size=4, keep_gt_depth=True, progress=False,
        runner="beam", beam_options="--direct_num_workers=2", generator_path=generator_path)
    assert stats.examples == 6 and manifest["splits"]["train"]["example_count"] == 6
    names = sorted(name for name in os.listdir(local) if ".tfrecord" in name)
    assert len(names) == 4 and names == sorted(n for n in os.listdir(beam) if ".tfrecord" in n)
    for name in names:
        with open(os.path.join(local, name), "rb") as a, open(os.path.join(beam, name), "rb") as b:
            assert a.read() == b.read(), name
    with pytest.raises(ValueError, match="--generator"):
        augment_dataset.augment_dataset(generator, source_dir, str(tmp_path / "x"),
                                        runner="beam", progress=False)
