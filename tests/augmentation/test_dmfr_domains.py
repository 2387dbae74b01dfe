"""DMFR generative domains: ids pair every generated example with its real counterpart, the
pose renders have holes, every degradation changes the image, and the builder writes both
domains with the project's sharded writer."""
import numpy as np
import pytest
import tensorflow as tf

from tf_rgbd.augmentation import dmfr_domains
from tf_rgbd.config.dmfr import DMFRDomainsConfig
from tf_rgbd.data import pipeline, schema, writer
from tf_rgbd.models.depthnet import DepthNetGenerator

SIZE = 32


def _source_example(index: int) -> schema.FaceExample:
    rng = np.random.default_rng(index)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    face = (xs - 16) ** 2 / 120 + (ys - 16) ** 2 / 170 < 1
    return schema.FaceExample(
        example_id=f"id{index:02d}", rgb=rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8),
        label=index % 3, subject=f"s{index % 3}", dataset="tiny", domain="real",
        depth=np.where(face, 600 + 0.3 * ((xs - 16) ** 2 + (ys - 16) ** 2), 0).astype(np.float32),
        mask=face.astype(np.uint8), yaw_deg=float(index))


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    source = str(tmp_path_factory.mktemp("source"))
    results = {"train": writer.write_split(source, "train", list(range(4)),
                                           lambda index: [_source_example(index)], num_shards=2,
                                           progress=False)}
    writer.write_manifest(source, "tiny", ["s0", "s1", "s2"], results)
    generator = DepthNetGenerator(image_size=SIZE, base_filters=4, max_filters=8)
    generator(tf.zeros([1, SIZE, SIZE, 3]))
    config = DMFRDomainsConfig(generator="untrained", data_dir=source,
                               output_dir=str(tmp_path_factory.mktemp("domains")), batch_size=4)
    manifests = dmfr_domains.build_dmfr_domains(generator, config, progress=False)
    return source, config, manifests


def _decoded(directory):
    return {example.example_id: example for path in pipeline.list_shards(directory, "train")
            for example in (schema.decode_example_numpy(record) for record in
                            tf.data.TFRecordDataset(path).as_numpy_iterator())}


def test_every_generated_example_names_its_real_counterpart(domains):
    source, config, manifests = domains
    real = _decoded(source)
    assert manifests["pose"]["splits"]["train"]["example_count"] == 3 * len(real)
    assert manifests["quality"]["splits"]["train"]["example_count"] == len(real)
    assert len(manifests["pose"]["splits"]["train"]["shards"]) == 2     # one per input shard
    same_conditions = []
    for domain in ("pose", "quality"):
        for example_id, example in _decoded(f"{config.output_dir}/{domain}").items():
            source_id, parsed_domain, condition = dmfr_domains.parse_generated_id(example_id)
            counterpart = real[source_id]
            assert parsed_domain == domain and example.domain == "generated"
            assert (example.label, example.subject) == (counterpart.label, counterpart.subject)
            if dmfr_domains.is_same_conditions(example_id):
                same_conditions.append(example_id)
                assert example.yaw_deg == pytest.approx(counterpart.yaw_deg)
            else:
                assert abs(example.yaw_deg - counterpart.yaw_deg) == pytest.approx(35.0)
    # One "same conditions" partner per real example and domain (the filter mode's pairs).
    assert len(same_conditions) == 2 * len(real)
    with pytest.raises(ValueError, match="not a DMFR generated example id"):
        dmfr_domains.parse_generated_id("id00")


def test_pose_renders_from_rgb_and_depth_keep_holes():
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    face = (xs - 16) ** 2 / 120 + (ys - 16) ** 2 / 170 < 1
    # A dome-shaped D* (normalised: nearer = larger) with a step at the nose (a depth jump).
    depth = np.where(face, 1.0 - 0.002 * ((xs - 16) ** 2 + (ys - 16) ** 2), 0.0)
    depth = np.where(face & (abs(xs - 16) < 3) & (abs(ys - 18) < 4), depth + 0.15, depth)
    rgb = np.repeat(np.where(face[..., None], 200, 0), 3, axis=-1).astype(np.uint8)
    generated = schema.FaceExample("g", rgb, 0, "s", "tiny", domain="generated",
                                   depth=np.clip(depth, 0, 1).astype(np.float32),
                                   depth_units="normalized", mask=face.astype(np.uint8))
    renders = {example.example_id: example for example in
               dmfr_domains.pose_examples(generated, "src", DMFRDomainsConfig())}
    frontal = renders["src#dmfr-pose-yaw+0"]
    turned = renders["src#dmfr-pose-yaw+35"]
    covered = lambda example: example.rgb.max(axis=-1) > 0  # noqa: E731
    # At the source's own pose the render covers (almost) the face; turned, part of the face
    # area is empty (self-occlusion, the cut at the depth jump): holes, as the paper's renders.
    assert covered(frontal)[face].mean() > 0.9
    assert covered(turned)[face].mean() < covered(frontal)[face].mean() - 0.1
    holes = face & ~covered(turned)
    assert holes.sum() > 10
    assert turned.depth[~covered(turned)].max() == 0.0       # empty pixels have no depth


def test_each_degradation_changes_the_image_deterministically():
    rgb = _source_example(0).rgb
    rng = np.random.default_rng(0)
    assert np.abs(dmfr_domains.gaussian_blur(rgb, 1.5).astype(int) - rgb).mean() > 5
    assert np.abs(dmfr_domains.gaussian_noise(rgb, 10.0, rng).astype(int) - rgb).mean() > 3
    assert np.abs(dmfr_domains.jpeg_compress(rgb, 10).astype(int) - rgb).mean() > 5
    config = DMFRDomainsConfig()
    first = dmfr_domains.quality_example(_source_example(1), config)
    second = dmfr_domains.quality_example(_source_example(1), config)
    np.testing.assert_array_equal(first.rgb, second.rgb)       # seeded by the example id
    assert first.example_id == "id01#dmfr-quality-lq"
    assert not np.array_equal(first.rgb, _source_example(1).rgb)
