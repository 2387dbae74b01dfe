"""Faults injected into real files: corrupt/truncated shards, truncated checkpoints."""
import dataclasses
import glob
import os
import subprocess
import sys

import pytest

from tests.training.depth_test_utils import tiny_model_config, write_tiny_dataset
from tf_rgbd.config.depthnet import DepthTrainingConfig
from tf_rgbd.config.run import RunConfig
from tf_rgbd.data import pipeline, verify
from tf_rgbd.training import checkpointing, depth_training

SIZE = 16
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _damage(data_dir):
    """Truncates the first training shard to half its size, flips one byte in the second."""
    first, second = sorted(glob.glob(os.path.join(data_dir, "train-*.tfrecord")))[:2]
    with open(first, "rb") as handle:
        data = handle.read()
    with open(first, "wb") as handle:
        handle.write(data[:len(data) // 2])
    with open(second, "rb") as handle:
        data = bytearray(handle.read())
    data[len(data) // 2] ^= 0xFF
    with open(second, "wb") as handle:
        handle.write(bytes(data))
    return first, second


@pytest.fixture()
def damaged(tmp_path):
    # A third, intact training shard, so that skipping the bad ones leaves data.
    data_dir = write_tiny_dataset(str(tmp_path / "data"), size=SIZE, train=12, test=4,
                                  train_shards=3)
    return data_dir, _damage(data_dir)


def _config(data_dir, model_dir, **run):
    values = dict(data_dir=data_dir, model_dir=model_dir, batch_size=2, steps=2,
                  steps_per_epoch=2, val_split="", checkpoint_every_steps=2, verbose="0",
                  run_eagerly=True)
    values.update(run)
    return DepthTrainingConfig(
        model=tiny_model_config(image_size=SIZE, base_filters=4, max_filters=8,
                                discriminator_filters=4, discriminator_downsamples=1),
        run=RunConfig(**values))


def test_verify_names_every_bad_shard_and_the_offset(damaged):
    data_dir, (truncated, flipped) = damaged
    report = verify.verify_dataset(data_dir, progress=False)
    assert sorted(check.path for check in report.bad) == sorted([truncated, flipped])
    by_path = {check.path: check for check in report.bad}
    assert "truncated record" in by_path[truncated].reason or (
        "records, the sidecar says" in by_path[truncated].reason)
    assert by_path[flipped].bad_offset is not None and "corrupted record" in by_path[flipped].reason
    assert len(report.checks) == 4 and len(report.bad) == 2  # 3 train shards + 1 test shard
    # The program lists them and exits 1.
    completed = subprocess.run([sys.executable, "-m", "datasets.verify", data_dir], cwd=ROOT,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 1, completed.stderr[-2000:]
    assert os.path.basename(truncated) in completed.stdout
    assert os.path.basename(flipped) in completed.stdout
    assert "2/4 shards verified" in completed.stdout


def test_reading_a_corrupt_shard_names_it(damaged):
    data_dir, (_, flipped) = damaged
    with pytest.raises(verify.CorruptShardError) as raised:
        with verify.naming_corrupt_shards(data_dir, ["train"]):
            for _ in pipeline.make_dataset(data_dir, "train", batch_size=2, image_size=SIZE):
                pass
    assert os.path.basename(flipped) in str(raised.value)
    assert "{{function_node" not in str(raised.value)


def test_training_fails_naming_the_shard_or_skips_it_honestly(damaged, tmp_path):
    data_dir, (truncated, flipped) = damaged
    # Without verification the run still stops naming the corrupted shard.
    with pytest.raises(verify.CorruptShardError, match=os.path.basename(flipped)):
        depth_training.train_depth_model(_config(data_dir, str(tmp_path / "plain"), steps=12,
                                                 steps_per_epoch=6))
    with pytest.raises(verify.CorruptShardError, match="verify_shards"):
        depth_training.train_depth_model(_config(data_dir, str(tmp_path / "checked"),
                                                 verify_shards=True))
    result = depth_training.train_depth_model(_config(
        data_dir, str(tmp_path / "skipping"), on_corrupt_shard="skip", steps=0, epochs=1,
        steps_per_epoch=0))
    assert sorted(result.summary["excluded_shards"]) == sorted(
        os.path.basename(path) for path in (truncated, flipped))
    # Only the intact shard's 4 examples count: 2 steps of batch 2 per epoch.
    assert result.summary["examples_per_epoch_source"] == 4
    assert result.steps_per_epoch == 2


def test_a_truncated_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    data_dir = write_tiny_dataset(str(tmp_path / "data"), size=SIZE, train=8, test=4)
    model_dir = str(tmp_path / "run")
    depth_training.train_depth_model(_config(data_dir, model_dir, steps=4))
    latest = os.path.join(model_dir, "checkpoints", "ckpt-4")
    data_file = glob.glob(latest + ".data-*")[0]
    with open(data_file, "rb") as handle:
        data = handle.read()
    with open(data_file, "wb") as handle:
        handle.write(data[:len(data) // 2])

    result = depth_training.train_depth_model(_config(data_dir, model_dir, steps=6))
    assert result.start_step == 2  # resumed from the intact ckpt-2, not a crash
    assert any("ckpt-4" in record.getMessage() and "cannot be read" in record.getMessage()
               for record in caplog.records)
    names = sorted(os.listdir(os.path.join(model_dir, "checkpoints")))
    assert any(name.startswith("corrupt-ckpt-4") for name in names)
    assert "ckpt-6.index" in names

    # Nothing restorable: one clear error naming the directory, from the program too.
    for prefix in glob.glob(os.path.join(model_dir, "checkpoints", "ckpt-*.data-*")):
        with open(prefix, "wb") as handle:
            handle.write(b"\0")
    with pytest.raises(checkpointing.CheckpointError, match="no checkpoint in .* can be restored"):
        depth_training.train_depth_model(_config(data_dir, model_dir, steps=8))
    completed = subprocess.run(
        [sys.executable, "-m", "training.train_depthnet", f"--data_dir={data_dir}",
         f"--model_dir={model_dir}", "--override=steps=8",
         f"--config_file={os.path.join(model_dir, 'config.json')}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 2, completed.stderr[-2000:]
    error_lines = [line for line in completed.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "can be restored" in error_lines[0]
    assert "Traceback" not in completed.stderr
    # Nothing was renamed or deleted by the failed attempts.
    assert len(glob.glob(os.path.join(model_dir, "checkpoints", "ckpt-*.index"))) == 3


def test_changed_architecture_is_not_mistaken_for_corruption(tmp_path):
    data_dir = write_tiny_dataset(str(tmp_path / "data"), size=SIZE, train=8, test=4)
    config = _config(data_dir, str(tmp_path / "run"))
    depth_training.train_depth_model(config)
    os.remove(os.path.join(config.run.model_dir, "config.json"))  # bypass the config check
    wider = dataclasses.replace(config, model=dataclasses.replace(config.model, base_filters=8))
    with pytest.raises(RuntimeError, match="does not match"):
        depth_training.train_depth_model(wider)
    # The mismatching checkpoint is kept, not moved aside.
    assert os.path.exists(os.path.join(config.run.model_dir, "checkpoints", "ckpt-2.index"))
