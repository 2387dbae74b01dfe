"""What every command-line program shares: absl's ``app.run`` with the project's logging set-up
and its error policy.

A program module is a thin wrapper: its flags come from a config (``tf_rgbd.config.flags``),
its ``main`` builds the config and calls one library function, and its last line is::

    if __name__ == "__main__":
        cli.run(main)

Error policy: a user error (bad flag value, missing file or directory, unknown split or variant,
a dataset or run that does not fit the request, a locked directory) prints ONE line
``error: <what was wrong, where, what to do>`` to stderr and exits with status 2; absl's
``-v 1`` (``--verbosity=1``) or ``TF_RGBD_TRACEBACK=1`` keeps the full traceback for
developers. Preemption (SIGTERM during training, after the checkpoint was saved) exits 0.
Anything else is a bug and keeps Python's traceback (exit 1).
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Callable, Optional, Sequence

from absl import app
from absl import flags as absl_flags
from absl import logging as absl_logging

USAGE_ERROR_EXIT = 2
TRACEBACK_VARIABLE = "TF_RGBD_TRACEBACK"


class UserError(Exception):
    """An error in what the user asked for; the message is the whole explanation."""


def _user_error_types() -> tuple[type, ...]:
    """Exception types that mean "the request is wrong", not "the program is wrong"."""
    types: list[type] = [UserError, ValueError, KeyError, FileNotFoundError, NotADirectoryError,
                         IsADirectoryError, PermissionError, absl_flags.Error]
    for module_name, names in (("tf_rgbd.data.errors", ("SkipExample", "BuildError")),
                               ("tf_rgbd.data.verify", ("CorruptShardError",)),
                               ("tf_rgbd.data.protocol", ("ProtocolError",)),
                               ("tf_rgbd.io_utils", ("LockedError", "DiskFullError")),
                               ("tf_rgbd.models.loading", ("ModelFileError",)),
                               ("tf_rgbd.training.checkpointing", ("CheckpointError",))):
        module = sys.modules.get(module_name)
        for name in names:
            if module is not None and hasattr(module, name):
                types.append(getattr(module, name))
    return tuple(types)


def _preempted_types() -> tuple[type, ...]:
    callbacks = sys.modules.get("tf_rgbd.training.callbacks")
    return (callbacks.PreemptedError,) if callbacks is not None else ()


def _wants_traceback() -> bool:
    if os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0"):
        return True
    try:
        return absl_logging.get_verbosity() >= 1
    except Exception:  # noqa: BLE001 (verbosity before flags are parsed)
        return False


def one_line(error: BaseException) -> str:
    """``error: ...`` with the exception's message on one line (KeyError quotes removed)."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    message = " ".join(str(message).split())
    return f"error: {message or type(error).__name__}"


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        return absl_flags.FLAGS(argv)
    except absl_flags.Error as error:
        print(f"error: {' '.join(str(error).split())} (see {os.path.basename(argv[0])} "
              "--helpfull)", file=sys.stderr)
        sys.exit(USAGE_ERROR_EXIT)


def run(main: Callable[[Sequence[str]], Optional[int]]) -> None:
    """Parses the flags and runs ``main`` (its return value is the exit status)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)

    def guarded(argv: Sequence[str]) -> Optional[int]:
        try:
            return main(argv)
        except _preempted_types() as preempted:
            print(f"preempted: {preempted}", file=sys.stderr)
            return 0
        except _user_error_types() as error:
            if _wants_traceback():
                raise
            print(one_line(error), file=sys.stderr)
            return USAGE_ERROR_EXIT

    app.run(guarded, flags_parser=_parse_flags)
