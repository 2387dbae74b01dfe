"""Configs of exporting a trained run (``python -m export.export``) and of verifying an export
(``python -m export.verify``); flags are generated from them (``tf_rgbd.config.flags``)."""
from __future__ import annotations

import dataclasses

from tf_rgbd.config import choice

GRAPH_NAMES = ("depthnet", "recognizer", "pipeline", "pipeline_sensor")
EXPORT_FORMATS = ("savedmodel", "onnx", "onnx_fp16", "onnx_int8", "tflite_fp32", "tflite_fp16",
                  "tflite_int8_dynamic", "tflite_int8", "tensorrt")
TENSORRT_PRECISIONS = ("fp32", "fp16", "int8")
TFLITE_INT8_RESOLVERS = ("auto", "xnnpack", "builtin_without_default_delegates")
# The parity gates of issue 9 (max |delta| for fp32 / fp16; cosine and rank-1 for int8).
FP32_MAX_ABS = 1e-4
FP16_MAX_ABS = 1e-2
INT8_MIN_MEAN_COSINE = 0.99
INT8_MAX_RANK1_DROP_POINTS = 1.0


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """One export of a trained run to deployable artefacts.

    Attributes:
      run_dir: the recognizer run (``config.json`` + ``recognizer.keras`` or checkpoints); may
        be empty for ``--graph=depthnet``.
      depthnet: the depth generator ``.keras`` ('' = the ``extra.generator`` recorded in the
        run's training-dataset manifest by augment_dataset).
      graph: which inference graph to export (see tf_rgbd.deploy.graphs).
      formats: artefact formats to write (comma list).
      output_dir: the export directory (manifest.json, parity.json, preprocessing.json, one
        folder per graph).
      data_dir: dataset for calibration and parity ('' = the run's training dataset; for
        rgb-input graphs its augmentation source when recorded).
      protocol: identification protocol for the int8 rank-1 gate ('' = the dataset's only
        protocol, else the evaluation default).
      train_split: split that calibration examples are read from.
      calibration_samples: training examples used to calibrate int8 artefacts.
      parity_samples: at most this many test-split examples are compared per artefact.
      batch_size: batch size when reading examples and running references.
      input_size: the pipeline graphs' input side S (0 = the generator's size).
      flip_test: embeddings sum the mirrored face's, as evaluation does.
      opset: ONNX opset (>= 17).
      nchw: ONNX inputs/outputs as NCHW (transposes added by tf2onnx).
      min_batch: TensorRT optimisation profile minimum batch.
      opt_batch: TensorRT optimisation profile batch that kernels are tuned for.
      max_batch: TensorRT optimisation profile maximum batch.
      tensorrt_precision: which ONNX the engine is built from (fp32: onnx, fp16: onnx_fp16,
        int8: onnx_int8 with its Q/DQ nodes); the network is strongly typed from it.
      tensorrt_workspace_mib: TensorRT builder workspace limit.
      tflite_int8_resolver: op resolver the full-int8 TFLite is verified with (auto = XNNPACK,
        falling back to the builtin kernels when XNNPACK refuses the model; recorded).
      force: re-export artefacts even when manifest and parity records still match.
      verify: run the parity gates at the end (export.verify runs them alone).
    """

    run_dir: str = ""
    depthnet: str = ""
    graph: str = choice("pipeline", GRAPH_NAMES)
    formats: tuple[str, ...] = EXPORT_FORMATS
    output_dir: str = ""
    data_dir: str = ""
    protocol: str = ""
    train_split: str = "train"
    calibration_samples: int = 128
    parity_samples: int = 256
    batch_size: int = 32
    input_size: int = 0
    flip_test: bool = True
    opset: int = 17
    nchw: bool = False
    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 32
    tensorrt_precision: str = choice("fp16", TENSORRT_PRECISIONS)
    tensorrt_workspace_mib: int = 2048
    tflite_int8_resolver: str = choice("auto", TFLITE_INT8_RESOLVERS)
    force: bool = False
    verify: bool = True

    def __post_init__(self):
        unknown = sorted(set(self.formats) - set(EXPORT_FORMATS))
        if unknown:
            raise ValueError(f"unknown formats {unknown}; choose from {list(EXPORT_FORMATS)}")
        if not self.formats:
            raise ValueError("formats is empty; name at least one of "
                             f"{list(EXPORT_FORMATS)}")
        if self.opset < 17:
            raise ValueError(f"opset must be >= 17, got {self.opset}")
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(f"need 1 <= min_batch <= opt_batch <= max_batch, got "
                             f"{self.min_batch}, {self.opt_batch}, {self.max_batch}")
        if self.calibration_samples < 1 or self.parity_samples < 1 or self.batch_size < 1:
            raise ValueError("calibration_samples, parity_samples and batch_size must be >= 1")


@dataclasses.dataclass(frozen=True)
class VerifyExportConfig:
    """Re-running the parity gates of an export directory (``python -m export.verify``).

    Attributes:
      output_dir: the export directory (its manifest.json names the artefacts and their data).
      data_dir: override the dataset recorded in the manifest ('' = recorded).
      parity_samples: at most this many test-split examples are compared per artefact.
      batch_size: batch size when reading examples.
      remove_failing: delete artefacts that fail their gate (export does; verify by default
        too, so a failing artefact never stays in an export directory).
    """

    output_dir: str = ""
    data_dir: str = ""
    parity_samples: int = 256
    batch_size: int = 32
    remove_failing: bool = True
