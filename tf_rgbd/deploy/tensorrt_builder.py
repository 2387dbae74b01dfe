"""TensorRT engines from the exported ONNX, on TensorRT's Python API >= 10.

    metadata = build_engine("exports/pipeline/pipeline_fp16.onnx",
                            "exports/pipeline/pipeline.engine",
                            profile_shapes(specs, 1, 8, 32), precision="fp16")

* Explicit batch only (TensorRT 10 has no implicit batch); one optimisation profile whose
  min/opt/max shapes come from ``--min_batch/--opt_batch/--max_batch`` and the ONNX's fixed
  dims.
* Strongly typed networks (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``, required by
  TensorRT 11): precision comes from the ONNX's own types, so the engine is built from the
  artefact of that precision: fp32 from ``<graph>.onnx``, fp16 from ``<graph>_fp16.onnx``, int8
  from the QDQ ``<graph>_int8.onnx`` (explicit quantisation; no deprecated INT8 calibrators).
* A timing cache is read and written back (``tensorrt.timing_cache`` in the export directory),
  so rebuilding on the same GPU skips kernel timing.
* The serialized engine is written atomically beside ``<engine>.json`` metadata (input/output
  names, shapes and dtypes, the profile, precision, TensorRT version, GPU name, source ONNX
  sha256 and the equivalent ``trtexec`` command, which is also printed).

TensorRT cannot be installed on the project's CPU machines (its wheels download their libraries
from NVIDIA's own index; PITFALLS #8), so :func:`build_engine` has not been run here; the
profile, metadata and trtexec logic are pure functions tested without the library.
"""
from __future__ import annotations

import os
import shlex
from typing import Mapping, Optional

from tf_rgbd import io_utils

MIN_TENSORRT_MAJOR = 10
PRECISIONS = ("fp32", "fp16", "int8")


def unavailable_reason() -> Optional[str]:
    """Why an engine cannot be built here (None when TensorRT >= 10 and a GPU are present)."""
    try:
        import tensorrt as trt  # noqa: PLC0415
    except ImportError:
        return ("TensorRT is not installed (its wheels fetch libraries from NVIDIA's package "
                "index, unreachable here)")
    major = int(trt.__version__.split(".")[0])
    if major < MIN_TENSORRT_MAJOR:
        return f"TensorRT {trt.__version__} is older than {MIN_TENSORRT_MAJOR}"
    try:
        builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
    except Exception as error:  # noqa: BLE001 (no GPU / driver)
        return f"TensorRT cannot create a builder ({error}); no usable NVIDIA GPU?"
    if builder is None:
        return "TensorRT cannot create a builder; no usable NVIDIA GPU?"
    return None


def onnx_input_specs(onnx_path: str) -> dict:
    """{input name: shape tuple with None for symbolic dims} of an ONNX model (no TensorRT)."""
    import onnx  # noqa: PLC0415
    model = onnx.load(onnx_path, load_external_data=False)
    initializers = {initializer.name for initializer in model.graph.initializer}
    specs = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        specs[value.name] = tuple(dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0
                                  else None for dim in dims)
    return specs


def profile_shapes(input_shapes: Mapping, min_batch: int, opt_batch: int, max_batch: int
                   ) -> dict:
    """{input: (min shape, opt shape, max shape)}: the batch dim from the arguments, every other
    dim fixed by the model (a symbolic non-batch dim is an error: the graphs have fixed sizes).

    ``input_shapes`` values are shape tuples or objects with a ``shape`` attribute.
    """
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise ValueError(f"need 1 <= min_batch <= opt_batch <= max_batch, got {min_batch}, "
                         f"{opt_batch}, {max_batch}")
    profile = {}
    for name, shape in input_shapes.items():
        shape = tuple(getattr(shape, "shape", shape))
        if not shape:
            raise ValueError(f"input {name!r} is a scalar; no batch dimension to profile")
        rest = shape[1:]
        if any(dim is None for dim in rest):
            raise ValueError(f"input {name!r} has a dynamic non-batch dim {shape}; the "
                             "exported graphs have fixed sizes")
        if shape[0] is not None and not min_batch == opt_batch == max_batch == shape[0]:
            raise ValueError(f"input {name!r} has a fixed batch {shape[0]}; set min/opt/max "
                             "batch to it or export with a dynamic batch")
        profile[name] = tuple((batch,) + tuple(int(dim) for dim in rest)
                              for batch in (min_batch, opt_batch, max_batch))
    return profile


