"""Config of the related-methods benchmark (``python -m bench.related_methods``,
:mod:`tf_rgbd.experiments.related_methods`)."""
from __future__ import annotations

import dataclasses

RELATED_METHODS = ("joint_reconstruction", "dmfr", "depth_identity")


@dataclasses.dataclass(frozen=True)
class RelatedMethodsConfig:
    """The shared data and seeds of the related methods' tables.

    Attributes:
      output_dir: the shared synthetic dataset and one work folder per method and seed (a
        re-run reuses finished seeds).
      methods: which of ``joint_reconstruction`` (Liu et al. 2018: identity/residual shape
        disentangling), ``dmfr`` (Zhai et al. 2021: demodalizing with generated samples) and
        ``depth_identity`` (Pini et al.: does generated depth keep identity?) to run.
      seeds: one full repetition of every method per seed (>= 3 where the spread matters).
      num_identities: synthetic identities (25% held out as the test identities).
      images_per_identity: synthetic images per identity.
      image_size: side of the stored synthetic images (each method resizes to its own size).
      num_workers: processes rendering the synthetic dataset.
      quick: each method's smoke sizes (``run_seed(quick=True)``): checks the program end to
        end, decides nothing.
    """

    output_dir: str = "runs/related_methods"
    methods: tuple[str, ...] = RELATED_METHODS
    seeds: tuple[int, ...] = (0, 1, 2)
    num_identities: int = 48
    images_per_identity: int = 12
    image_size: int = 64
    num_workers: int = 1
    quick: bool = False

    def __post_init__(self):
        unknown = sorted(set(self.methods) - set(RELATED_METHODS))
        if unknown or not self.methods:
            raise ValueError(f"methods {self.methods}: unknown {unknown}; choose among "
                             f"{RELATED_METHODS}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct values, got {self.seeds}")


# The smoke run of the test suite.
QUICK = dict(seeds=(0,), num_identities=8, images_per_identity=6, image_size=32, quick=True)
