"""Export of a trained run to every deployable format, with its parity gates and manifest
(the library side of ``python -m export.export`` and ``python -m export.verify``).

    summary = export_run(ExportConfig(run_dir="runs/rgbd", graph="pipeline",
                                      formats=("savedmodel", "onnx", "tflite_int8"),
                                      output_dir="exports/rgbd"))

Export directory layout (one directory may hold several graphs; each run of the exporter adds
or refreshes one graph's artefacts)::

    <output_dir>/
      manifest.json            every artefact (below); written atomically after each artefact
      parity.json              every comparison of the last verification, pass or fail
      preprocessing.json       the face crop and sizes the graphs expect (= manifest's
                               "preprocessing")
      <graph>/<graph>.keras            format "keras": the reference graph (safe-mode loadable)
      <graph>/savedmodel/              "savedmodel": signatures serving_default, image_bytes
      <graph>/<graph>.onnx             "onnx"         (tf2onnx, opset >= 17, dynamic batch)
      <graph>/<graph>_fp16.onnx        "onnx_fp16"    (float16 weights/compute, float32 I/O)
      <graph>/<graph>_int8.onnx        "onnx_int8"    (ONNX Runtime static QDQ, per-channel)
      <graph>/<graph>_fp32.tflite      "tflite_fp32"
      <graph>/<graph>_fp16.tflite      "tflite_fp16"  (float16 weights)
      <graph>/<graph>_int8_dynamic.tflite  "tflite_int8_dynamic" (int8 weights, float compute
                                       where kernels lack int8)
      <graph>/<graph>_int8.tflite      "tflite_int8"  (full integer, float32 I/O)
      <graph>/<graph>.engine (+ .engine.json)  "tensorrt" (see tensorrt_builder)

``manifest.json`` keys::

    schema_version     1
    created, updated   ISO-8601 UTC times
    versions           {tensorflow, keras, tf2onnx, onnx, onnxruntime, ai_edge_litert, tensorrt}
    source             {run_dir, run_config (the run's config.json), recognizer_file,
                        recognizer_sha256, depthnet_file, depthnet_sha256, data_dir,
                        rgb_data_dir, depth_source, protocol}
    preprocessing      {crop ("arcface" | "depthnet"), crop_image_size, template_112 (the
                        ArcFace 5-point template, x/y in a 112 crop), template (scaled to the
                        graph input size), rgb ("float32 [-1, 1] = uint8 / 127.5 - 1, RGB
                        order"), depth (normalisation: depth_range_mm, "nearest face point = 1,
                        0 = background"), generator_size, recognizer_size, input_size}
    graphs             {<graph>: {inputs: {name: {name, shape, dtype}}, outputs: {...},
                        flip_test, branches, embedding_dim, input_size, generator_size,
                        recognizer_size, source_key, data: {data_dir, image_size, keys
                        (graph input -> make_dataset key), protocol, split}}}
    artefacts          {"<graph>/<format>": {graph, format, path (relative to output_dir),
                        sha256 (a directory: of its files' relative paths and hashes),
                        size_bytes, precision (fp32 | fp16 | int8 | int8_dynamic), gate,
                        runtime (keras | tensorflow | onnxruntime | litert | tensorrt), layout
                        (NHWC | NCHW), inputs, outputs, source_key, export_config, notes,
                        parity (this artefact's parity.json entry), tflite_op_resolver (when
                        not XNNPACK)}}
    skipped            {"<graph>/<format>": reason}  (formats that cannot run here, e.g.
                        TensorRT without the library)
    removed            {"<graph>/<format>": the failed parity entry}  (artefacts deleted)

A re-run skips an artefact whose ``source_key`` (hash of the source models and the export
settings that shape it), file sha256 and passed parity record all still match.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import shutil
import tempfile
from typing import Callable, Iterator, Mapping, Optional, Sequence

import numpy as np

from tf_rgbd import io_utils
from tf_rgbd.config import export as export_config
from tf_rgbd.config import to_dict
from tf_rgbd.config.recognizer import CONFIG_FILE, RECOGNIZER_FILE, RecognizerEvalConfig
from tf_rgbd.deploy import parity
from tf_rgbd.deploy.session import InferenceSession, TensorSpec

MANIFEST_FILE = "manifest.json"
PARITY_FILE = "parity.json"
PREPROCESSING_FILE = "preprocessing.json"
MANIFEST_SCHEMA_VERSION = 1
ARTEFACT_FILES = {"keras": "{graph}.keras", "savedmodel": "savedmodel",
                  "onnx": "{graph}.onnx", "onnx_fp16": "{graph}_fp16.onnx",
                  "onnx_int8": "{graph}_int8.onnx", "tflite_fp32": "{graph}_fp32.tflite",
                  "tflite_fp16": "{graph}_fp16.tflite",
                  "tflite_int8_dynamic": "{graph}_int8_dynamic.tflite",
                  "tflite_int8": "{graph}_int8.tflite", "tensorrt": "{graph}.engine"}
RUNTIMES = {"keras": "keras", "savedmodel": "tensorflow", "onnx": "onnxruntime",
            "onnx_fp16": "onnxruntime", "onnx_int8": "onnxruntime", "tflite_fp32": "litert",
            "tflite_fp16": "litert", "tflite_int8_dynamic": "litert", "tflite_int8": "litert",
            "tensorrt": "tensorrt"}
PRECISIONS = {"keras": "fp32", "savedmodel": "fp32", "onnx": "fp32", "onnx_fp16": "fp16",
              "onnx_int8": "int8", "tflite_fp32": "fp32", "tflite_fp16": "fp16",
              "tflite_int8_dynamic": "int8_dynamic", "tflite_int8": "int8"}
# Formats built from another artefact (converted first when asked for).
TENSORRT_SOURCES = {"fp32": "onnx", "fp16": "onnx_fp16", "int8": "onnx_int8"}
# Most examples read for parity (a protocol split larger than this is cut).
MAX_PARITY_READ = 5000
RGB_RANGE = "float32 [-1, 1] = uint8 / 127.5 - 1, RGB channel order"
DEPTH_CONVENTION = ("float32 [0, 1]: 1 - (z_mm - nearest_face_z_mm) / depth_range_mm clipped to "
                    "[1/255, 1] on the face, 0 = background/no data "
                    "(tf_rgbd.data.pipeline.normalize_depth)")


class ExportError(ValueError):
    """The export cannot proceed (the message names what is missing and what to do)."""


# ------------------------------------------------------------------ files and hashes

def artefact_relpath(graph: str, artefact_format: str) -> str:
    return os.path.join(graph, ARTEFACT_FILES[artefact_format].format(graph=graph))


def path_sha256(path: str) -> str:
    """sha256 of a file, or of a directory's (relative path, file sha256) list."""
    if os.path.isfile(path):
        return io_utils.sha256_of_file(path)
    digest = hashlib.sha256()
    for folder, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            full = os.path.join(folder, name)
            digest.update(os.path.relpath(full, path).encode() + b"\0")
            digest.update(io_utils.sha256_of_file(full).encode() + b"\n")
    return digest.hexdigest()


