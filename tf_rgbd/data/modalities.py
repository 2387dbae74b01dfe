"""Which dataset features feed which model input: the plumbing between ``make_dataset`` batches
and the recognizer's named inputs (``rgb``, ``depth``, ``mask``).

The depth branch reads either the generated depth D* (key ``depth`` of an augmented dataset) or
the ground truth (``gt_depth`` kept beside D*, or ``depth`` of a ground-truth RGB-D dataset):
:func:`resolve_depth_key` decides from the manifest, :func:`dataset_modalities` says what to
ask ``make_dataset`` for, and :func:`select_inputs` picks the model inputs from a batch.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from tf_rgbd.config.recognizer import DEPTH_SOURCES


def resolve_depth_key(manifest: Mapping, split: str, depth_source: str) -> str:
    """Which ``make_dataset`` key feeds the depth branch for ``depth_source``.

    * ``generated``: ``depth`` of an augmented dataset (D*, domain ``generated``); refused for a
      dataset without generated examples.
    * ``gt``: ``gt_depth`` (the source's ground truth kept beside D*) for an augmented dataset,
      ``depth`` for a ground-truth RGB-D dataset.
    """
    if depth_source not in DEPTH_SOURCES:
        raise ValueError(f"depth_source must be one of {DEPTH_SOURCES}, got {depth_source!r}")
    splits = manifest.get("splits", {})
    if split not in splits:
        raise KeyError(f"dataset {manifest.get('dataset')!r} has no split {split!r}; splits are "
                       f"{sorted(splits)}")
    domains = splits[split].get("histograms", {}).get("domain", {})
    generated = domains.get("generated", 0) > 0
    if depth_source == "generated":
        if not generated:
            raise ValueError(
                f"--depth_source=generated needs an augmented dataset (domain 'generated'), but "
                f"split {split!r} of {manifest.get('dataset')!r} has domains {domains}; build one "
                "with training/augment_dataset.py or use --depth_source=gt")
        return "depth"
    return "gt_depth" if generated else "depth"


def select_inputs(batch: Mapping, modalities: Sequence[str], depth_key: str = "depth") -> dict:
    """The recognizer's input dict from a ``make_dataset`` batch (depth read from ``depth_key``)."""
    source = {"rgb": "rgb", "depth": depth_key, "mask": "mask"}
    missing = [source[name] for name in modalities if source[name] not in batch]
    if missing:
        raise KeyError(f"batch lacks {missing} for modalities {tuple(modalities)}; ask "
                       f"make_dataset for them (modalities=...); batch keys: {sorted(batch)}")
    return {name: batch[source[name]] for name in modalities}


def dataset_modalities(modalities: Sequence[str], depth_key: str = "depth") -> tuple[str, ...]:
    """``make_dataset(modalities=...)`` needed to feed a recognizer with ``modalities``."""
    needed = []
    for name in modalities:
        key = depth_key if name == "depth" else name
        if key not in needed:
            needed.append(key)
    return tuple(needed)
