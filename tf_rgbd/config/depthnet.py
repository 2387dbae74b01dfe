"""Configs of the depth half: DepthNet / cGAN models, loss weights, optimiser, training run.

``training/train_depthnet.py`` generates its flags from :class:`DepthTrainingConfig`
(``tf_rgbd.config.flags``) and the run saves it as ``model_dir/config.json``.
"""
from __future__ import annotations

import dataclasses

from tf_rgbd.config import choice
from tf_rgbd.config.run import RunConfig

ARCHS = ("depthnet", "cgan")
# Which examples of the training split a run uses: every one, or (per-database fine-tuning,
# the paper's step before augmenting a 3D database) the protocol's gallery, or its session-1
# neutral examples; probes never (tf_rgbd.data.protocol.finetune_example_ids).
FINETUNE_SETS = ("all", "gallery", "session1_neutral")
# Generator / discriminator normalisations (tf_rgbd.models.blocks.make_norm).
NORM_KINDS = ("instance", "batch", "none")


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
      use_mask_branch: the auxiliary mask head and its discriminator D_m; false
        (``--use_mask_branch=false``) is the Table 6 ablation.
      conditional_discriminators: concatenate the input RGB to every discriminator input.
      discriminator_filters / discriminator_downsamples: PatchGAN (or cGAN conv+FC) widths.
      cgan_hidden_units: width of the cGAN discriminator's hidden dense layer.
    """

    arch: str = choice("depthnet", ARCHS)
    image_size: int = 64
    base_filters: int = 32
    max_filters: int = 256
    norm: str = choice("instance", NORM_KINDS)
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

    Attributes:
      lambda_depth: weight of L_depth (L1 on the face depth; MSE for the cGAN).
      lambda_mask: weight of L_mask (per-class BCE of the mask head).
      lambda_adv: weight of the generator's adversarial loss.
      lambda_recon: weight of L_recon (L1 image reconstruction).
    """

    lambda_depth: float = 100.0
    lambda_mask: float = 100.0
    lambda_adv: float = 1.0
    lambda_recon: float = 1.0


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Adam for both the generator and the discriminators (the paper: 2e-4, 0.5, 0.999).

    Attributes:
      learning_rate: Adam learning rate of the generator and the discriminators.
      beta_1: Adam beta_1.
      beta_2: Adam beta_2.
    """

    learning_rate: float = 2e-4
    beta_1: float = 0.5
    beta_2: float = 0.999


@dataclasses.dataclass(frozen=True)
class DepthTrainingConfig:
    """Everything a depth training run needs; saved as ``model_dir/config.json``.

    Attributes:
      finetune_on: ``all`` (every example of ``--train_split``), ``gallery`` (the gallery of
        ``--protocol``: Bosphorus, FRGC) or ``session1_neutral`` (session-1 neutral unoccluded
        examples of the protocol's split that are no probe: Lock3DFace). The paper fine-tunes
        DepthNet this way on each 3D database (``--init_from`` the 2D-trained run) before
        augmenting it. Probe examples are never read.
      protocol: the protocol (file stem under ``<data_dir>/protocols``) that selects the
        fine-tuning examples; '' = the only protocol of ``--train_split``.
    """

    model: DepthModelConfig = DepthModelConfig()
    losses: DepthLossWeights = DepthLossWeights()
    optimizer: OptimizerConfig = OptimizerConfig()
    run: RunConfig = RunConfig(batch_size=16, epochs=10, val_split="test",
                               checkpoint_every_steps=200)
    finetune_on: str = choice("all", FINETUNE_SETS)
    protocol: str = ""

    def __post_init__(self):
        if self.finetune_on not in FINETUNE_SETS:
            raise ValueError(f"finetune_on must be one of {FINETUNE_SETS}, got "
                             f"{self.finetune_on!r}")


@dataclasses.dataclass(frozen=True)
class DepthEvalConfig:
    """One depth evaluation (``python -m training.evaluate_depth``).

    Attributes:
      data_dir: dataset directory with ground-truth depth.
      generators: ``name=path/to/generator.keras`` entries (a bare path is named after its
        folder).
      eval_split: the evaluated split.
      train_split: the split whose mean aligned depth is the mean-face baseline.
      image_size: model input size (0: the generators' own).
      batch_size: evaluation batch size.
      depth_range_mm: the pipeline's depth normalisation span (mm).
      mean_face: include the mean-face baseline row.
      masked: also evaluate D* (depth zeroed where the generator's own mask says background)
        of generators with a mask head.
      output_dir: where depth_metrics.json goes ('' = the first generator's folder).
    """

    data_dir: str = ""
    generators: tuple[str, ...] = ()
    eval_split: str = "test"
    train_split: str = "train"
    image_size: int = 0
    batch_size: int = 16
    depth_range_mm: float = 200.0
    mean_face: bool = True
    masked: bool = False
    output_dir: str = ""
