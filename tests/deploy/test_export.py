"""Export of the tiny trained system to real artefacts, their parity gates, the manifest, the
re-run skip, InferenceSession across backends, the image_bytes signature, the verify program
and a full disk (RLIMIT_FSIZE) during an artefact write."""
import glob
import json
import os
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.deploy.conftest import GENERATOR_SIZE, PROTOCOL
from tf_rgbd import io_utils
from tf_rgbd.config.export import ExportConfig
from tf_rgbd.deploy import export
from tf_rgbd.deploy.session import InferenceSession

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FORMATS = ("savedmodel", "onnx", "onnx_fp16", "onnx_int8", "tflite_fp32", "tflite_int8",
           "tensorrt")
MANIFEST_KEYS = {"schema_version", "created", "updated", "versions", "source", "preprocessing",
                 "graphs", "artefacts", "skipped", "removed"}
ARTEFACT_KEYS = {"graph", "format", "path", "sha256", "size_bytes", "precision", "gate",
                 "runtime", "layout", "inputs", "outputs", "source_key", "export_config",
                 "created", "notes", "parity"}


@pytest.fixture(scope="module")
def exported(tiny_system, tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("export"))
    config = ExportConfig(run_dir=tiny_system.run_dir, graph="pipeline", formats=FORMATS,
                          output_dir=output_dir, calibration_samples=16, flip_test=False,
                          max_batch=8, opt_batch=4)
    lines = []
    result = export.export_run(config, log=lines.append)
    print("\n".join(lines))
    return config, result, lines


def test_manifest_records_every_artefact_and_its_parity(exported, tiny_system):
    config, result, lines = exported
    manifest = export.load_manifest(config.output_dir)
    assert MANIFEST_KEYS <= set(manifest)
    assert manifest["source"]["run_dir"] == os.path.abspath(tiny_system.run_dir)
    assert manifest["source"]["depthnet_file"] == os.path.abspath(tiny_system.generator_path)
    assert manifest["source"]["rgb_data_dir"] == os.path.abspath(tiny_system.source_dir)
    assert manifest["source"]["protocol"] == PROTOCOL
    assert manifest["source"]["run_config"]["model"]["backbone"] == "tiny"
    preprocessing = manifest["preprocessing"]
    assert preprocessing["crop"] in ("arcface", "depthnet")
    assert preprocessing["input_size"] == GENERATOR_SIZE
    assert len(preprocessing["template"]) == 5
    with open(os.path.join(config.output_dir, export.PREPROCESSING_FILE)) as handle:
        assert json.load(handle) == preprocessing
    graph = manifest["graphs"]["pipeline"]
    assert sorted(graph["inputs"]) == ["rgb"]
    assert sorted(graph["outputs"]) == ["id_depth", "id_rgb", "score_embedding"]
    assert graph["branches"] == ["rgb", "depth"] and graph["embedding_dim"] == 16

    with open(os.path.join(config.output_dir, export.PARITY_FILE)) as handle:
        parity_file = json.load(handle)
    entries = {entry["artefact"]: entry for entry in parity_file["results"]}
    # Every requested format was either kept (passed), removed (failed) or skipped (TensorRT).
    assert "pipeline/tensorrt" in manifest["skipped"]
    assert "trtexec --onnx=" in manifest["skipped"]["pipeline/tensorrt"]
    for artefact_format in FORMATS[:-1]:
        key = f"pipeline/{artefact_format}"
        assert key in entries, key
        entry = entries[key]
        path = os.path.join(config.output_dir, export.artefact_relpath("pipeline",
                                                                         artefact_format))
        if entry["passed"]:
            record = manifest["artefacts"][key]
            assert ARTEFACT_KEYS <= set(record), key
            assert record["sha256"] == export.path_sha256(path)
            assert record["size_bytes"] == export.path_size(path) > 0
            assert record["parity"]["passed"]
        else:
            assert key in manifest["removed"] and key not in manifest["artefacts"]
            assert not os.path.exists(path), f"{path} failed its gate but was kept"
            assert entry["failures"]
    # fp32 artefacts pass at 1e-4 on every output (measured max |delta| printed in the table).
    for artefact_format in ("savedmodel", "onnx", "tflite_fp32"):
        entry = entries[f"pipeline/{artefact_format}"]
        assert entry["passed"], entry
        assert max(numbers["max_abs"] for numbers in entry["outputs"].values()) <= 1e-4
        assert entry["rank1"]["artefact"] == entry["rank1"]["keras"]
    assert result["passed"] == all(entry["passed"] for entry in entries.values())
    assert any("artefact" in line and "gate" in line for line in lines)  # the table


