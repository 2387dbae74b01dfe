"""Evaluation of DMFR runs: TAR@FAR on the paper's three kinds of probe set, and the paper's
Table 1 analysis (mean intra- and inter-class cosine similarity).

Verification pair sets (:func:`build_probe_sets`), all on the held-out identities (the test
split), built like the paper's benchmarks:

* ``general``: every unordered pair of distinct real test images (LFW-like all pairs);
* ``cross_pose``: a near-frontal real image (|yaw| <= ``large_yaw_deg``, default 30 deg)
  against a large-yaw real image (|yaw| > 30 deg): CFP-FP's frontal-profile pairs;
* ``cross_quality``: a real (high-quality) image against a degraded copy (the ``quality``
  domain) of a real image, the pair of an image with its own copy left out.

Verification uses every pair of a set (TAR = accepted genuine pairs, FAR = accepted impostor
pairs, :mod:`tf_rgbd.metrics.verification`); TAR at FAR 1e-5 .. 1e-2 is ``nan`` where the
impostor pairs are too few to resolve the FAR (the project's rule), never extrapolated. At test
time no filter is applied: a degraded probe is a real low-quality image to the recognizer.

Table 1 (:func:`similarity_analysis`): over the test images, the mean cosine of same-identity
pairs (intra) and of different-identity pairs (inter), for the real images alone, for the real
images together with generated ones (novel poses and degraded copies), and in the filter mode
with the generated features passed through the filter F ("after demodalizing").
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Mapping, Optional, Sequence

import numpy as np

from tf_rgbd.augmentation import dmfr_domains
from tf_rgbd.config.dmfr import POSE_DOMAIN, QUALITY_DOMAIN
from tf_rgbd.metrics import verification
from tf_rgbd.training.dmfr_training import load_split_images

FAR_TARGETS = (1e-5, 1e-4, 1e-3, 1e-2)
PROBE_SETS = ("general", "cross_pose", "cross_quality")


@dataclasses.dataclass
class PairSet:
    """One verification set: every pair (row of ``first``, row of ``second``) that is valid.

    Attributes:
      first_images, second_images: float32 [N1 / N2, S, S, 3] in [-1, 1].
      first_labels, second_labels: int [N1] / [N2] identity labels.
      all_pairs_within: ``second`` is ``first`` itself: the unordered pairs of distinct rows.
      excluded: optional bool [N1, N2]: pairs left out (an image with its own degraded copy).
    """

    first_images: np.ndarray
    first_labels: np.ndarray
    second_images: np.ndarray
    second_labels: np.ndarray
    all_pairs_within: bool = False
    excluded: Optional[np.ndarray] = None

    def valid_pairs(self) -> np.ndarray:
        """bool [N1, N2]: the pairs this set compares."""
        shape = (len(self.first_labels), len(self.second_labels))
        if self.all_pairs_within:
            return np.triu(np.ones(shape, dtype=bool), k=1)
        valid = np.ones(shape, dtype=bool)
        return valid if self.excluded is None else valid & ~self.excluded


@dataclasses.dataclass
class ProbeSets:
    """The three pair sets and the images of the similarity analysis.

    Attributes:
      probes: pair set name -> :class:`PairSet`.
      generated: (images, labels) of the test split's generated images (novel poses and
        degraded copies).
      real: (images, labels) of every real test image.
    """

    probes: dict
    generated: tuple
    real: tuple


def build_probe_sets(data_dir: str, domains_dir: str, image_size: int, split: str = "test",
                     large_yaw_deg: float = 30.0) -> ProbeSets:
    """The general, cross-pose and cross-quality pair sets of ``split`` (see module doc)."""
    real = load_split_images(data_dir, split, image_size)
    quality = load_split_images(os.path.join(domains_dir, QUALITY_DOMAIN), split, image_size)
    quality_of = {dmfr_domains.parse_generated_id(example_id)[0]: row
                  for row, example_id in enumerate(quality.example_ids)}
    lacking = [example_id for example_id in real.example_ids if example_id not in quality_of]
    if lacking:
        raise ValueError(f"{domains_dir}/{QUALITY_DOMAIN} lacks the degraded copies of "
                         f"{len(lacking)} {split} images (e.g. {lacking[:3]}); build the "
                         f"domains for split {split!r} too")
    copies = np.array([quality_of[example_id] for example_id in real.example_ids])
    frontal = np.abs(real.yaw_deg) <= large_yaw_deg
    probes = {
        "general": PairSet(real.images, real.labels, real.images, real.labels,
                           all_pairs_within=True),
        "cross_pose": PairSet(real.images[frontal], real.labels[frontal],
                              real.images[~frontal], real.labels[~frontal]),
        "cross_quality": PairSet(real.images, real.labels, quality.images[copies],
                                 quality.labels[copies],
                                 excluded=np.eye(len(real.labels), dtype=bool)),
    }
    pose = load_split_images(os.path.join(domains_dir, POSE_DOMAIN), split, image_size)
    novel = np.array([row for row, example_id in enumerate(pose.example_ids)
                      if not dmfr_domains.is_same_conditions(example_id)])
    generated = (np.concatenate([pose.images[novel], quality.images]),
                 np.concatenate([pose.labels[novel], quality.labels]))
    return ProbeSets(probes, generated, (real.images, real.labels))


def embed(network, images: np.ndarray, batch_size: int = 128,
          apply_filter: bool = False) -> np.ndarray:
    """L2-normalised embeddings float32 [N, D] of ``images`` (inference mode); with
    ``apply_filter`` the network's filter F is applied before normalising."""
    outputs = []
    for start in range(0, len(images), batch_size):
        features = network(images[start:start + batch_size], training=False)["embedding"]
        if apply_filter:
            features = network.filter_features(features)
        outputs.append(np.asarray(features, np.float32))
    features = np.concatenate(outputs) if outputs else np.zeros((0, 1), np.float32)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def verify_pairs(pair_set: PairSet, first: np.ndarray, second: np.ndarray,
                 far_targets: Sequence[float] = FAR_TARGETS) -> dict:
    """Verification over the set's valid pairs from L2-normalised embeddings [N1, D], [N2, D]:
    ``{num_genuine, num_impostor, tar_at_far, eer, auc}``."""
    scores = first @ second.T
    valid = pair_set.valid_pairs()
    same = pair_set.first_labels[:, None] == pair_set.second_labels[None, :]
    genuine, impostor = scores[valid & same], scores[valid & ~same]
    if len(genuine) == 0 or len(impostor) == 0:
        return {"num_genuine": int(len(genuine)), "num_impostor": int(len(impostor)),
                "tar_at_far": {f"{far:g}": math.nan for far in far_targets},
                "eer": math.nan, "auc": math.nan}
    return verification.VerificationResult(
        num_genuine=int(len(genuine)), num_impostor=int(len(impostor)),
        tar_at_far=verification.tar_at_far(genuine, impostor, far_targets),
        eer=verification.equal_error_rate(genuine, impostor),
        auc=verification.area_under_roc(genuine, impostor)).to_dict()