def path_size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(folder, name))
               for folder, _, files in os.walk(path) for name in files)


@contextlib.contextmanager
def atomic_output_dir(path: str, what: str = "directory") -> Iterator[str]:
    """Yields a temporary directory beside ``path``; swaps it in on success (the previous
    directory is kept until then). A full disk becomes DiskFullError naming ``path``."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=".tmp-" + os.path.basename(path) + ".", dir=parent)
    try:
        yield temporary
        old = None
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=".old-" + os.path.basename(path) + ".", dir=parent)
            os.rmdir(old)
            os.replace(path, old)
        os.replace(temporary, path)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as error:
        written = path_size(temporary) if os.path.exists(temporary) else None
        shutil.rmtree(temporary, ignore_errors=True)
        if io_utils.is_disk_full(error) and not isinstance(error, io_utils.DiskFullError):
            raise io_utils.DiskFullError(path, written, what, cause=error,
                                         at_least=True) from error
        raise


def _write_bytes_artefact(path: str, data: bytes, what: str) -> None:
    with io_utils.atomic_output_path(path, expected_bytes=len(data), what=what) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def read_json(path: str, default=None):
    if not os.path.exists(path):
        return default
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise ExportError(f"{path}: not valid JSON ({error}); remove it to start the export "
                          "directory afresh") from error


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def library_versions() -> dict:
    versions = {}
    for module in ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai_edge_litert",
                   "tensorrt"):
        try:
            from importlib import metadata  # noqa: PLC0415
            versions[module] = metadata.version(module.replace("_", "-"))
        except Exception:  # noqa: BLE001 (not installed)
            versions[module] = None
    return versions


# ------------------------------------------------------------------ sources

@dataclasses.dataclass
class ExportSources:
    """Everything an export reads: models, their files and the data they were trained on."""
    graph_name: str
    recognizer: object = None
    experiment: object = None
    generator: object = None
    recognizer_file: str = ""
    depthnet_file: str = ""
    data_dir: str = ""
    rgb_data_dir: str = ""
    protocol: str = ""
    preprocessing: dict = dataclasses.field(default_factory=dict)

    @property
    def recognizer_size(self) -> Optional[int]:
        return self.experiment.model.image_size if self.experiment is not None else None


def _run_model_file(run_dir: str) -> str:
    keras_file = os.path.join(run_dir, RECOGNIZER_FILE)
    if os.path.exists(keras_file):
        return keras_file
    checkpoints = os.path.join(run_dir, "checkpoints", "checkpoint")
    return checkpoints if os.path.exists(checkpoints) else ""


def _dataset_manifest(data_dir: str) -> dict:
    from tf_rgbd.data import pipeline  # noqa: PLC0415
    return pipeline.read_manifest(data_dir)


def _default_protocol(data_dir: str) -> str:
    folder = os.path.join(data_dir, "protocols")
    names = sorted(name[:-5] for name in os.listdir(folder)
                   if name.endswith(".json")) if os.path.isdir(folder) else []
    if len(names) == 1:
        return names[0]
    default = RecognizerEvalConfig().protocol
    return default if default in names else ""


def preprocessing_record(rgb_manifest: Mapping, input_size: int,
                         generator_size: Optional[int], recognizer_size: Optional[int],
                         depth_range_mm: float) -> dict:
    """The face crop and image conventions the exported graphs expect (see module docstring)."""
    from tf_rgbd.data import faces  # noqa: PLC0415
    build = (rgb_manifest.get("extra") or {}).get("build_config") or {}
    crop = build.get("crop", "arcface")
    if crop not in faces.CROPS:
        crop = "arcface"
    return {
        "crop": crop,
        "crop_source": "dataset build_config" if "crop" in build else "default (not recorded "
                                                                      "by the dataset build)",
        "crop_image_size": build.get("image_size"),
        "template_112": faces.ARCFACE_TEMPLATE_112.tolist(),
        "template": faces.alignment_template(input_size, crop).tolist(),
        "template_image_size": input_size,
        "landmark_order": ["left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right"],
        "rgb": RGB_RANGE,
        "depth": DEPTH_CONVENTION,
        "depth_range_mm": depth_range_mm,
        "input_size": input_size,
        "generator_size": generator_size,
        "recognizer_size": recognizer_size,
    }


def resolve_paths(config: export_config.ExportConfig) -> ExportSources:
    """The files and datasets an export reads (no model is loaded): recognizer file, depth
    generator file, training dataset, the dataset rgb inputs come from, the protocol."""
    sources = ExportSources(graph_name=config.graph)
    needs_recognizer = config.graph != "depthnet"
    run_data_dir = ""
    if config.run_dir:
        config_path = os.path.join(config.run_dir, CONFIG_FILE)
        if not os.path.exists(config_path):
            raise ExportError(f"{config.run_dir}: no {CONFIG_FILE}; --run_dir must be a run "
                              "directory of training/train_recognizer.py")
        run_data_dir = ((read_json(config_path) or {}).get("run") or {}).get("data_dir", "")
        sources.recognizer_file = _run_model_file(config.run_dir)
        if not sources.recognizer_file:
            raise ExportError(f"{config.run_dir} has neither {RECOGNIZER_FILE} nor checkpoints")
    elif needs_recognizer:
        raise ExportError(f"--graph={config.graph} needs --run_dir (a recognizer run)")
    sources.data_dir = config.data_dir or run_data_dir
    manifest = {}
    if sources.data_dir:
        if not os.path.isdir(sources.data_dir):
            raise ExportError(f"{sources.data_dir}: the dataset (for calibration and parity) "
                              "does not exist; pass --data_dir")
        manifest = _dataset_manifest(sources.data_dir)
    extra = manifest.get("extra") or {}
    sources.depthnet_file = config.depthnet or extra.get("generator", "")
    if config.graph in ("depthnet", "pipeline", "pipeline_sensor"):
        if not sources.depthnet_file:
            raise ExportError(f"--graph={config.graph} needs the depth generator: pass "
                              "--depthnet=<generator.keras> (the training dataset's manifest "
                              f"{sources.data_dir or '(none)'} records no extra.generator)")
        if not os.path.exists(sources.depthnet_file):
            raise ExportError(f"{sources.depthnet_file}: the depth generator does not exist; "
                              "pass --depthnet=<generator.keras>")
    source_dir = extra.get("source_dir", "")
    sources.rgb_data_dir = (config.data_dir or
                            (source_dir if source_dir and os.path.isdir(source_dir)
                             else sources.data_dir))
    if not sources.rgb_data_dir:
        raise ExportError("no dataset for calibration and parity: pass --data_dir")
    sources.protocol = config.protocol or _default_protocol(
        sources.rgb_data_dir if config.graph != "recognizer" else sources.data_dir)
    return sources


def resolve_sources(config: export_config.ExportConfig) -> ExportSources:
    """:func:`resolve_paths`, then loads the models the graph needs."""
    from tf_rgbd.deploy import graphs  # noqa: PLC0415
    from tf_rgbd.models import loading  # noqa: PLC0415
    from tf_rgbd.training.recognizer_training import load_recognizer  # noqa: PLC0415
    sources = resolve_paths(config)
    if config.run_dir:
        sources.recognizer, sources.experiment = load_recognizer(config.run_dir)
    if config.graph in ("depthnet", "pipeline", "pipeline_sensor"):
        sources.generator = loading.load_depth_generator(sources.depthnet_file)
    manifest = _dataset_manifest(sources.data_dir) if sources.data_dir else {}
    extra = manifest.get("extra") or {}
    rgb_manifest = (manifest if sources.rgb_data_dir == sources.data_dir
                    else _dataset_manifest(sources.rgb_data_dir))
    generator_size = graphs.generator_size(sources.generator) if sources.generator else None
    input_size = (sources.recognizer_size if config.graph == "recognizer"
                  else config.input_size or generator_size)
    depth_range = float(extra.get("depth_range_mm") or 200.0)
    sources.preprocessing = preprocessing_record(rgb_manifest, input_size, generator_size,
                                                 sources.recognizer_size, depth_range)
    return sources


def graph_data_record(sources: ExportSources, graph) -> dict:
    """Where a graph's inputs come from: {data_dir, image_size, keys, protocol}."""
    from tf_rgbd.data.modalities import resolve_depth_key  # noqa: PLC0415
    name = sources.graph_name
    size = int(graph.inputs[0].shape[1])
    if name == "recognizer":
        keys = {"rgb": "rgb", "mask": "mask"}
        if "depth" in sources.recognizer.modalities:
            manifest = _dataset_manifest(sources.data_dir)
            split = manifest["splits"] and next(iter(manifest["splits"]))
            protocol_split = _protocol_split(sources.data_dir, sources.protocol) or split
            keys["depth"] = resolve_depth_key(manifest, protocol_split,
                                              sources.experiment.depth_source)
        keys = {key: value for key, value in keys.items() if key in sources.recognizer.modalities}
        data_dir = sources.data_dir
    else:
        keys = {"rgb": "rgb"}
        if name == "pipeline_sensor":
            keys["depth"] = "depth"
        data_dir = sources.rgb_data_dir
    return {"data_dir": os.path.abspath(data_dir), "image_size": size, "keys": keys,
            "protocol": sources.protocol}