def test_rerun_skips_up_to_date_artefacts(exported):
    config, first, _ = exported
    lines = []
    again = export.export_run(config, log=lines.append)
    assert again["converted"] == [], lines
    assert again["parity"] == [] and again["passed"] == first["passed"]
    # Artefacts that failed their gate are not retried with the same sources.
    assert sorted(entry["artefact"] for entry in again["failed_before"]) == sorted(
        first["manifest"]["removed"])
    kept = [key for key, entry in first["manifest"]["artefacts"].items()]
    assert all(any(f"{key}: up to date" in line for line in lines)
               for key in kept if not key.endswith("/keras"))


def test_sessions_agree_across_backends_and_image_bytes(exported, tiny_system):
    config, _, _ = exported
    manifest = export.load_manifest(config.output_dir)
    inputs, _, _ = export.read_graph_inputs(manifest["graphs"]["pipeline"]["data"], "test", 12)
    embeddings = {}
    for key in ("pipeline/keras", "pipeline/savedmodel", "pipeline/onnx", "pipeline/tflite_fp32"):
        session = InferenceSession(os.path.join(config.output_dir,
                                                manifest["artefacts"][key]["path"]))
        session.warmup()
        embeddings[key] = session.run(inputs)["score_embedding"]
    identities = {key: np.argmax(value @ value[:4].T, axis=1) for key, value in embeddings.items()}
    assert len({tuple(value) for value in identities.values()}) == 1, identities

    # image_bytes: PNG-encoded faces (uint8, any size) decoded and resized in the graph.
    loaded = tf.saved_model.load(os.path.join(config.output_dir, "pipeline", "savedmodel"))
    faces = np.round((inputs["rgb"][:3] + 1) * 127.5).astype(np.uint8)
    pngs = tf.stack([tf.io.encode_png(face) for face in faces])
    from_bytes = loaded.signatures["image_bytes"](image_bytes=pngs)["score_embedding"].numpy()
    from_tensor = loaded.signatures["serving_default"](
        rgb=tf.constant(faces / 127.5 - 1.0, tf.float32))["score_embedding"].numpy()
    np.testing.assert_allclose(from_bytes, from_tensor, atol=1e-5)


@pytest.fixture(scope="module")
def small_graph():
    """A small named-I/O graph (conv, dense with 256 KiB of weights, unit embedding, a depth
    map) for the converter and full-disk tests that need no trained model."""
    import keras
    keras.utils.set_random_seed(0)
    rgb = keras.Input((8, 8, 3), name="rgb")
    features = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(rgb)
    wide = keras.layers.Dense(256, activation="relu")(
        keras.layers.GlobalAveragePooling2D()(features))
    embedding = keras.layers.UnitNormalization(name="id_rgb")(
        keras.layers.Dense(6)(keras.layers.Dense(256)(wide)))
    return keras.Model({"rgb": rgb}, {"id_rgb": embedding,
                                      "depth": keras.layers.Conv2D(1, 1, name="depth")(features)})


