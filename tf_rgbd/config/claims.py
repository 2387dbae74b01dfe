"""Config of the seeded claims benchmark (``python -m bench.claims``,
:mod:`tf_rgbd.experiments.claims`): data, budgets and seeds. ``QUICK`` is the smoke preset."""
from __future__ import annotations

import dataclasses

from tf_rgbd.config import choice
from tf_rgbd.config.recognizer import (SAM_NORMALIZATIONS, RecognizerLossConfig,
                                       RecognizerModelConfig)


@dataclasses.dataclass(frozen=True)
class ClaimsConfig:
    """Every size of the claims benchmark (all methods of a claim share data and budget).

    Attributes:
      output_dir: dataset, runs and per-seed results (a re-run reuses finished seeds).
      seeds: one full repetition per seed (weights, data order, augmentation); >= 3 for the
        intervals of the report. 5 by default: t(0.975, 4) / sqrt(5) halves the interval of 3
        seeds (a timed partial run puts the default run at ~27 min on the idle 2-core machine,
        ~90 min when five other jobs share it; --seeds=0,1,2 takes 3/5 of that).
      num_identities: synthetic identities (25% held out as the test identities).
      images_per_identity: synthetic images per identity.
      data_image_size: side of the stored synthetic images.
      image_size: side every model trains and is evaluated at.
      num_workers: processes rendering the synthetic dataset.
      depth_steps: optimiser steps of each depth model (DepthNet, without mask, cGAN).
      depth_batch_size: depth models' batch size.
      depth_base_filters: generator stem width (all depth models).
      depth_learning_rate: Adam learning rate of every depth model.
      recognizer_epochs: epochs of every recognizer (lr x0.1 at 50% and 80%).
      recognizer_steps_per_epoch: optimiser steps per epoch.
      recognizer_batch_size: recognizer batch size.
      recognizer_learning_rate: initial SGD learning rate.
      embedding_dim: f_id / f_style size.
      flip_test: add the flipped face's embedding at evaluation.
      sam_normalization: the recognizers' SAM form (``tf_rgbd.models.recognizer``); the model
        config's default unless set (issue 10 item 7 compares ``none`` and ``batch``).
      sa_max_loss_gap: the L_SA rho cap of every recognizer (the loss config's default unless
        set; ``inf`` = the printed formula).
      run_eagerly: train every model without tracing its step (the smoke preset: at 2 steps
        tracing costs more than training; see ``RunConfig.run_eagerly``).
      claims: measure only these claims (names in ``tf_rgbd.experiments.claims.CLAIMS``) and
        train only what they need; empty = every claim.
    """

    output_dir: str = "runs/claims"
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    num_identities: int = 48
    images_per_identity: int = 16
    data_image_size: int = 64
    image_size: int = 32
    num_workers: int = 1
    depth_steps: int = 300
    depth_batch_size: int = 16
    depth_base_filters: int = 8
    depth_learning_rate: float = 2e-3
    recognizer_epochs: int = 8
    recognizer_steps_per_epoch: int = 20
    recognizer_batch_size: int = 32
    recognizer_learning_rate: float = 0.1
    embedding_dim: int = 64
    flip_test: bool = True
    sam_normalization: str = choice(RecognizerModelConfig.sam_normalization, SAM_NORMALIZATIONS)
    sa_max_loss_gap: float = RecognizerLossConfig.sa_max_loss_gap
    run_eagerly: bool = False
    claims: tuple[str, ...] = ()

    def __post_init__(self):
        if len(self.seeds) < 2 or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be >= 2 distinct values (3+ for the report), got "
                             f"{self.seeds}")
        if self.image_size % 16:
            raise ValueError(f"image_size {self.image_size} must be divisible by 16")


# The smoke run of the test suite: every claim measured, nothing meaningful.
QUICK = dict(seeds=(0, 1), num_identities=8, images_per_identity=6, data_image_size=32,
             image_size=16, depth_steps=2, depth_batch_size=8, depth_base_filters=4,
             recognizer_epochs=1, recognizer_steps_per_epoch=2, recognizer_batch_size=8,
             embedding_dim=16, flip_test=False, run_eagerly=True)


@dataclasses.dataclass(frozen=True)
class ClaimsComparisonConfig:
    """Two finished claims runs compared value by value (``python -m bench.claims_compare``).

    Attributes:
      a_dir: the first run's ``--output_dir`` (its ``seed_*/seed_results.json`` are read).
      b_dir: the second run's ``--output_dir``.
      a_label: what distinguishes run A (e.g. ``sam_normalization=none``).
      b_label: what distinguishes run B.
      name: results name: ``bench/results/<name>.{json,md}``.
    """

    a_dir: str = ""
    b_dir: str = ""
    a_label: str = "A"
    b_label: str = "B"
    name: str = "claims_comparison"