def _protocol_split(data_dir: str, protocol: str) -> str:
    if not protocol:
        return ""
    from tf_rgbd.data.protocol import load_protocol, protocol_path  # noqa: PLC0415
    path = protocol_path(data_dir, protocol)
    return load_protocol(path).split if os.path.exists(path) else ""


def read_graph_inputs(data: Mapping, split: str, limit: int, batch_size: int = 32
                      ) -> tuple[dict, np.ndarray, np.ndarray]:
    """Up to ``limit`` examples of ``split`` as the graph's inputs.

    Returns ``(inputs {graph input: float32 [N, ...]}, example_ids str [N], labels int [N])``.
    """
    from tf_rgbd.data import pipeline  # noqa: PLC0415
    keys = dict(data["keys"])
    dataset = pipeline.make_dataset(
        data["data_dir"], split=split, batch_size=batch_size, image_size=int(data["image_size"]),
        modalities=tuple(dict.fromkeys(keys.values())), with_metadata=True, deterministic=True)
    columns: dict = {name: [] for name in keys}
    ids, labels, count = [], [], 0
    for batch in dataset.as_numpy_iterator():
        for name, key in keys.items():
            columns[name].append(batch[key])
        ids.extend(value.decode() for value in batch["example_id"])
        labels.append(batch["label"])
        count += len(batch["label"])
        if count >= limit:
            break
    if not ids:
        raise ExportError(f"{data['data_dir']}: split {split!r} has no examples")
    inputs = {name: np.concatenate(values)[:limit].astype(np.float32)
              for name, values in columns.items()}
    return inputs, np.array(ids[:limit]), np.concatenate(labels)[:limit]


def run_in_batches(run: Callable, inputs: Mapping[str, np.ndarray], batch_size: int) -> dict:
    count = len(next(iter(inputs.values())))
    pieces: dict = {}
    for start in range(0, count, batch_size):
        outputs = run({name: value[start:start + batch_size] for name, value in inputs.items()})
        for name, value in outputs.items():
            pieces.setdefault(name, []).append(np.asarray(value))
    return {name: np.concatenate(values) for name, values in pieces.items()}


# ------------------------------------------------------------------ converters

def _input_signature(graph) -> dict:
    import tensorflow as tf  # noqa: PLC0415
    return {tensor.name.split(":")[0]: tf.TensorSpec((None,) + tuple(tensor.shape[1:]),
                                                     tf.float32, name=tensor.name.split(":")[0])
            for tensor in graph.inputs}


