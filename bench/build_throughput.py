"""Measures real-dataset build throughput with 1 and with N worker processes.

    python -m bench.build_throughput --num_scans=400 --num_workers=2 --poses=-30:30:30x0

Writes ``--num_scans`` Bosphorus ``.bnt`` scans (+ textures) of the parametric head into a
temporary folder (the format and geometry of ``tf_rgbd/testing/format_writers.py``), then builds them
with ``python -m datasets.build``'s library function, once with 1 worker and once with
``--num_workers``, and prints wall times, scans/s and the speed-up. Worker processes are started
with ``spawn`` (TensorFlow + MediaPipe import per worker), a fixed cost that a small build
cannot amortise, so the start-up of such a pool (spawn N workers, unpickle the producer in
each: the imports) is measured separately and a steady-state speed-up (start-up removed) is
printed too. The machine's load average is printed
because other jobs sharing the CPU change the result.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import resource
import shutil
import tempfile
import time

import numpy as np
from absl import flags

from tf_rgbd import benchmarks, cli
from tf_rgbd.config.data import BuildConfig
from tf_rgbd.data import sources
from tf_rgbd.data.build import build_dataset
from tf_rgbd.testing import format_writers as writers

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_scans", 400, "Scans to build.")
flags.DEFINE_integer("num_workers", 2, "Worker processes of the parallel build.")
flags.DEFINE_integer("image_size", 112, "Output side in pixels.")
flags.DEFINE_string("poses", "-30:30:30x0", "Pose-augmentation renders per scan (--poses).")
flags.DEFINE_boolean("use_mediapipe", True, "Label renders with MediaPipe.")
flags.DEFINE_string("output_dir", None, "Folder for the generated scans and outputs "
                                        "(default: a temporary folder, removed afterwards).")


def write_scans(root: str, num_scans: int) -> None:
    """``num_scans`` Bosphorus scans of the parametric head, 10 per subject."""
    grid = writers.scanner_grid()
    rows, cols = grid["valid"].shape
    uv = np.stack(np.meshgrid((np.arange(cols) + 0.5) / cols, (np.arange(rows) + 0.5) / rows),
                  axis=-1)
    for index in range(num_scans):
        subject = f"bs{index // 10:03d}"
        stem = f"{subject}_N_N_{index % 10}"
        folder = os.path.join(root, subject)
        os.makedirs(folder, exist_ok=True)
        writers.write_bnt(os.path.join(folder, stem + ".bnt"), grid["xyz"], grid["valid"], uv,
                          stem + ".png")
        writers.write_rgb(os.path.join(folder, stem + ".png"), grid["rgb"])


def _load_producer(data: bytes) -> int:
    pickle.loads(data)
    return os.getpid()


def build_config(input_dir: str, output_dir: str, num_workers: int) -> BuildConfig:
    return BuildConfig(source="bosphorus", input_dir=input_dir, output_dir=output_dir,
                       image_size=FLAGS.image_size, num_shards=8, num_workers=num_workers,
                       poses=FLAGS.poses, use_mediapipe=FLAGS.use_mediapipe)


def pool_startup_seconds(config: BuildConfig, num_workers: int) -> float:
    """Seconds to spawn ``num_workers`` processes that each unpickle the producer."""
    data = pickle.dumps(sources.get_source("bosphorus").plan(config).produce)
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
        pids = set(pool.map(_load_producer, [data] * (4 * num_workers), chunksize=1))
    elapsed = time.perf_counter() - start
    if len(pids) < num_workers:
        print(f"note: only {len(pids)} of {num_workers} workers took a start-up task")
    return elapsed


def _spin(iterations: int) -> int:
    total = 0
    for value in range(iterations):
        total = (total + value * value) % 1000003
    return total


def machine_parallel_scaling(num_workers: int, iterations: int = 6_000_000) -> float:
    """Speed-up of ``num_workers`` processes over one on a pure-Python CPU loop: the ceiling any
    process-parallel build can reach on this machine (virtual CPUs sharing a physical core, or
    other load, show up here as well)."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(num_workers) as pool:
        pool.map(_spin, [1000] * num_workers)  # start the workers before timing
        start = time.perf_counter()
        pool.map(_spin, [iterations])
        one = time.perf_counter() - start
        start = time.perf_counter()
        pool.map(_spin, [iterations] * num_workers, chunksize=1)
        many = time.perf_counter() - start
    return num_workers * one / many


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its reaped children (the pool workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_build(input_dir: str, output_dir: str, num_workers: int) -> tuple[float, dict, float]:
    """(wall seconds, manifest, CPU seconds) of one build."""
    config = build_config(input_dir, output_dir, num_workers)
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    manifest = build_dataset(config, progress=False)
    return time.perf_counter() - start, manifest, _cpu_seconds() - cpu_start


def main(argv):
    del argv
    work_dir = FLAGS.output_dir or tempfile.mkdtemp(prefix="build_throughput_")
    try:
        scans = os.path.join(work_dir, "scans")
        write_scans(scans, FLAGS.num_scans)
        load_before = os.getloadavg()
        startup = pool_startup_seconds(build_config(scans, work_dir, FLAGS.num_workers),
                                       FLAGS.num_workers)
        one, manifest, one_cpu = timed_build(scans, os.path.join(work_dir, "out1"), 1)
        many, manifest_many, many_cpu = timed_build(scans, os.path.join(work_dir, "outN"),
                                                    FLAGS.num_workers)
        ceiling = machine_parallel_scaling(FLAGS.num_workers)
        load_after = os.getloadavg()
        assert manifest["example_count"] == manifest_many["example_count"]
        examples = manifest["example_count"]
        steady = one / (many - startup) if many > startup else float("nan")
        print(f"build throughput ({FLAGS.num_scans} Bosphorus scans, {examples} examples, "
              f"{FLAGS.image_size}px, poses '{FLAGS.poses}', mediapipe {FLAGS.use_mediapipe}, "
              f"{os.cpu_count()} CPUs, load average {load_before[0]:.2f} -> "
              f"{load_after[0]:.2f}):")
        # CPU seconds per wall second = cores actually used (OpenCV and MediaPipe/XNNPACK run
        # thread pools of their own, so one worker may already use more than one core).
        print(f"  1 worker : {one:7.2f} s  {FLAGS.num_scans / one:6.2f} scans/s  "
              f"{one_cpu / one:.2f} cores busy")
        print(f"  {FLAGS.num_workers} workers: {many:7.2f} s  {FLAGS.num_scans / many:6.2f} "
              f"scans/s  {many_cpu / many:.2f} cores busy  (pool start-up ~{startup:.2f} s)")
        print(f"  speed-up: {one / many:.2f}x wall, {steady:.2f}x without the pool start-up")
        print(f"  this machine's own {FLAGS.num_workers}-process scaling on a pure CPU loop: "
              f"{ceiling:.2f}x (the ceiling for any process-parallel build here)")
        path = benchmarks.write_results(__file__, "build_throughput", {
            "num_scans": FLAGS.num_scans, "examples": examples, "image_size": FLAGS.image_size,
            "poses": FLAGS.poses, "use_mediapipe": FLAGS.use_mediapipe,
            "num_workers": FLAGS.num_workers, "one_worker_s": round(one, 3),
            "many_workers_s": round(many, 3), "pool_startup_s": round(startup, 3),
            "speedup_wall": round(one / many, 3), "speedup_steady": round(steady, 3),
            "cores_busy_one": round(one_cpu / one, 3), "cores_busy_many": round(many_cpu / many, 3),
            "machine_ceiling": round(ceiling, 3),
            "load_average_before_after": [load_before[0], load_after[0]]})
        print(f"wrote {path}")
    finally:
        if FLAGS.output_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    cli.run(main)
