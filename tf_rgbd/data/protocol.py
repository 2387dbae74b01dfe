"""Evaluation protocols: gallery and probe-subset example ids, stored as ``protocols/<name>.json``.

A protocol names example ids of one split (normally ``test``): one ``gallery`` list (enrolment,
usually one image per identity) and named ``probes`` subsets (e.g. ``expression``, ``pose``,
``occlusion``, ``time``), as in the Lock3DFace / Bosphorus / BU-3DFE protocols.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Iterable, Mapping, Optional

from tf_rgbd import io_utils

PROTOCOLS_DIR = "protocols"
# Protocol files written before ``report_only`` existed: the subsets that are near-duplicates
# of the gallery (Lock3DFace's ``neutral``: other frames of the gallery video), per dataset.
LEGACY_REPORT_ONLY = {"lock3dface": ("neutral",)}


class ProtocolError(ValueError):
    """A protocol file is malformed or inconsistent with its dataset."""


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Gallery and probe subsets of one split.

    Attributes:
      name: protocol name (also the file stem).
      dataset: dataset name (as in the manifest).
      split: the split whose example ids are listed.
      gallery: example ids enrolled in the gallery.
      probes: subset name -> example ids probed against the gallery.
      description: free text (how the lists were chosen).
      report_only: probe subsets reported on their own but left out of the average and of
        the pooled all-probe figures (Lock3DFace's ``neutral``: near-duplicates of the gallery;
        the paper averages Expression, Pose, Occlusion, Time).
    """

    name: str
    dataset: str
    split: str
    gallery: tuple[str, ...]
    probes: Mapping[str, tuple[str, ...]]
    description: str = ""
    report_only: tuple[str, ...] = ()

    def __post_init__(self):
        unknown = sorted(set(self.report_only) - set(self.probes))
        if unknown:
            raise ProtocolError(f"protocol {self.name!r}: report_only subsets {unknown} are not "
                                f"probe subsets ({sorted(self.probes)})")
        object.__setattr__(self, "report_only", tuple(sorted(self.report_only)))

    def averaged_subsets(self) -> tuple[str, ...]:
        """The probe subsets whose mean rank-1 is the protocol's "average" (in order)."""
        return tuple(subset for subset in self.probes if subset not in self.report_only)

    def all_probe_ids(self, include_report_only: bool = False) -> tuple[str, ...]:
        """Union of the averaged probe subsets (all subsets with ``include_report_only``), in
        first-seen order: the probes of the pooled rank-1 / TAR / EER."""
        seen: dict[str, None] = {}
        for subset, ids in self.probes.items():
            if include_report_only or subset not in self.report_only:
                seen.update(dict.fromkeys(ids))
        return tuple(seen)

    def to_json_dict(self) -> dict:
        return {"name": self.name, "dataset": self.dataset, "split": self.split,
                "description": self.description, "gallery": list(self.gallery),
                "probes": {key: list(ids) for key, ids in self.probes.items()},
                "report_only": list(self.report_only),
                "counts": {"gallery": len(self.gallery),
                           **{key: len(ids) for key, ids in self.probes.items()}}}


def validate_protocol(protocol: Protocol, known_ids: Optional[Iterable[str]] = None,
                      subject_of: Optional[Mapping[str, str]] = None) -> None:
    """Checks a protocol; raises :class:`ProtocolError` saying what is wrong.

    Rules: a non-empty gallery without duplicates; every probe subset non-empty and disjoint from
    the gallery; when ``known_ids`` is given, every id exists in the split; when ``subject_of``
    (example id -> subject) is given, every probe's subject is enrolled in the gallery.
    """
    where = f"protocol {protocol.name!r}"
    if not protocol.gallery:
        raise ProtocolError(f"{where}: empty gallery")
    if len(set(protocol.gallery)) != len(protocol.gallery):
        raise ProtocolError(f"{where}: duplicate ids in the gallery")
    gallery = set(protocol.gallery)
    for subset, ids in protocol.probes.items():
        if not ids:
            raise ProtocolError(f"{where}: probe subset {subset!r} is empty")
        overlap = gallery.intersection(ids)
        if overlap:
            raise ProtocolError(f"{where}: probe subset {subset!r} shares ids with the gallery, "
                                f"e.g. {sorted(overlap)[:3]}")
    if known_ids is not None:
        known = set(known_ids)
        for subset, ids in (("gallery", protocol.gallery), *protocol.probes.items()):
            missing = [example_id for example_id in ids if example_id not in known]
            if missing:
                raise ProtocolError(f"{where}: {len(missing)} {subset} ids are not in split "
                                    f"{protocol.split!r}, e.g. {missing[:3]}")
    if subject_of is not None:
        enrolled = {subject_of[example_id] for example_id in protocol.gallery}
        for subset, ids in protocol.probes.items():
            strangers = sorted({subject_of[i] for i in ids} - enrolled)
            if strangers:
                raise ProtocolError(f"{where}: probe subset {subset!r} has subjects missing from "
                                    f"the gallery: {strangers[:5]}")