def write_savedmodel(graph, path: str, with_image_bytes: bool = True) -> list[str]:
    """SavedModel with ``serving_default`` (named tensors) and, when the graph has an ``rgb``
    input, ``image_bytes``: ``image_bytes`` string [B] (encoded JPEG/PNG, any size) decoded,
    resized (bilinear, antialiased) to the graph's size and scaled to [-1, 1] inside the graph;
    any other input (``depth``, ``mask``) is passed as a tensor. Returns the signature names."""
    import keras  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415
    specs = _input_signature(graph)
    archive = keras.export.ExportArchive()
    archive.track(graph)
    archive.add_endpoint("serving_default", lambda inputs: graph(inputs, training=False),
                         input_signature=[specs])
    signatures = ["serving_default"]
    if with_image_bytes and "rgb" in specs:
        size = int(specs["rgb"].shape[1])
        others = {name: spec for name, spec in specs.items() if name != "rgb"}

        def decode(data):
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
            image.set_shape([None, None, 3])
            image = tf.image.convert_image_dtype(image, tf.float32)
            return tf.image.resize(image, [size, size], antialias=True) * 2.0 - 1.0

        def from_bytes(inputs):
            rgb = tf.map_fn(decode, inputs["image_bytes"],
                            fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
            return graph({"rgb": rgb, **{name: inputs[name] for name in others}}, training=False)

        archive.add_endpoint("image_bytes", from_bytes, input_signature=[{
            "image_bytes": tf.TensorSpec([None], tf.string, name="image_bytes"), **others}])
        signatures.append("image_bytes")
    with atomic_output_dir(path, "SavedModel") as temporary:
        archive.write_out(temporary, verbose=False)
    return signatures


def convert_onnx(graph, path: str, opset: int, nchw: bool = False) -> dict:
    """tf2onnx from a tf.function over the graph (PITFALLS #9), dynamic batch."""
    import tensorflow as tf  # noqa: PLC0415
    import tf2onnx  # noqa: PLC0415
    specs = _input_signature(graph)
    names = list(specs)
    signature = [specs[name] for name in names]

    @tf.function(input_signature=signature)
    def serve(*tensors):
        return graph(dict(zip(names, tensors)), training=False)

    kwargs = {}
    if nchw:
        kwargs["inputs_as_nchw"] = [name for name, spec in specs.items() if spec.shape.rank == 4]
        kwargs["outputs_as_nchw"] = [name for name, tensor in graph.output.items()
                                     if len(tensor.shape) == 4]
    with io_utils.atomic_output_path(path, what="ONNX model") as temporary:
        tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset,
                                      output_path=temporary, **kwargs)
    return {"layout": "NCHW" if nchw else "NHWC"}


# Ops kept in float32 by the fp16 conversion: the L2 normalisations (a sum of squares of a
# 512-d embedding overflows float16's 65504; their epsilons underflow) and the masked depth
# resize's division by the valid-pixel weight (measured: NaN embeddings in float16).
FP16_KEEP_FLOAT32_OPS = ("ReduceSum", "ReduceSumSquare", "ReduceL2", "Sqrt", "Div",
                         "Reciprocal", "LpNormalization")


def convert_onnx_fp16(source: str, path: str) -> dict:
    """float16 weights and compute, float32 inputs/outputs (``keep_io_types``), with
    onnxruntime's bundled ``transformers.float16`` converter (the onnxconverter-common code);
    ``FP16_KEEP_FLOAT32_OPS`` stay float32."""
    import onnx  # noqa: PLC0415
    from onnxruntime.transformers import float16  # noqa: PLC0415
    block = list(float16.DEFAULT_OP_BLOCK_LIST) + list(FP16_KEEP_FLOAT32_OPS)
    model = float16.convert_float_to_float16(onnx.load(source), keep_io_types=True,
                                             op_block_list=block)
    _write_bytes_artefact(path, model.SerializeToString(), "ONNX fp16 model")
    return {"converter": "onnxruntime.transformers.float16 (keep_io_types)",
            "float32_ops": list(FP16_KEEP_FLOAT32_OPS)}


class _CalibrationReader:
    """onnxruntime CalibrationDataReader over calibration batches of real training examples."""

    def __init__(self, inputs: Mapping[str, np.ndarray], batch_size: int, nchw: Sequence = ()):
        count = len(next(iter(inputs.values())))
        self._batches = iter([
            {name: (np.transpose(value[start:start + batch_size], (0, 3, 1, 2))
                    if name in nchw else value[start:start + batch_size])
             for name, value in inputs.items()}
            for start in range(0, count, batch_size)])

    def get_next(self):
        return next(self._batches, None)


def convert_onnx_int8(source: str, path: str, calibration: Mapping[str, np.ndarray],
                      nchw_inputs=()) -> dict:
    """ONNX Runtime static quantisation: QDQ format, per-channel int8 weights, uint8
    activations (PITFALLS #14), MinMax calibration on real training examples."""
    from onnxruntime import quantization  # noqa: PLC0415
    notes = {}
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(path))) as folder:
        prepared = os.path.join(folder, "prepared.onnx")
        try:
            quantization.shape_inference.quant_pre_process(source, prepared,
                                                           skip_symbolic_shape=True)
        except Exception as error:  # noqa: BLE001 (pre-processing is an optimisation)
            notes["pre_process"] = f"skipped ({type(error).__name__}: {error})"
            prepared = source
        with io_utils.atomic_output_path(path, what="ONNX int8 model") as temporary:
            quantization.quantize_static(
                prepared, temporary, _CalibrationReader(calibration, 8, nchw_inputs),
                quant_format=quantization.QuantFormat.QDQ, per_channel=True,
                activation_type=quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8,
                calibrate_method=quantization.CalibrationMethod.MinMax)
    notes.update(quant_format="QDQ", per_channel=True, activations="uint8", weights="int8",
                 calibration_examples=len(next(iter(calibration.values()))))
    return notes


def convert_tflite(saved_model_dir: str, path: str, mode: str,
                   calibration: Optional[Mapping[str, np.ndarray]] = None) -> dict:
    """TFLite from the SavedModel's ``serving_default`` (never ``from_concrete_functions`` with
    ``trackable_obj``: PITFALLS #3). ``mode``: fp32 | fp16 | int8_dynamic | int8 (full integer
    kernels, float32 inputs/outputs, representative dataset = ``calibration``, one example per
    step)."""
    import tensorflow as tf  # noqa: PLC0415
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir,
                                                         signature_keys=["serving_default"])
    notes = {"mode": mode}
    if mode == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8_dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
        if calibration is None:
            raise ValueError("full-integer TFLite needs calibration examples")
        count = len(next(iter(calibration.values())))

        def representative():
            for index in range(count):
                yield {name: value[index:index + 1] for name, value in calibration.items()}

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        notes.update(calibration_examples=count, supported_ops="TFLITE_BUILTINS_INT8",
                     io="float32")
    elif mode != "fp32":
        raise ValueError(f"unknown TFLite mode {mode!r}")
    _write_bytes_artefact(path, converter.convert(), f"TFLite {mode} model")
    return notes


