"""Configs of demodalizing face recognition (DMFR; Zhai et al., AAAI 2021): the generative
domains, the model, the losses and a training run.

``training/build_dmfr_domains.py`` generates its flags from :class:`DMFRDomainsConfig`,
``training/train_dmfr.py`` from :class:`DMFRExperimentConfig` (``tf_rgbd.config.flags``).
"""
from __future__ import annotations

import dataclasses

from tf_rgbd.config import choice, no_flag
from tf_rgbd.config.recognizer import SGDConfig
from tf_rgbd.config.run import RunConfig

# Training modes: ``none`` = a plain CosFace baseline (real only, or real + generated mixed 1:1
# with ``mix_generated``); the three DMFR modes of the paper.
DMFR_MODES = ("none", "meta", "disentangle", "filter")
# The generative domains (each its own dataset under ``domains_dir``).
POSE_DOMAIN = "pose"
QUALITY_DOMAIN = "quality"
GENERATIVE_DOMAINS = (POSE_DOMAIN, QUALITY_DOMAIN)
# Files of a DMFR run directory.
DMFR_MODEL_FILE = "dmfr_model.keras"
PRETRAIN_SUBDIR = "pretrain"


@dataclasses.dataclass(frozen=True)
class DMFRDomainsConfig:
    """The generative domains of one dataset (``python -m training.build_dmfr_domains``).

    Attributes:
      generator: the trained depth generator's ``.keras`` file (DepthNet), which gives D*.
      data_dir: the real (source) dataset.
      output_dir: domains root: ``<output_dir>/pose`` and ``<output_dir>/quality`` datasets.
      splits: splits to convert (empty = all of the source's).
      yaw_offsets_deg: head rotations of the pose domain, applied to the RGB + D* point cloud
        of every source image (0 = re-rendered at the source's own pose: the generated sample
        whose real counterpart has the same conditions).
      blur_sigma_px: range (low, high) of the Gaussian blur sigma of the quality domain, in
        pixels of a 112-pixel face (scaled to the image size).
      noise_std: range of the additive Gaussian noise's standard deviation (0-255 scale).
      jpeg_quality: range of the JPEG quality (1-100) of the compression.
      face_distance_mm: camera z of the face plane, to lift D* (normalised) to millimetres.
      face_width_mm: scene width covered by the crop at that distance (the render camera).
      depth_range_mm: span of the depth normalisation D* was trained with.
      batch_size: examples per generator call.
      seed: seed of the degradation strengths (per example, from its id).
    """

    generator: str = ""
    data_dir: str = ""
    output_dir: str = ""
    splits: tuple[str, ...] = ()
    yaw_offsets_deg: tuple[float, ...] = (0.0, -35.0, 35.0)
    blur_sigma_px: tuple[float, ...] = (1.5, 3.5)
    noise_std: tuple[float, ...] = (6.0, 18.0)
    jpeg_quality: tuple[int, ...] = (8, 25)
    face_distance_mm: float = 500.0
    face_width_mm: float = 200.0
    depth_range_mm: float = 200.0
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self):
        if 0.0 not in tuple(float(v) for v in self.yaw_offsets_deg) or len(
                self.yaw_offsets_deg) < 2:
            raise ValueError(f"yaw_offsets_deg {self.yaw_offsets_deg} must hold 0 (the pairing "
                             "render of the filter mode) and at least one novel pose")
        for name in ("blur_sigma_px", "noise_std", "jpeg_quality"):
            value = getattr(self, name)
            if len(value) != 2 or value[0] > value[1] or value[0] < 0:
                raise ValueError(f"{name} must be a range low,high with 0 <= low <= high, got "
                                 f"{value}")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(f"jpeg_quality must lie in 1..100, got {self.jpeg_quality}")


