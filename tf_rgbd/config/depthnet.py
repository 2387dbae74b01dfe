"""Configs of the depth half: DepthNet / cGAN models, loss weights, optimiser, training run.

Programs fill them from absl flags of the same names (``config.from_flag_values``) and save the
whole :class:`DepthTrainingConfig` as ``model_dir/config.json``.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from tf_rgbd.models.depthnet import NORM_KINDS

ARCHS = ("depthnet", "cgan")


@dataclasses.dataclass(frozen=True)
class DepthModelConfig:
    """Generator and discriminator architecture.

    Attributes:
      arch: ``depthnet`` (UNet + face/auxiliary decoders, 3 PatchGAN LSGAN discriminators) or
        ``cgan`` (the "Learning to Generate Facial Depth Maps" baseline).
      image_size: S, square input side in pixels (sets the UNet depth).
      base_filters / max_filters: generator widths (level l: base * 2^l, capped).
      norm: generator normalisation, one of ``NORM_KINDS`` (``instance`` default; the cGAN
        baseline uses ``batch`` unless told otherwise).
      use_mask_branch: False = the ``--no_mask_branch`` ablation (no mask head, no D_m).
      conditional_discriminators: concatenate the input RGB to every discriminator input.
      discriminator_filters / discriminator_downsamples: PatchGAN (or cGAN conv+FC) widths.
      cgan_hidden_units: width of the cGAN discriminator's hidden dense layer.
    """

    arch: str = "depthnet"
    image_size: int = 64
    base_filters: int = 32
    max_filters: int = 256
    norm: str = "instance"
    use_mask_branch: bool = True
    conditional_discriminators: bool = False
    discriminator_filters: int = 32
    discriminator_downsamples: int = 3
    cgan_hidden_units: int = 64

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.norm not in NORM_KINDS:
            raise ValueError(f"norm must be one of {NORM_KINDS}, got {self.norm!r}")
        if self.base_filters < 1 or self.max_filters < self.base_filters:
            raise ValueError(f"need 1 <= base_filters <= max_filters, got {self.base_filters}, "
                             f"{self.max_filters}")


@dataclasses.dataclass(frozen=True)
class DepthLossWeights:
    """L_G = lambda_depth L_depth + lambda_mask L_mask + lambda_adv L_adv + lambda_recon L_recon.

    The paper's values: 100, 100, 1, 1. For ``cgan``: L_G = lambda_depth L_MSE + lambda_adv
    L_BCE (lambda_mask and lambda_recon unused).
    """

    lambda_depth: float = 100.0
    lambda_mask: float = 100.0
    lambda_adv: float = 1.0
    lambda_recon: float = 1.0


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Adam for both the generator and the discriminators (the paper: 2e-4, 0.5, 0.999)."""

    learning_rate: float = 2e-4
    beta_1: float = 0.5
    beta_2: float = 0.999


@dataclasses.dataclass(frozen=True)
class TrainRunConfig:
    """One training run.

    Attributes:
      data_dir: dataset directory (``python -m datasets.build`` output).
      model_dir: run directory (config.json, checkpoints/, logs/, generator.keras).
      train_split / val_split: split names; an empty val_split disables validation.
      batch_size: global batch size.
      epochs: epochs of ``steps_per_epoch`` steps (ignored when ``steps`` > 0).
      steps: total optimiser steps (0: ``epochs * steps_per_epoch``).
      steps_per_epoch: 0 = one pass over the training split (examples // batch_size).
      strategy: ``default`` | ``mirrored`` | ``multi_worker``.
      num_logical_cpus: ``mirrored`` without GPUs: split the CPU into this many logical devices
        (0: use the devices as they are). For testing distributed code on a CPU machine.
      init_from: checkpoint prefix, run directory or ``generator.keras`` to fine-tune from
        (used only when the run directory has no checkpoint to resume).
      jit_compile: XLA-compile the train/test steps.
      mixed_precision: mixed_float16 on GPU (with loss scaling), mixed_bfloat16 on CPU.
      augment: the pipeline's flip/crop/colour augmentation.
      seed: weights init, shuffling and augmentation seed.
      checkpoint_every_steps: checkpoint period (also saved at the end of training).
      image_grid_every_epochs: TensorBoard image grid period.
      depth_range_mm: the pipeline's depth normalisation span.
      verbose: Keras fit verbosity (``auto``, 0, 1, 2).
    """

    data_dir: str = ""
    model_dir: str = ""
    train_split: str = "train"
    val_split: str = "test"
    batch_size: int = 16
    epochs: int = 10
    steps: int = 0
    steps_per_epoch: int = 0
    strategy: str = "default"
    num_logical_cpus: int = 0
    init_from: Optional[str] = None
    jit_compile: bool = False
    mixed_precision: bool = False
    augment: bool = True
    seed: int = 0
    checkpoint_every_steps: int = 200
    image_grid_every_epochs: int = 1
    depth_range_mm: float = 200.0
    verbose: str = "auto"


@dataclasses.dataclass(frozen=True)
class DepthTrainingConfig:
    """Everything a depth training run needs; saved as ``model_dir/config.json``."""

    model: DepthModelConfig = DepthModelConfig()
    losses: DepthLossWeights = DepthLossWeights()
    optimizer: OptimizerConfig = OptimizerConfig()
    run: TrainRunConfig = TrainRunConfig()