# ------------------------------------------------------------------ manifest

def load_manifest(output_dir: str) -> dict:
    manifest = read_json(os.path.join(output_dir, MANIFEST_FILE))
    if manifest is None:
        return {"schema_version": MANIFEST_SCHEMA_VERSION, "created": _now(), "graphs": {},
                "artefacts": {}, "skipped": {}, "removed": {}}
    if manifest.get("schema_version") != MANIFEST_SCHEMA_VERSION:
        raise ExportError(f"{output_dir}/{MANIFEST_FILE}: schema_version "
                          f"{manifest.get('schema_version')} is not {MANIFEST_SCHEMA_VERSION}")
    for key in ("graphs", "artefacts", "skipped", "removed"):
        manifest.setdefault(key, {})
    return manifest


def save_manifest(output_dir: str, manifest: dict) -> None:
    manifest["updated"] = _now()
    io_utils.atomic_write_json(os.path.join(output_dir, MANIFEST_FILE), manifest)


def _specs_json(specs: Mapping[str, TensorSpec]) -> dict:
    return {name: spec.to_json() for name, spec in specs.items()}


def _source_key(sources: ExportSources, config: export_config.ExportConfig) -> str:
    """Changes when anything that shapes the artefacts changes."""
    digest = hashlib.sha256()
    for path in (sources.recognizer_file, sources.depthnet_file):
        digest.update((path_sha256(path) if path and os.path.exists(path) else "-").encode())
    shaping = {"graph": config.graph, "input_size": config.input_size,
               "flip_test": config.flip_test, "opset": config.opset, "nchw": config.nchw,
               "calibration_samples": config.calibration_samples,
               "train_split": config.train_split, "profile": [config.min_batch,
                                                              config.opt_batch, config.max_batch],
               "tensorrt_precision": config.tensorrt_precision,
               "data": [sources.data_dir, sources.rgb_data_dir]}
    digest.update(json.dumps(shaping, sort_keys=True).encode())
    return digest.hexdigest()


def _up_to_date(record: Optional[Mapping], output_dir: str, source_key: str) -> bool:
    if not record or record.get("source_key") != source_key:
        return False
    path = os.path.join(output_dir, record["path"])
    if not os.path.exists(path) or path_sha256(path) != record.get("sha256"):
        return False
    return bool((record.get("parity") or {}).get("passed"))


def _settled_without_work(manifest: Mapping, config: export_config.ExportConfig,
                          source_key: str) -> Optional[dict]:
    """When every requested artefact (and the reference graph) is up to date, failed its gate
    with these same sources, or was skipped as unbuildable here: the log lines and the failed
    records; else None (there is work to do)."""
    lines, failed = [], []
    for artefact_format in ("keras",) + tuple(config.formats):
        key = f"{config.graph}/{artefact_format}"
        removed = manifest["removed"].get(key) or {}
        if _up_to_date(manifest["artefacts"].get(key), config.output_dir, source_key):
            lines.append(f"{key}: up to date (sha256 and parity match), skipped")
        elif removed.get("source_key") == source_key:
            failed.append(removed)
            lines.append(f"{key}: failed its {removed.get('gate')} gate with these same sources "
                         f"({'; '.join(removed.get('failures', []))}); not retried (--force "
                         "retries)")
        elif artefact_format == "tensorrt" and key in manifest["skipped"]:
            from tf_rgbd.deploy import tensorrt_builder  # noqa: PLC0415
            if not tensorrt_builder.unavailable_reason():
                return None
            lines.append(f"{key}: skipped ({manifest['skipped'][key]})")
        else:
            return None
    lines.append(f"{config.graph}: every requested artefact is up to date")
    return {"log": lines, "failed": failed}


# ------------------------------------------------------------------ export

