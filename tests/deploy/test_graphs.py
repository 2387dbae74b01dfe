"""Inference graphs: resize-as-matmul equals tf.image.resize, score_embedding gives the fused
score, and the pipeline graph equals augment_dataset + the evaluation path (no train/serve
skew)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tests.deploy.conftest import GENERATOR_SIZE, RECOGNIZER_SIZE, SOURCE_SIZE
from tf_rgbd.data import pipeline
from tf_rgbd.deploy import graphs
from tf_rgbd.eval import embeddings as embeddings_lib
from tf_rgbd.models.loading import load_depth_generator
from tf_rgbd.models.recognizer import build_inference_model
from tf_rgbd.training.recognizer_training import load_recognizer


@pytest.mark.parametrize("sizes", [(40, 32), (32, 16), (16, 32)])
def test_resize_layers_equal_the_data_pipeline_resizes(sizes):
    in_size, out_size = sizes
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (2, in_size, in_size, 3)).astype(np.float32)
    resized = graphs.ResizeImages(in_size, out_size, "bilinear_antialias")(images)
    np.testing.assert_allclose(resized, tf.image.resize(images, [out_size] * 2, antialias=True),
                               atol=2e-6)
    classes = rng.integers(0, 7, (2, in_size, in_size))
    one_hot = tf.one_hot(classes, 7).numpy()
    nearest = tf.one_hot(tf.image.resize(classes[..., None], [out_size] * 2,
                                         method="nearest")[..., 0], 7)
    np.testing.assert_array_equal(graphs.ResizeImages(in_size, out_size, "nearest")(one_hot),
                                  nearest)
    depth = np.where(rng.uniform(size=(2, in_size, in_size, 1)) > 0.4,
                     rng.uniform(0.1, 1, (2, in_size, in_size, 1)), 0).astype(np.float32)
    expected = np.stack([pipeline.masked_resize(tf.constant(d), out_size) for d in depth])
    np.testing.assert_allclose(graphs.ResizeImages(in_size, out_size, "area", masked=True)(depth),
                               expected, atol=2e-6)


@pytest.fixture(scope="module")
def models(tiny_system):
    recognizer, experiment = load_recognizer(tiny_system.run_dir)
    return load_depth_generator(tiny_system.generator_path), recognizer, experiment


def test_pipeline_graph_equals_augment_dataset_then_evaluation(tiny_system, models, tmp_path):
    generator, recognizer, experiment = models
    assert experiment.model.image_size == RECOGNIZER_SIZE
    graph = graphs.build_graph("pipeline", generator, recognizer, RECOGNIZER_SIZE,
                               input_size=SOURCE_SIZE, flip_test=True)
    # The face crop as stored (40 x 40) goes in; the graph resizes it to G itself.
    source = pipeline.make_dataset(tiny_system.source_dir, "test", batch_size=64,
                                   image_size=SOURCE_SIZE, modalities=("rgb",),
                                   with_metadata=True, deterministic=True).get_single_element()
    served = {name: np.asarray(value) for name, value in graph({"rgb": source["rgb"]}).items()}

    # What training/evaluation see: the augmented dataset read by make_dataset at R, embedded
    # by the evaluation code (flip test on).
    modalities = recognizer.modalities
    batches = pipeline.make_dataset(tiny_system.augmented_dir, "test", batch_size=64,
                                    image_size=RECOGNIZER_SIZE, modalities=modalities,
                                    with_metadata=True, deterministic=True)
    stored = next(iter(batches))
    face_fraction = float(np.mean(np.asarray(stored["mask"])[..., 0] == 0))
    assert 0.0 < face_fraction < 1.0, f"M* has no face or no background ({face_fraction})"
    evaluated = embeddings_lib.extract_embeddings(
        build_inference_model(recognizer, RECOGNIZER_SIZE), batches, modalities, "depth",
        flip_test=True, progress=False)
    assert evaluated.example_ids.tolist() == [v.decode() for v in source["example_id"].numpy()]
    cosines = {branch: np.sum(served[f"id_{branch}"] * evaluated.features[branch], axis=-1)
               for branch in recognizer.branches}
    worst = min(float(value.min()) for value in cosines.values())
    print(f"pipeline graph vs augment_dataset + evaluation: min cosine {worst:.6f}, mean "
          f"{np.mean([v.mean() for v in cosines.values()]):.6f} "
          f"({len(evaluated)} test examples)")
    assert worst >= 0.999, cosines

    # score_embedding . score_embedding == the evaluation's fused score.
    fused = embeddings_lib.similarity_scores(evaluated, evaluated)["fused"]
    dots = served["score_embedding"] @ served["score_embedding"].T
    np.testing.assert_allclose(dots, fused, atol=2e-3)
    own = embeddings_lib.EmbeddingSet(
        example_ids=evaluated.example_ids, labels=evaluated.labels,
        features={branch: served[f"id_{branch}"] for branch in recognizer.branches})
    np.testing.assert_allclose(dots, embeddings_lib.similarity_scores(own, own)["fused"],
                               atol=1e-5)
    helpers.assert_keras_file_round_trip(graph, {"rgb": source["rgb"][:2]}, tmp_path)


def test_graph_inputs_outputs_and_sensor_depth(models):
    generator, recognizer, _ = models
    built = {name: graphs.build_graph(name, generator, recognizer, RECOGNIZER_SIZE,
                                      flip_test=False) for name in graphs.GRAPHS}
    names = {name: (sorted(t.name for t in graph.inputs), sorted(graph.output))
             for name, graph in built.items()}
    embeddings = ["id_depth", "id_rgb", "score_embedding"]
    assert names == {"depthnet": (["rgb"], ["depth", "mask"]),
                     "recognizer": (["depth", "mask", "rgb"], embeddings),
                     "pipeline": (["rgb"], embeddings),
                     "pipeline_sensor": (["depth", "rgb"], embeddings)}
    assert built["pipeline"].inputs[0].shape == (None, GENERATOR_SIZE, GENERATOR_SIZE, 3)
    rng = np.random.default_rng(1)
    rgb = rng.uniform(-1, 1, (3, GENERATOR_SIZE, GENERATOR_SIZE, 3)).astype(np.float32)
    depth = np.where(rng.uniform(size=(3, GENERATOR_SIZE, GENERATOR_SIZE, 1)) > 0.3,
                     rng.uniform(0.2, 1, (3, GENERATOR_SIZE, GENERATOR_SIZE, 1)),
                     0).astype(np.float32)
    outputs = built["pipeline_sensor"]({"rgb": rgb, "depth": depth})
    norms = np.linalg.norm(np.asarray(outputs["score_embedding"]), axis=-1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    # The depth branch is fed the sensor depth, resized G -> R over valid pixels as
    # make_dataset does (the tiny model's own depth embedding may ignore its input: its
    # attention can saturate in 3 steps, see tf_rgbd/models/recognizer.py).
    fed = keras.Model(built["pipeline_sensor"].inputs,
                      built["pipeline_sensor"].get_layer("sensor_depth_to_r").output)
    expected = np.stack([pipeline.masked_resize(tf.constant(d), RECOGNIZER_SIZE) for d in depth])
    np.testing.assert_allclose(fed({"rgb": rgb, "depth": depth}), expected, atol=2e-6)
    other = built["pipeline_sensor"]({"rgb": rgb, "depth": depth[::-1]})
    np.testing.assert_allclose(outputs["id_rgb"], other["id_rgb"], atol=1e-5)
    with pytest.raises(ValueError, match="needs the depth generator"):
        graphs.build_graph("pipeline", None, recognizer, RECOGNIZER_SIZE)
