"""Closed-set identification: rank-1 and CMC over a gallery / probe score matrix.

Scores are similarities (higher = more alike), float [P, G] for P probes and G gallery
entries. Ranking is per identity: an identity's score is the best score of its gallery entries,
and a probe's rank is 1 + the number of OTHER identities scoring at least as high as its true
identity. Ties count AGAINST the probe (the conservative convention): a degenerate model whose
embeddings collapsed to one point ties every identity and must score rank K, not rank 1.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np


def _identity_scores(scores: np.ndarray, gallery_labels: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Max score per gallery identity: ([P, K] scores, [K] identity labels)."""
    identities = np.unique(gallery_labels)
    per_identity = np.stack([scores[:, gallery_labels == identity].max(axis=1)
                             for identity in identities], axis=1)
    return per_identity, identities


def true_identity_ranks(scores: np.ndarray, probe_labels: Sequence[int],
                        gallery_labels: Sequence[int]) -> np.ndarray:
    """1-based rank of each probe's true identity among the gallery identities: int [P].

    Raises:
      ValueError: shapes disagree, scores are not finite (NaN embeddings of a diverged model
        would otherwise compare as "not higher" and look perfect), or a probe's identity is not
        enrolled in the gallery (closed-set identification needs every probe identity there).
    """
    scores = np.asarray(scores, np.float64)
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{int(np.sum(~np.isfinite(scores)))} non-finite similarity scores: the "
                         "embeddings contain NaN/inf (diverged or broken model)")
    probe_labels = np.asarray(probe_labels)
    gallery_labels = np.asarray(gallery_labels)
    if scores.shape != (len(probe_labels), len(gallery_labels)):
        raise ValueError(f"scores have shape {scores.shape}, expected "
                         f"({len(probe_labels)} probes, {len(gallery_labels)} gallery entries)")
    per_identity, identities = _identity_scores(scores, gallery_labels)
    column = {identity: index for index, identity in enumerate(identities.tolist())}
    missing = sorted({label for label in probe_labels.tolist() if label not in column})
    if missing:
        raise ValueError(f"probe identities {missing[:10]} are not in the gallery; closed-set "
                         "identification needs every probe identity enrolled")
    true_scores = per_identity[np.arange(len(probe_labels)),
                               [column[label] for label in probe_labels.tolist()]]
    # ">=" counts the true identity itself once; every other tie counts against the probe.
    return np.sum(per_identity >= true_scores[:, None], axis=1)


def cmc_curve(scores: np.ndarray, probe_labels: Sequence[int], gallery_labels: Sequence[int],
              max_rank: int = 10) -> np.ndarray:
    """Cumulative match characteristic: float [max_rank], entry r-1 = fraction with rank <= r."""
    ranks = true_identity_ranks(scores, probe_labels, gallery_labels)
    return np.array([np.mean(ranks <= rank) for rank in range(1, max_rank + 1)])


@dataclasses.dataclass(frozen=True)
class IdentificationResult:
    """Identification of one probe subset.

    Attributes:
      num_probes: probes scored.
      num_identities: gallery identities.
      rank1: fraction of probes whose best-scoring identity is correct.
      cmc: fractions for ranks 1..len(cmc).
    """

    num_probes: int
    num_identities: int
    rank1: float
    cmc: tuple[float, ...]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def identify(scores: np.ndarray, probe_labels: Sequence[int], gallery_labels: Sequence[int],
             max_rank: int = 10) -> IdentificationResult:
    """Rank-1 and CMC of one probe set against the gallery."""
    curve = cmc_curve(scores, probe_labels, gallery_labels, max_rank)
    return IdentificationResult(num_probes=len(probe_labels),
                                num_identities=len(np.unique(gallery_labels)),
                                rank1=float(curve[0]), cmc=tuple(float(v) for v in curve))


def average_rank1(results: Mapping[str, IdentificationResult],
                  exclude: Sequence[str] = ()) -> float:
    """Unweighted mean rank-1 over probe subsets (the paper's "average" column), without the
    report-only subsets ``exclude`` (a protocol's ``report_only``: Lock3DFace's ``neutral``,
    near-duplicates of the gallery; the paper averages Expression, Pose, Occlusion, Time)."""
    kept = [result.rank1 for subset, result in results.items() if subset not in exclude]
    if not kept:
        return math.nan
    return float(np.mean(kept))


def format_identification_table(rows: Mapping[str, Mapping[str, float]],
                                subsets: Sequence[str], title: str = "rank-1 (%)") -> str:
    """A Table-4-style text table: one row per method, one column per subset + average.

    Args:
      rows: method name -> {subset: rank-1 fraction, ..., "average": fraction}.
      subsets: column order (e.g. expression, pose, occlusion, time).
    """
    columns = list(subsets) + ["average"]
    name_width = max([len(title)] + [len(name) for name in rows])
    widths = [max(len(column), 7) for column in columns]
    header = title.ljust(name_width) + "  " + "  ".join(
        column.rjust(width) for column, width in zip(columns, widths))
    lines = [header, "-" * len(header)]
    for name, values in rows.items():
        cells = []
        for column, width in zip(columns, widths):
            value = values.get(column, math.nan)
            cells.append(("n/a" if value is None or math.isnan(value)
                          else f"{100.0 * value:.2f}").rjust(width))
        lines.append(name.ljust(name_width) + "  " + "  ".join(cells))
    return "\n".join(lines)