def export_run(config: export_config.ExportConfig, log: Callable[[str], None] = print) -> dict:
    """Exports ``config.graph`` of a run to ``config.formats`` and verifies every artefact.

    Returns ``{"manifest": ..., "parity": [entries], "passed": bool, "converted": [...],
    "skipped": {...}}``. Failing artefacts are deleted (and listed under ``removed``).
    """
    from tf_rgbd.deploy import graphs  # noqa: PLC0415
    from tf_rgbd.models import loading  # noqa: PLC0415
    if not config.output_dir:
        raise ExportError("--output_dir is required")
    os.makedirs(config.output_dir, exist_ok=True)
    with io_utils.directory_lock(config.output_dir, "export"):
        source_key = _source_key(resolve_paths(config), config)
        manifest = load_manifest(config.output_dir)
        if not config.force:
            settled = _settled_without_work(manifest, config, source_key)
            if settled is not None:
                for line in settled["log"]:
                    log(line)
                return {"converted": [], "skipped": dict(manifest["skipped"]),
                        "manifest": manifest, "parity": [], "passed": not settled["failed"],
                        "failed_before": settled["failed"]}
        sources = resolve_sources(config)
        manifest["versions"] = library_versions()
        manifest["source"] = {
            "run_dir": os.path.abspath(config.run_dir) if config.run_dir else "",
            "run_config": read_json(os.path.join(config.run_dir, CONFIG_FILE))
            if config.run_dir else None,
            "recognizer_file": os.path.abspath(sources.recognizer_file)
            if sources.recognizer_file else "",
            "recognizer_sha256": path_sha256(sources.recognizer_file)
            if sources.recognizer_file else "",
            "depthnet_file": os.path.abspath(sources.depthnet_file)
            if sources.depthnet_file else "",
            "depthnet_sha256": path_sha256(sources.depthnet_file)
            if sources.depthnet_file else "",
            "data_dir": os.path.abspath(sources.data_dir) if sources.data_dir else "",
            "rgb_data_dir": os.path.abspath(sources.rgb_data_dir),
            "depth_source": sources.experiment.depth_source if sources.experiment else "",
            "protocol": sources.protocol}
        manifest["preprocessing"] = sources.preprocessing
        io_utils.atomic_write_json(os.path.join(config.output_dir, PREPROCESSING_FILE),
                                   sources.preprocessing)

        # The reference graph: kept when nothing that shapes it changed (its .keras bytes
        # are not reproducible, so re-saving would change every hash).
        keras_key = f"{config.graph}/keras"
        keras_path = os.path.join(config.output_dir, artefact_relpath(config.graph, "keras"))
        keras_record = manifest["artefacts"].get(keras_key)
        fresh_reference = config.force or not _up_to_date(keras_record, config.output_dir,
                                                          source_key)
        if fresh_reference:
            graph = graphs.build_graph(
                config.graph, sources.generator, sources.recognizer, sources.recognizer_size,
                config.input_size or None, config.flip_test)
            loading.save_keras_model(graph, keras_path)
        else:
            from tf_rgbd.deploy import session as session_lib  # noqa: PLC0415,F401
            graph = loading.load_keras_model(keras_path)
        data = graph_data_record(sources, graph)
        reference = InferenceSession(keras_path)
        manifest["graphs"][config.graph] = {
            "inputs": _specs_json(reference.input_specs),
            "outputs": _specs_json(reference.output_specs),
            "flip_test": config.flip_test if config.graph != "depthnet" else None,
            "branches": list(sources.recognizer.branches) if sources.recognizer and
            config.graph != "depthnet" else [],
            "embedding_dim": sources.experiment.model.embedding_dim
            if sources.experiment and config.graph != "depthnet" else None,
            "input_size": int(graph.inputs[0].shape[1]),
            "generator_size": sources.preprocessing["generator_size"],
            "recognizer_size": sources.recognizer_size,
            "source_key": source_key, "data": data}
        converted = []

        def record(artefact_format: str, notes: Optional[dict] = None) -> dict:
            relpath = artefact_relpath(config.graph, artefact_format)
            full = os.path.join(config.output_dir, relpath)
            entry = {"graph": config.graph, "format": artefact_format, "path": relpath,
                     "sha256": path_sha256(full), "size_bytes": path_size(full),
                     "precision": PRECISIONS.get(artefact_format, config.tensorrt_precision),
                     "gate": parity.gate_for(artefact_format, config.tensorrt_precision),
                     "runtime": RUNTIMES[artefact_format],
                     "layout": "NCHW" if config.nchw and artefact_format.startswith("onnx")
                     else "NHWC",
                     "source_key": source_key, "export_config": to_dict(config),
                     "created": _now(), "notes": notes or {}, "parity": None}
            if artefact_format != "keras" and artefact_format != "tensorrt":
                session = InferenceSession(full)
                entry["inputs"] = _specs_json(session.input_specs)
                entry["outputs"] = _specs_json(session.output_specs)
            else:
                entry["inputs"] = manifest["graphs"][config.graph]["inputs"]
                entry["outputs"] = manifest["graphs"][config.graph]["outputs"]
            manifest["artefacts"][f"{config.graph}/{artefact_format}"] = entry
            manifest["skipped"].pop(f"{config.graph}/{artefact_format}", None)
            manifest["removed"].pop(f"{config.graph}/{artefact_format}", None)
            save_manifest(config.output_dir, manifest)
            converted.append(artefact_format)
            log(f"wrote {relpath} ({entry['size_bytes']} bytes, {entry['precision']})")
            return entry

        if fresh_reference:
            record("keras", {"reference": True})
            manifest["artefacts"][keras_key]["parity"] = {"passed": True, "reference": True}
            save_manifest(config.output_dir, manifest)

        # Artefacts other formats are built from come first (savedmodel -> tflite_*,
        # onnx -> onnx_fp16 / onnx_int8 -> tensorrt).
        formats = sorted(dict.fromkeys(config.formats),
                         key=export_config.EXPORT_FORMATS.index)
        calibration: Optional[dict] = None

        def calibration_inputs() -> dict:
            nonlocal calibration
            if calibration is None:
                calibration, _, _ = read_graph_inputs(data, config.train_split,
                                                      config.calibration_samples,
                                                      config.batch_size)
                log(f"calibration: {len(next(iter(calibration.values())))} examples of split "
                    f"{config.train_split!r} of {data['data_dir']}")
            return calibration

        tflite_source: Optional[str] = None
        failed_before: list = []
        scratch = tempfile.mkdtemp(prefix=".export-scratch-", dir=config.output_dir)
        try:
            onnx_path = os.path.join(config.output_dir, artefact_relpath(config.graph, "onnx"))
            for artefact_format in formats:
                key = f"{config.graph}/{artefact_format}"
                if not config.force and _up_to_date(manifest["artefacts"].get(key),
                                                    config.output_dir, source_key):
                    log(f"{key}: up to date (sha256 and parity match), skipped")
                    continue
                removed = manifest["removed"].get(key) or {}
                if not config.force and removed.get("source_key") == source_key:
                    failed_before.append(removed)
                    log(f"{key}: failed its {removed.get('gate')} gate with these same sources "
                        f"({'; '.join(removed.get('failures', []))}); not retried (--force "
                        "retries)")
                    continue
                full = os.path.join(config.output_dir,
                                    artefact_relpath(config.graph, artefact_format))
                if artefact_format == "savedmodel":
                    signatures = write_savedmodel(graph, full)
                    record(artefact_format, {"signatures": signatures})
                elif artefact_format == "onnx":
                    record(artefact_format, convert_onnx(graph, full, config.opset, config.nchw))
                elif artefact_format in ("onnx_fp16", "onnx_int8"):
                    if not os.path.exists(onnx_path) or (
                            "onnx" not in formats and not _up_to_date(
                                manifest["artefacts"].get(f"{config.graph}/onnx"),
                                config.output_dir, source_key)):
                        convert_onnx(graph, onnx_path, config.opset, config.nchw)
                    if artefact_format == "onnx_fp16":
                        notes = convert_onnx_fp16(onnx_path, full)
                    else:
                        nchw_inputs = [
                            name for name in reference.input_names
                            if config.nchw and len(reference.input_specs[name].shape) == 4]
                        notes = convert_onnx_int8(onnx_path, full, calibration_inputs(),
                                                  nchw_inputs)
                    record(artefact_format, notes)
                elif artefact_format.startswith("tflite_"):
                    if tflite_source is None:
                        saved = os.path.join(config.output_dir,
                                             artefact_relpath(config.graph, "savedmodel"))
                        if "savedmodel" in converted or _up_to_date(
                                manifest["artefacts"].get(f"{config.graph}/savedmodel"),
                                config.output_dir, source_key):
                            tflite_source = saved  # its serving_default signature is used
                        else:
                            tflite_source = os.path.join(scratch, "serving_savedmodel")
                            write_savedmodel(graph, tflite_source, with_image_bytes=False)
                    mode = artefact_format[len("tflite_"):]
                    notes = convert_tflite(tflite_source, full, mode,
                                           calibration_inputs() if mode == "int8" else None)
                    record(artefact_format, notes)
                elif artefact_format == "tensorrt":
                    from tf_rgbd.deploy import tensorrt_builder  # noqa: PLC0415
                    reason = tensorrt_builder.unavailable_reason()
                    source_format = TENSORRT_SOURCES[config.tensorrt_precision]
                    source_path = os.path.join(config.output_dir,
                                               artefact_relpath(config.graph, source_format))
                    shapes = (tensorrt_builder.onnx_input_specs(source_path)
                              if os.path.exists(source_path) else reference.input_specs)
                    profile = tensorrt_builder.profile_shapes(
                        shapes, config.min_batch, config.opt_batch,
                        config.max_batch)
                    command = tensorrt_builder.trtexec_command(
                        source_path, full, profile, config.tensorrt_precision,
                        config.tensorrt_workspace_mib)
                    if reason:
                        manifest["skipped"][key] = (f"{reason}; on a machine with TensorRT run: "
                                                    f"{command}")
                        save_manifest(config.output_dir, manifest)
                        log(f"{key}: skipped ({reason})\n  equivalent: {command}")
                        continue
                    if not os.path.exists(source_path):
                        raise ExportError(f"--formats=tensorrt with --tensorrt_precision="
                                          f"{config.tensorrt_precision} is built from "
                                          f"{source_format}; add it to --formats")
                    metadata = tensorrt_builder.build_engine(
                        source_path, full, profile, config.tensorrt_precision,
                        config.tensorrt_workspace_mib,
                        timing_cache=os.path.join(config.output_dir, "tensorrt.timing_cache"))
                    log(f"  trtexec equivalent: {metadata['trtexec_command']}")
                    record(artefact_format, {"metadata": os.path.basename(full) + ".json",
                                             "trtexec_command": metadata["trtexec_command"]})
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

        if not converted:
            log(f"{config.graph}: every requested artefact is up to date")
        result = {"converted": converted, "skipped": dict(manifest["skipped"]),
                  "manifest": manifest, "parity": [], "passed": not failed_before,
                  "failed_before": failed_before}
        pending = [key for key, entry in manifest["artefacts"].items()
                   if entry["graph"] == config.graph and (
                       entry["format"] in converted or not (entry.get("parity") or {}).get(
                           "passed"))]
        if config.verify and pending:
            outcome = verify_export(config.output_dir, parity_samples=config.parity_samples,
                                    batch_size=config.batch_size, graphs_to_check=(config.graph,),
                                    tflite_int8_resolver=config.tflite_int8_resolver, log=log,
                                    manifest=manifest, only=pending)
            result.update(parity=outcome["parity"],
                          passed=outcome["passed"] and not failed_before,
                          manifest=outcome["manifest"])
        return result


