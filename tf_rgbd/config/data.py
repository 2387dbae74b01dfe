"""Configs of the data layer: dataset builds (``python -m datasets.build``)."""
from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """One dataset build.

    Attributes:
      source: registered source name (``synthetic``, ``bu3dfe``, ``folder``...).
      output_dir: dataset directory (shards, manifest.json, protocols/).
      input_dir: the source's original folder (real datasets).
      image_size: output image side in pixels (square crops).
      num_shards: shards per split (capped at the number of tasks).
      num_workers: producer processes.
      on_error: ``skip`` (count bad inputs and go on) or ``fail``.
      seed: seed of every random choice (builds are deterministic).
      num_identities / images_per_identity: synthetic data size.
      test_fraction: fraction of identities held out as the test split (disjoint identities).
      preview: optional PNG path of a contact sheet of a few examples.
      morphable_model_dir: optional 3DDFA-layout morphable model for the synthetic source.
    """

    source: str
    output_dir: str
    input_dir: Optional[str] = None
    image_size: int = 112
    num_shards: int = 8
    num_workers: int = 1
    on_error: str = "skip"
    seed: int = 0
    num_identities: int = 40
    images_per_identity: int = 30
    test_fraction: float = 0.25
    preview: Optional[str] = None
    morphable_model_dir: Optional[str] = None

    def __post_init__(self):
        if self.on_error not in ("skip", "fail"):
            raise ValueError(f"on_error must be skip or fail, got {self.on_error!r}")
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {self.image_size}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
