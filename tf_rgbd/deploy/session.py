"""One inference API over every artefact this project exports.

    session = InferenceSession("exports/pipeline/pipeline.onnx")
    session.input_names        # ("rgb",)
    session.output_names       # ("id_depth", "id_rgb", "score_embedding")
    session.input_specs        # {"rgb": TensorSpec("rgb", (None, 112, 112, 3), "float32")}
    outputs = session.run({"rgb": images})   # dict name -> np.ndarray, batch first

The backend is chosen from the artefact:

=====================  ==========================================================  =============
artefact               runtime                                                     ``backend``
=====================  ==========================================================  =============
``*.keras``            Keras 3, ``safe_mode=True`` (no lambdas, no pickle)         ``keras``
SavedModel directory   ``tf.saved_model.load`` + its ``serving_default`` signature ``savedmodel``
``*.onnx``             ONNX Runtime (execution providers: see ``providers``)       ``onnx``
``*.tflite``           LiteRT ``ai_edge_litert.interpreter.Interpreter``           ``tflite``
``*.engine``           TensorRT >= 10 runtime (``tensorrt`` + ``cuda-python``)     ``tensorrt``
=====================  ==========================================================  =============

Contracts shared by every backend:

* Inputs and outputs are named (the graph's names, see ``tf_rgbd.deploy.graphs``); ``run`` takes
  and returns ``dict[str, np.ndarray]`` with the batch first. Inputs are cast to the artefact's
  dtype (float32 for every graph of this project) and checked against its shape (all dims but
  the batch); a missing input raises ``KeyError`` naming it.
* Batching: an artefact with a dynamic batch runs the whole batch at once, or in chunks of
  ``max_batch`` when set (a TensorRT engine's optimisation-profile maximum sets it). An artefact
  whose batch dim is fixed (B) runs in chunks of B; the last chunk is padded by repeating its
  last example and the padding is dropped from the outputs.
* ``warmup()`` runs one zero batch (builds kernels, allocates arenas) so the first real call
  is not an outlier.
* ``providers`` (ONNX only): ``None`` = every accelerated provider the installed onnxruntime
  build has, in the order TensorRT, CUDA, then CPU; or an explicit list (a name the build lacks
  is an error naming the available ones). ``num_threads`` sets intra-op threads (ONNX Runtime,
  LiteRT, TensorFlow's per-session setting is process-wide and is left alone).
* A full-integer ``.tflite`` that LiteRT's default XNNPACK delegate refuses (the export
  manifest then records ``tflite_op_resolver``) is run with
  ``tflite_op_resolver="BUILTIN_WITHOUT_DEFAULT_DELEGATES"``.
* Loading is safe and loud: a missing path, a truncated file, or a file of another kind raises
  :class:`ArtefactError` naming the file and what to do; nothing is unpickled.
"""
from __future__ import annotations

import dataclasses
import os
import zipfile
from typing import Mapping, Optional, Sequence

import numpy as np

from tf_rgbd.models import loading

KERAS_SUFFIX = ".keras"
ONNX_SUFFIX = ".onnx"
TFLITE_SUFFIX = ".tflite"
ENGINE_SUFFIX = ".engine"
SAVED_MODEL_FILE = "saved_model.pb"
SERVING_SIGNATURE = "serving_default"
BACKENDS = ("keras", "savedmodel", "onnx", "tflite", "tensorrt")
# ONNX Runtime providers in order of preference when the caller does not choose.
PREFERRED_ONNX_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider",
                            "CPUExecutionProvider")
# The first bytes of a TFLite flatbuffer hold the file identifier "TFL3" at offset 4.
TFLITE_IDENTIFIER = b"TFL3"


