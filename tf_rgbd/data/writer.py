"""Sharded, resumable, atomic TFRecord writer and the dataset manifest.

A *task* is one unit of source work (a file name, a synthetic sample spec, an input shard); a
*producer* turns a task into zero or more :class:`~tf_rgbd.data.schema.FaceExample`. Tasks are
split contiguously over ``num_shards`` shards ``<split>-00007-of-00016.tfrecord``. Each shard is
written under a temporary name and renamed when complete, next to a small sidecar
``<shard>.index.json`` (sha256, example count, per-example metadata, skipped tasks). A re-run into
the same directory keeps every shard whose file and sidecar verify (same task list, same sha256)
and rewrites the rest, so an interrupted build resumes without duplicates.

Bad input never crashes a build by default: a producer raising :class:`SkipExample` (or any
exception, with ``on_error="skip"``) skips that task; the reason is counted and the first 20
task names per reason are kept in the manifest's ``skipped`` table.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np
from tqdm import tqdm

from tf_rgbd import io_utils
from tf_rgbd.data import schema
from tf_rgbd.data.errors import BuildError, SkipExample

MANIFEST_NAME = "manifest.json"
INDEX_SUFFIX = ".index.json"
MAX_SKIPPED_NAMES = 20
# Attributes whose value counts form the manifest's histograms; angles are binned.
CATEGORICAL_ATTRIBUTES = ("domain", "expression", "occlusion", "session", "has_depth", "has_mask")
ANGLE_ATTRIBUTES = ("yaw_deg", "pitch_deg", "roll_deg")
ANGLE_BIN_DEGREES = 15


@dataclasses.dataclass(frozen=True)
class ExampleRecord:
    """Metadata of one written example (enough for protocols and histograms, no pixels)."""

    example_id: str
    label: int
    subject: str
    domain: str
    expression: str
    occlusion: str
    session: int
    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    has_depth: bool
    has_mask: bool
    shard: str
    index_in_shard: int


@dataclasses.dataclass(frozen=True)
class ShardResult:
    name: str
    sha256: str
    count: int
    reused: bool


@dataclasses.dataclass(frozen=True)
class SplitResult:
    """What :func:`write_split` wrote: shards, example records and the skipped-task table."""

    split: str
    shards: tuple[ShardResult, ...]
    records: tuple[ExampleRecord, ...]
    skipped: Mapping[str, Mapping[str, Any]]
    seconds: float

    @property
    def example_count(self) -> int:
        return len(self.records)

    @property
    def skipped_count(self) -> int:
        return sum(entry["count"] for entry in self.skipped.values())


def shard_file_name(split: str, index: int, num_shards: int) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def shard_task_ranges(num_tasks: int, num_shards: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) task ranges, one per shard, sizes differing by at most one."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    bounds = np.linspace(0, num_tasks, num_shards + 1).round().astype(int)
    return [(int(bounds[i]), int(bounds[i + 1])) for i in range(num_shards)]


def _tasks_digest(names: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def _record_of(example: schema.FaceExample, shard: str, index: int) -> ExampleRecord:
    return ExampleRecord(
        example_id=example.example_id, label=int(example.label), subject=str(example.subject),
        domain=example.domain, expression=str(example.expression), occlusion=str(example.occlusion),
        session=int(example.session), yaw_deg=round(float(example.yaw_deg), 3),
        pitch_deg=round(float(example.pitch_deg), 3), roll_deg=round(float(example.roll_deg), 3),
        has_depth=example.depth is not None, has_mask=example.mask is not None,
        shard=shard, index_in_shard=index)


# ---------------------------------------------------------------------------------------------
# Producing serialised examples (in this process or in a worker pool).

@dataclasses.dataclass(frozen=True)
class _TaskOutcome:
    """A task's serialised examples plus their records, or the reason it was skipped."""

    task_index: int
    serialized: tuple[bytes, ...] = ()
    examples_meta: tuple[dict, ...] = ()
    skip_reason: Optional[str] = None
    error: Optional[str] = None


_WORKER_PRODUCE: Optional[Callable[[Any], Iterable[schema.FaceExample]]] = None


def _init_worker(produce: Callable[[Any], Iterable[schema.FaceExample]]) -> None:
    # Per-process producer for the pool (set once per worker, not shared state).
    global _WORKER_PRODUCE
    _WORKER_PRODUCE = produce


