"""The Apache Beam build (DirectRunner, 2 processes) writes exactly what the local build writes:
the same shards byte for byte, the same sidecars, the same manifest counts and skip table."""
import functools
import json
import os
import pathlib

import pytest

from tests.data import producers
from tf_rgbd.data import writer

beam = pytest.importorskip(
    "apache_beam", reason="apache_beam is not installed: pip install -e '.[beam]' "
    "(apache-beam==2.77.0) to test the Beam build")

from tf_rgbd.data import beam_writer  # noqa: E402  (after the skip)

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPLITS = {"train": list(range(10)), "test": list(range(10, 14))}
BAD = frozenset({3, 11})  # producers.produce_or_fail skips these as "no_face"
NUM_SHARDS = {"train": 3, "test": 2}


def _produce():
    return functools.partial(producers.produce_or_fail, bad=BAD)


def _local_build(directory: str) -> dict:
    results = {split: writer.write_split(directory, split, tasks, _produce(),
                                         num_shards=NUM_SHARDS[split], progress=False)
               for split, tasks in SPLITS.items()}
    return writer.write_manifest(directory, "tiny", ["a", "b", "c"], results)


def _beam_build(directory: str) -> tuple[dict, beam_writer.BeamWriteResult]:
    beam_result = beam_writer.write_splits_with_beam(
        directory, SPLITS, beam_writer.ConstantProducer(_produce()), NUM_SHARDS,
        beam_options="--direct_num_workers=2")
    results = {split: beam_writer.collect_split(directory, split, tasks, NUM_SHARDS[split], str,
                                                beam_result)
               for split, tasks in SPLITS.items()}
    return writer.write_manifest(directory, "tiny", ["a", "b", "c"], results), beam_result


def _without_timing(manifest: dict, keep_reused: bool = True) -> dict:
    manifest = json.loads(json.dumps(manifest))
    for split in manifest["splits"].values():
        split.pop("seconds")
        for shard in split["shards"]:
            if not keep_reused:
                shard.pop("reused")
    return manifest


def test_beam_build_equals_local_build_and_keeps_verified_shards(tmp_path, monkeypatch):
    # Beam's worker processes unpickle the producer by reference: they import tests.*.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    local_dir, beam_dir = str(tmp_path / "local"), str(tmp_path / "beam")
    local = _local_build(local_dir)
    built, beam_result = _beam_build(beam_dir)

    assert built["example_count"] == local["example_count"] == 14 - len(BAD)
    assert built["skipped_count"] == local["skipped_count"] == len(BAD)
    assert built["splits"]["train"]["skipped"] == {"no_face": {"count": 1, "first": ["3"]}}
    assert _without_timing(built) == _without_timing(local)  # shards, sha256, histograms...
    names = sorted(name for name in os.listdir(local_dir) if ".tfrecord" in name)
    assert names == sorted(name for name in os.listdir(beam_dir) if ".tfrecord" in name)
    assert len([name for name in names if name.endswith(".tfrecord")]) == 5
    for name in names:  # shards and sidecars (ids, records, skips): byte for byte
        with open(os.path.join(local_dir, name), "rb") as a, \
                open(os.path.join(beam_dir, name), "rb") as b:
            assert a.read() == b.read(), name
    assert sorted(beam_result.written["train"]) == [
        writer.shard_file_name("train", index, 3) for index in range(3)]
    assert not any(shard["reused"] for split in built["splits"].values()
                   for shard in split["shards"])

    # A re-run finds every shard verified: no pipeline, nothing rewritten.
    again, rerun = _beam_build(beam_dir)
    assert rerun.written == {"train": [], "test": []} and rerun.seconds == 0.0
    assert _without_timing(again, False) == _without_timing(local, False)
    assert all(shard["reused"] for split in again["splits"].values()
               for shard in split["shards"])
    with open(os.path.join(beam_dir, "manifest.json")) as handle:
        assert json.load(handle)["example_count"] == local["example_count"]


def test_beam_options_default_to_the_multiprocessing_direct_runner():
    options = beam_writer.pipeline_options("--direct_num_workers=3").get_all_options()
    assert options["runner"] == "DirectRunner"
    assert options["direct_running_mode"] == "multi_processing"
    assert options["direct_num_workers"] == 3
    dataflow = beam_writer.pipeline_options(["--runner=DataflowRunner", "--project=p"])
    assert dataflow.get_all_options()["runner"] == "DataflowRunner"
