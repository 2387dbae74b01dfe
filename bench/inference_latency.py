"""Latency and throughput of every exported artefact, against the Keras graph in the same run.

  python -m bench.inference_latency --export_dir=/tmp/export
  python -m bench.inference_latency --run_dir=runs/recognizer/full --export_dir=/tmp/bench_export \
      --graphs=pipeline --formats=onnx,onnx_int8,tflite_fp32,tflite_int8

For each graph x artefact (backend, precision) x batch size: p50 / p90 wall-clock latency of
``InferenceSession.run`` (ms, after warm-up runs), throughput (images/s at p50), the ratio of
p50 to the Keras graph's at the same batch (``x keras``: the ``.keras`` graph through
``tf.function``; ``keras_eager`` is ``InferenceSession``'s eager call of it), an int8 artefact's ratio to its fp32
counterpart (``onnx_int8`` / ``onnx``, ``tflite_int8`` / ``tflite_fp32``), file sizes (and
int8 size ratios) and each artefact's parity result as recorded by the export. Inputs are
random tensors of the graph's input shapes (latency does not depend on content). With
``--run_dir`` the graphs are exported first (``tf_rgbd.deploy.export.export_run``, parity
gates included). Prints a table and writes ``bench/results/inference_latency.json``; the
machine's load average is recorded with it: timings on a shared machine are only comparable
within one run. Flags: ``tf_rgbd.config.bench.InferenceLatencyConfig``; the measuring is
``tf_rgbd.deploy.latency``.
"""
from __future__ import annotations

import os
from typing import Optional

from tf_rgbd import benchmarks, cli
from tf_rgbd.config import flags as config_flags
from tf_rgbd.config.bench import InferenceLatencyConfig

CONFIG_FLAGS = config_flags.define_config_flags(InferenceLatencyConfig(),
                                                required=("export_dir",))


def _export_first(config: InferenceLatencyConfig) -> None:
    from tf_rgbd.config.export import ExportConfig  # noqa: PLC0415
    from tf_rgbd.deploy import export as export_lib  # noqa: PLC0415
    for graph in config.graphs:
        summary = export_lib.export_run(ExportConfig(
            run_dir=config.run_dir, graph=graph, formats=config.formats,
            output_dir=config.export_dir, calibration_samples=config.calibration_samples,
            parity_samples=config.parity_samples))
        if not summary.get("passed", False):
            print(f"warning: some {graph} artefacts failed their parity gate and were removed; "
                  "they are not measured")


def main(argv) -> Optional[int]:
    del argv
    config = CONFIG_FLAGS.config()
    if config.run_dir:
        _export_first(config)
    from tf_rgbd.deploy import latency  # noqa: PLC0415 (imports TensorFlow)

    rows = latency.measure_export(config.export_dir, config)  # ValueError: a user error
    table = latency.format_latency_table(rows)
    print(table)
    path = benchmarks.write_results(__file__, "inference_latency", {
        "export_dir": os.path.abspath(config.export_dir), "graphs": list(config.graphs),
        "batch_sizes": list(config.batch_sizes), "num_threads": config.num_threads,
        "repeats": config.repeats, "rows": rows, "table": table})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    cli.run(main)
