"""Latency and throughput of an export directory's artefacts against the Keras graph, measured
in one process (``bench/inference_latency.py`` and the demo's latency table use it).

For each graph x artefact (backend, precision) x batch size: p50 / p90 wall-clock latency of
``InferenceSession.run`` (ms, after warm-up runs), throughput (images/s at p50), the ratio of
p50 to the Keras graph's at the same batch (``keras``: the ``.keras`` graph through
``tf.function``; ``keras_eager`` is ``InferenceSession``'s eager call of it), an int8
artefact's ratio to its fp32 counterpart, file sizes (and int8 size ratios) and each
artefact's parity result as recorded by the export. Inputs are random tensors of the graph's
input shapes (latency does not depend on content).
"""
from __future__ import annotations

import os
import time
from typing import Callable, Mapping, Sequence

import numpy as np

from tf_rgbd.config.bench import InferenceLatencyConfig

# int8 artefact -> its fp32 counterpart (issue 9's 0.4x latency and 4x size goals).
INT8_COUNTERPARTS = {"onnx_int8": "onnx", "tflite_int8": "tflite_fp32",
                     "tflite_int8_dynamic": "tflite_fp32"}


def random_inputs(session, batch: int, seed: int = 0) -> dict:
    """Random float inputs of ``session``'s input shapes with batch ``batch`` (rgb in [-1, 1],
    anything else in [0, 1])."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for name, spec in session.input_specs.items():
        shape = (batch,) + tuple(dim or 1 for dim in spec.shape[1:])
        low = -1.0 if name == "rgb" else 0.0
        inputs[name] = rng.uniform(low, 1.0, shape).astype(spec.dtype)
    return inputs


def time_session(session, batch: int, repeats: int, warmup_runs: int = 1,
                 max_seconds: float = 20.0) -> dict:
    """p50 / p90 latency (ms) and images/s of ``session.run`` at ``batch`` (at least 3 timed
    runs; at most ``repeats``, stopping after ``max_seconds``)."""
    inputs = random_inputs(session, batch)
    for _ in range(warmup_runs):
        session.run(inputs)
    times = []
    started = time.perf_counter()
    while len(times) < repeats:
        begin = time.perf_counter()
        session.run(inputs)
        times.append(time.perf_counter() - begin)
        if len(times) >= 3 and time.perf_counter() - started > max_seconds:
            break
    milliseconds = np.array(times) * 1000.0
    p50 = float(np.percentile(milliseconds, 50))
    return {"batch": batch, "runs": len(times), "p50_ms": round(p50, 3),
            "p90_ms": round(float(np.percentile(milliseconds, 90)), 3),
            "images_per_s": round(batch * 1000.0 / p50, 1)}


class KerasGraphMode:
    """The ``.keras`` graph called through ``tf.function`` (graph mode, what ``model.predict``
    runs): the Keras reference every ratio is taken to. ``InferenceSession`` calls Keras
    models eagerly, which on these graphs is dominated by per-op Python overhead; it is
    measured too, as ``keras_eager``."""

    backend = "keras"

    def __init__(self, path: str, session):
        import tensorflow as tf  # noqa: PLC0415

        from tf_rgbd.deploy import graphs  # noqa: F401,PLC0415 (registers the graph layers)
        from tf_rgbd.models import loading  # noqa: PLC0415
        model = loading.load_keras_model(path)
        self.input_specs = session.input_specs
        self._forward = tf.function(lambda inputs: model(inputs, training=False),
                                    reduce_retracing=True)

    def run(self, inputs: dict) -> dict:
        return {name: value.numpy() for name, value in self._forward(inputs).items()}


def open_session(export_dir: str, entry: Mapping, num_threads: int = 0,
                 tflite_int8_resolver: str = "auto"):
    """(InferenceSession of a manifest entry, the LiteRT op resolver used or '')."""
    from tf_rgbd.deploy.session import InferenceSession  # noqa: PLC0415
    kwargs = {}
    if entry.get("tflite_op_resolver"):
        kwargs["tflite_op_resolver"] = entry["tflite_op_resolver"]
    if entry["format"] == "tflite_int8" and tflite_int8_resolver != "auto":
        kwargs["tflite_op_resolver"] = tflite_int8_resolver.upper()
    if entry.get("runtime") == "onnxruntime":
        kwargs["providers"] = ["CPUExecutionProvider"]
    session = InferenceSession(os.path.join(export_dir, entry["path"]),
                               num_threads=num_threads or None, **kwargs)
    return session, kwargs.get("tflite_op_resolver", "")


def measure_export(export_dir: str, config: InferenceLatencyConfig,
                   graphs: Sequence[str] = (), log: Callable[[str], None] = print,
                   exclude: Sequence[str] = ()) -> list[dict]:
    """One row per graph x artefact x batch size of the export in ``export_dir``.

    Args:
      export_dir: an export directory (``manifest.json``).
      config: batch sizes, repeats, warm-up, time limit, threads, int8 resolver (its
        ``export_dir`` / ``run_dir`` / ``formats`` are not used here).
      graphs: graphs to measure (default ``config.graphs``).
      exclude: row labels not measured (e.g. ``keras_eager``).

    Returns:
      Rows ``{graph, format, backend, tflite_op_resolver, precision, size_bytes, parity
      (ref / pass / FAIL / none), batch, runs, p50_ms, p90_ms, images_per_s, ratio_to_keras,
      ratio_to_fp32[, size_ratio_fp32_to_this]}``.
    Raises:
      ValueError: no manifest, or no artefact of a requested graph.
    """
    from tf_rgbd.deploy import export as export_lib  # noqa: PLC0415 (imports TensorFlow)

    if not os.path.isfile(os.path.join(export_dir, export_lib.MANIFEST_FILE)):
        raise ValueError(f"{export_dir} has no {export_lib.MANIFEST_FILE}: give an export "
                         "directory (python -m export.export) or --run_dir to export")
    artefacts = export_lib.load_manifest(export_dir).get("artefacts") or {}
    rows: list[dict] = []
    for graph in graphs or config.graphs:
        entries = {entry["format"]: entry for entry in artefacts.values()
                   if entry.get("graph") == graph}
        if not entries:
            raise ValueError(f"{export_dir}: no {graph} artefacts (the export has "
                             f"{sorted(artefacts)})")
        # The Keras reference first (graph mode; eager as keras_eager): every ratio is to it,
        # measured in this same run.
        cases = [("keras", "keras")] if "keras" in entries else []
        cases += [("keras_eager" if fmt == "keras" else fmt, fmt)
                  for fmt in sorted(entries, key=lambda fmt: (fmt != "keras", fmt))]
        cases = [(label, fmt) for label, fmt in cases if label not in exclude]
        measured: dict[tuple[str, int], dict] = {}
        for label, fmt in cases:
            entry = entries[fmt]
            session, resolver = open_session(export_dir, entry, config.num_threads,
                                             config.tflite_int8_resolver)
            if label == "keras":
                session = KerasGraphMode(os.path.join(export_dir, entry["path"]), session)
            parity = entry.get("parity") or {}
            for batch in config.batch_sizes:
                timing = time_session(session, batch, config.repeats, config.warmup_runs,
                                      config.max_seconds_per_case)
                row = {"graph": graph, "format": label, "backend": session.backend,
                       "tflite_op_resolver": resolver,
                       "precision": entry.get("precision", "fp32"),
                       "size_bytes": int(entry.get("size_bytes") or export_lib.path_size(
                           os.path.join(export_dir, entry["path"]))),
                       "parity": ("ref" if label == "keras" else "pass" if parity.get("passed")
                                  else "FAIL" if parity else "none"),
                       **timing}
                keras = measured.get(("keras", batch))
                row["ratio_to_keras"] = (None if keras is None else
                                         round(row["p50_ms"] / keras["p50_ms"], 3))
                fp32 = measured.get((INT8_COUNTERPARTS.get(fmt, ""), batch))
                row["ratio_to_fp32"] = (None if fp32 is None else
                                        round(row["p50_ms"] / fp32["p50_ms"], 3))
                if fp32 is not None:
                    row["size_ratio_fp32_to_this"] = round(fp32["size_bytes"] /
                                                           row["size_bytes"], 2)
                measured[(label, batch)] = row
                rows.append(row)
                log(f"  {graph}/{label} batch {batch}: p50 {row['p50_ms']:.2f} ms")
            del session
            if resolver:
                log(f"  ({graph}/{label} ran with LiteRT {resolver})")
    return rows


def format_latency_table(rows: Sequence[Mapping]) -> str:
    """The rows of :func:`measure_export` as a plain-text table."""
    header = (f"{'graph':<16} {'format':<20} {'prec':<6} {'batch':>5} {'p50 ms':>9} "
              f"{'p90 ms':>9} {'img/s':>8} {'x keras':>8} {'x fp32':>7} {'size':>10} "
              f"{'fp32/size':>9} {'parity':>7}")
    lines = [header, "-" * len(header)]
    for row in rows:
        def ratio(key):
            value = row.get(key)
            return "" if value is None else f"{value:.2f}"
        lines.append(
            f"{row['graph']:<16} {row['format']:<20} {row['precision']:<6} {row['batch']:>5} "
            f"{row['p50_ms']:>9.2f} {row['p90_ms']:>9.2f} {row['images_per_s']:>8.1f} "
            f"{ratio('ratio_to_keras'):>8} {ratio('ratio_to_fp32'):>7} "
            f"{row['size_bytes'] / 1e6:>8.2f}MB {ratio('size_ratio_fp32_to_this'):>9} "
            f"{row['parity']:>7}")
    return "\n".join(lines)
