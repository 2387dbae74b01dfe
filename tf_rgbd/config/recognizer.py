"""Configs of the segmentation-guided RGB-D recognizer: model, losses, training, evaluation.

Programs generate their flags from these (``tf_rgbd.config.flags``; flag names equal field
names) and runs save them as ``<model_dir>/config.json``. ``VARIANTS`` names the paper's
ablation rows (Table 7: modalities, Table 8: loss terms) plus the RGB baseline, so every
ablation is a flag (``--variant=...`` or ``--modalities``/``--losses``), not a code edit.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from tf_rgbd.config import choice, no_flag
from tf_rgbd.config.run import RunConfig

MODALITIES = ("rgb", "depth", "mask")
LOSS_TERMS = ("cls", "sa", "cmfl", "dis")
# ``auto``: the generated depth D* on an augmented dataset (domain ``generated``), else the
# ground truth (tf_rgbd.data.modalities.resolve_depth_source).
DEPTH_SOURCES = ("auto", "gt", "generated")
# How weight decay enters SGD (tf_rgbd.training.optimizers): ``coupled`` = L2, wd * w added to
# the gradient before momentum (InsightFace / PyTorch SGD, the paper's recipe); ``decoupled`` =
# Keras SGD's weight_decay (w -= lr * wd * w after the momentum step).
WEIGHT_DECAY_MODES = ("coupled", "decoupled")
# How the mask-guided attention A scales a feature map x: x * A (paper) or x * (1 + A).
ATTENTION_MODES = ("multiply", "residual")
# What sits between the SAM conv and its sigmoid: nothing (as printed) or BatchNorm (CBAM code).
SAM_NORMALIZATIONS = ("none", "batch")

# Files of a run directory (written by tf_rgbd.training.recognizer_training.run_training and
# tf_rgbd.eval.recognition.evaluate_recognizer).
CONFIG_FILE = "config.json"
RECOGNIZER_FILE = "recognizer.keras"
INFERENCE_FILE = "recognizer_inference.keras"
SUMMARY_FILE = "training_summary.json"
METRICS_FILE = "recognition_metrics.json"


@dataclasses.dataclass(frozen=True)
class RecognizerModelConfig:
    """Architecture (see ``tf_rgbd.models.recognizer``).

    Attributes:
      backbone: ``ir_se50`` (paper), ``ir_se18`` or ``tiny`` (tests / CPU benches).
      modalities: enabled inputs; at least one of rgb/depth. ``mask`` adds E^M + SAM attention.
      image_size: S, square input side in pixels (divisible by 16; 112 in the paper).
      embedding_dim: size of f_id and f_style.
      dropout_rate: dropout of the identity embedding head.
      margin_s, margin_m1, margin_m2, margin_m3: C_id CombinedMargin (ArcFace: 64, 1, 0.5, 0).
      sam_normalization: ``batch`` = conv -> BN -> sigmoid as in CBAM's reference code (the
        default: the printed form collapsed the RGB+D+M model in 2 of 5 seeds of the claims
        benchmark, see ``tf_rgbd.models.recognizer``); ``none`` = sigmoid(conv + bias) as
        printed.
      attention_mode: ``multiply`` = x * A (paper); ``residual`` = x * (1 + A).
    """

    backbone: str = "ir_se50"
    modalities: tuple[str, ...] = MODALITIES
    image_size: int = 112
    embedding_dim: int = 512
    dropout_rate: float = 0.4
    margin_s: float = 64.0
    margin_m1: float = 1.0
    margin_m2: float = 0.5
    margin_m3: float = 0.0
    sam_normalization: str = choice("batch", SAM_NORMALIZATIONS)
    attention_mode: str = choice("multiply", ATTENTION_MODES)

    def __post_init__(self):
        unknown = sorted(set(self.modalities) - set(MODALITIES))
        if unknown or not set(self.modalities) & {"rgb", "depth"}:
            raise ValueError(f"modalities {self.modalities}: unknown {unknown}; choose from "
                             f"{MODALITIES} with at least one of rgb/depth")
        if self.image_size % 16:
            raise ValueError(f"image_size {self.image_size} must be divisible by 16")
        if self.sam_normalization not in SAM_NORMALIZATIONS:
            raise ValueError(f"sam_normalization must be one of {SAM_NORMALIZATIONS}, got "
                             f"{self.sam_normalization!r}")
        if self.attention_mode not in ATTENTION_MODES:
            raise ValueError(f"attention_mode must be one of {ATTENTION_MODES}, got "
                             f"{self.attention_mode!r}")


@dataclasses.dataclass(frozen=True)
class RecognizerLossConfig:
    """Loss switches and weights (paper eq. 8-15).

    Attributes:
      losses: enabled terms among ``cls``, ``sa``, ``cmfl``, ``dis``.
      lambda_cls, lambda_cmfl, lambda_sa, lambda_dis: lambda0..lambda3 of eq. 14-15.
      cmfl_alpha, cmfl_gamma: focal parameters of eq. 8.
      cmfl_stop_gradient: treat the partner's true-class probability n_t as a constant.
      sa_beta: beta of eq. 11.
      sa_stop_gradient_target: treat the partner's f_id as a constant target in eq. 10.
      sa_max_loss_gap: numerical guard, NOT in the paper: rho uses
        min(L_id^m - L_id^n, sa_max_loss_gap), so rho <= exp(beta * gap) - 1 (6.39 by default).
        With ArcFace (s = 64) the identity losses of the two branches differ by 10-20 nats early
        in training and the printed rho (e^20 ... e^40) makes the first steps diverge to NaN
        (measured on the tiny synthetic setup). ``inf`` gives the printed formula. Measured on
        the seeded claims benchmark (5 seeds, ``bench/results/claims_sa_gap_1_vs_inf.md``):
        cls+SA reaches 32.5 +- 5.4 % rank-1 with the cap 1 and 23.8 +- 4.4 % with ``inf``
        (paired difference -8.7, 95 % CI [-15.1, -2.3]; cls alone 23.6 %), i.e. only the
        capped form shows the paper's L_SA gain; 1 stays the default.
    """

    losses: tuple[str, ...] = LOSS_TERMS
    lambda_cls: float = 0.5
    lambda_cmfl: float = 0.5
    lambda_sa: float = 0.05
    lambda_dis: float = 0.5
    cmfl_alpha: float = 1.0
    cmfl_gamma: float = 3.0
    cmfl_stop_gradient: bool = True
    sa_beta: float = 2.0
    sa_stop_gradient_target: bool = True
    sa_max_loss_gap: float = 1.0

    def __post_init__(self):
        if not self.sa_max_loss_gap > 0:
            raise ValueError(f"sa_max_loss_gap must be > 0 (inf = no guard), got "
                             f"{self.sa_max_loss_gap}")
        unknown = sorted(set(self.losses) - set(LOSS_TERMS))
        if unknown or not self.losses:
            raise ValueError(f"losses {self.losses}: unknown {unknown}; choose a non-empty "
                             f"subset of {LOSS_TERMS}")


@dataclasses.dataclass(frozen=True)
class SGDConfig:
    """The recognizer's optimiser: SGD with momentum and a step learning-rate schedule.

    Attributes:
      learning_rate: initial SGD learning rate.
      lr_decay_epochs: epochs at which the rate is multiplied by ``lr_decay_factor``.
      lr_decay_factor: factor applied at each of ``lr_decay_epochs``.
      momentum: SGD momentum.
      weight_decay: weight decay coefficient (5e-4 in the paper).
      weight_decay_mode: ``coupled`` (default): L2, ``g + weight_decay * w`` enters momentum,
        as in InsightFace / PyTorch SGD; ``decoupled``: Keras SGD's ``weight_decay`` (about
        10x weaker at momentum 0.9).
    """

    learning_rate: float = 0.1
    lr_decay_epochs: tuple[int, ...] = (6, 10, 17)
    lr_decay_factor: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    weight_decay_mode: str = choice("coupled", WEIGHT_DECAY_MODES)

    def __post_init__(self):
        if self.weight_decay_mode not in WEIGHT_DECAY_MODES:
            raise ValueError(f"weight_decay_mode must be one of {WEIGHT_DECAY_MODES}, got "
                             f"{self.weight_decay_mode!r}")
        if list(self.lr_decay_epochs) != sorted(self.lr_decay_epochs):
            raise ValueError(f"lr_decay_epochs must be increasing, got {self.lr_decay_epochs}")
        if self.learning_rate <= 0 or self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ValueError(f"bad SGD settings: learning_rate={self.learning_rate}, "
                             f"momentum={self.momentum}, weight_decay={self.weight_decay}")


@dataclasses.dataclass(frozen=True)
class RecognizerExperimentConfig:
    """Everything a run needs; saved as ``<model_dir>/config.json``.

    Attributes:
      model: the architecture.
      loss: the loss terms and weights.
      optimizer: SGD and its schedule.
      run: data, run directory, schedule, distribution, checkpoints.
      depth_source: what feeds the depth branch: ``auto`` (default: ``generated`` on an
        augmented dataset, ``gt`` otherwise), ``gt`` (ground-truth depth: ``gt_depth`` of an
        augmented dataset built with --keep_gt_depth, ``depth`` otherwise) or ``generated``
        (``depth`` of an augmented dataset = D*). A depth the split lacks is an error.
      zero_fill_missing: modalities (``depth``, ``mask``) fed as zeros for the examples that
        lack them; empty (default): a requested modality some example lacks is an error.
      variant: the named ablation row (``VARIANTS``) this run is, or ``custom``.
      num_classes: identities of the training split, filled from the manifest when the run
        starts (0 until then); evaluation rebuilds the model from it when only checkpoints
        exist.
    """

    model: RecognizerModelConfig = RecognizerModelConfig()
    loss: RecognizerLossConfig = RecognizerLossConfig()
    optimizer: SGDConfig = SGDConfig()
    run: RunConfig = RunConfig(batch_size=256, epochs=20, checkpoint_every_steps=500)
    depth_source: str = choice("auto", DEPTH_SOURCES)
    zero_fill_missing: tuple[str, ...] = ()
    variant: str = no_flag("custom")
    num_classes: int = no_flag(0)

    def __post_init__(self):
        if self.depth_source not in DEPTH_SOURCES:
            raise ValueError(f"depth_source must be one of {DEPTH_SOURCES}, got "
                             f"{self.depth_source!r}")
        unknown = sorted(set(self.zero_fill_missing) - {"depth", "mask"})
        if unknown:
            raise ValueError(f"zero_fill_missing: unknown {unknown}; choose from depth, mask")


@dataclasses.dataclass(frozen=True)
class RecognizerEvalConfig:
    """One evaluation of a trained recognizer.

    Attributes:
      data_dir: dataset directory holding the protocol's split and ``protocols/<name>.json``.
      model_dir: trained run directory (reads ``recognizer.keras`` or its newest checkpoint).
      protocol: protocol name (file stem under ``<data_dir>/protocols``).
      depth_source: ``auto``, ``gt`` or ``generated`` (see :class:`RecognizerExperimentConfig`).
      output_dir: where metrics and pictures go ('' = ``<model_dir>/eval_<protocol>_<source>``).
      batch_size: embedding extraction batch size.
      flip_test: add the embedding of the horizontally flipped face before normalising.
      max_rank: CMC ranks 1..max_rank.
      tsne_identities: identities in the t-SNE picture.
      attention_examples: probe faces in the attention-map picture.
      make_plots: write the pictures.
    """

    data_dir: str = ""
    model_dir: str = ""
    protocol: str = "lock3dface_style"
    depth_source: str = choice("auto", DEPTH_SOURCES)
    output_dir: str = ""
    batch_size: int = 64
    flip_test: bool = True
    max_rank: int = 10
    tsne_identities: int = 9
    attention_examples: int = 6
    make_plots: bool = True

    def __post_init__(self):
        if self.depth_source not in DEPTH_SOURCES:
            raise ValueError(f"depth_source must be one of {DEPTH_SOURCES}, got "
                             f"{self.depth_source!r}")


@dataclasses.dataclass(frozen=True)
class Variant:
    """A named ablation row: which modalities and which loss terms."""

    modalities: tuple[str, ...]
    losses: tuple[str, ...]
    description: str


VARIANTS: dict[str, Variant] = {
    # The two runs of the "Done when" command.
    "full": Variant(MODALITIES, LOSS_TERMS, "RGB + D + M, cls + SA + CMFL + dis (the method)"),
    "rgb_baseline": Variant(("rgb",), ("cls",), "RGB only, ArcFace classification only"),
    # Table 7: modalities, classification loss only (the paper's Table 7 rows; its RGB+D+M
    # row is Table 8's L_cls row). One image branch has no style to classify or disentangle.
    "t7_depth": Variant(("depth",), ("cls",), "D"),
    "t7_depth_mask": Variant(("depth", "mask"), ("cls",), "D + M"),
    "t7_rgb": Variant(("rgb",), ("cls",), "RGB"),
    "t7_rgb_mask": Variant(("rgb", "mask"), ("cls",), "RGB + M"),
    "t7_rgbd": Variant(("rgb", "depth"), ("cls",), "RGB + D"),
    "t7_rgbd_mask": Variant(MODALITIES, ("cls",), "RGB + D + M"),
    # Table 8: loss terms (RGB + D + M).
    "t8_cls": Variant(MODALITIES, ("cls",), "L_cls"),
    "t8_cls_sa": Variant(MODALITIES, ("cls", "sa"), "L_cls + L_SA"),
    "t8_cls_sa_cmfl": Variant(MODALITIES, ("cls", "sa", "cmfl"), "L_cls + L_SA + L_CMFL"),
    "t8_all": Variant(MODALITIES, LOSS_TERMS, "L_cls + L_SA + L_CMFL + L_dis"),
}
TABLE7_VARIANTS = ("t7_depth", "t7_depth_mask", "t7_rgb", "t7_rgb_mask", "t7_rgbd",
                   "t7_rgbd_mask")
TABLE8_VARIANTS = ("t8_cls", "t8_cls_sa", "t8_cls_sa_cmfl", "t8_all")


def variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose from {sorted(VARIANTS)}")
    return VARIANTS[name]


def apply_variant(config: RecognizerExperimentConfig, name: Optional[str]
                  ) -> RecognizerExperimentConfig:
    """``config`` with the variant's modalities and losses (``None``/"custom": unchanged)."""
    if name in (None, "", "custom"):
        return config
    chosen = variant(name)
    return dataclasses.replace(
        config, variant=name,
        model=dataclasses.replace(config.model, modalities=chosen.modalities),
        loss=dataclasses.replace(config.loss, losses=chosen.losses))


def with_model_dir(config: RecognizerExperimentConfig, model_dir: str
                   ) -> RecognizerExperimentConfig:
    """``config`` writing to ``model_dir`` (e.g. one sub-directory per variant)."""
    return dataclasses.replace(config, run=dataclasses.replace(config.run, model_dir=model_dir))
