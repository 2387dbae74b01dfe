"""Typed configuration and per-sample specification of the synthetic RGB-D face generator."""
from __future__ import annotations

import dataclasses
from typing import Optional

# Expression templates: weights over the parametric model's expression modes
# (parametric_head.EXPRESSION_MODE_NAMES: smile, mouth_open, brow_raise, frown, squint,
# cheek_puff, lip_pucker).
EXPRESSION_TEMPLATES = {
    "neutral": (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "smile": (1.0, 0.0, 0.0, 0.0, 0.3, 0.0, 0.0),
    "laugh": (1.0, 0.8, 0.2, 0.0, 0.5, 0.0, 0.0),
    "surprise": (0.0, 0.9, 1.0, 0.0, 0.0, 0.0, 0.2),
    "anger": (-0.2, 0.0, 0.0, 1.0, 0.6, 0.0, 0.3),
    "sad": (-0.6, 0.0, 0.4, 0.5, 0.0, 0.0, 0.0),
    "squint": (0.0, 0.0, 0.0, 0.2, 1.0, 0.0, 0.0),
    "puff": (0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.5),
    "mouth_open": (0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0),
}
EXPRESSIONS = tuple(EXPRESSION_TEMPLATES)
OCCLUSIONS = ("none", "hand", "glasses", "scarf", "hair")
DEGRADATIONS = ("none", "blur", "noise", "jpeg")
SAMPLE_KINDS = ("gallery", "expression", "pose", "occlusion", "time")
NUM_BACKGROUNDS = 4


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Everything that decides what the synthetic dataset contains (fully deterministic).

    Attributes:
      num_identities: number of synthetic people (labels 0..num_identities-1).
      images_per_identity: images per person; image 0 is the gallery image (session 1,
        neutral, frontal, unoccluded, undegraded).
      image_size: side of the square crops in pixels (64, 112, 128, ...).
      seed: master seed; every random choice derives from (seed, identity, image).
      glasses_fraction: fraction of identities that wear clear eyeglasses in every image
        (frames are mask class 4).
      expression_fraction: relative frequency of expression variants among images 1..N-1.
      pose_fraction: relative frequency of pose variants (|yaw| > 30 deg).
      occlusion_fraction: relative frequency of occlusion variants (hand, sunglasses, scarf,
        hair fringe).
      time_fraction: relative frequency of session-2 (time-lapse) images; ignored when
        ``sessions`` is 1.
      degradation_fraction: probability that a non-gallery image gets a quality degradation
        (blur, noise or JPEG).
      max_yaw_deg: largest |yaw| of pose variants (<= 90).
      max_pitch_deg: largest |pitch| of pose variants.
      max_roll_deg: largest |roll| of pose variants.
      sessions: 1 or 2 acquisition sessions.
      session2_fringe_fraction: fraction of identities whose session-2 hairstyle has a fringe
        over the forehead (recorded as occlusion ``hair``).
      morphable_model_dir: optional directory of a 3DDFA-layout morphable model to use instead
        of the built-in parametric head (see ``FaceModel.from_3ddfa_dir``).
      face_distance_mm: camera z of the face plane.
      face_width_mm: width of the scene covered by the crop at that distance (200 mm puts the
        eyes near row 0.43 * image_size and the chin inside the crop).
      depth_noise_mm: standard deviation of the Gaussian sensor noise added to ``depth``
        (``neutral_depth`` stays clean); 0 disables it.
      alignment_jitter: per-sample random shift (fraction of the crop) and relative scale
        change, like the residual error of a face aligner. Default 0: crops are perfectly
        aligned (the tf.data pipeline adds crop/scale augmentation itself); even 0.01 makes
        raw depth-map nearest-neighbour matching much harder.
    """

    num_identities: int = 100
    images_per_identity: int = 20
    image_size: int = 112
    seed: int = 0
    glasses_fraction: float = 0.2
    expression_fraction: float = 0.3
    pose_fraction: float = 0.3
    occlusion_fraction: float = 0.2
    time_fraction: float = 0.2
    degradation_fraction: float = 0.15
    max_yaw_deg: float = 90.0
    max_pitch_deg: float = 45.0
    max_roll_deg: float = 20.0
    sessions: int = 2
    session2_fringe_fraction: float = 0.5
    morphable_model_dir: Optional[str] = None
    face_distance_mm: float = 500.0
    face_width_mm: float = 200.0
    depth_noise_mm: float = 0.4
    alignment_jitter: float = 0.0

    def __post_init__(self):
        problems = []
        if self.num_identities < 1:
            problems.append(f"num_identities must be >= 1 (got {self.num_identities})")
        if self.images_per_identity < 1:
            problems.append(f"images_per_identity must be >= 1 (got {self.images_per_identity})")
        if self.image_size < 16:
            problems.append(f"image_size must be >= 16 pixels (got {self.image_size})")
        if self.sessions not in (1, 2):
            problems.append(f"sessions must be 1 or 2 (got {self.sessions})")
        if not 30.0 < self.max_yaw_deg <= 90.0:
            problems.append(f"max_yaw_deg must be in (30, 90] (got {self.max_yaw_deg})")
        for name in ("glasses_fraction", "degradation_fraction", "session2_fringe_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be in [0, 1] (got {getattr(self, name)})")
        fractions = (self.expression_fraction, self.pose_fraction, self.occlusion_fraction,
                     self.time_fraction)
        if min(fractions) < 0 or sum(fractions) <= 0:
            problems.append("expression/pose/occlusion/time fractions must be >= 0, not all 0")
        if problems:
            raise ValueError("invalid SyntheticConfig: " + "; ".join(problems))


@dataclasses.dataclass(frozen=True)
class LightingSpec:
    """A directional light plus ambient light (camera frame).

    Attributes:
      direction: unit (x, y, z) pointing from the face toward the light (z < 0: from the
        camera side).
      ambient: ambient intensity (0..1).
      diffuse: Lambertian intensity (0..1).
      specular: Blinn-Phong highlight strength (0..1).
      color: RGB gains of the light (about 1).
    """

    direction: tuple
    ambient: float
    diffuse: float
    specular: float
    color: tuple


@dataclasses.dataclass(frozen=True)
class SampleSpec:
    """Everything that decides one synthetic image (see ``plan.plan_samples``).

    Attributes:
      identity: identity index (the label).
      image_index: index of the image within its identity (0 = gallery image).
      kind: one of ``SAMPLE_KINDS``: which probe subset the image was made for.
      session: 1 or 2.
      expression: name from ``EXPRESSIONS``.
      expression_weights: weights over the parametric expression modes (already scaled by the
        sampled intensity).
      yaw_deg, pitch_deg, roll_deg: head pose (conventions of ``geometry.rotation_matrix``).
      occlusion: one of ``OCCLUSIONS``.
      occluder_variant: integer choosing the occluder's shape/placement/colour.
      degradation: one of ``DEGRADATIONS``.
      degradation_strength: 0..1.
      lighting: the light.
      background_id: background style 0..NUM_BACKGROUNDS-1.
      wears_glasses: the identity wears clear eyeglasses.
      shift: (dx, dy) alignment jitter as fractions of the crop.
      scale: relative scale jitter (1 = nominal).
      seed: per-sample seed (textures, noise).
    """

    identity: int
    image_index: int
    kind: str
    session: int
    expression: str
    expression_weights: tuple
    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    occlusion: str
    occluder_variant: int
    degradation: str
    degradation_strength: float
    lighting: LightingSpec
    background_id: int
    wears_glasses: bool
    shift: tuple
    scale: float
    seed: int

    @property
    def example_id(self) -> str:
        return f"synthetic/{subject_name(self.identity)}/img{self.image_index:04d}"


def subject_name(identity: int) -> str:
    """The subject id of an identity index, e.g. ``id0003``."""
    return f"id{identity:04d}"
