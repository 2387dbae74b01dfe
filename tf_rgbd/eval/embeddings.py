"""Identity embeddings of a dataset split and their similarity scores.

``extract_embeddings`` runs the recognizer's inference model (``build_inference_model``: named
inputs rgb/depth/mask, L2-normalised outputs id_rgb/id_depth) over a ``make_dataset`` stream
(with metadata). With ``flip_test`` the embeddings of the face and of its horizontal mirror are
summed and re-normalised (InsightFace's flip test). The similarity of two faces is the cosine of
their embeddings per modality; the fused score is the mean of the per-modality cosines
(score-level fusion).
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from tf_rgbd.data.modalities import select_inputs

FUSED = "fused"
METADATA_KEYS = ("subject", "domain", "expression", "occlusion", "session", "yaw_deg")


@dataclasses.dataclass
class EmbeddingSet:
    """Embeddings of N faces.

    Attributes:
      example_ids: str [N].
      labels: int [N] identity labels.
      features: branch ("rgb"/"depth") -> float32 [N, D], unit L2 norm per row.
      metadata: attribute name -> [N] values (strings / numbers) for reporting.
    """

    example_ids: np.ndarray
    labels: np.ndarray
    features: dict[str, np.ndarray]
    metadata: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.example_ids)

    @property
    def branches(self) -> tuple[str, ...]:
        return tuple(self.features)

    def select(self, example_ids: Sequence[str], what: str = "subset") -> "EmbeddingSet":
        """The rows of ``example_ids`` in that order; raises naming ids that are missing."""
        position = {example_id: index for index, example_id in enumerate(self.example_ids.tolist())}
        missing = [example_id for example_id in example_ids if example_id not in position]
        if missing:
            raise KeyError(f"{what}: {len(missing)} example ids are not in the extracted split, "
                           f"e.g. {missing[:3]} (protocol and dataset disagree?)")
        rows = np.array([position[example_id] for example_id in example_ids], np.int64)
        return EmbeddingSet(example_ids=self.example_ids[rows], labels=self.labels[rows],
                            features={key: value[rows] for key, value in self.features.items()},
                            metadata={key: value[rows] for key, value in self.metadata.items()})


def l2_normalize(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(features, axis=-1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def _flip(inputs: Mapping[str, tf.Tensor]) -> dict:
    # Mask classes have no left/right variants, so every modality flips the same way.
    return {key: tf.reverse(value, axis=[2]) for key, value in inputs.items()}


def extract_embeddings(inference_model: keras.Model, batches: Iterable[Mapping],
                       modalities: Sequence[str], depth_key: str = "depth",
                       flip_test: bool = False, progress: bool = True,
                       total_batches: Optional[int] = None) -> EmbeddingSet:
    """Embeds every face of ``batches`` (``make_dataset(..., with_metadata=True)`` dicts).

    Args:
      inference_model: inputs ``modalities``; outputs ``id_<branch>`` float32 [B, D].
      modalities: the recognizer's modalities (what to feed).
      depth_key: batch key feeding the depth branch (``depth`` or ``gt_depth``).
      flip_test: sum with the mirrored face's embedding before normalising.
    """
    ids, labels, features, metadata = [], [], {}, {key: [] for key in METADATA_KEYS}

    @tf.function(reduce_retracing=True)
    def embed(inputs):
        outputs = inference_model(inputs, training=False)
        if flip_test:
            flipped = inference_model(_flip(inputs), training=False)
            outputs = {key: outputs[key] + flipped[key] for key in outputs}
        return outputs

    for batch in tqdm(batches, desc="embeddings", total=total_batches, disable=not progress,
                      leave=False):
        outputs = embed(select_inputs(batch, modalities, depth_key))
        for key, value in outputs.items():
            if key.startswith("id_"):
                features.setdefault(key[len("id_"):], []).append(np.asarray(value))
        ids.extend(value.decode() for value in np.asarray(batch["example_id"]))
        labels.append(np.asarray(batch["label"]))
        for key in METADATA_KEYS:
            if key in batch:
                values = np.asarray(batch[key])
                metadata[key].append(np.array([v.decode() if isinstance(v, bytes) else v
                                               for v in values]))
    if not ids:
        raise ValueError("extract_embeddings: the dataset yielded no examples")
    return EmbeddingSet(
        example_ids=np.array(ids), labels=np.concatenate(labels),
        features={key: l2_normalize(np.concatenate(value)) for key, value in features.items()},
        metadata={key: np.concatenate(value) for key, value in metadata.items() if value})


def similarity_scores(probes: EmbeddingSet, gallery: EmbeddingSet) -> dict[str, np.ndarray]:
    """Cosine similarities float [P, G] per branch, plus ``fused`` (their mean) with 2 branches."""
    scores = {branch: probes.features[branch] @ gallery.features[branch].T
              for branch in probes.branches}
    if len(scores) > 1:
        scores[FUSED] = np.mean(np.stack(list(scores.values())), axis=0)
    return scores


# Below this mean per-dimension std (over examples) of unit-length embeddings a branch maps
# every face to (nearly) the same point: a collapsed model (measured 2e-8 on a collapsed
# RGB+D+M run, 0.05-0.08 on trained ones), whose scores all tie.
COLLAPSE_SPREAD = 1e-4


def embedding_spread(features: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Per branch: the mean over dimensions of the std over examples of float [N, D]
    embeddings (0 = every example has the same embedding)."""
    return {branch: float(np.mean(np.std(np.asarray(values, np.float64), axis=0)))
            if len(values) else float("nan") for branch, values in features.items()}


def collapsed_branches(spread: Mapping[str, float]) -> list[str]:
    """Branches whose ``embedding_spread`` is below :data:`COLLAPSE_SPREAD`."""
    return sorted(branch for branch, value in spread.items() if value < COLLAPSE_SPREAD)
