"""Parity gates: every exported artefact, run in its real runtime on real test-split examples,
against the Keras inference graph it came from.

Gates (issue 9; thresholds in ``tf_rgbd.config.export``):

=========  ===================================================================================
gate       passes when
=========  ===================================================================================
``fp32``   max |delta| <= 1e-4 on every output (embeddings, depth, mask probabilities)
``fp16``   max |delta| <= 1e-2 on every output
``int8``   graphs with embeddings: mean row cosine >= 0.99 for every embedding output AND
           rank-1 (``score_embedding`` = fused score, on the dataset's protocol, computed with
           ``tf_rgbd.metrics.identification``) at most 1 point below the Keras graph's;
           ``depthnet`` (no embeddings; a choice of this module): mean |delta depth| <= 0.02
           and the mask argmax agreeing on >= 95 % of pixels
=========  ===================================================================================

Which gate an artefact gets comes from its precision (``FORMAT_GATES``; a TensorRT engine
from the ONNX it was built from). :func:`check_gate` is pure (numbers in, verdict out) so the
gate logic is tested on its own; :func:`compare_outputs` computes the numbers.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Mapping, Optional, Sequence

import numpy as np

from tf_rgbd.config import export as export_config

FORMAT_GATES = {"keras": "fp32", "savedmodel": "fp32", "onnx": "fp32", "onnx_fp16": "fp16",
                "onnx_int8": "int8", "tflite_fp32": "fp32", "tflite_fp16": "fp16",
                "tflite_int8_dynamic": "int8", "tflite_int8": "int8"}
TENSORRT_GATES = {"fp32": "fp32", "fp16": "fp16", "int8": "int8"}
EMBEDDING_PREFIX = "id_"
SCORE_EMBEDDING = "score_embedding"
DEPTHNET_INT8_MAX_MEAN_ABS_DEPTH = 0.02
DEPTHNET_INT8_MIN_MASK_AGREEMENT = 0.95


def gate_for(artefact_format: str, tensorrt_precision: Optional[str] = None) -> str:
    """The gate (fp32 / fp16 / int8) of an artefact format."""
    if artefact_format == "tensorrt":
        return TENSORRT_GATES[tensorrt_precision or "fp32"]
    if artefact_format not in FORMAT_GATES:
        raise ValueError(f"no parity gate for format {artefact_format!r}")
    return FORMAT_GATES[artefact_format]


def is_embedding(name: str) -> bool:
    return name.startswith(EMBEDDING_PREFIX) or name == SCORE_EMBEDDING


def compare_outputs(reference: Mapping[str, np.ndarray],
                    candidate: Mapping[str, np.ndarray]) -> dict:
    """Per output name: ``max_abs``, ``mean_abs``; embeddings also ``mean_cosine`` and
    ``min_cosine`` (row-wise); ``mask`` also ``argmax_agreement`` (fraction of pixels)."""
    missing = sorted(set(reference) - set(candidate))
    if missing:
        raise KeyError(f"the artefact lacks outputs {missing} (has {sorted(candidate)})")
    numbers = {}
    for name, expected in reference.items():
        expected = np.asarray(expected, np.float64)
        actual = np.asarray(candidate[name], np.float64)
        if expected.shape != actual.shape:
            raise ValueError(f"output {name!r}: shape {actual.shape}, the Keras graph gives "
                             f"{expected.shape}")
        delta = np.abs(expected - actual)
        entry = {"max_abs": float(delta.max()), "mean_abs": float(delta.mean())}
        if is_embedding(name):
            norms = (np.linalg.norm(expected, axis=-1) * np.linalg.norm(actual, axis=-1))
            cosines = np.sum(expected * actual, axis=-1) / np.maximum(norms, 1e-12)
            entry.update(mean_cosine=float(cosines.mean()), min_cosine=float(cosines.min()))
        if name == "mask":
            entry["argmax_agreement"] = float(np.mean(np.argmax(expected, -1)
                                                      == np.argmax(actual, -1)))
        numbers[name] = entry
    return numbers


@dataclasses.dataclass(frozen=True)
class GateVerdict:
    passed: bool
    failures: tuple[str, ...]
    thresholds: dict


def check_gate(gate: str, comparisons: Mapping[str, Mapping[str, float]],
               rank1_reference: Optional[float] = None,
               rank1_candidate: Optional[float] = None) -> GateVerdict:
    """The verdict of one artefact: ``comparisons`` from :func:`compare_outputs`; rank-1 values
    in percent (needed by the int8 gate of graphs with embeddings; None = not measured, which
    fails that gate)."""
    failures = []
    if gate in ("fp32", "fp16"):
        limit = export_config.FP32_MAX_ABS if gate == "fp32" else export_config.FP16_MAX_ABS
        thresholds = {"max_abs": limit}
        for name, numbers in comparisons.items():
            if not numbers["max_abs"] <= limit:
                failures.append(f"{name}: max |delta| {numbers['max_abs']:.3g} > {limit:g}")
    elif gate == "int8":
        embeddings = [name for name in comparisons if is_embedding(name)]
        if embeddings:
            thresholds = {"mean_cosine": export_config.INT8_MIN_MEAN_COSINE,
                          "rank1_drop_points": export_config.INT8_MAX_RANK1_DROP_POINTS}
            for name in embeddings:
                cosine = comparisons[name]["mean_cosine"]
                if not cosine >= export_config.INT8_MIN_MEAN_COSINE:
                    failures.append(f"{name}: mean cosine {cosine:.4f} < "
                                    f"{export_config.INT8_MIN_MEAN_COSINE}")
            if rank1_reference is None or rank1_candidate is None:
                failures.append("rank-1 not measured (no protocol with gallery and probes in "
                                "the parity examples)")
            elif not rank1_reference - rank1_candidate <= export_config.INT8_MAX_RANK1_DROP_POINTS:
                failures.append(f"rank-1 {rank1_candidate:.2f}% is "
                                f"{rank1_reference - rank1_candidate:.2f} points below Keras' "
                                f"{rank1_reference:.2f}% (limit "
                                f"{export_config.INT8_MAX_RANK1_DROP_POINTS})")
        else:
            thresholds = {"depth_mean_abs": DEPTHNET_INT8_MAX_MEAN_ABS_DEPTH,
                          "mask_argmax_agreement": DEPTHNET_INT8_MIN_MASK_AGREEMENT}
            if "depth" in comparisons and not (comparisons["depth"]["mean_abs"]
                                               <= DEPTHNET_INT8_MAX_MEAN_ABS_DEPTH):
                failures.append(f"depth: mean |delta| {comparisons['depth']['mean_abs']:.4f} > "
                                f"{DEPTHNET_INT8_MAX_MEAN_ABS_DEPTH}")
            if "mask" in comparisons and not (comparisons["mask"]["argmax_agreement"]
                                              >= DEPTHNET_INT8_MIN_MASK_AGREEMENT):
                failures.append(f"mask: argmax agrees on "
                                f"{100 * comparisons['mask']['argmax_agreement']:.1f}% of pixels "
                                f"< {100 * DEPTHNET_INT8_MIN_MASK_AGREEMENT:.0f}%")
    else:
        raise ValueError(f"unknown gate {gate!r}")
    return GateVerdict(passed=not failures, failures=tuple(failures), thresholds=thresholds)


def rank1_percent(score_embeddings: np.ndarray, labels: np.ndarray, example_ids: Sequence[str],
                  gallery_ids: Sequence[str], probe_ids: Sequence[str]) -> Optional[float]:
    """Rank-1 (%) of the probes against the gallery with fused scores (dot products of
    ``score_embedding``), by ``tf_rgbd.metrics.identification``; None when either set is
    absent from ``example_ids``."""
    from tf_rgbd.metrics import identification  # noqa: PLC0415
    position = {example_id: index for index, example_id in enumerate(example_ids)}
    gallery = [position[i] for i in gallery_ids if i in position]
    probes = [position[i] for i in probe_ids if i in position]
    if not gallery or not probes:
        return None
    # In float64 whatever the artefact's output type: a float16 matmul rounds the scores to
    # ~5e-4 near 1, so many gallery scores tie and ties count against the probe (a float16
    # ONNX artefact read 19.5 -> 12.5 rank-1 with embeddings within 7e-4 of Keras').
    embeddings = np.asarray(score_embeddings, dtype=np.float64)
    scores = embeddings[probes] @ embeddings[gallery].T
    result = identification.identify(scores, labels[probes], labels[gallery], max_rank=1)
    return 100.0 * result.rank1


def median_latency_ms(run, inputs: Mapping[str, np.ndarray], repeats: int = 5) -> float:
    """Median wall time (ms) of ``run`` on the first example of ``inputs`` (batch 1)."""
    single = {name: value[:1] for name, value in inputs.items()}
    run(single)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(single)
        times.append(1000.0 * (time.perf_counter() - started))
    return float(np.median(times))


def format_parity_table(results: Sequence[Mapping]) -> str:
    """One line per comparison: artefact, gate, verdict, worst max |delta|, min mean cosine,
    rank-1 (Keras -> artefact), batch-1 latency."""
    header = (f"{'artefact':34s} {'gate':5s} {'result':6s} {'max|d|':>9s} {'cos':>8s} "
              f"{'rank1 keras->art':>17s} {'ms/b1':>7s}")
    lines = [header, "-" * len(header)]
    for result in results:
        outputs = result.get("outputs", {})
        worst = max((entry["max_abs"] for entry in outputs.values()), default=None)
        cosines = [entry["mean_cosine"] for entry in outputs.values() if "mean_cosine" in entry]
        cosine = f"{min(cosines):.5f}" if cosines else "-"
        rank1 = result.get("rank1") or {}
        rank1_text = (f"{rank1['keras']:.1f}->{rank1['artefact']:.1f}"
                      if rank1.get("keras") is not None and rank1.get("artefact") is not None
                      else "-")
        latency = result.get("latency_ms_batch1")
        lines.append(f"{result['artefact']:34s} {result['gate']:5s} "
                     f"{'pass' if result['passed'] else 'FAIL':6s} "
                     f"{'-' if worst is None else format(worst, '.2e'):>9s} {cosine:>8s} "
                     f"{rank1_text:>17s} {latency if latency is None else round(latency, 2)!s:>7s}")
    return "\n".join(lines)