def _run_task(produce: Callable, task_index: int, task: Any, on_error: str,
              task_name: str) -> _TaskOutcome:
    try:
        serialized, meta = [], []
        for example in produce(task):
            serialized.append(schema.encode_example(example))
            meta.append(dataclasses.asdict(_record_of(example, "", 0)))
        return _TaskOutcome(task_index, tuple(serialized), tuple(meta))
    except Exception as error:  # noqa: BLE001 - every bad input is counted, see on_error
        if on_error == "fail":
            raise BuildError(f"task {task_name!r}: {type(error).__name__}: {error}") from error
        if isinstance(error, SkipExample):
            reason = error.reason
        elif isinstance(error, schema.SchemaError):
            reason = "schema_error"
        else:
            reason = type(error).__name__
        return _TaskOutcome(task_index, skip_reason=reason, error=f"{type(error).__name__}: {error}")


def _run_task_in_worker(args: tuple) -> _TaskOutcome:
    task_index, task, on_error, task_name = args
    return _run_task(_WORKER_PRODUCE, task_index, task, on_error, task_name)


class ProducerPool:
    """Worker processes that run one producer; share one across the splits of a build.

    Workers are started with ``spawn`` (TensorFlow is not fork-safe), so each pays the
    TensorFlow import once: seconds that a per-split pool would pay again for every split.
    With ``num_workers <= 1`` no process is started and tasks run in the caller; otherwise the
    workers start on the first tasks (a resumed build with nothing left to do starts none).
    """

    def __init__(self, produce: Callable[[Any], Iterable[schema.FaceExample]], num_workers: int):
        self.produce = produce
        self.num_workers = num_workers
        self._pool = None

    def __enter__(self) -> "ProducerPool":
        return self

    def __exit__(self, *exc_info) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def outcomes(self, arguments: Sequence[tuple]) -> Iterator[_TaskOutcome]:
        """Runs ``(task_index, task, on_error, task_name)`` tuples, results in order."""
        if self.num_workers <= 1:
            return (_run_task(self.produce, *argument) for argument in arguments)
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = context.Pool(self.num_workers, initializer=_init_worker,
                                      initargs=(self.produce,))
        return self._pool.imap(_run_task_in_worker, arguments, chunksize=4)


# ---------------------------------------------------------------------------------------------
# Shard verification (resume).

def _load_verified_index(output_dir: str, shard_name: str, tasks_digest: str) -> Optional[dict]:
    """The sidecar of a complete shard whose file still matches it, else None."""
    shard_path = os.path.join(output_dir, shard_name)
    index_path = shard_path + INDEX_SUFFIX
    if not (os.path.exists(shard_path) and os.path.exists(index_path)):
        return None
    try:
        with open(index_path, encoding="utf-8") as handle:
            index = json.load(handle)
    except (OSError, json.JSONDecodeError):
        return None
    if index.get("tasks_digest") != tasks_digest or index.get("schema_version") != schema.SCHEMA_VERSION:
        return None
    if io_utils.sha256_of_file(shard_path) != index.get("sha256"):
        logging.warning("shard %s does not match its index (sha256); rewriting it", shard_name)
        return None
    return index