# ------------------------------------------------------------------ verification

def _nhwc_to_layout(inputs: Mapping[str, np.ndarray], layout: str) -> dict:
    if layout != "NCHW":
        return dict(inputs)
    return {name: np.transpose(value, (0, 3, 1, 2)) if value.ndim == 4 else value
            for name, value in inputs.items()}


def _layout_to_nhwc(outputs: Mapping[str, np.ndarray], layout: str) -> dict:
    if layout != "NCHW":
        return dict(outputs)
    return {name: np.transpose(value, (0, 2, 3, 1)) if value.ndim == 4 else value
            for name, value in outputs.items()}


_XNNPACK_PROBE = """
import sys
import numpy as np
from ai_edge_litert import interpreter as litert
interpreter = litert.Interpreter(model_path=sys.argv[1], num_threads=1)
runner = interpreter.get_signature_runner("serving_default")
inputs = {name: np.zeros([1] + [max(int(d), 1) for d in detail["shape_signature"][1:]],
                         detail["dtype"]) for name, detail in runner.get_input_details().items()}
runner(**inputs)
print("ok")
"""


def xnnpack_refusal(path: str, timeout_s: float = 300.0) -> Optional[str]:
    """None when LiteRT runs ``path`` with its default XNNPACK delegate, else what went wrong.

    Probed in a child process: when XNNPACK fails to prepare a full-int8 model, LiteRT 2.3
    either raises or aborts the process ("double free detected"), so it cannot be tried
    in-process.
    """
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    completed = subprocess.run([sys.executable, "-c", _XNNPACK_PROBE, path],
                               capture_output=True, text=True, timeout=timeout_s)
    if completed.returncode == 0 and "ok" in completed.stdout:
        return None
    lines = [line for line in completed.stderr.splitlines()
             if "XNNPACK" in line or "failed" in line.lower() or "free" in line.lower()]
    return (" | ".join(dict.fromkeys(lines))[:500] or
            f"exit status {completed.returncode}")


def _open_session(path: str, entry: Mapping, resolver_choice: str, log
                  ) -> tuple[InferenceSession, dict]:
    """The artefact's session; a full-int8 TFLite that XNNPACK refuses runs on LiteRT's
    builtin kernels when ``resolver_choice`` is auto (recorded in the returned notes)."""
    notes = {}
    resolver = entry.get("tflite_op_resolver")
    if entry["format"] == "tflite_int8" and not resolver:
        if resolver_choice == "builtin_without_default_delegates":
            resolver = "BUILTIN_WITHOUT_DEFAULT_DELEGATES"
        else:
            refusal = xnnpack_refusal(path)
            if refusal and resolver_choice == "auto":
                log(f"{entry['path']}: XNNPACK refuses it ({refusal}); verifying with "
                    "BUILTIN_WITHOUT_DEFAULT_DELEGATES")
                notes["xnnpack_error"] = refusal
                resolver = "BUILTIN_WITHOUT_DEFAULT_DELEGATES"
            elif refusal:
                raise RuntimeError(f"XNNPACK refuses {path}: {refusal}")
        if resolver:
            notes["tflite_op_resolver"] = resolver
    return InferenceSession(path, tflite_op_resolver=resolver), notes