def test_tflite_modes_and_nchw_onnx_on_a_small_graph(small_graph, tmp_path):
    graph = small_graph
    saved = str(tmp_path / "saved")
    assert export.write_savedmodel(graph, saved) == ["serving_default", "image_bytes"]
    x = np.random.default_rng(0).uniform(-1, 1, (5, 8, 8, 3)).astype(np.float32)
    reference = {name: np.asarray(value) for name, value in graph({"rgb": x}).items()}
    for mode, atol in (("fp16", 1e-2), ("int8_dynamic", 5e-2), ("int8", 0.2)):
        path = str(tmp_path / f"g_{mode}.tflite")
        export.convert_tflite(saved, path, mode, {"rgb": x} if mode == "int8" else None)
        resolver = None
        if mode == "int8" and export.xnnpack_refusal(path):  # probed in a child process
            resolver = "BUILTIN_WITHOUT_DEFAULT_DELEGATES"
        outputs = InferenceSession(path, num_threads=1, tflite_op_resolver=resolver).run(
            {"rgb": x})
        np.testing.assert_allclose(outputs["id_rgb"], reference["id_rgb"], atol=atol,
                                   err_msg=mode)
    assert export.convert_onnx(graph, str(tmp_path / "g.onnx"), 17, nchw=True) == {
        "layout": "NCHW"}
    session = InferenceSession(str(tmp_path / "g.onnx"))
    assert session.input_specs["rgb"].shape == (None, 3, 8, 8)
    outputs = export._layout_to_nhwc(session.run(export._nhwc_to_layout({"rgb": x}, "NCHW")),
                                     "NCHW")
    np.testing.assert_allclose(outputs["depth"], reference["depth"], atol=1e-5)


def _limit_file_size(limit_bytes):
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, hard))
    return lambda: (resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard)),
                    signal.signal(signal.SIGXFSZ, previous_handler))


def test_full_disk_keeps_the_previous_artefacts(small_graph, tmp_path):
    """RLIMIT_FSIZE (every write past the limit fails with EFBIG, as a full disk does) while
    artefacts are rewritten: DiskFullError naming the file and the space, the previous
    artefact intact, no partial file."""
    folder = tmp_path / "graph"
    onnx_path, saved_path = str(folder / "graph.onnx"), str(folder / "savedmodel")
    tflite_path = str(folder / "graph_fp32.tflite")
    export.convert_onnx(small_graph, onnx_path, 17)
    export.write_savedmodel(small_graph, saved_path)
    export.convert_tflite(saved_path, tflite_path, "fp32")
    before = {path: export.path_sha256(path) for path in (onnx_path, saved_path, tflite_path)}
    assert all(export.path_size(path) > 200 * 1024 for path in before)
    writers = ((onnx_path, lambda: export.convert_onnx(small_graph, onnx_path, 17)),
               (saved_path, lambda: export.write_savedmodel(small_graph, saved_path)),
               (tflite_path, lambda: export.convert_tflite(saved_path, tflite_path, "fp32")))
    for target, write in writers:
        restore = _limit_file_size(64 * 1024)
        try:
            with pytest.raises(io_utils.DiskFullError) as raised:
                write()
        finally:
            restore()
        message = str(raised.value)
        assert target in message and "needed" in message and "free" in message, message
        assert "\n" not in message
    for path, digest in before.items():
        assert export.path_sha256(path) == digest, f"{path} changed"
    leftovers = glob.glob(str(folder / ".tmp-*"))
    assert not leftovers, leftovers


def test_verify_program_fails_and_removes_a_changed_artefact(exported):
    config, _, _ = exported
    manifest = export.load_manifest(config.output_dir)
    victim = os.path.join(config.output_dir, manifest["artefacts"]["pipeline/tflite_fp32"]["path"])
    with open(victim, "r+b") as handle:  # flip bytes in the middle: a damaged copy
        handle.seek(os.path.getsize(victim) // 2)
        handle.write(b"\xff" * 64)
    completed = subprocess.run(
        [sys.executable, "-m", "export.verify", f"--output_dir={config.output_dir}"],
        cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True,
        text=True, timeout=600)
    assert completed.returncode == 1, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "FAILED pipeline/tflite_fp32: ExportError" in completed.stdout
    assert "sha256 differs" in completed.stdout
    assert not os.path.exists(victim)
    with open(os.path.join(config.output_dir, export.PARITY_FILE)) as handle:
        results = {entry["artefact"]: entry for entry in json.load(handle)["results"]}
    assert not results["pipeline/tflite_fp32"]["passed"]
    assert results["pipeline/onnx"]["passed"]
    after = export.load_manifest(config.output_dir)
    assert "pipeline/tflite_fp32" in after["removed"]
    assert "pipeline/tflite_fp32" not in after["artefacts"]