def write_split(output_dir: str, split: str, tasks: Sequence[Any],
                produce: Callable[[Any], Iterable[schema.FaceExample]], num_shards: int,
                num_workers: int = 1, on_error: str = "skip",
                task_name: Callable[[Any], str] = str, progress: bool = True,
                pool: Optional[ProducerPool] = None) -> SplitResult:
    """Writes the examples produced from ``tasks`` as ``num_shards`` TFRecord shards.

    Args:
      output_dir: dataset directory (created if missing).
      split: split name used in shard names (``train``, ``test``...).
      tasks: the work items, in a deterministic order (resume relies on it).
      produce: ``task -> iterable of FaceExample``; must be picklable (a module-level function
        or a ``functools.partial`` of one) when ``num_workers > 1``. It may raise
        :class:`SkipExample` for known bad input.
      num_shards: number of shards (capped at the number of tasks, at least 1).
      num_workers: processes producing examples; 1 runs ``produce`` in this process.
      on_error: ``skip`` (count and go on) or ``fail`` (raise :class:`BuildError` at the first
        task that raises anything, :class:`SkipExample` included).
      task_name: how a task is named in the skipped table and in errors.
      progress: show a tqdm bar over tasks.
      pool: a started :class:`ProducerPool` of the same ``produce`` to reuse (its worker count
        wins over ``num_workers``); by default a pool is started for this split when needed.

    Returns:
      A :class:`SplitResult`. Example ids must be unique within the split (raises otherwise).
    """
    if on_error not in ("skip", "fail"):
        raise ValueError(f"on_error must be 'skip' or 'fail', got {on_error!r}")
    os.makedirs(output_dir, exist_ok=True)
    start_time = time.time()
    num_shards = max(1, min(num_shards, len(tasks))) if tasks else 1
    names = [task_name(task) for task in tasks]
    ranges = shard_task_ranges(len(tasks), num_shards)

    shard_results: list[ShardResult] = []
    records: list[ExampleRecord] = []
    skipped: dict[str, dict[str, Any]] = {}

    def count_skip(reason: str, name: str, error: str) -> None:
        entry = skipped.setdefault(reason, {"count": 0, "first": []})
        entry["count"] += 1
        if len(entry["first"]) < MAX_SKIPPED_NAMES:
            entry["first"].append(name)
        logging.info("skipped %s (%s): %s", name, reason, error)

    pending: list[int] = []
    for shard_index, (first, stop) in enumerate(ranges):
        shard_name = shard_file_name(split, shard_index, num_shards)
        index = _load_verified_index(output_dir, shard_name, _tasks_digest(names[first:stop]))
        if index is None:
            pending.append(shard_index)
            continue
        shard_results.append(ShardResult(shard_name, index["sha256"], index["count"], True))
        records.extend(ExampleRecord(**meta) for meta in index["records"])
        for reason, entry in index["skipped"].items():
            for name in entry["names"]:
                count_skip(reason, name, "(recorded by an earlier run)")
    _remove_stale_shards(output_dir, split, num_shards)

    pending_tasks = sum(ranges[i][1] - ranges[i][0] for i in pending)
    bar = tqdm(total=pending_tasks, desc=f"{split}", unit="task", disable=not progress,
               dynamic_ncols=True)
    own_pool = None
    if pool is None:
        own_pool = pool = ProducerPool(produce, num_workers).__enter__()
    try:
        for shard_index in pending:
            first, stop = ranges[shard_index]
            shard_name = shard_file_name(split, shard_index, num_shards)
            arguments = [(i, tasks[i], on_error, names[i]) for i in range(first, stop)]
            result, shard_records, shard_skips = _write_one_shard(
                output_dir, shard_name, pool.outcomes(arguments), names,
                _tasks_digest(names[first:stop]), bar)
            shard_results.append(result)
            records.extend(shard_records)
            for reason, name, error in shard_skips:
                count_skip(reason, name, error)
    finally:
        bar.close()
        if own_pool is not None:
            own_pool.__exit__(None, None, None)

    shard_results.sort(key=lambda shard: shard.name)
    records.sort(key=lambda record: (record.shard, record.index_in_shard))
    duplicates = [key for key, count in collections.Counter(r.example_id for r in records).items()
                  if count > 1]
    if duplicates:
        raise BuildError(f"split {split!r}: duplicate example ids, e.g. {duplicates[:5]}")
    return SplitResult(split, tuple(shard_results), tuple(records), skipped,
                       time.time() - start_time)


def _write_one_shard(output_dir: str, shard_name: str, outcomes: Iterable[_TaskOutcome],
                     names: Sequence[str], tasks_digest: str, bar: tqdm
                     ) -> tuple[ShardResult, list[ExampleRecord], list[tuple[str, str, str]]]:
    import tensorflow as tf  # only the writing process needs it (workers encode without TF)

    shard_path = os.path.join(output_dir, shard_name)
    shard_records: list[ExampleRecord] = []
    skips: list[tuple[str, str, str]] = []
    with io_utils.atomic_output_path(shard_path) as temp_path:
        with tf.io.TFRecordWriter(temp_path) as record_writer:
            for outcome in outcomes:
                bar.update(1)
                if outcome.skip_reason is not None:
                    skips.append((outcome.skip_reason, names[outcome.task_index], outcome.error))
                    continue
                for serialized, meta in zip(outcome.serialized, outcome.examples_meta):
                    record_writer.write(serialized)
                    meta = dict(meta, shard=shard_name, index_in_shard=len(shard_records))
                    shard_records.append(ExampleRecord(**meta))
        sha256 = io_utils.sha256_of_file(temp_path)
    skipped_by_reason: dict[str, dict[str, list[str]]] = {}
    for reason, name, _ in skips:
        skipped_by_reason.setdefault(reason, {"names": []})["names"].append(name)
    io_utils.atomic_write_json(shard_path + INDEX_SUFFIX, {
        "schema_version": schema.SCHEMA_VERSION,
        "shard": shard_name,
        "sha256": sha256,
        "count": len(shard_records),
        "tasks_digest": tasks_digest,
        "records": [dataclasses.asdict(record) for record in shard_records],
        "skipped": skipped_by_reason,
    })
    return ShardResult(shard_name, sha256, len(shard_records), False), shard_records, skips


