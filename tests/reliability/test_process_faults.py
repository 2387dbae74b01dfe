"""Faults from the operating system, injected for real: SIGTERM (preemption), a full disk
(RLIMIT_FSIZE: every write past the limit fails with EFBIG), a second writer in the same
directory, and a dead owner's stale lock."""
import glob
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time

import pytest

from tests.training.depth_test_utils import write_tiny_dataset
from tf_rgbd import io_utils

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
TINY_DEPTHNET = ["--image_size=16", "--batch_size=2", "--base_filters=4", "--max_filters=8",
                 "--discriminator_filters=4", "--discriminator_downsamples=1", "--val_split=",
                 "--run_eagerly"]


def _file_size_limit(limit_bytes):
    def apply():
        # Without this, exceeding the limit kills the process with SIGXFSZ instead of
        # failing the write with EFBIG.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


def _one_error_line(stderr):
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_dataset(str(tmp_path_factory.mktemp("data")), size=16, train=8, test=4)


def test_sigterm_mid_epoch_saves_the_current_step_and_exits_0(data_dir, tmp_path):
    model_dir = str(tmp_path / "run")
    command = [sys.executable, "-m", "training.train_depthnet", f"--data_dir={data_dir}",
               f"--model_dir={model_dir}", "--steps=400", "--steps_per_epoch=1",
               "--checkpoint_every_steps=1000", "--verbose=2", *TINY_DEPTHNET]
    process = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    seen, lines = 0, []
    deadline = time.time() + 300
    for line in process.stdout:  # one "1/1 ..." line per finished step (epoch of 1 step)
        lines.append(line)
        if re.search(r"^1/1 ", line):
            seen += 1
            if seen == 5:
                process.send_signal(signal.SIGTERM)
                break
        assert time.time() < deadline, "".join(lines[-20:])
    output = "".join(lines) + process.stdout.read()
    assert process.wait(timeout=120) == 0, output[-3000:]
    assert "preempted: signal 15 received; checkpoint saved at step" in output
    saved = int(re.search(r"checkpoint saved at step (\d+)", output).group(1))
    # At most the step in flight is lost: the checkpoint holds every finished step.
    assert seen <= saved <= seen + 2, (seen, saved)
    assert os.path.exists(os.path.join(model_dir, "checkpoints", f"ckpt-{saved}.index"))
    assert not os.path.exists(os.path.join(model_dir, "generator.keras"))
    # The re-run continues from there.
    completed = subprocess.run(
        [*command[:5], "--steps=" + str(saved + 2), *command[6:]], cwd=ROOT, env=ENV,
        capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    with open(os.path.join(model_dir, "training_summary.json"), encoding="utf-8") as handle:
        assert json.load(handle)["start_step"] == saved


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(data_dir, tmp_path):
    model_dir = str(tmp_path / "run")
    base = [sys.executable, "-m", "training.train_depthnet", f"--data_dir={data_dir}",
            f"--model_dir={model_dir}", "--steps_per_epoch=2", "--checkpoint_every_steps=2",
            "--verbose=0", *TINY_DEPTHNET, "--base_filters=16", "--max_filters=32"]
    first = subprocess.run(base + ["--steps=2"], cwd=ROOT, env=ENV, capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    good = glob.glob(os.path.join(model_dir, "checkpoints", "ckpt-2.*"))
    sizes = {path: os.path.getsize(path) for path in good}
    data_size = max(sizes.values())
    # Every other file of a run (config, logs, summaries) stays far below this limit.
    limited = subprocess.run(base + ["--steps=4"], cwd=ROOT, env=ENV, capture_output=True,
                             text=True, timeout=300,
                             preexec_fn=_file_size_limit(data_size // 2))
    assert limited.returncode == 2, limited.stderr[-3000:]
    line = _one_error_line(limited.stderr)
    assert "cannot write checkpoint" in line and "ckpt-4" in line and "needed" in line
    leftovers = [path for path in glob.glob(os.path.join(model_dir, "checkpoints", "*"))
                 if "ckpt-4" in path]
    assert not leftovers, leftovers
    assert {path: os.path.getsize(path) for path in good} == sizes
    # Space back: the run resumes from the kept checkpoint.
    again = subprocess.run(base + ["--steps=4"], cwd=ROOT, env=ENV, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]


def test_full_disk_during_a_shard_write_keeps_the_previous_shard(tmp_path):
    output = str(tmp_path / "synthetic")
    base = [sys.executable, "-m", "datasets.build", "--source=synthetic",
            f"--output_dir={output}", "--num_identities=4", "--images_per_identity=4",
            "--image_size=48", "--num_shards=2"]
    assert subprocess.run(base, cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=300).returncode == 0
    shard = sorted(glob.glob(os.path.join(output, "train-*.tfrecord")))[0]
    before = io_utils.sha256_of_file(shard)
    os.remove(shard + ".index.json")  # forces that shard to be written again
    limited = subprocess.run(base, cwd=ROOT, env=ENV, capture_output=True, text=True,
                             timeout=300,
                             preexec_fn=_file_size_limit(os.path.getsize(shard) // 3))
    assert limited.returncode == 2, limited.stderr[-3000:]
    line = _one_error_line(limited.stderr)
    assert os.path.basename(shard) in line and "disk full or file-size limit" in line
    assert io_utils.sha256_of_file(shard) == before  # the previous shard is untouched
    assert not glob.glob(os.path.join(output, ".tmp-*"))


def _hold_lock(directory, purpose):
    code = (f"import time; from tf_rgbd import io_utils\n"
            f"with io_utils.directory_lock({directory!r}, {purpose!r}):\n"
            f"    print('locked', flush=True); time.sleep(600)\n")
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=ENV,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_writer_is_refused_and_a_dead_owners_lock_is_recovered(data_dir, tmp_path):
    model_dir = str(tmp_path / "run")
    owner = _hold_lock(model_dir, "training (depthnet)")
    try:
        command = [sys.executable, "-m", "training.train_depthnet", f"--data_dir={data_dir}",
                   f"--model_dir={model_dir}", "--steps=2", "--steps_per_epoch=2",
                   "--verbose=0", *TINY_DEPTHNET]
        refused = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True,
                                 timeout=300)
        assert refused.returncode == 2
        line = _one_error_line(refused.stderr)
        assert f"pid {owner.pid}" in line and "in use by training (depthnet)" in line
        assert not os.path.exists(os.path.join(model_dir, "config.json"))
    finally:
        owner.kill()
        owner.wait()
    # The owner died without releasing: its lock is stale and is taken over.
    assert io_utils.read_lock(model_dir)["pid"] == owner.pid
    recovered = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True,
                               timeout=300)
    assert recovered.returncode == 0, recovered.stderr[-3000:]
    assert "stale lock" in recovered.stderr
    assert io_utils.read_lock(model_dir) is None  # released at the end

    # Two builds into one output directory: the second is refused.
    output = str(tmp_path / "build")
    owner = _hold_lock(output, "dataset build (synthetic)")
    try:
        build = subprocess.run([sys.executable, "-m", "datasets.build", "--source=synthetic",
                                f"--output_dir={output}", "--num_identities=2",
                                "--images_per_identity=2", "--image_size=32"],
                               cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
        assert build.returncode == 2
        assert "in use by dataset build" in _one_error_line(build.stderr)
    finally:
        owner.kill()
        owner.wait()


def test_lock_from_another_host_is_never_broken(tmp_path):
    directory = str(tmp_path / "shared")
    os.makedirs(directory)
    with open(os.path.join(directory, io_utils.LOCK_FILE), "w", encoding="utf-8") as handle:
        json.dump({"pid": 1, "host": "another-host", "purpose": "training", "started": "x"},
                  handle)
    with pytest.raises(io_utils.LockedError, match="another-host"):
        with io_utils.directory_lock(directory, "training"):
            pass
    # Re-entering a lock this process holds is allowed (nested use).
    other = str(tmp_path / "mine")
    with io_utils.directory_lock(other, "outer"):
        with io_utils.directory_lock(other, "inner"):
            assert io_utils.read_lock(other)["purpose"] == "outer"
        assert io_utils.read_lock(other) is not None
    assert io_utils.read_lock(other) is None