@dataclasses.dataclass(frozen=True)
class DMFRModelConfig:
    """The DMFR network (``tf_rgbd.models.dmfr``).

    Attributes:
      backbone: IR-SE backbone of the registry (``tiny`` for CPU runs).
      image_size: S, square input side (divisible by 16).
      embedding_dim: size of the encoder feature H(x) (and of f_id in the disentangle mode).
      dropout_rate: dropout of the embedding head.
      margin_s, margin_m3: CosFace through CombinedMargin (s = 64, m = 0.4 in the paper).
      disentangle_dim: d, size of f_entangle and f_non-id (512 in the paper).
      split_stage: the backbone stage whose feature map M is split in depth into the two
        trunks and reconstructed by the decoder (a mid-level map).
      filter_hidden_dim: hidden width of the filter network F (0 = embedding_dim).
    """

    backbone: str = "tiny"
    image_size: int = 32
    embedding_dim: int = 64
    dropout_rate: float = 0.0
    margin_s: float = 64.0
    margin_m3: float = 0.4
    disentangle_dim: int = 512
    split_stage: int = 3
    filter_hidden_dim: int = 0

    def __post_init__(self):
        if self.image_size % 16:
            raise ValueError(f"image_size {self.image_size} must be divisible by 16")
        if self.split_stage not in (2, 3):
            raise ValueError(f"split_stage must be 2 or 3 (a mid-level map), got "
                             f"{self.split_stage}")


@dataclasses.dataclass(frozen=True)
class DMFRLossConfig:
    """Loss weights of the three modes (the paper's values are the defaults).

    Attributes:
      lambda_meta: weight of L_tr in the meta objective (1 - lambda_meta weighs L_te).
      meta_alpha: inner learning rate of the prototype update w' = w - alpha * dL_tr/dw.
      lambda_disen: weight of L_recons in the disentangle mode.
      lambda_flt: weight of L_flt in the filter mode.
      filter_stop_gradient_target: H(x_real) is a constant target of L_flt (the filter learns
        to map onto the real features; they are not pulled towards the filtered ones).
      recons_stop_gradient_target: the map M is a constant target of L_recons.
    """

    lambda_meta: float = 0.5
    meta_alpha: float = 0.1
    lambda_disen: float = 1.0
    lambda_flt: float = 1.0
    filter_stop_gradient_target: bool = True
    recons_stop_gradient_target: bool = True

    def __post_init__(self):
        if not 0.0 <= self.lambda_meta <= 1.0:
            raise ValueError(f"lambda_meta must lie in [0, 1], got {self.lambda_meta}")


@dataclasses.dataclass(frozen=True)
class DMFRExperimentConfig:
    """One DMFR (or baseline) run; saved as ``<model_dir>/config.json``.

    Attributes:
      model: the network.
      loss: the loss weights.
      optimizer: SGD and its schedule of the main phase.
      run: data (``data_dir`` = the real dataset), run directory, schedule.
      dmfr: ``none`` (plain CosFace baseline), ``meta``, ``disentangle`` or ``filter``.
      mix_generated: with ``dmfr=none``: train on real + generated samples mixed 1:1 (the
        paper's failing case); false = real only.
      domains_dir: the generative domains (``build_dmfr_domains`` output: pose/, quality/).
      pretrain_steps: steps of the softmax pre-training on real data that every mode starts
        from (0 = none); ``<model_dir>/pretrain`` is its run directory.
      pretrain_learning_rate: SGD learning rate of the pre-training.
      pretrain_from: an existing pre-training run directory to start from instead (shared by
        several runs); overrides ``pretrain_steps``.
      num_classes: identities of the training split (filled when the run starts).
    """

    model: DMFRModelConfig = DMFRModelConfig()
    loss: DMFRLossConfig = DMFRLossConfig()
    optimizer: SGDConfig = SGDConfig(learning_rate=0.05, lr_decay_epochs=(), weight_decay=5e-4)
    run: RunConfig = RunConfig(batch_size=32, epochs=4, checkpoint_every_steps=500)
    dmfr: str = choice("none", DMFR_MODES)
    mix_generated: bool = False
    domains_dir: str = ""
    pretrain_steps: int = 100
    pretrain_learning_rate: float = 0.1
    pretrain_from: str = ""
    num_classes: int = no_flag(0)

    def __post_init__(self):
        if self.dmfr not in DMFR_MODES:
            raise ValueError(f"dmfr must be one of {DMFR_MODES}, got {self.dmfr!r}")
        if self.mix_generated and self.dmfr != "none":
            raise ValueError("mix_generated is the 1:1 baseline (dmfr=none); the DMFR modes "
                             "always use the generated domains")
        if self.run.batch_size % 4:
            raise ValueError(f"batch_size {self.run.batch_size} must be a multiple of 4 (the "
                             "1:1 mix and the meta split divide it)")

    @property
    def uses_domains(self) -> bool:
        return self.dmfr != "none" or self.mix_generated

    @property
    def method_name(self) -> str:
        if self.dmfr == "none":
            return "baseline_mixed" if self.mix_generated else "baseline_real"
        return self.dmfr
