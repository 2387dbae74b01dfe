"""Verifying a dataset's shards against their sidecars (sha256 and record count), and naming
the bad ones when reading fails.

    report = verify_dataset("/data/tfr/vggface2", splits=["train"], num_threads=4)
    report.bad            # [ShardCheck(path, reason, ...)] of truncated / corrupted shards

``python -m datasets.verify DIR`` is the command-line form; training runs can verify their
splits before they start (``--verify_shards``) and leave bad shards out
(``--on_corrupt_shard=skip``: counted, logged, the epoch's example count adjusted).

:func:`naming_corrupt_shards` wraps code that iterates a dataset: TensorFlow's own
``DataLossError: corrupted record at 1471522`` names no file, so on such an error the split's
shards are verified and the error raised again as :class:`CorruptShardError` naming them.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import os
import re
from typing import Iterator, Optional, Sequence

from tqdm import tqdm

from tf_rgbd import io_utils
from tf_rgbd.data import writer

CORRUPT_RECORD_PATTERN = re.compile(r"(?:corrupted|truncated) record at (\d+)")


class CorruptShardError(RuntimeError):
    """Shards of a dataset are truncated or corrupted (the message names each one)."""

    def __init__(self, message: str, bad: Sequence["ShardCheck"] = ()):
        super().__init__(message)
        self.bad = list(bad)


@dataclasses.dataclass(frozen=True)
class ShardCheck:
    """The verdict on one shard.

    Attributes:
      path: the shard file.
      split: its split.
      ok: the file exists, its sha256 equals the sidecar's and every record reads.
      reason: what is wrong ('' when ok).
      expected_records: the sidecar's record count.
      records_read: records read before the end or the first bad record.
      bad_offset: byte offset of the first corrupted record (None when none or unknown).
    """

    path: str
    split: str
    ok: bool
    reason: str = ""
    expected_records: Optional[int] = None
    records_read: int = 0
    bad_offset: Optional[int] = None

    def describe(self) -> str:
        where = f" (record {self.records_read}" + (
            f", byte offset {self.bad_offset})" if self.bad_offset is not None else ")")
        return f"{self.path}: {self.reason}" + (where if not self.ok and self.records_read
                                                 or self.bad_offset is not None else "")


@dataclasses.dataclass(frozen=True)
class VerifyReport:
    """Every shard checked, by split."""

    dataset_dir: str
    checks: tuple[ShardCheck, ...]

    @property
    def bad(self) -> list[ShardCheck]:
        return [check for check in self.checks if not check.ok]

    @property
    def ok(self) -> bool:
        return not self.bad

    def bad_names(self) -> list[str]:
        return [os.path.basename(check.path) for check in self.bad]

    def summary(self) -> str:
        good = len(self.checks) - len(self.bad)
        lines = [f"{self.dataset_dir}: {good}/{len(self.checks)} shards verified"]
        lines += [f"  BAD {check.describe()}" for check in self.bad]
        return "\n".join(lines)


def clean_tf_message(text: str) -> str:
    """TensorFlow's op error text without the function-node and op-name decorations."""
    text = re.sub(r"\{\{function_node [^}]*\}\}", "", str(text))
    text = re.sub(r"\[Op:[^\]]*\]( name:)?", "", text)
    return " ".join(text.split())


def _read_all_records(path: str) -> tuple[int, Optional[str], Optional[int]]:
    """(records read, error text or None, corrupted-record byte offset or None)."""
    import tensorflow as tf  # noqa: PLC0415 (sidecar checks need no TensorFlow)

    count = 0
    try:
        for _ in tf.data.TFRecordDataset(path):
            count += 1
    except (tf.errors.DataLossError, tf.errors.OutOfRangeError,
            tf.errors.InvalidArgumentError) as error:
        message = clean_tf_message(error.message)
        match = CORRUPT_RECORD_PATTERN.search(message)
        return count, message, int(match.group(1)) if match else None
    return count, None, None