def verification_results(network, probe_sets: ProbeSets,
                         far_targets: Sequence[float] = FAR_TARGETS) -> dict[str, dict]:
    """Pair set -> ``{num_genuine, num_impostor, tar_at_far, eer, auc}``."""
    results = {}
    for name, pair_set in probe_sets.probes.items():
        if len(pair_set.first_labels) == 0 or len(pair_set.second_labels) == 0:
            results[name] = verify_pairs(pair_set, np.zeros((0, 1)), np.zeros((0, 1)),
                                         far_targets)
            continue
        first = embed(network, pair_set.first_images)
        second = first if pair_set.all_pairs_within else embed(network, pair_set.second_images)
        results[name] = verify_pairs(pair_set, first, second, far_targets)
    return results


def intra_inter_similarity(features: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(mean cosine of same-label pairs, mean cosine of different-label pairs) over every
    unordered pair of distinct rows; features are L2-normalised rows [N, D]."""
    labels = np.asarray(labels)
    cosine = np.asarray(features, np.float64) @ np.asarray(features, np.float64).T
    upper = np.triu(np.ones_like(cosine, dtype=bool), k=1)
    same = labels[:, None] == labels[None, :]
    intra, inter = cosine[upper & same], cosine[upper & ~same]
    return (float(intra.mean()) if intra.size else math.nan,
            float(inter.mean()) if inter.size else math.nan)


def similarity_analysis(network, probe_sets: ProbeSets, with_filter: bool = False) -> dict:
    """Table 1 of the paper for one network: ``real_intra``, ``real_inter`` (real test images),
    ``with_generated_intra``, ``with_generated_inter`` (real + generated test images) and, with
    ``with_filter``, ``after_filter_intra`` / ``after_filter_inter`` (generated features
    through F)."""
    real_images, real_labels = probe_sets.real
    generated_images, generated_labels = probe_sets.generated
    real = embed(network, real_images)
    generated = embed(network, generated_images)
    labels = np.concatenate([real_labels, generated_labels])
    result = {}
    result["real_intra"], result["real_inter"] = intra_inter_similarity(real, real_labels)
    result["with_generated_intra"], result["with_generated_inter"] = intra_inter_similarity(
        np.concatenate([real, generated]), labels)
    if with_filter:
        filtered = embed(network, generated_images, apply_filter=True)
        result["after_filter_intra"], result["after_filter_inter"] = intra_inter_similarity(
            np.concatenate([real, filtered]), labels)
    return result


def evaluate_network(network, probe_sets: ProbeSets, with_filter: Optional[bool] = None
                     ) -> dict:
    """``{"verification": {probe set: metrics}, "similarity": {...}}`` of one network
    (``with_filter`` default: the network has a filter)."""
    if with_filter is None:
        with_filter = network.feature_filter is not None
    return {"verification": verification_results(network, probe_sets),
            "similarity": similarity_analysis(network, probe_sets, with_filter)}


def format_tar_table(rows: Mapping[str, Mapping[str, Mapping]],
                     far_targets: Sequence[float] = FAR_TARGETS) -> str:
    """``{method: {probe set: verification dict}}`` -> a text table of TAR (%)."""
    header = ["method", "probe set"] + [f"TAR@{far:g}" for far in far_targets] + ["EER", "pairs"]
    lines = ["  ".join(header)]
    for method, sets in rows.items():
        for name, result in sets.items():
            cells = [("nan" if math.isnan(result["tar_at_far"][f"{far:g}"])
                      else f"{100 * result['tar_at_far'][f'{far:g}']:.2f}") for far in far_targets]
            lines.append("  ".join([method, name, *cells, f"{100 * result['eer']:.2f}",
                                    f"{result['num_genuine']}/{result['num_impostor']}"]))
    return "\n".join(lines)
