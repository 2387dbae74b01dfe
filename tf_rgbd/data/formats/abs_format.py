"""FRGC ``.abs`` range files (optionally gzip-compressed ``.abs.gz``).

Text layout: ``<N> rows``, ``<M> columns``, one header line (``pixels (flag X Y Z):``), then
N*M validity flags (0/1), then N*M X, N*M Y and N*M Z values, each row-major; whitespace
(spaces or newlines) separates values. Invalid points also carry -999999 coordinates.
"""
from __future__ import annotations

import dataclasses
import gzip
import re

import numpy as np

from tf_rgbd.data.errors import MalformedFileError, MissingFileError

REASON = "malformed_abs"


@dataclasses.dataclass(frozen=True)
class AbsScan:
    """A parsed ``.abs`` file.

    Attributes:
      xyz: float64 [rows, cols, 3] coordinates (mm).
      valid: bool [rows, cols].
    """

    xyz: np.ndarray
    valid: np.ndarray


def _read_text(path: str) -> str:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            return handle.read().decode("latin-1")
    except FileNotFoundError as error:
        raise MissingFileError("missing_file", f"{path} does not exist") from error
    except (OSError, EOFError) as error:  # a broken gzip stream
        raise MalformedFileError(REASON, f"{path}: cannot decompress ({error})") from error


def read_abs(path: str) -> AbsScan:
    """Parses an ``.abs`` / ``.abs.gz`` file.

    Raises:
      SkipExample: missing_file; malformed_abs (bad "rows"/"columns" lines, a wrong number of
        values, flags other than 0/1, non-numbers).
    """
    text = _read_text(path)
    lines = text.split("\n", 3)
    if len(lines) < 4:
        raise MalformedFileError(REASON, f"{path}: fewer than 4 lines (expected 'N rows', 'M columns', "
                                  "a header line and the values)")
    rows_match = re.match(r"\s*(\d+)\s+rows", lines[0])
    cols_match = re.match(r"\s*(\d+)\s+columns", lines[1])
    if rows_match is None or cols_match is None:
        raise MalformedFileError(REASON, f"{path}: first lines must be '<N> rows' and '<M> columns', "
                                  f"got {lines[0]!r}, {lines[1]!r}")
    rows, cols = int(rows_match.group(1)), int(cols_match.group(1))
    count = rows * cols
    try:
        values = np.array(lines[3].split(), dtype=np.float64)
    except ValueError as error:
        raise MalformedFileError(REASON, f"{path}: a value is not a number ({error})") from error
    if values.size != 4 * count:
        raise MalformedFileError(REASON, f"{path}: {values.size} values, expected 4 * {rows} * {cols} "
                                  f"= {4 * count} (flags, X, Y, Z)")
    flags = values[:count]
    if not np.all((flags == 0) | (flags == 1)):
        raise MalformedFileError(REASON, f"{path}: validity flags must be 0 or 1")
    xyz = np.stack([values[count * (k + 1):count * (k + 2)].reshape(rows, cols)
                    for k in range(3)], axis=-1)
    valid = (flags.reshape(rows, cols) == 1) & np.all(np.abs(xyz) < 1e5, axis=-1)
    return AbsScan(xyz=xyz, valid=valid)
