"""The speed benches run end to end in their quick modes and write their tables' JSON."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module, args, results_dir):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_RGBD_BENCH_RESULTS_DIR=str(results_dir))
    completed = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def test_train_throughput_quick_compares_ours_with_pytorch(tmp_path):
    pytest.importorskip("torch", reason="PyTorch is not installed: the reference rows need the "
                        "[bench] extra (pip install -e '.[bench]')")
    stdout = _run("bench.train_throughput",
                  ["--quick", "--parts=recognizer_rgb", "--variants=bf16"], tmp_path)
    assert "recognizer_rgb" in stdout and "torch/bf16_cl" in stdout
    rows = json.load(open(tmp_path / "train_throughput.json"))["rows"]
    assert {row["variant"] for row in rows} == {"ours/bf16", "torch/fp32", "torch/fp32_cl",
                                                "torch/bf16_cl"}
    for row in rows:
        assert row["images_per_s"] > 0 and row["train_gflops_per_step"] > 0, row
        assert 0 < row["fraction_of_fp32_peak"] < 10, row
        assert row["ratio_to_best_torch"] > 0, row
        assert all(value == value for value in row["losses"]), row  # finite, not NaN


def test_results_name_the_program_that_wrote_them(tmp_path, monkeypatch):
    from tf_rgbd import benchmarks
    monkeypatch.setenv("TF_RGBD_BENCH_RESULTS_DIR", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["train_throughput.py", "--quick"])
    # One program may write several result files; the command must still re-run that program.
    path = benchmarks.write_results("/x/bench/train_throughput.py",
                                    "train_throughput_recognizer_rgb", {"rows": []})
    written = json.load(open(path))
    assert path == str(tmp_path / "train_throughput_recognizer_rgb.json")
    assert written["command"] == "python -m bench.train_throughput --quick"
    assert written["benchmark"] == "train_throughput_recognizer_rgb" and written["rows"] == []
