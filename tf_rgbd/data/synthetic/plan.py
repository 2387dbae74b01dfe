"""The deterministic sampling plan: which identity, expression, pose, occluder, light... per image.

Every random draw comes from ``np.random.default_rng`` seeded by ``(seed, stream, identity,
image)``, so the plan of identity ``i`` depends neither on ``num_identities`` nor on the other
identities, and an identity (or one image) can be rendered alone.
"""
from __future__ import annotations

import numpy as np

from tf_rgbd.data.synthetic.config import (
    EXPRESSION_TEMPLATES, EXPRESSIONS, NUM_BACKGROUNDS, OCCLUSIONS, LightingSpec, SampleSpec,
    SyntheticConfig)

# Random streams (the second seed word), so that independent choices never share draws.
STREAM_IDENTITY_SHAPE = 1
STREAM_IDENTITY_APPEARANCE = 2
STREAM_IDENTITY_ATTRIBUTES = 3
STREAM_SAMPLE_PLAN = 4
STREAM_SAMPLE_RENDER = 5
# Largest |coefficient| of the identity shape (truncated standard normal).
IDENTITY_COEFF_LIMIT = 2.5

_VARIANT_KINDS = ("expression", "pose", "occlusion", "time")
_OCCLUDERS = tuple(name for name in OCCLUSIONS if name != "none")