def verify_export(output_dir: str, data_dir: str = "", parity_samples: int = 256,
                  batch_size: int = 32, remove_failing: bool = True,
                  graphs_to_check: Optional[Sequence[str]] = None,
                  tflite_int8_resolver: str = "auto", log: Callable[[str], None] = print,
                  manifest: Optional[dict] = None,
                  only: Optional[Sequence[str]] = None) -> dict:
    """Runs every artefact of the export (of ``graphs_to_check``; default all) in its runtime
    on real test-split examples against the reference Keras graph; applies the gates; writes
    ``parity.json`` (every comparison) and the manifest's parity records; deletes failing
    artefacts when ``remove_failing``. ``only``: check just these ``<graph>/<format>`` keys
    (the other entries of ``parity.json`` are kept).

    Returns ``{"parity": [entries], "passed": bool, "manifest": manifest, "table": str}``.
    """
    from tf_rgbd.data.protocol import load_protocol, protocol_path  # noqa: PLC0415
    manifest = manifest or load_manifest(output_dir)
    if not manifest["artefacts"]:
        raise ExportError(f"{output_dir}: no artefacts in {MANIFEST_FILE}; run export.export")
    entries = []
    for graph_name, graph_record in sorted(manifest["graphs"].items()):
        if graphs_to_check and graph_name not in graphs_to_check:
            continue
        artefacts = {key: entry for key, entry in manifest["artefacts"].items()
                     if entry["graph"] == graph_name and (only is None or key in only)}
        if not artefacts:
            continue
        keras_entry = manifest["artefacts"].get(f"{graph_name}/keras")
        if keras_entry is None:
            raise ExportError(f"{output_dir}: graph {graph_name!r} has no reference .keras")
        data = dict(graph_record["data"])
        if data_dir:
            data["data_dir"] = data_dir
        protocol = None
        if data.get("protocol"):
            path = protocol_path(data["data_dir"], data["protocol"])
            if os.path.exists(path):
                protocol = load_protocol(path)
        split = protocol.split if protocol else "test"
        limit = MAX_PARITY_READ if protocol else parity_samples
        inputs, example_ids, labels = read_graph_inputs(data, split, limit, batch_size)
        compared = min(parity_samples, len(example_ids))
        reference_session = InferenceSession(os.path.join(output_dir, keras_entry["path"]))
        reference = run_in_batches(reference_session.run, inputs, batch_size)
        rank1_reference = None
        if protocol is not None and parity.SCORE_EMBEDDING in reference:
            rank1_reference = parity.rank1_percent(
                reference[parity.SCORE_EMBEDDING], labels, example_ids.tolist(),
                protocol.gallery, protocol.all_probe_ids())
        log(f"parity of {graph_name}: {compared} examples of split {split!r} of "
            f"{data['data_dir']} (rank-1 on protocol {data.get('protocol') or '-'}: "
            f"{len(example_ids)} examples)")
        for key, entry in sorted(artefacts.items()):
            path = os.path.join(output_dir, entry["path"])
            result = {"artefact": key, "graph": graph_name, "format": entry["format"],
                      "path": entry["path"], "gate": entry["gate"], "examples": compared,
                      "split": split, "data_dir": data["data_dir"]}
            if entry["format"] == "keras":
                result.update(passed=True, outputs={}, reference=True, rank1={
                    "keras": rank1_reference, "artefact": rank1_reference})
                entries.append(result)
                entry["parity"] = {"passed": True, "reference": True}
                continue
            notes = {}
            try:
                if not os.path.exists(path) or path_sha256(path) != entry["sha256"]:
                    raise ExportError(f"{path}: missing or changed since export (sha256 differs)")
                layout = entry.get("layout", "NHWC")
                session, notes = _open_session(path, entry, tflite_int8_resolver, log)

                def run(batch, session=session, layout=layout):
                    return _layout_to_nhwc(session.run(_nhwc_to_layout(batch, layout)), layout)

                outputs = run_in_batches(run, inputs, batch_size)
                comparisons = parity.compare_outputs(
                    {name: value[:compared] for name, value in reference.items()},
                    {name: value[:compared] for name, value in outputs.items()})
                rank1_candidate = None
                if protocol is not None and parity.SCORE_EMBEDDING in outputs:
                    rank1_candidate = parity.rank1_percent(
                        outputs[parity.SCORE_EMBEDDING], labels, example_ids.tolist(),
                        protocol.gallery, protocol.all_probe_ids())
                verdict = parity.check_gate(entry["gate"], comparisons, rank1_reference,
                                            rank1_candidate)
                result.update(passed=verdict.passed, failures=list(verdict.failures),
                              thresholds=verdict.thresholds, outputs=comparisons,
                              rank1={"keras": rank1_reference, "artefact": rank1_candidate},
                              latency_ms_batch1=parity.median_latency_ms(run, inputs))
            except Exception as error:  # noqa: BLE001 (a broken artefact fails its gate)
                if io_utils.is_disk_full(error):
                    raise
                result.update(passed=False, outputs={},
                              failures=[f"{type(error).__name__}: "
                                        f"{' '.join(str(error).split())[:500]}"])
            if notes:
                result["notes"] = notes
                if notes.get("tflite_op_resolver"):
                    entry["tflite_op_resolver"] = notes["tflite_op_resolver"]
            entries.append(result)
            entry["parity"] = {key_: value for key_, value in result.items()
                               if key_ not in ("graph", "path")}
    passed = all(entry["passed"] for entry in entries)
    for result in entries:
        if result["passed"] or not remove_failing:
            continue
        key = result["artefact"]
        path = os.path.join(output_dir, manifest["artefacts"][key]["path"])
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)
        manifest["removed"][key] = {**result,
                                    "source_key": manifest["artefacts"][key].get("source_key")}
        del manifest["artefacts"][key]
        log(f"removed {path}: failed its {result['gate']} gate: {'; '.join(result['failures'])}")
    previous = read_json(os.path.join(output_dir, PARITY_FILE), {}) or {}
    checked = {result["artefact"] for result in entries}
    kept = [entry for entry in previous.get("results", []) if entry.get("artefact") not in checked
            and (entry.get("artefact") in manifest["artefacts"] or not entry.get("passed"))]
    io_utils.atomic_write_json(os.path.join(output_dir, PARITY_FILE), {
        "updated": _now(), "gates": {
            "fp32_max_abs": export_config.FP32_MAX_ABS,
            "fp16_max_abs": export_config.FP16_MAX_ABS,
            "int8_min_mean_cosine": export_config.INT8_MIN_MEAN_COSINE,
            "int8_max_rank1_drop_points": export_config.INT8_MAX_RANK1_DROP_POINTS,
            "depthnet_int8_max_mean_abs_depth": parity.DEPTHNET_INT8_MAX_MEAN_ABS_DEPTH,
            "depthnet_int8_min_mask_agreement": parity.DEPTHNET_INT8_MIN_MASK_AGREEMENT},
        "results": kept + entries})
    save_manifest(output_dir, manifest)
    table = parity.format_parity_table(entries)
    log(table)
    return {"parity": entries, "passed": passed, "manifest": manifest, "table": table}
