"""TensorRT engine building: the profile, trtexec and metadata logic (no library needed); the
engine build itself needs TensorRT >= 10 and an NVIDIA GPU."""
import json
import os

import pytest

from tf_rgbd.deploy import tensorrt_builder
from tf_rgbd.deploy.session import TensorSpec


def test_profile_shapes_from_specs_and_onnx_shapes():
    specs = {"rgb": TensorSpec("rgb", (None, 112, 112, 3), "float32"),
             "depth": (None, 1, 112, 112)}
    profile = tensorrt_builder.profile_shapes(specs, 1, 8, 32)
    assert profile == {"rgb": ((1, 112, 112, 3), (8, 112, 112, 3), (32, 112, 112, 3)),
                       "depth": ((1, 1, 112, 112), (8, 1, 112, 112), (32, 1, 112, 112))}
    with pytest.raises(ValueError, match="min_batch <= opt_batch"):
        tensorrt_builder.profile_shapes(specs, 8, 1, 32)
    with pytest.raises(ValueError, match="dynamic non-batch dim"):
        tensorrt_builder.profile_shapes({"rgb": (None, None, 112, 3)}, 1, 1, 1)
    with pytest.raises(ValueError, match="fixed batch 4"):
        tensorrt_builder.profile_shapes({"rgb": (4, 112, 112, 3)}, 1, 2, 4)
    assert tensorrt_builder.profile_shapes({"rgb": (4, 8, 8, 3)}, 4, 4, 4)["rgb"][2] == (4, 8, 8, 3)


def test_trtexec_command_and_metadata(tmp_path):
    profile = tensorrt_builder.profile_shapes({"rgb": (None, 16, 16, 3)}, 1, 4, 8)
    command = tensorrt_builder.trtexec_command("/e/p_fp16.onnx", "/e/p.engine", profile, "fp16",
                                               1024, "/e/tensorrt.timing_cache")
    assert command == ("trtexec --onnx=/e/p_fp16.onnx --saveEngine=/e/p.engine --stronglyTyped "
                       "--minShapes=rgb:1x16x16x3 --optShapes=rgb:4x16x16x3 "
                       "--maxShapes=rgb:8x16x16x3 --memPoolSize=workspace:1024M "
                       "--timingCacheFile=/e/tensorrt.timing_cache")
    # Strongly typed: the precision comes from the ONNX, never from --fp16/--int8 flags.
    assert "--fp16" not in command and "--int8" not in command
    with pytest.raises(ValueError, match="precision"):
        tensorrt_builder.trtexec_command("a.onnx", "a.engine", profile, "int4")
    metadata = tensorrt_builder.engine_metadata(
        {"rgb": {"shape": [None, 16, 16, 3], "dtype": "float32"}},
        {"score_embedding": {"shape": [None, 32], "dtype": "float32"}}, profile, "fp16",
        "10.9.0", "/e/p_fp16.onnx", "ab" * 32, command, "NVIDIA H200")
    assert metadata["profile"]["rgb"] == {"min": [1, 16, 16, 3], "opt": [4, 16, 16, 3],
                                          "max": [8, 16, 16, 3]}
    assert metadata["source_onnx"] == "p_fp16.onnx" and metadata["strongly_typed"]
    json.dumps(metadata)  # JSON-ready


def test_onnx_input_specs_reads_the_batch_as_dynamic(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        [helper.make_node("Identity", ["rgb"], ["out"])], "g",
        [helper.make_tensor_value_info("rgb", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3, 16, 16])])
    path = str(tmp_path / "g.onnx")
    onnx.save(helper.make_model(graph), path)
    assert tensorrt_builder.onnx_input_specs(path) == {"rgb": (None, 3, 16, 16)}


def test_engine_build_needs_tensorrt(tmp_path):
    reason = tensorrt_builder.unavailable_reason()
    if reason:
        assert "TensorRT" in reason
        pytest.skip(f"engine build not run: {reason}")
    # pragma: no cover - machines with TensorRT >= 10 and a GPU
    import onnx
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        [helper.make_node("Relu", ["rgb"], ["out"])], "g",
        [helper.make_tensor_value_info("rgb", TensorProto.FLOAT, ["batch", 8, 8, 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 8, 8, 3])])
    source = str(tmp_path / "g.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), source)
    engine = str(tmp_path / "g.engine")
    profile = tensorrt_builder.profile_shapes({"rgb": (None, 8, 8, 3)}, 1, 2, 4)
    metadata = tensorrt_builder.build_engine(source, engine, profile, "fp32",
                                             timing_cache=str(tmp_path / "cache"))
    assert os.path.getsize(engine) > 0 and metadata["inputs"]["rgb"]["shape"][0] is None
    from tf_rgbd.deploy.session import InferenceSession
    import numpy as np
    session = InferenceSession(engine)
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(session.run({"rgb": x})["out"], np.maximum(x, 0), atol=1e-6)
