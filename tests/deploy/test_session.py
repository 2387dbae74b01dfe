"""InferenceSession over real artefacts of one tiny functional graph: .keras, SavedModel, ONNX
(tf2onnx, dynamic and fixed batch) and TFLite (LiteRT), plus the loading errors."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_rgbd.deploy import session as session_lib
from tf_rgbd.deploy.session import ArtefactError, InferenceSession

SIZE = 8


def _tiny_graph():
    keras.utils.set_random_seed(3)
    rgb = keras.Input((SIZE, SIZE, 3), name="rgb")
    depth = keras.Input((SIZE, SIZE, 1), name="depth")
    features = keras.layers.Concatenate()([rgb, depth])
    features = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(features)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    embedding = keras.layers.UnitNormalization(name="id_rgb")(keras.layers.Dense(5)(pooled))
    doubled = keras.layers.Rescaling(2.0, name="depth_out")(depth)
    return keras.Model({"rgb": rgb, "depth": depth}, {"id_rgb": embedding, "depth_out": doubled},
                       name="tiny_graph")


def _to_onnx(model, path, batch):
    import tf2onnx
    signature = [tf.TensorSpec((batch, SIZE, SIZE, 3), tf.float32, name="rgb"),
                 tf.TensorSpec((batch, SIZE, SIZE, 1), tf.float32, name="depth")]

    @tf.function(input_signature=signature)
    def serve(rgb, depth):
        return model({"rgb": rgb, "depth": depth}, training=False)

    tf2onnx.convert.from_function(serve, input_signature=signature, opset=17, output_path=path)
    return path


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("artefacts"))
    model = _tiny_graph()
    paths = {"keras": os.path.join(folder, "graph.keras"),
             "savedmodel": os.path.join(folder, "savedmodel"),
             "onnx": os.path.join(folder, "graph.onnx"),
             "onnx_fixed": os.path.join(folder, "graph_b2.onnx"),
             "tflite": os.path.join(folder, "graph.tflite")}
    model.save(paths["keras"])
    model.export(paths["savedmodel"], verbose=False)
    _to_onnx(model, paths["onnx"], None)
    _to_onnx(model, paths["onnx_fixed"], 2)
    converter = tf.lite.TFLiteConverter.from_saved_model(paths["savedmodel"])
    with open(paths["tflite"], "wb") as handle:
        handle.write(converter.convert())
    rng = np.random.default_rng(0)
    inputs = {"rgb": rng.uniform(-1, 1, (5, SIZE, SIZE, 3)).astype(np.float32),
              "depth": rng.uniform(0, 1, (5, SIZE, SIZE, 1)).astype(np.float32)}
    expected = {name: np.asarray(value) for name, value in model(inputs).items()}
    return paths, inputs, expected


@pytest.mark.parametrize("kind", ["keras", "savedmodel", "onnx", "onnx_fixed", "tflite"])
def test_every_backend_gives_the_keras_outputs_with_named_specs(artefacts, kind):
    paths, inputs, expected = artefacts
    session = InferenceSession(paths[kind], num_threads=1 if kind != "keras" else None)
    assert session.backend == ("onnx" if kind == "onnx_fixed" else kind)
    assert sorted(session.input_names) == ["depth", "rgb"]
    assert sorted(session.output_names) == ["depth_out", "id_rgb"]
    spec = session.input_specs["rgb"]
    assert spec.shape[1:] == (SIZE, SIZE, 3) and spec.dtype == "float32"
    assert session.output_specs["id_rgb"].shape[-1] == 5
    assert session.fixed_batch == (2 if kind == "onnx_fixed" else None)
    assert spec.shape[0] == session.fixed_batch
    session.warmup()
    # Five examples: the fixed-batch artefact runs 2 + 2 + (1 padded to 2).
    outputs = session.run(inputs)
    assert sorted(outputs) == ["depth_out", "id_rgb"]
    for name, value in expected.items():
        assert outputs[name].shape == value.shape, name
        np.testing.assert_allclose(outputs[name], value, atol=1e-5, err_msg=f"{kind}:{name}")


def test_keras_backend_runs_one_traced_graph_for_every_batch_size(artefacts):
    paths, inputs, expected = artefacts
    session = InferenceSession(paths["keras"])
    for size in (1, 3, 5):
        outputs = session.run({name: value[:size] for name, value in inputs.items()})
        np.testing.assert_allclose(outputs["id_rgb"], expected["id_rgb"][:size], atol=1e-5)
    # A retrace per batch size would make a served model slow (eager was ~50x slower).
    assert session._backend.function.experimental_get_tracing_count() == 1


def test_max_batch_chunks_and_inputs_are_checked(artefacts):
    paths, inputs, expected = artefacts
    session = InferenceSession(paths["onnx"], max_batch=2, providers=["CPUExecutionProvider"])
    assert session.providers == ["CPUExecutionProvider"]
    np.testing.assert_allclose(session.run(inputs)["id_rgb"], expected["id_rgb"], atol=1e-5)
    # float64 is cast to the artefact's float32.
    as64 = {name: value.astype(np.float64) for name, value in inputs.items()}
    np.testing.assert_allclose(session.run(as64)["id_rgb"], expected["id_rgb"], atol=1e-5)
    with pytest.raises(KeyError, match="lack \\['depth'\\]"):
        session.run({"rgb": inputs["rgb"]})
    with pytest.raises(ValueError, match="input 'rgb' has shape"):
        session.run({"rgb": inputs["rgb"][:, :4], "depth": inputs["depth"]})
    with pytest.raises(ValueError, match="different batch sizes"):
        session.run({"rgb": inputs["rgb"][:2], "depth": inputs["depth"]})


def test_onnx_provider_choice():
    available = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert session_lib.choose_onnx_providers(None, available) == available
    assert session_lib.choose_onnx_providers(
        None, ["TensorrtExecutionProvider", "CPUExecutionProvider", "CUDAExecutionProvider"]) == [
            "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(ValueError, match="not in this build"):
        session_lib.choose_onnx_providers(["TensorrtExecutionProvider"], ["CPUExecutionProvider"])
    # This machine's build: the CPU provider at least, and the default uses what exists.
    assert "CPUExecutionProvider" in session_lib.available_onnx_providers()


def test_missing_truncated_and_foreign_artefacts_name_the_file(artefacts, tmp_path):
    paths, _, _ = artefacts
    missing = str(tmp_path / "nothing.onnx")
    with pytest.raises(ArtefactError, match="nothing.onnx: no such artefact"):
        InferenceSession(missing)
    for kind, suffix in (("onnx", ".onnx"), ("tflite", ".tflite"), ("keras", ".keras")):
        with open(paths[kind], "rb") as handle:
            data = handle.read()
        truncated = str(tmp_path / f"truncated{suffix}")
        with open(truncated, "wb") as handle:
            handle.write(data[: len(data) // 2])
        with pytest.raises(ArtefactError, match=f"truncated{suffix}"):
            InferenceSession(truncated)
        foreign = str(tmp_path / f"foreign{suffix}")
        with open(foreign, "w") as handle:
            handle.write("this is a text file, not a model\n")
        with pytest.raises(ArtefactError, match=f"foreign{suffix}"):
            InferenceSession(foreign)
    empty = str(tmp_path / "empty.tflite")
    open(empty, "wb").close()
    with pytest.raises(ArtefactError, match="empty.tflite: empty file"):
        InferenceSession(empty)
    with pytest.raises(ArtefactError, match="without saved_model.pb"):
        InferenceSession(str(tmp_path))
    with pytest.raises(ArtefactError, match="unknown artefact kind '.pkl'"):
        open(str(tmp_path / "model.pkl"), "wb").write(b"\x80\x04")
        InferenceSession(str(tmp_path / "model.pkl"))


def test_engine_without_tensorrt_is_a_clear_error(tmp_path):
    engine = str(tmp_path / "model.engine")
    with open(engine, "wb") as handle:
        handle.write(b"not really an engine")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(ArtefactError, match="model.engine: a TensorRT engine, but the "
                                                "tensorrt package is not installed"):
            InferenceSession(engine)
    else:  # pragma: no cover - machines with TensorRT
        with pytest.raises(ArtefactError, match="model.engine"):
            InferenceSession(engine)
