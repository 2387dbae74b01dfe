"""Evaluation of DMFR runs: TAR@FAR on the paper's three kinds of probe set, and the paper's
Table 1 analysis (mean intra- and inter-class cosine similarity).

Probe sets (:func:`build_probe_sets`), all on the held-out identities (the test split) against
the protocol's gallery (one real, neutral, frontal image per identity):

* ``general``: every other real test image;
* ``cross_pose``: the real test images with |yaw| > ``large_yaw_deg`` (default 30 deg);
* ``cross_quality``: the degraded copies (the ``quality`` domain) of the general probes.

Verification uses every gallery-probe pair (:func:`tf_rgbd.metrics.verification.verify`);
TAR at FAR 1e-5 .. 1e-2 is ``nan`` where the impostor pairs are too few to resolve the FAR
(the project's rule), never extrapolated.

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
from tf_rgbd.data import protocol as protocol_lib
from tf_rgbd.metrics import verification
from tf_rgbd.training.dmfr_training import SplitImages, load_split_images

FAR_TARGETS = (1e-5, 1e-4, 1e-3, 1e-2)
PROBE_SETS = ("general", "cross_pose", "cross_quality")


@dataclasses.dataclass
class ProbeSets:
    """Gallery and the three probe sets (images float32 [N, S, S, 3] in [-1, 1], labels [N]).

    Attributes:
      gallery_images, gallery_labels: the protocol's gallery.
      probes: probe set name -> (images, labels).
      generated: the test split's generated images (novel poses + degraded copies) and their
        labels, for the similarity analysis.
      real: every real test image and its label.
    """

    gallery_images: np.ndarray
    gallery_labels: np.ndarray
    probes: dict
    generated: tuple
    real: tuple


def build_probe_sets(data_dir: str, domains_dir: str, image_size: int,
                     protocol: str = "lock3dface_style", large_yaw_deg: float = 30.0
                     ) -> ProbeSets:
    """The gallery, the three probe sets and the generated test images (see module doc)."""
    chosen = protocol_lib.load_protocol(protocol_lib.protocol_path(data_dir, protocol))
    real = load_split_images(data_dir, chosen.split, image_size)
    index = real.index()
    gallery_ids = set(chosen.gallery)
    missing = sorted(gallery_ids - set(index))
    if missing:
        raise KeyError(f"{data_dir}: the gallery of protocol {protocol!r} names ids missing from "
                       f"split {chosen.split!r}, e.g. {missing[:3]}")
    gallery_rows = np.array([index[example_id] for example_id in chosen.gallery])
    probe_rows = np.array([row for row, example_id in enumerate(real.example_ids)
                           if example_id not in gallery_ids])
    pose_rows = probe_rows[np.abs(real.yaw_deg[probe_rows]) > large_yaw_deg]
    quality = load_split_images(os.path.join(domains_dir, QUALITY_DOMAIN), chosen.split,
                                image_size)
    quality_of = {dmfr_domains.parse_generated_id(example_id)[0]: row
                  for row, example_id in enumerate(quality.example_ids)}
    lacking = [real.example_ids[row] for row in probe_rows
               if real.example_ids[row] not in quality_of]
    if lacking:
        raise ValueError(f"{domains_dir}/{QUALITY_DOMAIN} lacks the degraded copies of "
                         f"{len(lacking)} test images (e.g. {lacking[:3]}); build the domains "
                         f"for split {chosen.split!r} too")
    quality_rows = np.array([quality_of[real.example_ids[row]] for row in probe_rows])
    probes = {
        "general": (real.images[probe_rows], real.labels[probe_rows]),
        "cross_pose": (real.images[pose_rows], real.labels[pose_rows]),
        "cross_quality": (quality.images[quality_rows], quality.labels[quality_rows]),
    }
    pose = load_split_images(os.path.join(domains_dir, POSE_DOMAIN), chosen.split, image_size)
    novel = np.array([row for row, example_id in enumerate(pose.example_ids)
                      if not dmfr_domains.is_same_conditions(example_id)])
    generated = (np.concatenate([pose.images[novel], quality.images]),
                 np.concatenate([pose.labels[novel], quality.labels]))
    return ProbeSets(real.images[gallery_rows], real.labels[gallery_rows], probes, generated,
                     (real.images, real.labels))


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


def verification_results(network, probe_sets: ProbeSets,
                         far_targets: Sequence[float] = FAR_TARGETS) -> dict[str, dict]:
    """Probe set -> ``VerificationResult.to_dict()`` (TAR@FAR, EER, AUC, pair counts)."""
    gallery = embed(network, probe_sets.gallery_images)
    results = {}
    for name, (images, labels) in probe_sets.probes.items():
        if len(images) == 0:
            results[name] = {"num_genuine": 0, "num_impostor": 0,
                             "tar_at_far": {f"{far:g}": math.nan for far in far_targets},
                             "eer": math.nan, "auc": math.nan}
            continue
        scores = embed(network, images) @ gallery.T
        results[name] = verification.verify(scores, labels, probe_sets.gallery_labels,
                                            far_targets).to_dict()
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
