"""The dataset sources ``python -m datasets.build --source=NAME`` knows, and what a source returns.

A source is a module ``tf_rgbd/data/sources/<name>.py`` with a function ``plan(config: BuildConfig) ->
BuildPlan``: it lists the work (tasks per split) and hands over a picklable ``produce(task)``
that turns one task into FaceExamples; the builder does the sharding, the parallelism, the
skip accounting, the manifest and the protocols.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from tf_rgbd.config.data import SOURCE_NAMES
from tf_rgbd.data import protocol as protocol_lib
from tf_rgbd.data import schema
from tf_rgbd.data import writer

# name -> module implementing plan(config) -> BuildPlan (one module per name of the config's
# SOURCE_NAMES, which validates --source).
SOURCES: Mapping[str, str] = {name: f"tf_rgbd.data.sources.{name}" for name in SOURCE_NAMES}


@dataclasses.dataclass(frozen=True)
class BuildPlan:
    """What a source builds.

    Attributes:
      dataset_name: the manifest's dataset name.
      class_names: subject names; index = label.
      splits: split name -> ordered tasks.
      produce: task -> iterable of FaceExample (picklable for multi-process builds).
      task_name: names a task in logs and in the skipped table (e.g. its file path).
      make_protocols: split records -> protocols written under ``protocols/``.
      preview_examples: optional callable returning a few examples for the contact sheet.
      extra: source facts stored in the manifest (e.g. the generator's settings).
    """

    dataset_name: str
    class_names: Sequence[str]
    splits: Mapping[str, Sequence[Any]]
    produce: Callable[[Any], Iterable[schema.FaceExample]]
    task_name: Callable[[Any], str] = str
    make_protocols: Optional[Callable[[Mapping[str, Sequence[writer.ExampleRecord]]],
                                      Sequence[protocol_lib.Protocol]]] = None
    preview_examples: Optional[Callable[[], Sequence[schema.FaceExample]]] = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def get_source(name: str):
    """The source module for ``name`` (imported on demand)."""
    if name not in SOURCES:
        raise ValueError(f"unknown source {name!r}; known sources: {sorted(SOURCES)}")
    return importlib.import_module(SOURCES[name])
