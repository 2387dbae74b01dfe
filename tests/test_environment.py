"""The pinned stack is what is installed (a drifting install breaks export and MediaPipe)."""
from importlib import metadata

import pytest

PINNED = {"tensorflow": "2.19.1", "keras": "3.15.1", "mediapipe": "0.10.21", "numpy": "1.26.4",
          "opencv-python-headless": "4.11.0.86", "tf2onnx": "1.17.0", "onnx": "1.22.0",
          "onnxruntime": "1.31.1", "ai-edge-litert": "2.3.0"}


@pytest.mark.parametrize("package, version", sorted(PINNED.items()))
def test_pinned_versions(package, version):
    assert metadata.version(package) == version


def test_exactly_one_opencv_build_and_it_imports():
    # mediapipe pulls opencv-contrib-python, which also owns cv2/ and links libGL (PITFALLS #6).
    installed = {dist.metadata["Name"].lower() for dist in metadata.distributions()}
    assert {name for name in installed if name.startswith("opencv")} == {"opencv-python-headless"}
    import cv2
    assert cv2.imencode(".png", cv2.UMat(4, 4, cv2.CV_8UC3).get())[0]


def test_protobuf_is_below_5_and_tensorflow_addons_is_absent():
    assert int(metadata.version("protobuf").split(".")[0]) == 4
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.version("tensorflow-addons")