def make_rng(seed: int, stream: int, identity: int, image: int = 0) -> np.random.Generator:
    """The generator of one random stream of one (identity, image)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), stream, int(identity),
                                                         int(image)]))


def identity_coefficients(seed: int, identity: int, num_modes: int) -> np.ndarray:
    """Identity shape coefficients float32 [num_modes], truncated N(0, 1)."""
    rng = make_rng(seed, STREAM_IDENTITY_SHAPE, identity)
    coeffs = rng.standard_normal(num_modes)
    return np.clip(coeffs, -IDENTITY_COEFF_LIMIT, IDENTITY_COEFF_LIMIT).astype(np.float32)


def identity_attributes(config: SyntheticConfig, identity: int) -> dict:
    """Per-identity choices: ``wears_glasses`` and ``session2_fringe`` (bools)."""
    rng = make_rng(config.seed, STREAM_IDENTITY_ATTRIBUTES, identity)
    wears_glasses = bool(rng.random() < config.glasses_fraction)
    session2_fringe = bool(rng.random() < config.session2_fringe_fraction)
    return {"wears_glasses": wears_glasses, "session2_fringe": session2_fringe}


def _lighting(rng: np.random.Generator, session: int) -> LightingSpec:
    if session == 1:
        azimuth, elevation = rng.uniform(-50, 50), rng.uniform(0, 45)
        ambient, diffuse = rng.uniform(0.25, 0.4), rng.uniform(0.5, 0.7)
        color = 1.0 + rng.uniform(-0.04, 0.04, 3)
    else:
        azimuth, elevation = rng.uniform(-75, 75), rng.uniform(-15, 50)
        ambient, diffuse = rng.uniform(0.2, 0.35), rng.uniform(0.5, 0.8)
        tint = np.array([1.08, 1.0, 0.86]) if rng.random() < 0.5 else np.array([0.9, 1.0, 1.1])
        color = tint * (1.0 + rng.uniform(-0.04, 0.04, 3))
    azimuth, elevation = np.deg2rad(azimuth), np.deg2rad(elevation)
    direction = (float(np.sin(azimuth) * np.cos(elevation)), float(-np.sin(elevation)),
                 float(-np.cos(azimuth) * np.cos(elevation)))
    return LightingSpec(direction=direction, ambient=float(ambient), diffuse=float(diffuse),
                        specular=float(rng.uniform(0.04, 0.2)),
                        color=tuple(float(c) for c in color))


def _kind_of_image(config: SyntheticConfig, image: int, rng: np.random.Generator) -> str:
    weights = np.array([config.expression_fraction, config.pose_fraction,
                        config.occlusion_fraction,
                        config.time_fraction if config.sessions == 2 else 0.0])
    available = [kind for kind, weight in zip(_VARIANT_KINDS, weights) if weight > 0]
    if image == 0:
        return "gallery"
    if image <= len(available):  # the first variants cover every available kind once
        return available[image - 1]
    return str(rng.choice(_VARIANT_KINDS, p=weights / weights.sum()))


def sample_spec(config: SyntheticConfig, identity: int, image: int) -> SampleSpec:
    """The specification of image ``image`` of identity ``identity`` (deterministic)."""
    if not 0 <= image < config.images_per_identity:
        raise ValueError(f"image index {image} out of range 0..{config.images_per_identity - 1}")
    rng = make_rng(config.seed, STREAM_SAMPLE_PLAN, identity, image)
    attributes = identity_attributes(config, identity)
    kind = _kind_of_image(config, image, rng)
    session = 2 if kind == "time" else 1
    expression, intensity = "neutral", 0.0
    yaw = pitch = roll = 0.0
    occlusion = "none"
    if kind == "expression":
        expression = str(rng.choice(EXPRESSIONS[1:]))
        intensity = rng.uniform(0.6, 1.1)
        yaw, pitch, roll = rng.uniform(-15, 15), rng.uniform(-10, 10), rng.uniform(-5, 5)
    elif kind == "pose":
        yaw = rng.choice([-1.0, 1.0]) * rng.uniform(31.0, config.max_yaw_deg)
        pitch = config.max_pitch_deg * rng.uniform(-1, 1) * rng.uniform(0.3, 1.0)
        roll = rng.uniform(-config.max_roll_deg, config.max_roll_deg)
    elif kind == "occlusion":
        occlusion = str(rng.choice(_OCCLUDERS))
        yaw, pitch, roll = rng.uniform(-20, 20), rng.uniform(-10, 10), rng.uniform(-5, 5)
    elif kind == "time":
        if rng.random() < 0.3:
            expression = str(rng.choice(EXPRESSIONS[1:]))
            intensity = rng.uniform(0.4, 0.7)
        yaw, pitch, roll = rng.uniform(-15, 15), rng.uniform(-10, 10), rng.uniform(-5, 5)
        if attributes["session2_fringe"]:
            occlusion = "hair"
    weights = np.asarray(EXPRESSION_TEMPLATES[expression]) * intensity
    if expression != "neutral":
        weights = weights + rng.uniform(-0.08, 0.08, weights.size)
    degraded = kind != "gallery" and rng.random() < config.degradation_fraction
    degradation = str(rng.choice(["blur", "noise", "jpeg"])) if degraded else "none"
    jitter = config.alignment_jitter
    return SampleSpec(
        identity=int(identity), image_index=int(image), kind=kind, session=session,
        expression=expression, expression_weights=tuple(float(w) for w in weights),
        yaw_deg=float(yaw), pitch_deg=float(pitch), roll_deg=float(roll),
        occlusion=occlusion, occluder_variant=int(rng.integers(0, 1 << 30)),
        degradation=degradation, degradation_strength=float(rng.uniform(0.3, 1.0)),
        lighting=_lighting(rng, session),
        background_id=int(rng.integers(0, NUM_BACKGROUNDS)),
        wears_glasses=attributes["wears_glasses"],
        shift=(float(rng.uniform(-jitter, jitter)), float(rng.uniform(-jitter, jitter))),
        scale=float(1.0 + rng.uniform(-jitter, jitter)),
        seed=int(make_rng(config.seed, STREAM_SAMPLE_RENDER, identity, image)
                 .integers(0, 1 << 31)))


def identity_plan(config: SyntheticConfig, identity: int) -> list[SampleSpec]:
    """The specs of all images of one identity (independent of ``num_identities``)."""
    return [sample_spec(config, identity, image) for image in range(config.images_per_identity)]


def plan_samples(config: SyntheticConfig) -> list[SampleSpec]:
    """The whole dataset's plan: identities in order, images in order within each identity."""
    return [spec for identity in range(config.num_identities)
            for spec in identity_plan(config, identity)]