def protocol_path(dataset_dir: str, name: str) -> str:
    return os.path.join(dataset_dir, PROTOCOLS_DIR, f"{name}.json")


def save_protocol(protocol: Protocol, path: str) -> None:
    """Validates (structure only) and writes the protocol JSON atomically."""
    validate_protocol(protocol)
    io_utils.atomic_write_json(path, protocol.to_json_dict())


def load_protocol(path: str, known_ids: Optional[Iterable[str]] = None) -> Protocol:
    """Reads and validates a protocol file (and its ids against ``known_ids`` when given)."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except FileNotFoundError as error:
        raise ProtocolError(f"protocol file {path} not found") from error
    except json.JSONDecodeError as error:
        raise ProtocolError(f"protocol file {path} is not valid JSON: {error}") from error
    missing = [key for key in ("name", "dataset", "split", "gallery", "probes") if key not in raw]
    if missing:
        raise ProtocolError(f"protocol file {path} lacks keys {missing}")
    protocol = Protocol(name=raw["name"], dataset=raw["dataset"], split=raw["split"],
                        gallery=tuple(raw["gallery"]),
                        probes={key: tuple(ids) for key, ids in raw["probes"].items()},
                        description=raw.get("description", ""),
                        report_only=tuple(raw["report_only"]) if "report_only" in raw else tuple(
                            subset for subset in LEGACY_REPORT_ONLY.get(raw["dataset"], ())
                            if subset in raw["probes"]))
    validate_protocol(protocol, known_ids)
    return protocol


def list_protocols(dataset_dir: str) -> list[str]:
    """Names of the protocols stored with a dataset."""
    folder = os.path.join(dataset_dir, PROTOCOLS_DIR)
    if not os.path.isdir(folder):
        return []
    return sorted(name[:-5] for name in os.listdir(folder) if name.endswith(".json"))


# ---------------------------------------------------------------------------------------------
# Protocol construction from written example records (tf_rgbd.data.writer.ExampleRecord).

POSE_PROBE_MIN_YAW_DEG = 30.0


def lock3dface_style_protocol(records, dataset: str, name: str = "lock3dface_style",
                              split: str = "test") -> Protocol:
    """Lock3DFace-style protocol over example records (sorted by example id).

    gallery: per subject, the first session-1, neutral, frontal (|yaw|, |pitch| < 1 deg),
    unoccluded example. Probe subsets (the rest of the split):
      ``expression``: session 1, non-neutral, |yaw| <= 30, no occlusion;
      ``pose``: session 1, |yaw| > 30 (any expression), no occlusion;
      ``occlusion``: session 1, any occluder;
      ``time``: sessions > 1 (everything acquired later).
    Subjects without a gallery image are left out (and named in the description).
    """
    records = sorted(records, key=lambda record: record.example_id)
    gallery: dict[str, str] = {}
    for record in records:
        frontal = abs(record.yaw_deg) < 1.0 and abs(record.pitch_deg) < 1.0
        if (record.session == 1 and record.expression == "neutral" and frontal
                and record.occlusion == "none" and record.subject not in gallery):
            gallery[record.subject] = record.example_id
    enrolled_ids = set(gallery.values())
    probes: dict[str, list[str]] = {"expression": [], "pose": [], "occlusion": [], "time": []}
    for record in records:
        if record.subject not in gallery or record.example_id in enrolled_ids:
            continue
        if record.session > 1:
            probes["time"].append(record.example_id)
        elif record.occlusion != "none":
            probes["occlusion"].append(record.example_id)
        elif abs(record.yaw_deg) > POSE_PROBE_MIN_YAW_DEG:
            probes["pose"].append(record.example_id)
        elif record.expression != "neutral":
            probes["expression"].append(record.example_id)
    missing = sorted({record.subject for record in records} - set(gallery))
    description = ("gallery: first session-1 neutral frontal unoccluded image per subject; probes: "
                   "expression (session 1, |yaw|<=30), pose (|yaw|>30), occlusion, time "
                   "(session>1)")
    if missing:
        description += f"; {len(missing)} subjects without a gallery image left out: {missing[:10]}"
    return Protocol(name=name, dataset=dataset, split=split,
                    gallery=tuple(sorted(gallery.values())),
                    probes={key: tuple(ids) for key, ids in probes.items() if ids},
                    description=description)


def first_match_gallery_protocol(records, dataset: str, name: str, gallery_candidate,
                                 probe_subsets, split: str = "test", description: str = "",
                                 include=None, report_only=()) -> Protocol:
    """A protocol with one gallery example per subject and predicate-defined probe subsets.

    Records are taken in example-id order (the readers' ids sort chronologically within a
    subject). The gallery is each subject's first record with ``gallery_candidate(record)``;
    every other record of an enrolled subject goes into each subset whose predicate accepts it
    (a record may be in several subsets). Subjects without a gallery candidate are left out and
    named in the description; empty subsets are dropped.

    Args:
      records: ExampleRecord-like objects (``example_id``, ``subject`` + the attributes the
        predicates read).
      gallery_candidate: record -> bool.
      probe_subsets: mapping subset name -> (record -> bool).
      include: optional record -> bool applied first (e.g. drop pose-augmented renders).
      report_only: subsets reported but not averaged nor pooled (see :class:`Protocol`).
    """
    records = sorted((r for r in records if include is None or include(r)),
                     key=lambda record: record.example_id)
    gallery: dict[str, str] = {}
    for record in records:
        if record.subject not in gallery and gallery_candidate(record):
            gallery[record.subject] = record.example_id
    enrolled_ids = set(gallery.values())
    probes: dict[str, list[str]] = {subset: [] for subset in probe_subsets}
    for record in records:
        if record.subject not in gallery or record.example_id in enrolled_ids:
            continue
        for subset, accepts in probe_subsets.items():
            if accepts(record):
                probes[subset].append(record.example_id)
    missing = sorted({record.subject for record in records} - set(gallery))
    if missing:
        description += (f"; {len(missing)} subjects without a gallery candidate left out: "
                        f"{missing[:10]}")
    kept = {key: tuple(ids) for key, ids in probes.items() if ids}
    return Protocol(name=name, dataset=dataset, split=split,
                    gallery=tuple(sorted(gallery.values())), probes=kept,
                    description=description,
                    report_only=tuple(subset for subset in report_only if subset in kept))


# ---------------------------------------------------------------------------------------------
# Fine-tuning sets (per-database DepthNet fine-tuning, tf_rgbd.training.depth_training).

def finetune_example_ids(protocol: Protocol, records, which: str) -> tuple[str, ...]:
    """Example ids of ``protocol.split`` a per-database fine-tuning may read; never a probe.

    Args:
      protocol: the evaluation protocol whose probes must stay unseen.
      records: ExampleRecord-like objects of ``protocol.split`` (``example_id``, ``session``,
        ``expression``, ``occlusion``).
      which: ``gallery`` (the protocol's gallery: Bosphorus, FRGC) or ``session1_neutral``
        (session-1 neutral unoccluded examples, gallery included, minus every probe of every
        subset, report-only ones too: Lock3DFace).

    Raises:
      ProtocolError: unknown ``which`` or nothing selected.
    """
    probes = set(protocol.all_probe_ids(include_report_only=True))
    if which == "gallery":
        chosen = list(protocol.gallery)
    elif which == "session1_neutral":
        gallery = set(protocol.gallery)
        chosen = sorted({record.example_id for record in records
                         if record.example_id in gallery or (
                             record.session == 1 and record.expression == "neutral"
                             and record.occlusion == "none")} - probes)
    else:
        raise ProtocolError(f"fine-tuning set must be 'gallery' or 'session1_neutral', got "
                            f"{which!r}")
    chosen = [example_id for example_id in chosen if example_id not in probes]
    if not chosen:
        raise ProtocolError(f"protocol {protocol.name!r}: no {which} example outside the probes "
                            "to fine-tune on")
    return tuple(chosen)
