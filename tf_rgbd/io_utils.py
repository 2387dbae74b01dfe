"""File-system primitives every writer of the project uses.

* Atomic writers: write to a temporary file in the destination folder, then rename. A reader
  never sees a half-written file, and an interrupted writer leaves at most a ``.tmp-*`` file
  behind (which the next writer ignores and overwrites).
* A full disk (ENOSPC, EFBIG from a file-size limit, EDQUOT) is turned into
  :class:`DiskFullError` naming the file, the bytes needed and the bytes free; the previous
  file is kept and no partial file remains.
* :func:`directory_lock`: one writer per directory (a build's output, a training run), with
  the owner's pid and host in the lock file and recovery of stale locks whose owner is gone.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from typing import Any, Iterator, Optional

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC))
# How TensorFlow's C++ file system reports the same conditions (its errors carry no errno).
DISK_FULL_MESSAGES = ("No space left on device", "File too large", "Disk quota exceeded")
LOCK_FILE = ".lock"


class DiskFullError(OSError):
    """A write failed for lack of space; nothing partial was left behind.

    Attributes:
      path: the file that could not be written.
      needed_bytes: what the write needed (None when unknown).
      free_bytes: free space on that file system when the error was seen.
    """

    def __init__(self, path: str, needed_bytes: Optional[int] = None,
                 what: str = "file", cause: Optional[BaseException] = None,
                 at_least: bool = False):
        self.path = path
        self.needed_bytes = needed_bytes
        self.free_bytes = free_bytes(path)
        needed = (f"needed {'more than ' if at_least else ''}{format_bytes(needed_bytes)}"
                  if needed_bytes else "needed more")
        detail = f" ({cause})" if cause else ""
        super().__init__(errno.ENOSPC, f"cannot write {what} {path}: disk full or file-size limit "
                                       f"reached; {needed}, {format_bytes(self.free_bytes)} "
                                       f"free{detail}; the previous version (if any) is kept; "
                                       "free space and re-run")


class LockedError(RuntimeError):
    """Another live process owns the directory (the message names it)."""


def format_bytes(count: Optional[int]) -> str:
    if count is None:
        return "an unknown amount"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} B"


def free_bytes(path: str) -> Optional[int]:
    """Free bytes on the file system holding ``path`` (or its nearest existing parent)."""
    folder = os.path.abspath(path)
    while folder and not os.path.exists(folder):
        folder = os.path.dirname(folder)
    try:
        return shutil.disk_usage(folder or "/").free
    except OSError:
        return None


def is_disk_full(error: BaseException) -> bool:
    """True for an OSError with a disk-full errno or a TensorFlow error saying the same."""
    if isinstance(error, DiskFullError):
        return True
    if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
        return True
    message = str(error)
    return any(text in message for text in DISK_FULL_MESSAGES)


@contextlib.contextmanager
def atomic_output_path(path: str, expected_bytes: Optional[int] = None,
                       what: str = "file") -> Iterator[str]:
    """Yields a temporary path in ``path``'s folder; renames it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched; a disk-full
    error becomes :class:`DiskFullError` (``expected_bytes``, when known, is reported as the
    space needed, else the size the temporary file had reached).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temp_path = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + ".", dir=folder)
    os.close(handle)
    try:
        yield temp_path
        os.replace(temp_path, path)
    except BaseException as error:
        written = os.path.getsize(temp_path) if os.path.exists(temp_path) else None
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp_path)
        if is_disk_full(error) and not isinstance(error, DiskFullError):
            raise DiskFullError(path, expected_bytes or written, what, cause=error,
                                at_least=expected_bytes is None) from error
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (fsync before the rename)."""
    with atomic_output_path(path, expected_bytes=len(data)) as temp_path:
        with open(temp_path, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str, obj: Any) -> None:
    """Writes ``obj`` as indented, key-sorted JSON atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n")


def json_default(value: Any) -> Any:
    # NumPy scalars/arrays and tuples appear in configs and metrics.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def sha256_of_file(path: str, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------ directory locks

def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def read_lock(directory: str) -> Optional[dict]:
    """The lock file's owner record of ``directory`` (None when unlocked or unreadable)."""
    try:
        with open(os.path.join(directory, LOCK_FILE), encoding="utf-8") as handle:
            return json.load(handle)
    except (FileNotFoundError, json.JSONDecodeError, OSError):
        return None


@contextlib.contextmanager
def directory_lock(directory: str, purpose: str) -> Iterator[dict]:
    """Holds ``<directory>/.lock`` for the duration: one writer per directory.

    The lock file records pid, host, start time, purpose and command. A second process is
    refused with :class:`LockedError` naming the owner. A lock whose owner is gone (same host,
    process no longer alive) is stale: it is taken over with a warning. A lock held by this
    very process (nested use) is re-entered. A lock from another host cannot be checked and is
    never broken automatically (the message says how to remove it).
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, LOCK_FILE)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose,
          "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv)}
    owned = False
    for _ in range(3):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = read_lock(directory)
            if owner is None:
                # Being written this instant, or an empty file left by a crash mid-write.
                time.sleep(0.2)
                owner = read_lock(directory)
                if owner is None:
                    logging.warning("%s: removing an unreadable lock file", path)
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(path)
                    continue
            if owner.get("host") == me["host"] and owner.get("pid") == me["pid"]:
                yield owner  # re-entered by the same process
                return
            if owner.get("host") == me["host"] and not _process_alive(int(owner.get("pid", -1))):
                logging.warning("%s: taking over a stale lock of %s (pid %s is gone)", path,
                                owner.get("purpose"), owner.get("pid"))
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                continue
            raise LockedError(
                f"{directory} is in use by {owner.get('purpose', 'another process')} (pid "
                f"{owner.get('pid')} on {owner.get('host')} since {owner.get('started')}: "
                f"{owner.get('command', '')}); wait for it to finish, or if that process is gone "
                f"(another host cannot be checked) remove {path}")
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(me, handle)
            handle.flush()
            os.fsync(handle.fileno())
        owned = True
        break
    if not owned:
        raise LockedError(f"{path}: could not take the lock (it keeps changing); is another "
                          "process starting in the same directory?")
    try:
        yield me
    finally:
        if (read_lock(directory) or {}).get("pid") == me["pid"]:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
