"""tf-rgbd: RGB-D face recognition trained on depth-augmented 2D data (TensorFlow / Keras)."""
from setuptools import find_packages, setup

# The pinned, tested dependency set.  MediaPipe 0.10.21 is the last release that bundles its
# face models; it needs protobuf < 5 and numpy < 2, which rules out TensorFlow >= 2.20.
INSTALL_REQUIRES = [
    "tensorflow==2.19.1",
    "keras==3.15.1",
    "mediapipe==0.10.21",
    "numpy==1.26.4",
    "protobuf==4.25.*",
    "opencv-python-headless==4.11.0.86",
    "tf2onnx==1.17.0",
    "onnx==1.22.0",
    "onnxruntime==1.31.1",
    "ai-edge-litert==2.3.0",
    "absl-py",
    "tqdm",
    "matplotlib",
    "scikit-learn",
    "pyyaml==6.0.2",
]

setup(
    name="tf-rgbd",
    version="0.1.0",
    description="Segmentation-aware depth GAN and segmentation-guided RGB-D face recognition",
    packages=find_packages(include=["tf_rgbd", "tf_rgbd.*", "datasets", "training", "export", "bench"]),
    python_requires=">=3.11,<3.12",
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "test": ["pytest", "pytest-xdist", "scikit-image"],
        # Dataset building / augmentation as Apache Beam pipelines (--runner=beam). 2.77.0
        # resolves with the protobuf 4.25 / numpy 1.26 pins above (measured: pip check clean).
        "beam": ["apache-beam==2.77.0"],
        # bench/train_throughput.py's PyTorch reference steps (CPU build).
        "bench": ["torch==2.13.0"],
    },
)
