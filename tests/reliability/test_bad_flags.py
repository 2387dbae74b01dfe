"""Bad flags and paths: every program prints ONE line ``error: ...`` and exits 2 (no traceback);
absl's ``-v 1`` keeps the traceback for developers."""
import os
import subprocess
import sys

import pytest

from tests.training.depth_test_utils import write_tiny_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
MISSING = "/nonexistent/tf_rgbd_path"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_dataset(str(tmp_path_factory.mktemp("data")), size=16, train=4, test=2)


# (program, arguments, text the error line must contain). DATA = a real tiny dataset.
CASES = [
    ("datasets.build", ["--source=nosuch", "--output_dir=/tmp/x"], "nosuch"),
    ("datasets.build", ["--source=synthetic"], "--output_dir"),
    ("datasets.build", ["--source=synthetic", "--output_dir=OUT", "--image_size=8"],
     "image_size must be >= 16"),
    ("datasets.build", ["--source=bosphorus", f"--input_dir={MISSING}", "--output_dir=OUT"],
     MISSING),
    ("datasets.verify", [MISSING], MISSING),
    ("datasets.verify", [], "at least one dataset directory"),
    ("training.train_depthnet", ["--model_dir=OUT"], "--data_dir"),
    ("training.train_depthnet", [f"--data_dir={MISSING}", "--model_dir=OUT"], MISSING),
    ("training.train_depthnet", ["--data_dir=DATA", "--model_dir=OUT", "--train_split=nope"],
     "no split 'nope'"),
    ("training.train_depthnet", ["--data_dir=DATA", "--model_dir=OUT", "--strategy=cluster"],
     "cluster"),
    ("training.train_depthnet", ["--data_dir=DATA", "--model_dir=OUT", "--override=nope=1"],
     "'nope' is not a config field"),
    ("training.train_depthnet", ["--data_dir=DATA", "--model_dir=OUT",
                                 f"--config_file={MISSING}.json"], MISSING),
    ("training.train_depthnet", ["--data_dir=DATA", "--model_dir=OUT", "--image_size=7"],
     "image_size 7 is too small"),
    ("training.train_recognizer", ["--data_dir=DATA", "--model_dir=OUT", "--variants=t9_x"],
     "unknown variant 't9_x'"),
    ("training.train_recognizer", ["--data_dir=DATA", "--model_dir=OUT", "--image_size=50"],
     "divisible by 16"),
    ("training.train_recognizer", ["--data_dir=DATA", "--model_dir=OUT", "--modalities=mask"],
     "at least one of rgb/depth"),
    ("training.train_recognizer", ["--data_dir=DATA", "--model_dir=OUT",
                                   "--eval_depth_sources=sensor"], "sensor"),
    ("training.evaluate_recognizer", ["--data_dir=DATA", f"--model_dir={MISSING}"], MISSING),
    ("training.evaluate_depth", ["--data_dir=DATA", f"--generators=G={MISSING}.keras"],
     MISSING),
    ("training.augment_dataset", [f"--generator={MISSING}.keras", "--data_dir=DATA",
                                  "--output_dir=OUT"], MISSING),
]


@pytest.mark.parametrize("program,arguments,expected", CASES,
                         ids=[f"{case[0]}:{' '.join(case[1])[:40]}" for case in CASES])
def test_bad_input_is_one_error_line_and_exit_2(program, arguments, expected, data_dir,
                                                 tmp_path):
    arguments = [argument.replace("DATA", data_dir).replace("OUT", str(tmp_path / "out"))
                 for argument in arguments]
    completed = subprocess.run([sys.executable, "-m", program, *arguments], cwd=ROOT, env=ENV,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 2, (completed.returncode, completed.stderr[-3000:])
    assert "Traceback" not in completed.stderr, completed.stderr[-3000:]
    lines = [line for line in completed.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, completed.stderr[-3000:]
    assert expected in lines[0], lines[0]


def test_verbosity_keeps_the_traceback(data_dir, tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "training.train_depthnet", f"--data_dir={data_dir}",
         f"--model_dir={tmp_path / 'out'}", "--train_split=nope", "-v", "1"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert completed.returncode != 0
    assert "Traceback" in completed.stderr and "no split 'nope'" in completed.stderr
