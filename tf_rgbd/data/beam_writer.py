"""The sharded writer as an Apache Beam pipeline: the same tasks, producers, example encoding,
shard layout and sidecars as :func:`tf_rgbd.data.writer.write_split`, run by any Beam runner.

Used by ``python -m datasets.build --runner=beam`` and ``python -m training.augment_dataset
--runner=beam``::

    beam_result = write_splits_with_beam(output_dir, {"train": tasks, "test": tasks2},
                                         ConstantProducer(produce), num_shards=8,
                                         beam_options="--direct_num_workers=2")
    train = collect_split(output_dir, "train", tasks, 8, str, beam_result)
    # collect_split runs writer.write_split over the same tasks: it finds every shard verified
    # and returns the SplitResult (records, skipped table) exactly as a local build does.

The pipeline (one for all splits)::

    Create(tasks) -> Reshuffle -> ParDo(produce + encode, the producer made once per worker in
    DoFn.setup) -> GroupByKey((split, shard)) -> ParDo(write the shard in task order,
    atomically, with its sidecar: sha256, count, records, skipped tasks)

Shards are grouped by the same contiguous task ranges (``writer.shard_task_ranges``) and written
by the same function as a local build, so a Beam build and a local build of the same source
give byte-identical shards and sidecars. Shards whose sidecar already verifies are not
re-produced (an interrupted Beam build resumes like a local one).

Runners: the default is Beam's DirectRunner in multi-processing mode (``--direct_num_workers``
processes, ``--direct_running_mode=multi_processing``); Dataflow, Flink or Spark take only
pipeline options (``--runner=DataflowRunner --project=... --region=... --temp_location=gs://...``
plus ``--setup_file=./setup.py`` so the workers install tf_rgbd). The output directory must be
storage every Beam worker can write (the shards are written by the workers, the manifest by the
launching process). ``apache_beam`` is an optional extra: ``pip install -e '.[beam]'``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shlex
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

from tf_rgbd.data import writer

# Default pipeline options: DirectRunner with one process per core.
DIRECT_RUNNER_OPTIONS = ("--runner=DirectRunner", "--direct_running_mode=multi_processing")
# Beam workers log every harness event at INFO; the build's own output matters more.
QUIET_WORKERS = "--default_sdk_harness_log_level=WARNING"


def import_beam():
    """``apache_beam``, or an ImportError saying how to install it."""
    try:
        import apache_beam  # noqa: PLC0415 (optional extra)
    except ImportError as error:
        raise ImportError(
            "--runner=beam needs Apache Beam: pip install -e '.[beam]' (apache-beam==2.77.0)"
        ) from error
    return apache_beam


class ConstantProducer:
    """A producer factory that returns the same picklable ``produce`` (sources' plans)."""

    def __init__(self, produce: Callable[[Any], Iterable]):
        self.produce = produce

    def __call__(self) -> Callable[[Any], Iterable]:
        return self.produce


def pipeline_options(beam_options: Sequence[str] | str = (), num_workers: int = 0):
    """Beam ``PipelineOptions`` from command-line style options.

    Args:
      beam_options: e.g. ``["--runner=DataflowRunner", "--project=p"]`` or one string of them.
        Without ``--runner`` the DirectRunner in multi-processing mode is used.
      num_workers: DirectRunner processes (``--direct_num_workers``) when not given in
        ``beam_options`` (0: one per CPU core).
    """
    beam = import_beam()
    options = shlex.split(beam_options) if isinstance(beam_options, str) else list(beam_options)
    if not any(option.startswith("--runner") for option in options):
        options = [*DIRECT_RUNNER_OPTIONS, *options]
    if not any(option.startswith("--default_sdk_harness_log_level") for option in options):
        options.append(QUIET_WORKERS)
    if not any(option.startswith("--direct_num_workers") for option in options):
        options.append(f"--direct_num_workers={num_workers or os.cpu_count() or 1}")
    return beam.options.pipeline_options.PipelineOptions(options)


class _NoBar:
    def update(self, count: int) -> None:
        del count


@dataclasses.dataclass(frozen=True)
class _Work:
    split: str
    shard_index: int
    task_index: int
    task: Any
    task_name: str


def _make_do_fns(beam):
    class ProduceFn(beam.DoFn):
        """Task -> ``((split, shard), (outcome, task name))``; the producer is made once per
        worker (``setup``), e.g. a depth generator loaded from its file."""

        def __init__(self, producer_factory: Callable[[], Callable], on_error: str):
            super().__init__()
            self.producer_factory = producer_factory
            self.on_error = on_error
            self.produce = None

        def setup(self):
            self.produce = self.producer_factory()

        def process(self, work: _Work):
            outcome = writer._run_task(self.produce, work.task_index, work.task,  # noqa: SLF001
                                       self.on_error, work.task_name)
            yield (work.split, work.shard_index), (outcome, work.task_name)

    class WriteShardFn(beam.DoFn):
        """``((split, shard), outcomes)`` -> the shard and its sidecar, in task order."""

        def __init__(self, output_dir: str, num_shards: Mapping[str, int],
                     digests: Mapping[tuple[str, int], str]):
            super().__init__()
            self.output_dir = output_dir
            self.num_shards = dict(num_shards)
            self.digests = dict(digests)

        def process(self, element):
            (split, shard_index), outcomes = element
            # The "every shard" marker ([]) makes shards whose tasks were all skipped appear.
            outcomes = sorted((pair for pair in outcomes if pair),
                              key=lambda pair: pair[0].task_index)
            names = {outcome.task_index: name for outcome, name in outcomes}
            shard_name = writer.shard_file_name(split, shard_index, self.num_shards[split])
            result, _, _ = writer._write_one_shard(  # noqa: SLF001 (the one shard writer)
                self.output_dir, shard_name, (outcome for outcome, _ in outcomes), names,
                self.digests[(split, shard_index)], _NoBar())
            yield result.name

    return ProduceFn, WriteShardFn


def write_splits_with_beam(output_dir: str, splits: Mapping[str, Sequence[Any]],
                           producer_factory: Callable[[], Callable[[Any], Iterable]],
                           num_shards: Mapping[str, int] | int, on_error: str = "skip",
                           task_name: Callable[[Any], str] = str,
                           beam_options: Sequence[str] | str = (), num_workers: int = 0
                           ) -> "BeamWriteResult":
    """Writes every pending shard of ``splits`` with one Beam pipeline.

    Args:
      output_dir: dataset directory (shared storage for a distributed runner).
      splits: ``{split: tasks}`` in their deterministic order.
      producer_factory: picklable; called once per Beam worker (``DoFn.setup``) to make the
        ``produce(task) -> FaceExamples`` callable.
      num_shards: shards per split (an int for every split), capped like ``write_split``.
      on_error: ``skip`` or ``fail`` (a failing task fails the pipeline).
      task_name: how tasks are named in the skipped table.
      beam_options, num_workers: see :func:`pipeline_options`.

    Returns:
      The shards this pipeline wrote, per split (verified ones are kept), and its seconds.
    """
    if on_error not in ("skip", "fail"):
        raise ValueError(f"on_error must be 'skip' or 'fail', got {on_error!r}")
    beam = import_beam()
    os.makedirs(output_dir, exist_ok=True)
    counts, digests, work = {}, {}, []
    pending: dict[str, list[str]] = {}
    for split, tasks in splits.items():
        wanted = num_shards if isinstance(num_shards, int) else num_shards[split]
        count = max(1, min(wanted, len(tasks))) if tasks else 1
        counts[split] = count
        names = [task_name(task) for task in tasks]
        pending[split] = []
        for shard_index, (first, stop) in enumerate(writer.shard_task_ranges(len(tasks), count)):
            digest = writer._tasks_digest(names[first:stop])  # noqa: SLF001
            shard_name = writer.shard_file_name(split, shard_index, count)
            if writer._load_verified_index(output_dir, shard_name, digest) is not None:  # noqa: SLF001
                continue
            digests[(split, shard_index)] = digest
            pending[split].append(shard_name)
            work.extend(_Work(split, shard_index, index, tasks[index], names[index])
                        for index in range(first, stop))
        writer._remove_stale_shards(output_dir, split, count)  # noqa: SLF001
    # A shard whose tasks were all skipped still needs its (empty) file and sidecar.
    empty = [(key, []) for key in digests]
    if not digests:
        logging.info("beam: every shard of %s is already written and verified", output_dir)
        return BeamWriteResult(pending, 0.0)
    started = time.time()
    produce_fn, write_shard_fn = _make_do_fns(beam)
    options = pipeline_options(beam_options, num_workers)
    # Beam's INFO chatter (every worker's harness lines) would bury the build's own output.
    beam_logger = logging.getLogger("apache_beam")
    previous_level = beam_logger.level
    beam_logger.setLevel(max(previous_level, logging.WARNING))
    with contextlib.ExitStack() as restore, beam.Pipeline(options=options) as pipeline:
        restore.callback(beam_logger.setLevel, previous_level)
        produced = (pipeline
                    | "Tasks" >> beam.Create(work)
                    | "Spread" >> beam.Reshuffle()
                    | "ProduceAndEncode" >> beam.ParDo(produce_fn(producer_factory, on_error)))
        every_shard = pipeline | "EveryShard" >> beam.Create(empty)
        _ = ((produced, every_shard)
             | "Merge" >> beam.Flatten()
             | "ByShard" >> beam.GroupByKey()
             | "WriteShard" >> beam.ParDo(write_shard_fn(output_dir, counts, digests)))
    seconds = time.time() - started
    logging.info("beam: wrote %d shard(s) of %d task(s) in %.1f s", len(digests), len(work),
                 seconds)
    return BeamWriteResult(pending, seconds)


@dataclasses.dataclass(frozen=True)
class BeamWriteResult:
    """What :func:`write_splits_with_beam` did: ``written[split]`` = shard names it wrote."""

    written: Mapping[str, Sequence[str]]
    seconds: float


def collect_split(output_dir: str, split: str, tasks: Sequence[Any], num_shards: int,
                  task_name: Callable[[Any], str], beam_result: BeamWriteResult
                  ) -> writer.SplitResult:
    """The :class:`writer.SplitResult` of a split the Beam pipeline wrote: read back from the
    verified sidecars by the local writer (which then writes nothing), the shards this
    pipeline wrote marked ``reused=False`` and the pipeline's time as the split's."""

    def not_produced(task):
        raise RuntimeError(f"beam build: task {task_name(task)!r} of split {split!r} has no "
                           f"verified shard in {output_dir} after the pipeline ran")

    result = writer.write_split(output_dir, split, tasks, not_produced, num_shards=num_shards,
                                num_workers=1, on_error="fail", task_name=task_name,
                                progress=False)
    written = set(beam_result.written.get(split, ()))
    shards = tuple(dataclasses.replace(shard, reused=shard.name not in written)
                   for shard in result.shards)
    return dataclasses.replace(result, shards=shards,
                               seconds=beam_result.seconds if written else result.seconds)
