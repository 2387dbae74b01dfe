"""`python -m datasets.build --source=synthetic`: the issue's command, resume after kill -9."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tf_rgbd.data import pipeline, protocol, writer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_build(output_dir, *extra, wait=True):
    command = [sys.executable, "-m", "datasets.build", "--source=synthetic",
               f"--output_dir={output_dir}", "--num_identities=8", "--images_per_identity=6",
               "--image_size=64", "--seed=1", *extra]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if wait:
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("synthetic")
    completed = run_build(output_dir, f"--preview={output_dir}/preview.png", "--num_shards=3")
    assert completed.returncode == 0, completed.stderr[-3000:]
    return str(output_dir), completed.stdout


def test_cli_writes_shards_manifest_protocols_and_preview(built):
    output_dir, stdout = built
    manifest = json.load(open(os.path.join(output_dir, "manifest.json")))
    assert manifest["num_classes"] == 8 and manifest["example_count"] == 48
    assert manifest["splits"]["train"]["num_labels"] == 6
    assert manifest["splits"]["test"]["num_labels"] == 2
    assert manifest["skipped_count"] == 0
    assert os.path.getsize(os.path.join(output_dir, "preview.png")) > 1000
    assert "48 examples" in stdout and "preview" in stdout
    train = {r.subject for r in writer.read_split_records(output_dir, "train")}
    test_records = writer.read_split_records(output_dir, "test")
    assert train.isdisjoint({r.subject for r in test_records})
    loaded = protocol.load_protocol(protocol.protocol_path(output_dir, "lock3dface_style"),
                                    known_ids=[r.example_id for r in test_records])
    assert len(loaded.gallery) == 2 and loaded.probes


def test_make_dataset_reads_the_build_back(built):
    output_dir, _ = built
    batch = next(iter(pipeline.make_dataset(output_dir, "train", batch_size=8, image_size=64,
                                            modalities=("rgb", "depth", "mask", "neutral_depth"))))
    assert batch["rgb"].shape == (8, 64, 64, 3) and batch["depth"].shape == (8, 64, 64, 1)
    assert batch["mask"].shape == (8, 64, 64, 7) and batch["neutral_depth"].shape == (8, 64, 64, 1)
    assert bool(batch["has_depth"].numpy().all()) and bool(batch["has_mask"].numpy().all())
    assert batch["depth"].numpy().max() <= 1.0 and batch["depth"].numpy().max() > 0.9


def test_killed_build_resumes_without_duplicates(tmp_path, built):
    reference_dir, _ = built
    output_dir = tmp_path / "killed"
    process = run_build(output_dir, "--num_shards=12", wait=False)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        done = [n for n in os.listdir(output_dir)] if output_dir.exists() else []
        if sum(n.endswith(".tfrecord.index.json") for n in done) >= 2:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (output_dir / "manifest.json").exists(), "build finished before it was killed"
    completed = run_build(output_dir, "--num_shards=12")
    assert completed.returncode == 0, completed.stderr[-3000:]
    records = writer.read_split_records(str(output_dir), "train")
    ids = [r.example_id for r in records]
    assert len(ids) == len(set(ids)) == 36
    reference = sorted(r.example_id for r in writer.read_split_records(reference_dir, "train"))
    assert sorted(ids) == reference
    assert not [n for n in os.listdir(output_dir) if n.startswith(".tmp-")]