def _remove_stale_shards(output_dir: str, split: str, num_shards: int) -> None:
    """Removes what an earlier run of ``split`` left behind: temporary files of a killed writer
    and shards (with their sidecars) of a run with a different shard count."""
    suffix = f"-of-{num_shards:05d}.tfrecord"
    for name in os.listdir(output_dir):
        if name.startswith(f".tmp-{split}-"):
            os.remove(os.path.join(output_dir, name))
            continue
        if name.startswith(f"{split}-") and ".tfrecord" in name and not name.startswith(".tmp-"):
            if suffix not in name:
                os.remove(os.path.join(output_dir, name))


# ---------------------------------------------------------------------------------------------
# Manifest.

def attribute_histograms(records: Iterable[ExampleRecord]) -> dict[str, dict[str, int]]:
    """Value counts of categorical attributes and 15-degree bins of yaw/pitch/roll."""
    histograms: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for record in records:
        for key in CATEGORICAL_ATTRIBUTES:
            histograms[key][str(getattr(record, key))] += 1
        for key in ANGLE_ATTRIBUTES:
            low = int(np.floor(getattr(record, key) / ANGLE_BIN_DEGREES) * ANGLE_BIN_DEGREES)
            histograms[key][f"[{low},{low + ANGLE_BIN_DEGREES})"] += 1
    return {key: dict(sorted(counter.items())) for key, counter in histograms.items()}


def write_manifest(output_dir: str, dataset_name: str, class_names: Sequence[str],
                   splits: Mapping[str, SplitResult], extra: Optional[Mapping[str, Any]] = None
                   ) -> dict:
    """Writes ``manifest.json`` (atomically) and returns it.

    Contents: schema version, dataset name, class count and names (index = label), and per split:
    example count, shards (name, sha256, count), per-attribute histograms, label counts and the
    ``skipped`` table (reason -> count and first 20 task names); ``extra`` is stored as is
    (e.g. the build config).
    """
    manifest = {
        "schema_version": schema.SCHEMA_VERSION,
        "dataset": dataset_name,
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "example_count": sum(result.example_count for result in splits.values()),
        "skipped_count": sum(result.skipped_count for result in splits.values()),
        "splits": {},
        "extra": dict(extra or {}),
    }
    for name, result in splits.items():
        labels = collections.Counter(record.label for record in result.records)
        manifest["splits"][name] = {
            "example_count": result.example_count,
            "num_labels": len(labels),
            "shards": [dataclasses.asdict(shard) for shard in result.shards],
            "histograms": attribute_histograms(result.records),
            "skipped": {reason: dict(entry) for reason, entry in sorted(result.skipped.items())},
            "seconds": round(result.seconds, 2),
        }
    io_utils.atomic_write_json(os.path.join(output_dir, MANIFEST_NAME), manifest)
    return manifest


def read_manifest(dataset_dir: str) -> dict:
    """Reads ``<dataset_dir>/manifest.json`` with a clear error when it is missing or broken."""
    path = os.path.join(dataset_dir, MANIFEST_NAME)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found: is {dataset_dir} a dataset directory written by "
            "`python -m datasets.build`?")
    with open(path, encoding="utf-8") as handle:
        try:
            manifest = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error}); rebuild the dataset") from error
    if manifest.get("schema_version") != schema.SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {manifest.get('schema_version')} is not "
                         f"{schema.SCHEMA_VERSION}")
    return manifest


def read_split_records(dataset_dir: str, split: str) -> list[ExampleRecord]:
    """The example records of a split, read from the shard sidecars listed in the manifest."""
    manifest = read_manifest(dataset_dir)
    if split not in manifest["splits"]:
        raise KeyError(f"{dataset_dir}: no split {split!r}; splits are {sorted(manifest['splits'])}")
    records = []
    for shard in manifest["splits"][split]["shards"]:
        with open(os.path.join(dataset_dir, shard["name"] + INDEX_SUFFIX), encoding="utf-8") as fh:
            records.extend(ExampleRecord(**meta) for meta in json.load(fh)["records"])
    return records


def summarize_manifest(manifest: Mapping[str, Any]) -> str:
    """A short human-readable summary (printed by the builder and ``make demo``)."""
    lines = [f"dataset {manifest['dataset']}: {manifest['example_count']} examples, "
             f"{manifest['num_classes']} classes, {manifest['skipped_count']} skipped"]
    for name, split in manifest["splits"].items():
        histograms = split["histograms"]
        lines.append(
            f"  {name}: {split['example_count']} examples of {split['num_labels']} identities in "
            f"{len(split['shards'])} shards; expression {histograms.get('expression', {})}; "
            f"occlusion {histograms.get('occlusion', {})}; session {histograms.get('session', {})}")
        for reason, entry in split["skipped"].items():
            lines.append(f"    skipped {reason}: {entry['count']} (e.g. {entry['first'][:3]})")
    return "\n".join(lines)