class ArtefactError(loading.ModelFileError):
    """An artefact is missing, truncated, of another kind, or cannot run here (message names it)."""


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One named input or output: ``shape`` with ``None`` for a dynamic dim, numpy dtype name."""
    name: str
    shape: tuple
    dtype: str

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


def detect_backend(path: str) -> str:
    """The backend name for ``path`` (see the module docstring); raises ArtefactError."""
    if not os.path.exists(path):
        raise ArtefactError(f"{path}: no such artefact (expected a .keras / .onnx / .tflite / "
                            ".engine file or a SavedModel directory)")
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, SAVED_MODEL_FILE)):
            return "savedmodel"
        raise ArtefactError(f"{path}: a directory without {SAVED_MODEL_FILE}, so not a "
                            "SavedModel; pass the SavedModel folder itself (or a model file)")
    suffix = os.path.splitext(path)[1].lower()
    backend = {KERAS_SUFFIX: "keras", ONNX_SUFFIX: "onnx", TFLITE_SUFFIX: "tflite",
               ENGINE_SUFFIX: "tensorrt"}.get(suffix)
    if backend is None:
        raise ArtefactError(f"{path}: unknown artefact kind {suffix or '(no suffix)'!r}; "
                            "InferenceSession reads .keras, .onnx, .tflite, .engine files and "
                            "SavedModel directories")
    if os.path.getsize(path) == 0:
        raise ArtefactError(f"{path}: empty file (an interrupted copy?); re-export it")
    return backend


def _numpy_dtype_name(dtype) -> str:
    return np.dtype(dtype).name


class _Backend:
    """What every backend provides: specs, a fixed batch (or None), one-chunk inference."""
    name = "?"
    input_specs: dict
    output_specs: dict
    fixed_batch: Optional[int] = None
    max_batch: Optional[int] = None

    def run_chunk(self, inputs: dict) -> dict:  # pragma: no cover - interface
        raise NotImplementedError


class _KerasBackend(_Backend):
    name = "keras"

    def __init__(self, path: str):
        from tf_rgbd.deploy import graphs  # noqa: F401,PLC0415 (registers the graph layers)
        model = loading.load_keras_model(path)
        if not isinstance(model.inputs, (list, tuple)) or not model.inputs:
            raise ArtefactError(f"{path}: a {type(model).__name__} without symbolic inputs; "
                                "InferenceSession runs the functional inference graphs of "
                                "tf_rgbd.deploy.graphs (export one with export.export)")
        self.model = model
        self.input_specs = {}
        for tensor in model.inputs:
            name = tensor.name.split(":")[0]
            self.input_specs[name] = TensorSpec(name, tuple(tensor.shape),
                                                _numpy_dtype_name(tensor.dtype))
        outputs = model.output
        if not isinstance(outputs, Mapping):
            raise ArtefactError(f"{path}: the model's outputs are not named (a dict); export "
                                "the graphs of tf_rgbd.deploy.graphs")
        self.output_specs = {name: TensorSpec(name, tuple(tensor.shape),
                                              _numpy_dtype_name(tensor.dtype))
                             for name, tensor in outputs.items()}

        import tensorflow as tf
        # One traced graph for every batch size: eager Keras calls were ~50x slower than the
        # same graph traced once (measured on the tiny pipeline graph).
        signature = {name: tf.TensorSpec((None,) + tuple(spec.shape[1:]), spec.dtype, name=name)
                     for name, spec in self.input_specs.items()}
        self.function = tf.function(self._call, input_signature=[signature],
                                    reduce_retracing=True)

    def _call(self, inputs):
        return self.model(inputs, training=False)

    def run_chunk(self, inputs):
        outputs = self.function({name: np.asarray(value) for name, value in inputs.items()})
        return {name: value.numpy() for name, value in outputs.items()}


class _SavedModelBackend(_Backend):
    name = "savedmodel"

    def __init__(self, path: str):
        import tensorflow as tf
        try:
            loaded = tf.saved_model.load(path)
        except Exception as error:  # TF raises many kinds for a damaged SavedModel
            raise ArtefactError(f"{path}: cannot be loaded as a SavedModel ({type(error).__name__}:"
                                f" {str(error).splitlines()[0] if str(error) else ''}); "
                                "re-export it") from error
        if SERVING_SIGNATURE not in loaded.signatures:
            raise ArtefactError(f"{path}: no {SERVING_SIGNATURE!r} signature (has "
                                f"{sorted(loaded.signatures)})")
        self._loaded = loaded  # keeps the variables alive
        self.function = loaded.signatures[SERVING_SIGNATURE]
        _, keyword_specs = self.function.structured_input_signature
        self.input_specs = {name: TensorSpec(name, tuple(spec.shape.as_list()),
                                             spec.dtype.as_numpy_dtype.__name__)
                            for name, spec in sorted(keyword_specs.items())}
        self.output_specs = {name: TensorSpec(name, tuple(spec.shape.as_list()),
                                              spec.dtype.as_numpy_dtype.__name__)
                             for name, spec in sorted(self.function.structured_outputs.items())}

    def run_chunk(self, inputs):
        import tensorflow as tf
        outputs = self.function(**{name: tf.constant(value) for name, value in inputs.items()})
        return {name: value.numpy() for name, value in outputs.items()}


def available_onnx_providers() -> list[str]:
    """The execution providers of the installed onnxruntime build."""
    import onnxruntime
    return list(onnxruntime.get_available_providers())


def choose_onnx_providers(requested: Optional[Sequence[str]],
                          available: Sequence[str]) -> list[str]:
    """``requested`` checked against ``available``; None = the preferred ones available."""
    if requested is None:
        chosen = [name for name in PREFERRED_ONNX_PROVIDERS if name in available]
        return chosen or list(available)
    requested = [requested] if isinstance(requested, str) else list(requested)
    missing = [name for name in requested if name not in available]
    if missing:
        raise ValueError(f"onnxruntime providers {missing} are not in this build (available: "
                         f"{list(available)})")
    return requested


_ONNX_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16",
               "tensor(double)": "float64", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
               "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(string)": "object",
               "tensor(bool)": "bool"}


def _onnx_shape(shape) -> tuple:
    return tuple(dim if isinstance(dim, int) and dim > 0 else None for dim in shape)


class _OnnxBackend(_Backend):
    name = "onnx"

    def __init__(self, path: str, providers=None, num_threads=None):
        import onnxruntime
        with open(path, "rb") as handle:
            head = handle.read(64)
        # A serialized ModelProto starts with field 1 (ir_version, varint): byte 0x08.
        if not head.startswith(b"\x08"):
            raise ArtefactError(f"{path}: not an ONNX model (its first bytes are not a "
                                "ModelProto); re-export it with export.export --formats=onnx")
        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        self.providers = choose_onnx_providers(providers, available_onnx_providers())
        try:
            self.session = onnxruntime.InferenceSession(path, sess_options=options,
                                                        providers=self.providers)
        except Exception as error:  # onnxruntime raises its own Fail/InvalidProtobuf kinds
            raise ArtefactError(f"{path}: ONNX Runtime cannot load it ({type(error).__name__}: "
                                f"{str(error).splitlines()[0] if str(error) else ''}); "
                                "truncated or foreign file? re-export it") from error
        self.input_specs = {node.name: TensorSpec(node.name, _onnx_shape(node.shape),
                                                  _ONNX_TYPES.get(node.type, node.type))
                            for node in self.session.get_inputs()}
        self.output_specs = {node.name: TensorSpec(node.name, _onnx_shape(node.shape),
                                                   _ONNX_TYPES.get(node.type, node.type))
                             for node in self.session.get_outputs()}
        batch_dims = {spec.shape[0] for spec in self.input_specs.values() if spec.shape}
        if len(batch_dims) == 1 and None not in batch_dims:
            self.fixed_batch = batch_dims.pop()

    def run_chunk(self, inputs):
        names = list(self.output_specs)
        values = self.session.run(names, inputs)
        return dict(zip(names, values))


class _TFLiteBackend(_Backend):
    name = "tflite"

    def __init__(self, path: str, num_threads=None, op_resolver: Optional[str] = None):
        from ai_edge_litert import interpreter as litert
        with open(path, "rb") as handle:
            head = handle.read(8)
        if head[4:8] != TFLITE_IDENTIFIER:
            raise ArtefactError(f"{path}: not a TFLite flatbuffer (no {TFLITE_IDENTIFIER!r} "
                                "identifier); re-export it with export.export --formats=tflite_*")
        kwargs = {}
        if op_resolver:
            kwargs["experimental_op_resolver_type"] = getattr(litert.OpResolverType, op_resolver)
        try:
            self.interpreter = litert.Interpreter(model_path=path, num_threads=num_threads,
                                                  **kwargs)
            signatures = self.interpreter.get_signature_list()
            key = SERVING_SIGNATURE if SERVING_SIGNATURE in signatures else next(iter(signatures))
            self.runner = self.interpreter.get_signature_runner(key)
        except (ValueError, RuntimeError, StopIteration) as error:
            raise ArtefactError(f"{path}: LiteRT cannot load it ({type(error).__name__}: "
                                f"{str(error).splitlines()[0] if str(error) else ''}); "
                                "truncated file or no signature? re-export it") from error

        def specs(details):
            result = {}
            for name, detail in sorted(details.items()):
                shape = tuple(None if dim < 0 else int(dim) for dim in detail["shape_signature"])
                result[name] = TensorSpec(name, shape, _numpy_dtype_name(detail["dtype"]))
            return result

        self.input_details = self.runner.get_input_details()
        self.output_details = self.runner.get_output_details()
        self.input_specs = specs(self.input_details)
        self.output_specs = specs(self.output_details)
        batch_dims = {spec.shape[0] for spec in self.input_specs.values() if spec.shape}
        if len(batch_dims) == 1 and None not in batch_dims:
            self.fixed_batch = batch_dims.pop()

    def run_chunk(self, inputs):
        prepared = {}
        for name, value in inputs.items():
            detail = self.input_details[name]
            scale, zero_point = detail["quantization"]
            if np.issubdtype(detail["dtype"], np.integer) and scale:
                info = np.iinfo(detail["dtype"])
                value = np.clip(np.round(value / scale + zero_point), info.min, info.max)
            prepared[name] = value.astype(detail["dtype"])
        outputs = self.runner(**prepared)
        result = {}
        for name, value in outputs.items():
            scale, zero_point = self.output_details[name]["quantization"]
            if np.issubdtype(value.dtype, np.integer) and scale:
                value = (value.astype(np.float32) - zero_point) * scale
            result[name] = np.array(value)
        return result


class _TensorRTBackend(_Backend):
    """A serialized TensorRT (>= 10) engine run with the named-tensor API (execute_async_v3).

    Needs ``tensorrt`` and ``cuda-python`` (``cuda.bindings.runtime`` or ``cuda.cudart``) and an
    NVIDIA GPU. The engine's first optimisation profile bounds the batch: ``max_batch`` is its
    maximum and larger batches run in chunks.
    """
    name = "tensorrt"

    def __init__(self, path: str):
        try:
            import tensorrt as trt
        except ImportError as error:
            raise ArtefactError(f"{path}: a TensorRT engine, but the tensorrt package is not "
                                "installed (pip install tensorrt from NVIDIA's index); use the "
                                ".onnx artefact instead") from error
        self.cudart = _import_cudart(path)
        self.trt = trt
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        with open(path, "rb") as handle:
            engine = runtime.deserialize_cuda_engine(handle.read())
        if engine is None:
            raise ArtefactError(f"{path}: TensorRT {trt.__version__} cannot deserialize it "
                                "(built by another TensorRT version or GPU, or truncated); "
                                "rebuild it with export.export --formats=tensorrt")
        self.engine = engine
        self.context = engine.create_execution_context()
        self.input_specs, self.output_specs = {}, {}
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            shape = tuple(None if dim < 0 else int(dim) for dim in engine.get_tensor_shape(name))
            dtype = _numpy_dtype_name(trt.nptype(engine.get_tensor_dtype(name)))
            spec = TensorSpec(name, shape, dtype)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.input_specs[name] = spec
                if shape and shape[0] is None:
                    _, _, maximum = engine.get_tensor_profile_shape(name, 0)
                    self.max_batch = int(maximum[0])
            else:
                self.output_specs[name] = spec
        self.stream = _cuda_check(self.cudart.cudaStreamCreate())

    def run_chunk(self, inputs):
        cudart = self.cudart
        batch = next(iter(inputs.values())).shape[0]
        buffers, outputs = [], {}
        try:
            for name, value in inputs.items():
                value = np.ascontiguousarray(value)
                self.context.set_input_shape(name, value.shape)
                pointer = _cuda_check(cudart.cudaMalloc(value.nbytes))
                buffers.append(pointer)
                _cuda_check(cudart.cudaMemcpyAsync(
                    pointer, value.ctypes.data, value.nbytes,
                    cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))
                self.context.set_tensor_address(name, pointer)
            for name, spec in self.output_specs.items():
                shape = tuple(self.context.get_tensor_shape(name))
                host = np.empty(shape, dtype=spec.dtype)
                pointer = _cuda_check(cudart.cudaMalloc(max(host.nbytes, 1)))
                buffers.append(pointer)
                self.context.set_tensor_address(name, pointer)
                outputs[name] = (host, pointer)
            if not self.context.execute_async_v3(self.stream):
                raise RuntimeError(f"TensorRT execution failed (batch {batch})")
            for name, (host, pointer) in outputs.items():
                _cuda_check(cudart.cudaMemcpyAsync(
                    host.ctypes.data, pointer, host.nbytes,
                    cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))
            _cuda_check(cudart.cudaStreamSynchronize(self.stream))
        finally:
            for pointer in buffers:
                cudart.cudaFree(pointer)
        return {name: host for name, (host, _) in outputs.items()}


def _import_cudart(path: str):
    try:
        from cuda.bindings import runtime as cudart
        return cudart
    except ImportError:
        pass
    try:
        from cuda import cudart  # cuda-python < 12.6
        return cudart
    except ImportError as error:
        raise ArtefactError(f"{path}: running a TensorRT engine needs cuda-python "
                            "(pip install cuda-python)") from error


def _cuda_check(result):
    """cuda-python calls return (error, value...) tuples; raise on an error, return the value."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise RuntimeError(f"CUDA error {error}")
    return values[0] if len(values) == 1 else (tuple(values) or None)


