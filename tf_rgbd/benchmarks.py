"""What every benchmark program shares: the machine it measured on, and its JSON results.

Benchmarks (``bench/*.py``) print their figures and write them, with the machine's facts and
the command line, to ``bench/results/<name>.json``::

    benchmarks.write_results(__file__, "pipeline_throughput", {"rows": rows})
"""
from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any, Mapping

from tf_rgbd import io_utils

RESULTS_SUBDIR = "results"
# Tests point benchmarks elsewhere so tiny runs never overwrite measured results.
RESULTS_DIR_VARIABLE = "TF_RGBD_BENCH_RESULTS_DIR"


def machine_facts() -> dict[str, Any]:
    """CPU count, load average, Python and library versions (for comparing result files)."""
    facts: dict[str, Any] = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                             "python": platform.python_version()}
    try:
        facts["load_average_1_5_15"] = [round(value, 2) for value in os.getloadavg()]
    except OSError:
        pass
    for module in ("tensorflow", "keras", "numpy", "onnxruntime", "torch"):
        if module in sys.modules:
            facts[f"{module}_version"] = getattr(sys.modules[module], "__version__", "?")
    return facts


def write_results(program_file: str, name: str, payload: Mapping[str, Any]) -> str:
    """Writes ``payload`` (+ machine facts, time and command) next to the benchmark program as
    ``results/<name>.json`` (or into ``$TF_RGBD_BENCH_RESULTS_DIR``); returns the path."""
    folder = os.environ.get(RESULTS_DIR_VARIABLE) or os.path.join(
        os.path.dirname(os.path.abspath(program_file)), RESULTS_SUBDIR)
    path = os.path.join(folder, f"{name}.json")
    io_utils.atomic_write_json(path, {
        "benchmark": name, "command": " ".join([
            "python -m", f"bench.{os.path.splitext(os.path.basename(program_file))[0]}",
            *sys.argv[1:]]),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_facts(),
        **payload})
    return path
