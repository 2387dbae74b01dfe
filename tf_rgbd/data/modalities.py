"""Which dataset features feed which model input: the plumbing between ``make_dataset`` batches
and the recognizer's named inputs (``rgb``, ``depth``, ``mask``).

The depth branch reads either the generated depth D* (key ``depth`` of an augmented dataset) or
the ground truth (``gt_depth`` kept beside D*, or ``depth`` of a ground-truth RGB-D dataset):
:func:`resolve_depth_source` turns ``auto`` into ``generated`` (augmented datasets) or ``gt``,
:func:`resolve_depth_key` decides the key from the manifest and REFUSES a depth the split does
not have (never zeros), :func:`dataset_modalities` says what to ask ``make_dataset`` for, and
:func:`select_inputs` picks the model inputs from a batch.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from tf_rgbd.config.recognizer import DEPTH_SOURCES


class MissingModalityError(ValueError):
    """A requested modality is absent from a dataset split (names dataset, split and flag)."""


def _split_info(manifest: Mapping, split: str) -> Mapping:
    splits = manifest.get("splits", {})
    if split not in splits:
        raise KeyError(f"dataset {manifest.get('dataset')!r} has no split {split!r}; splits are "
                       f"{sorted(splits)}")
    return splits[split]


def is_generated(manifest: Mapping, split: str) -> bool:
    """Whether ``split`` holds augmented examples (domain ``generated``: D*, M*)."""
    domains = _split_info(manifest, split).get("histograms", {}).get("domain", {})
    return domains.get("generated", 0) > 0


def resolve_depth_source(manifest: Mapping, split: str, depth_source: str) -> str:
    """``gt`` or ``generated``: ``auto`` is ``generated`` on an augmented split, else ``gt``."""
    if depth_source not in DEPTH_SOURCES:
        raise ValueError(f"depth_source must be one of {DEPTH_SOURCES}, got {depth_source!r}")
    if depth_source == "auto":
        return "generated" if is_generated(manifest, split) else "gt"
    return depth_source


def resolve_depth_key(manifest: Mapping, split: str, depth_source: str) -> str:
    """Which ``make_dataset`` key feeds the depth branch for ``depth_source``.

    * ``auto``: see :func:`resolve_depth_source`.
    * ``generated``: ``depth`` of an augmented dataset (D*, domain ``generated``); refused for a
      dataset without generated examples.
    * ``gt``: ``gt_depth`` (the source's ground truth kept beside D*) for an augmented dataset
      built with ``--keep_gt_depth``, ``depth`` for a ground-truth RGB-D dataset whose split has
      depth.

    Raises:
      MissingModalityError: the split lacks the requested depth (message: dataset, split, flag).
    """
    source = resolve_depth_source(manifest, split, depth_source)
    info = _split_info(manifest, split)
    histograms = info.get("histograms", {})
    name = manifest.get("dataset")
    generated = is_generated(manifest, split)
    if source == "generated":
        if not generated:
            raise MissingModalityError(
                f"--depth_source=generated needs an augmented dataset (domain 'generated'), but "
                f"split {split!r} of dataset {name!r} has domains "
                f"{histograms.get('domain', {})}; build one with training/augment_dataset.py or "
                "use --depth_source=gt")
        return "depth"
    if generated:
        if not manifest.get("extra", {}).get("keep_gt_depth", False):
            raise MissingModalityError(
                f"--depth_source=gt: split {split!r} of dataset {name!r} has no ground-truth "
                "depth (gt_depth): it was augmented without --keep_gt_depth. Re-run "
                "training/augment_dataset.py with --keep_gt_depth, or use "
                "--depth_source=generated (D*)")
        return "gt_depth"
    if "has_depth" in histograms and not histograms["has_depth"].get("True", 0):
        raise MissingModalityError(
            f"--depth_source=gt: split {split!r} of dataset {name!r} has no example with depth "
            f"(has_depth histogram {histograms.get('has_depth')}); train without a depth branch "
            "(--modalities=rgb) or on an RGB-D / augmented dataset")
    return "depth"


def check_modalities_present(manifest: Mapping, split: str, modalities: Sequence[str],
                             zero_fill: Sequence[str] = ()) -> None:
    """Refuses model inputs that some examples of ``split`` lack, unless zero-filling them is
    asked for (``--zero_fill_missing``).

    Reads the manifest's ``has_depth`` / ``has_mask`` histograms; an augmented split always has
    D* and M* (a generator without a mask head writes no mask: its ``has_mask`` says so).

    Raises:
      MissingModalityError: naming the dataset, the split, the modality and the flag.
    """
    histograms = _split_info(manifest, split).get("histograms", {})
    for modality, attribute in (("mask", "has_mask"), ("depth", "has_depth")):
        if modality not in modalities or modality in zero_fill:
            continue
        if modality == "depth" and is_generated(manifest, split):
            continue  # D* is written for every generated example
        missing = histograms.get(attribute, {}).get("False", 0)
        if missing:
            raise MissingModalityError(
                f"split {split!r} of dataset {manifest.get('dataset')!r}: {missing} example(s) "
                f"lack {modality!r} ({attribute} histogram {histograms.get(attribute)}); drop "
                f"{modality!r} from --modalities or pass --zero_fill_missing={modality} to feed "
                "zeros for them")


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
