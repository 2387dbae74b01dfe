"""What every command-line program shares: absl's ``app.run`` with the project's logging set-up.

A program module is a thin wrapper: its flags come from a config (``tf_rgbd.config.flags``),
its ``main`` builds the config and calls one library function, and its last line is::

    if __name__ == "__main__":
        cli.run(main)
"""
from __future__ import annotations

import logging
import os
from typing import Callable, Optional, Sequence

from absl import app


def run(main: Callable[[Sequence[str]], Optional[int]]) -> None:
    """Parses the flags and runs ``main`` (its return value is the exit status)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    app.run(main)
