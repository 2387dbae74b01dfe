"""Verification: ROC over all gallery-probe pairs, TAR at fixed FAR, EER.

Scores are similarities (higher = more alike). A pair is *genuine* when probe and gallery share
the identity, an *impostor* pair otherwise. A pair is accepted when its score is strictly above
the threshold.

ROC and AUC come from scikit-learn; TAR@FAR and the EER are computed here because their rules
are the project's own:

TAR@FAR: with I impostor pairs, at most k = floor(FAR * I) of them may be accepted, so the
threshold is the (k+1)-th highest impostor score (accept iff score > threshold; ties at the
threshold are rejected, so the measured FAR never exceeds the target). When I * FAR < 1 the
target FAR cannot be measured and TAR is reported as ``nan`` — never an extrapolated number.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np
from sklearn import metrics as sklearn_metrics

DEFAULT_FAR_TARGETS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def pair_scores(scores: np.ndarray, probe_labels: Sequence[int], gallery_labels: Sequence[int]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Splits every gallery-probe score into (genuine float [Ng], impostor float [Ni])."""
    scores = np.asarray(scores, np.float64)
    probe_labels = np.asarray(probe_labels)
    gallery_labels = np.asarray(gallery_labels)
    if scores.shape != (len(probe_labels), len(gallery_labels)):
        raise ValueError(f"scores have shape {scores.shape}, expected "
                         f"({len(probe_labels)}, {len(gallery_labels)})")
    same = probe_labels[:, None] == gallery_labels[None, :]
    return scores[same], scores[~same]


def threshold_at_far(impostor: Sequence[float], far: float) -> float:
    """The acceptance threshold for a target FAR (accept iff score > threshold): the
    (k+1)-th highest impostor score, k = floor(far * I); ``nan`` when I * far < 1 (the target
    cannot be measured), ``-inf`` when every impostor pair may be accepted."""
    impostor = np.sort(np.asarray(impostor, np.float64))[::-1]
    if len(impostor) * far < 1.0:
        return math.nan
    allowed = int(math.floor(far * len(impostor) + 1e-9))
    return float(impostor[allowed]) if allowed < len(impostor) else -math.inf


def tar_at_far(genuine: Sequence[float], impostor: Sequence[float],
               far_targets: Sequence[float] = DEFAULT_FAR_TARGETS) -> dict[float, float]:
    """TAR at each target FAR (see the module docstring); ``nan`` where unmeasurable."""
    genuine = np.asarray(genuine, np.float64)
    results = {}
    for far in far_targets:
        threshold = threshold_at_far(impostor, far)
        if len(genuine) == 0 or math.isnan(threshold):
            results[float(far)] = math.nan
            continue
        results[float(far)] = float(np.mean(genuine > threshold))
    return results


def roc_curve(genuine: Sequence[float], impostor: Sequence[float]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points for every distinct threshold, from strictest to loosest.

    Returns (far, tar, thresholds), each float [T + 1]; point i accepts scores >= thresholds[i]
    (the first point, threshold +inf, accepts nothing).
    """
    genuine = np.asarray(genuine, np.float64)
    impostor = np.asarray(impostor, np.float64)
    if len(genuine) == 0 or len(impostor) == 0:
        raise ValueError(f"ROC needs genuine and impostor pairs, got {len(genuine)} genuine and "
                         f"{len(impostor)} impostor")
    far, tar, thresholds = sklearn_metrics.roc_curve(
        np.r_[np.ones(len(genuine)), np.zeros(len(impostor))], np.r_[genuine, impostor],
        drop_intermediate=False)
    return far, tar, thresholds.astype(np.float64)


def equal_error_rate(genuine: Sequence[float], impostor: Sequence[float]) -> float:
    """EER: where FAR equals FRR = 1 - TAR on the ROC, linearly interpolated."""
    far, tar, _ = roc_curve(genuine, impostor)
    frr = 1.0 - tar
    difference = far - frr  # increases from -1 to +1 along the curve
    crossing = int(np.argmax(difference >= 0.0))
    if crossing == 0:
        return float(far[0])
    d0, d1 = difference[crossing - 1], difference[crossing]
    weight = 0.0 if d1 == d0 else -d0 / (d1 - d0)
    return float(far[crossing - 1] + weight * (far[crossing] - far[crossing - 1]))


def area_under_roc(genuine: Sequence[float], impostor: Sequence[float]) -> float:
    """Area under the ROC (scikit-learn; a tie between a genuine and an impostor score counts
    one half)."""
    genuine = np.asarray(genuine, np.float64)
    impostor = np.asarray(impostor, np.float64)
    return float(sklearn_metrics.roc_auc_score(
        np.r_[np.ones(len(genuine)), np.zeros(len(impostor))], np.r_[genuine, impostor]))


@dataclasses.dataclass(frozen=True)
class VerificationResult:
    """Verification over all gallery-probe pairs of one method.

    Attributes:
      num_genuine, num_impostor: pair counts.
      tar_at_far: target FAR -> TAR (nan where fewer than 1/FAR impostor pairs exist).
      eer: equal error rate.
      auc: area under the ROC.
    """

    num_genuine: int
    num_impostor: int
    tar_at_far: Mapping[float, float]
    eer: float
    auc: float

    def to_dict(self) -> dict:
        return {"num_genuine": self.num_genuine, "num_impostor": self.num_impostor,
                "tar_at_far": {f"{far:g}": tar for far, tar in self.tar_at_far.items()},
                "eer": self.eer, "auc": self.auc}


def verify(scores: np.ndarray, probe_labels: Sequence[int], gallery_labels: Sequence[int],
           far_targets: Sequence[float] = DEFAULT_FAR_TARGETS) -> VerificationResult:
    """Verification metrics of a probe x gallery score matrix."""
    genuine, impostor = pair_scores(scores, probe_labels, gallery_labels)
    return VerificationResult(num_genuine=len(genuine), num_impostor=len(impostor),
                              tar_at_far=tar_at_far(genuine, impostor, far_targets),
                              eer=equal_error_rate(genuine, impostor),
                              auc=area_under_roc(genuine, impostor))


def format_verification_table(rows: Mapping[str, VerificationResult],
                              far_targets: Sequence[float] = DEFAULT_FAR_TARGETS) -> str:
    """One row per method: TAR (%) at each FAR, EER (%), pair counts."""
    name_width = max([6] + [len(name) for name in rows])
    columns = [f"TAR@{far:g}" for far in far_targets] + ["EER", "pairs +/-"]
    header = "method".ljust(name_width) + "  " + "  ".join(column.rjust(10) for column in columns)
    lines = [header, "-" * len(header)]
    for name, result in rows.items():
        cells = [("nan" if math.isnan(result.tar_at_far[float(far)])
                  else f"{100.0 * result.tar_at_far[float(far)]:.2f}").rjust(10)
                 for far in far_targets]
        cells.append(f"{100.0 * result.eer:.2f}".rjust(10))
        cells.append(f"{result.num_genuine}/{result.num_impostor}".rjust(10))
        lines.append(name.ljust(name_width) + "  " + "  ".join(cells))
    return "\n".join(lines)
