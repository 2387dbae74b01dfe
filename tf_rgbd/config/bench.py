"""Configs of benchmark programs whose flags are generated (``bench/``)."""
from __future__ import annotations

import dataclasses

from tf_rgbd.config import choice

INFERENCE_GRAPHS = ("depthnet", "recognizer", "pipeline", "pipeline_sensor")
TFLITE_INT8_RESOLVERS = ("auto", "builtin_without_default_delegates")


@dataclasses.dataclass(frozen=True)
class InferenceLatencyConfig:
    """Latency of exported artefacts (``python -m bench.inference_latency``).

    Attributes:
      export_dir: an export directory (``python -m export.export``) to measure; with
        ``run_dir`` it is where the export is written first.
      run_dir: a trained recognizer run to export first ('' = measure ``export_dir`` as is).
      graphs: graphs to measure (and, with ``run_dir``, to export).
      formats: with ``run_dir``: formats to export (the Keras reference is always measured).
      batch_sizes: batch sizes timed per artefact.
      repeats: timed runs per (artefact, batch) after the warm-up runs.
      warmup_runs: untimed runs first (kernels built, arenas allocated).
      max_seconds_per_case: stop timing one (artefact, batch) after this long (>= 3 runs).
      num_threads: ONNX Runtime / LiteRT intra-op threads (0 = the runtime's default).
      calibration_samples: with ``run_dir``: int8 calibration examples.
      parity_samples: with ``run_dir``: examples compared by the export's parity gates.
      tflite_int8_resolver: LiteRT op resolver of full-int8 TFLite artefacts: ``auto`` (the
        one the export recorded, else XNNPACK) or ``builtin_without_default_delegates`` (the
        reference kernels; XNNPACK can refuse, or crash on, this graph's int8 ops).
    """

    export_dir: str = ""
    run_dir: str = ""
    graphs: tuple[str, ...] = ("pipeline",)
    formats: tuple[str, ...] = ("savedmodel", "onnx", "onnx_int8", "tflite_fp32",
                                "tflite_int8")
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    repeats: int = 30
    warmup_runs: int = 3
    max_seconds_per_case: float = 20.0
    num_threads: int = 0
    calibration_samples: int = 128
    parity_samples: int = 256
    tflite_int8_resolver: str = choice("auto", TFLITE_INT8_RESOLVERS)

    def __post_init__(self):
        unknown = sorted(set(self.graphs) - set(INFERENCE_GRAPHS))
        if unknown:
            raise ValueError(f"unknown graphs {unknown}; choose from {INFERENCE_GRAPHS}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"batch_sizes must be >= 1, got {self.batch_sizes}")
        if self.repeats < 3:
            raise ValueError(f"repeats must be >= 3 (p90 needs a few), got {self.repeats}")