class InferenceSession:
    """Runs one exported artefact (see the module docstring for the backends and contracts).

    Args:
      path: a ``.keras`` / ``.onnx`` / ``.tflite`` / ``.engine`` file or a SavedModel directory.
      providers: ONNX Runtime execution providers (None = TensorRT, CUDA, CPU as available).
      num_threads: intra-op threads for ONNX Runtime and LiteRT (None = the runtime's default).
      max_batch: run at most this many examples per call to the runtime (None = no limit, or the
        engine's profile maximum).
      tflite_op_resolver: LiteRT ``OpResolverType`` name, e.g.
        ``"BUILTIN_WITHOUT_DEFAULT_DELEGATES"`` to run without the XNNPACK delegate.
    """

    def __init__(self, path: str, providers: Optional[Sequence[str]] = None,
                 num_threads: Optional[int] = None, max_batch: Optional[int] = None,
                 tflite_op_resolver: Optional[str] = None):
        self.path = str(path)
        self.backend_name = detect_backend(self.path)
        if self.backend_name == "keras":
            if not zipfile.is_zipfile(self.path):
                raise ArtefactError(f"{self.path}: not a .keras archive (truncated, or another "
                                    "format); re-export it")
            self._backend = _KerasBackend(self.path)
        elif self.backend_name == "savedmodel":
            self._backend = _SavedModelBackend(self.path)
        elif self.backend_name == "onnx":
            self._backend = _OnnxBackend(self.path, providers, num_threads)
        elif self.backend_name == "tflite":
            self._backend = _TFLiteBackend(self.path, num_threads, tflite_op_resolver)
        else:
            self._backend = _TensorRTBackend(self.path)
        if providers is not None and self.backend_name != "onnx":
            raise ValueError(f"{self.path}: providers apply to .onnx artefacts only")
        limits = [limit for limit in (max_batch, self._backend.max_batch) if limit]
        self.max_batch = min(limits) if limits else None

    # --- description ---------------------------------------------------------------------
    @property
    def backend(self) -> str:
        """One of BACKENDS."""
        return self.backend_name

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(self._backend.input_specs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(self._backend.output_specs)

    @property
    def input_specs(self) -> dict[str, TensorSpec]:
        return dict(self._backend.input_specs)

    @property
    def output_specs(self) -> dict[str, TensorSpec]:
        return dict(self._backend.output_specs)

    @property
    def fixed_batch(self) -> Optional[int]:
        """The artefact's fixed batch size, or None when the batch is dynamic."""
        return self._backend.fixed_batch

    @property
    def providers(self) -> Optional[list[str]]:
        """The ONNX Runtime providers in use (None for other backends)."""
        return list(self._backend.providers) if self.backend_name == "onnx" else None

    def __repr__(self) -> str:
        return (f"InferenceSession({self.path!r}, backend={self.backend_name}, "
                f"inputs={list(self.input_names)}, outputs={list(self.output_names)})")

    # --- inference -----------------------------------------------------------------------
    def _prepare(self, inputs: Mapping[str, np.ndarray]) -> tuple[dict, int]:
        if not isinstance(inputs, Mapping):
            raise TypeError(f"{self.path}: run() takes a dict name -> array with names "
                            f"{list(self.input_names)}, got {type(inputs).__name__}")
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise KeyError(f"{self.path}: inputs lack {missing} (the artefact needs "
                           f"{list(self.input_names)}, given {sorted(inputs)})")
        extra = sorted(set(inputs) - set(self.input_names))
        if extra:
            raise KeyError(f"{self.path}: unknown inputs {extra} (the artefact needs "
                           f"{list(self.input_names)})")
        prepared, batches = {}, set()
        for name, spec in self._backend.input_specs.items():
            value = np.asarray(inputs[name])
            if spec.dtype != "object":
                value = value.astype(spec.dtype, copy=False)
            expected = spec.shape[1:]
            if value.ndim != len(spec.shape) or any(
                    want is not None and want != got for want, got in zip(expected,
                                                                          value.shape[1:])):
                raise ValueError(f"{self.path}: input {name!r} has shape {value.shape}, the "
                                 f"artefact needs {spec.shape} (None = any)")
            prepared[name] = value
            batches.add(value.shape[0])
        if len(batches) != 1:
            raise ValueError(f"{self.path}: inputs have different batch sizes {sorted(batches)}")
        return prepared, batches.pop()

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the artefact on a batch: ``{name: [B, ...]}`` -> ``{output name: [B, ...]}``."""
        prepared, batch = self._prepare(inputs)
        chunk = self._backend.fixed_batch or self.max_batch
        if batch == 0:
            raise ValueError(f"{self.path}: empty batch")
        if not chunk or (batch <= chunk and not self._backend.fixed_batch):
            return self._backend.run_chunk(prepared)
        pieces: dict[str, list] = {}
        for start in range(0, batch, chunk):
            part = {name: value[start:start + chunk] for name, value in prepared.items()}
            size = next(iter(part.values())).shape[0]
            if self._backend.fixed_batch and size < chunk:
                part = {name: np.concatenate([value, np.repeat(value[-1:], chunk - size, 0)])
                        for name, value in part.items()}
            for name, value in self._backend.run_chunk(part).items():
                pieces.setdefault(name, []).append(value[:size])
        return {name: np.concatenate(values) for name, values in pieces.items()}

    def warmup(self, batch_size: int = 1, runs: int = 1) -> None:
        """Runs ``runs`` zero batches of ``batch_size`` (kernels built, arenas allocated)."""
        zeros = {name: np.zeros((batch_size,) + tuple(dim or 1 for dim in spec.shape[1:]),
                                dtype=spec.dtype)
                 for name, spec in self._backend.input_specs.items()}
        for _ in range(runs):
            self.run(zeros)