def _shape_text(profile: Mapping, index: int) -> str:
    return ",".join(f"{name}:{'x'.join(str(dim) for dim in shapes[index])}"
                    for name, shapes in profile.items())


def trtexec_command(onnx_path: str, engine_path: str, profile: Mapping, precision: str,
                    workspace_mib: int = 2048, timing_cache: str = "") -> str:
    """The ``trtexec`` line that builds the same engine (strongly typed: no --fp16/--int8)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    arguments = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}",
                 "--stronglyTyped", f"--minShapes={_shape_text(profile, 0)}",
                 f"--optShapes={_shape_text(profile, 1)}",
                 f"--maxShapes={_shape_text(profile, 2)}",
                 f"--memPoolSize=workspace:{int(workspace_mib)}M"]
    if timing_cache:
        arguments.append(f"--timingCacheFile={timing_cache}")
    return shlex.join(arguments)


def engine_metadata(inputs: Mapping, outputs: Mapping, profile: Mapping, precision: str,
                    tensorrt_version: str, onnx_path: str, onnx_sha256: str,
                    trtexec: str, device: str = "") -> dict:
    """The JSON written beside an engine. ``inputs``/``outputs``: {name: {shape, dtype}}."""
    return {"format": "tensorrt", "precision": precision, "strongly_typed": True,
            "explicit_batch": True, "tensorrt_version": tensorrt_version, "device": device,
            "inputs": {name: dict(spec) for name, spec in inputs.items()},
            "outputs": {name: dict(spec) for name, spec in outputs.items()},
            "profile": {name: {"min": list(shapes[0]), "opt": list(shapes[1]),
                               "max": list(shapes[2])} for name, shapes in profile.items()},
            "source_onnx": os.path.basename(onnx_path), "source_onnx_sha256": onnx_sha256,
            "trtexec_command": trtexec}


def build_engine(onnx_path: str, engine_path: str, profile: Mapping, precision: str,
                 workspace_mib: int = 2048, timing_cache: str = "") -> dict:
    """Builds and writes the engine and its metadata; returns the metadata (see module)."""
    import numpy as np  # noqa: PLC0415
    import tensorrt as trt  # noqa: PLC0415
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(
        1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        errors = "; ".join(str(parser.get_error(index)) for index in range(parser.num_errors))
        raise ValueError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    cache_bytes = b""
    if timing_cache and os.path.exists(timing_cache):
        with open(timing_cache, "rb") as handle:
            cache_bytes = handle.read()
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    optimisation_profile = builder.create_optimization_profile()
    for name, (minimum, optimum, maximum) in profile.items():
        optimisation_profile.set_shape(name, minimum, optimum, maximum)
    config.add_optimization_profile(optimisation_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT could not build an engine from {onnx_path} (see its log)")
    data = bytes(serialized)
    with io_utils.atomic_output_path(engine_path, expected_bytes=len(data),
                                     what="TensorRT engine") as temporary:
        with open(temporary, "wb") as handle:
            handle.write(data)
    if timing_cache:
        io_utils.atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))

    def tensors(mode):
        specs = {}
        for index in range(network.num_inputs if mode == "input" else network.num_outputs):
            tensor = network.get_input(index) if mode == "input" else network.get_output(index)
            specs[tensor.name] = {"shape": [None if dim < 0 else int(dim)
                                            for dim in tensor.shape],
                                  "dtype": np.dtype(trt.nptype(tensor.dtype)).name}
        return specs

    try:
        from cuda.bindings import runtime as cudart  # noqa: PLC0415
        _, properties = cudart.cudaGetDeviceProperties(0)
        device = properties.name.decode() if isinstance(properties.name, bytes) else str(
            properties.name)
    except Exception:  # noqa: BLE001 (the device name is informative only)
        device = ""
    metadata = engine_metadata(
        tensors("input"), tensors("output"), profile, precision, trt.__version__, onnx_path,
        io_utils.sha256_of_file(onnx_path),
        trtexec_command(onnx_path, engine_path, profile, precision, workspace_mib, timing_cache),
        device)
    io_utils.atomic_write_json(engine_path + ".json", metadata)
    print(f"trtexec equivalent: {metadata['trtexec_command']}")
    return metadata