def verify_shard(path: str, split: str = "", check_sha256: bool = True) -> ShardCheck:
    """Checks one shard against its ``.index.json`` sidecar: present, sha256, records."""
    sidecar_path = path + writer.INDEX_SUFFIX
    if not os.path.exists(path):
        return ShardCheck(path, split, False, "missing shard file")
    try:
        with open(sidecar_path, encoding="utf-8") as handle:
            sidecar = json.load(handle)
    except FileNotFoundError:
        return ShardCheck(path, split, False, f"no sidecar {os.path.basename(sidecar_path)}")
    except (json.JSONDecodeError, OSError) as error:
        return ShardCheck(path, split, False, f"unreadable sidecar ({error})")
    expected = int(sidecar.get("count", -1))
    if check_sha256 and sidecar.get("sha256") and io_utils.sha256_of_file(path) != sidecar["sha256"]:
        read, error, offset = _read_all_records(path)
        reason = "sha256 differs from the sidecar's (the file was modified or damaged)"
        if error:
            reason += f"; reading stops: {error}"
        elif read != expected:
            reason += f"; {read} records, the sidecar says {expected}"
        return ShardCheck(path, split, False, reason, expected, read, offset)
    read, error, offset = _read_all_records(path)
    if error:
        return ShardCheck(path, split, False, f"unreadable record: {error}", expected, read, offset)
    if expected >= 0 and read != expected:
        return ShardCheck(path, split, False, f"{read} records, the sidecar says {expected}",
                          expected, read)
    return ShardCheck(path, split, True, "", expected, read)


def shard_paths(dataset_dir: str, splits: Optional[Sequence[str]] = None
                ) -> list[tuple[str, str]]:
    """(split, path) of every shard the manifest lists for ``splits`` (default: all)."""
    manifest = writer.read_manifest(dataset_dir)
    wanted = list(splits or manifest["splits"])
    unknown = sorted(set(wanted) - set(manifest["splits"]))
    if unknown:
        raise KeyError(f"{dataset_dir}: no split(s) {unknown}; splits are "
                       f"{sorted(manifest['splits'])}")
    return [(split, os.path.join(dataset_dir, shard["name"]))
            for split in wanted for shard in manifest["splits"][split]["shards"]]


def verify_dataset(dataset_dir: str, splits: Optional[Sequence[str]] = None,
                   num_threads: int = 2, check_sha256: bool = True,
                   progress: bool = True) -> VerifyReport:
    """Verifies every shard of ``splits`` in parallel threads (hashing releases the GIL)."""
    paths = shard_paths(dataset_dir, splits)
    with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
        futures = [pool.submit(verify_shard, path, split, check_sha256) for split, path in paths]
        checks = [future.result() for future in tqdm(
            futures, desc="verifying shards", disable=not progress, leave=False)]
    return VerifyReport(dataset_dir, tuple(checks))


def good_example_count(dataset_dir: str, split: str, excluded: Sequence[str]) -> int:
    """Examples of ``split`` in the shards not ``excluded`` (names or paths)."""
    names = {os.path.basename(name) for name in excluded}
    manifest = writer.read_manifest(dataset_dir)
    return sum(int(shard["count"]) for shard in manifest["splits"][split]["shards"]
               if shard["name"] not in names)


def corrupt_shard_error(report: VerifyReport, cause: str = "") -> CorruptShardError:
    """The error to raise for a report with bad shards (one line per shard)."""
    bad = "; ".join(check.describe() for check in report.bad)
    prefix = f"{cause}; " if cause else ""
    return CorruptShardError(
        f"{prefix}{len(report.bad)} corrupt shard(s) in {report.dataset_dir}: {bad}. Rebuild "
        f"them (delete the files and re-run the build, which rewrites missing shards), or "
        f"train without them with --on_corrupt_shard=skip; python -m datasets.verify "
        f"{report.dataset_dir} lists every bad shard", report.bad)


@contextlib.contextmanager
def naming_corrupt_shards(dataset_dir: str, splits: Sequence[str]) -> Iterator[None]:
    """Re-raises a record-reading error of TensorFlow as :class:`CorruptShardError` naming the
    bad shards of ``splits`` (found by verifying them then); other errors pass unchanged."""
    import tensorflow as tf  # noqa: PLC0415

    try:
        yield
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
        message = clean_tf_message(getattr(error, "message", error))
        if isinstance(error, tf.errors.InvalidArgumentError) and (
                "corrupt" not in message and "truncated" not in message.lower()):
            raise
        report = verify_dataset(dataset_dir, splits, progress=False)
        if report.ok:
            raise
        raise corrupt_shard_error(report, f"reading {dataset_dir} failed ({message[:200]})"
                                  ) from error
