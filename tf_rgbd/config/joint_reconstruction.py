"""Config of joint 3D face reconstruction and recognition with identity/residual shape
disentangling (Liu et al., CVPR 2018; ``tf_rgbd.models.joint_reconstruction``).

Flags are generated from :class:`JointReconstructionConfig` (``--variant``, ``--lambda_r``,
``--phase1_steps`` ...). ``JOINT_VARIANTS`` are the paper's ablation rows:

* ``single``: no disentangling, one latent c (identity + expression sizes) and one decoder;
* ``disentangle``: c_Id / c_Res with the two decoders f_Id, f_Res, reconstruction loss only;
* ``disentangle_id``: the same plus the identification loss L_C on c_Id (the method).
"""
from __future__ import annotations

import dataclasses

from tf_rgbd.config import choice, no_flag
from tf_rgbd.config.run import RunConfig

JOINT_VARIANTS = ("single", "disentangle", "disentangle_id")
# What the shape is: the synthetic generator's mesh vertices (fixed topology, model frame, mm;
# recomputed exactly from the record's coefficients) or the aligned depth map (real scans and
# Kinect data: ``depth`` is the shape, ``neutral_depth`` the identity's neutral shape).
SHAPE_SOURCES = ("mesh", "depth_map")
CLASSIFIERS = ("softmax", "arcface", "cosface")
PHASES = (1, 2, 3)

# Files of a run directory.
CONFIG_FILE = "config.json"
MODEL_FILE = "joint_model.keras"
METRICS_FILE = "joint_metrics.json"


@dataclasses.dataclass(frozen=True)
class JointModelConfig:
    """Architecture.

    Attributes:
      backbone: IR-SE encoder from the backbone registry (``tiny``, ``ir_se18``, ``ir_se50``).
      image_size: S, square RGB input side (divisible by 16).
      id_dim: size of c_Id; 0 = the number of identity coefficients of the data (phase I
        regresses c_Id onto them).
      res_dim: size of c_Res; 0 = the number of expression coefficients.
      decoder_hidden_units: hidden fully connected layers of f_Id / f_Res (empty: one linear
        fully connected layer each, a learned linear shape basis).
      classifier: head on c_Id: softmax, arcface (s, m = 0.5) or cosface (s, m = 0.35).
      margin_s: scale of the margin heads.
      dropout_rate: dropout in the encoder's embedding head.
    """

    backbone: str = "tiny"
    image_size: int = 32
    id_dim: int = 0
    res_dim: int = 0
    decoder_hidden_units: tuple[int, ...] = ()
    classifier: str = choice("softmax", CLASSIFIERS)
    margin_s: float = 30.0
    dropout_rate: float = 0.0

    def __post_init__(self):
        if self.image_size % 16:
            raise ValueError(f"image_size {self.image_size} must be divisible by 16")
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {self.classifier!r}")
        if self.id_dim < 0 or self.res_dim < 0:
            raise ValueError("id_dim and res_dim must be >= 0 (0 = the coefficient counts)")


@dataclasses.dataclass(frozen=True)
class JointReconstructionConfig:
    """Everything a joint reconstruction run needs; saved as ``<phase dir>/config.json``.

    Attributes:
      model: the architecture.
      run: data, run directory (each phase trains in ``<model_dir>/phase<k>``), batch, seed.
      variant: ablation row (``JOINT_VARIANTS``).
      shape_source: mesh (synthetic vertices) or depth_map (aligned depth = shape).
      num_shape_vertices: mesh: face-region vertices in the fixed-topology target.
      depth_grid: depth_map: the depth map is average-pooled to depth_grid x depth_grid.
      lambda_r: weight of the reconstruction loss L_R in L = lambda_r L_R + L_C.
      shape_unit_mm: shapes enter the losses divided by this (mm per loss unit), so L_R is
        in (shape_unit_mm)^2 units; RMSE is always reported in mm.
      learning_rate: Adam learning rate of every phase.
      phase1_steps: phase I steps: the encoder regresses the target latents (identity and
        expression coefficients) with a Euclidean loss.
      phase2_steps: phase II steps: the decoders alone (encoder frozen), f_Id to the
        identity's neutral shape minus s-bar, f_Res to the residual.
      phase3_steps: phase III steps: end-to-end, L = lambda_r L_R (+ L_C for disentangle_id).
      morphable_model_dir: the 3DDFA-layout model a synthetic dataset was built with ('' =
        the built-in parametric head); checked against the records' landmarks.
      num_classes: identities of the training split (filled when training starts).
      latent_id_dim, latent_res_dim: resolved c_Id / c_Res sizes (filled when training
        starts).
    """

    model: JointModelConfig = JointModelConfig()
    run: RunConfig = RunConfig(batch_size=16, epochs=1, checkpoint_every_steps=100,
                               augment=False)
    variant: str = choice("disentangle_id", JOINT_VARIANTS)
    shape_source: str = choice("mesh", SHAPE_SOURCES)
    num_shape_vertices: int = 512
    depth_grid: int = 16
    lambda_r: float = 1.0
    shape_unit_mm: float = 10.0
    learning_rate: float = 1e-3
    phase1_steps: int = 100
    phase2_steps: int = 100
    phase3_steps: int = 100
    morphable_model_dir: str = ""
    num_classes: int = no_flag(0)
    latent_id_dim: int = no_flag(0)
    latent_res_dim: int = no_flag(0)

    def __post_init__(self):
        if self.variant not in JOINT_VARIANTS:
            raise ValueError(f"variant must be one of {JOINT_VARIANTS}, got {self.variant!r}")
        if self.shape_source not in SHAPE_SOURCES:
            raise ValueError(f"shape_source must be one of {SHAPE_SOURCES}, got "
                             f"{self.shape_source!r}")
        if min(self.phase1_steps, self.phase2_steps, self.phase3_steps) < 0:
            raise ValueError("phase steps must be >= 0")
        if self.lambda_r < 0 or self.shape_unit_mm <= 0 or self.learning_rate <= 0:
            raise ValueError(f"bad weights: lambda_r={self.lambda_r}, shape_unit_mm="
                             f"{self.shape_unit_mm}, learning_rate={self.learning_rate}")
        if self.num_shape_vertices < 1 or self.depth_grid < 1:
            raise ValueError("num_shape_vertices and depth_grid must be >= 1")

    @property
    def disentangled(self) -> bool:
        return self.variant != "single"

    @property
    def identification_loss(self) -> bool:
        return self.variant == "disentangle_id"

    def phase_steps(self, phase: int) -> int:
        return (self.phase1_steps, self.phase2_steps, self.phase3_steps)[phase - 1]


def with_model_dir(config: JointReconstructionConfig, model_dir: str
                   ) -> JointReconstructionConfig:
    return dataclasses.replace(config, run=dataclasses.replace(config.run, model_dir=model_dir))
