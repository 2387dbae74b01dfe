"""Experiment orchestration: "train these variants, then evaluate each of them".

The top of the library (it imports training and evaluation, nothing imports it but programs
and benchmarks)::

    result = train_then_evaluate(experiments, evaluate=True,
                                 eval_depth_sources=("generated", "gt"), summary_dir=...)
    print(result["table"])
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

from tf_rgbd import io_utils
from tf_rgbd.config.recognizer import RecognizerEvalConfig, RecognizerExperimentConfig
from tf_rgbd.eval import recognition
from tf_rgbd.metrics import identification
from tf_rgbd.training.recognizer_training import run_training

VARIANTS_SUMMARY_FILE = "variants_summary.json"


def train_then_evaluate(experiments: Sequence[RecognizerExperimentConfig], evaluate: bool,
                        eval_data_dir: Optional[str] = None, protocol: str = "lock3dface_style",
                        eval_depth_sources: Sequence[str] = (), flip_test: bool = True,
                        summary_dir: Optional[str] = None, print_tables: bool = True) -> dict:
    """Trains each experiment, evaluates it for every depth source, and combines the tables.

    The library side of ``training/train_recognizer.py --variants=... --evaluate``.

    Args:
      experiments: one config per run (each with its own ``run.model_dir``).
      evaluate: evaluate every trained run on ``protocol``.
      eval_data_dir: dataset holding the protocol (default: each run's training data).
      eval_depth_sources: depth sources to evaluate with (default: each run's own);
        runs without a depth branch are evaluated once.
      summary_dir: also write ``variants_summary.json`` there.

    Returns:
      ``{"runs": {variant: {"training": summary, "evaluation": {source: metrics}}},
      "table": text}``.
    """
    runs, table_rows, subsets = {}, {}, None
    for experiment in experiments:
        training_summary = run_training(experiment)
        run = {"training": training_summary, "evaluation": {}}
        if evaluate:
            sources = tuple(eval_depth_sources) or (experiment.depth_source,)
            with_depth = "depth" in experiment.model.modalities
            if not with_depth:
                sources = sources[:1]  # the depth source is irrelevant without a depth branch
            for source in sources:
                metrics = recognition.evaluate_recognizer(RecognizerEvalConfig(
                    data_dir=eval_data_dir or experiment.run.data_dir,
                    model_dir=experiment.run.model_dir, protocol=protocol,
                    depth_source=source, flip_test=flip_test))
                run["evaluation"][source] = {key: value for key, value in metrics.items()
                                             if key != "tables"}
                if print_tables:
                    print(metrics["tables"]["identification"])
                    print(metrics["tables"]["verification"])
                subsets = subsets or list(metrics["num_probes"])
                for method, values in metrics["identification"].items():
                    label = recognition.METHOD_NAMES.get(method, method)
                    source_note = f", {source} depth" if with_depth else ""
                    table_rows[f"{experiment.variant}: {label}{source_note}"] = {
                        **{subset: entry["rank1"] for subset, entry in values["subsets"].items()},
                        "average": values["average_rank1"]}
        runs[experiment.variant] = run
    table = (identification.format_identification_table(table_rows, subsets, "rank-1 %")
             if table_rows else "")
    if table and print_tables:
        print(table)
    result = {"runs": runs, "table": table}
    if summary_dir:
        io_utils.atomic_write_json(os.path.join(summary_dir, VARIANTS_SUMMARY_FILE), result)
    return result
