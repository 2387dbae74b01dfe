"""Appearance of synthetic faces: per-identity albedo, shading, backgrounds, degradations.

Colours are linear RGB floats in [0, 1] until :func:`to_srgb_uint8`; anchors below are given in
sRGB and converted.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import scipy.sparse

from tf_rgbd.data.synthetic.config import LightingSpec

_GAMMA = 2.2


def _linear(srgb) -> np.ndarray:
    return np.power(np.asarray(srgb, np.float64), _GAMMA)


SKIN_TONES = _linear([[0.93, 0.77, 0.67], [0.90, 0.70, 0.58], [0.82, 0.61, 0.47],
                      [0.68, 0.47, 0.34], [0.52, 0.35, 0.24], [0.36, 0.24, 0.17]])
HAIR_COLOURS = _linear([[0.07, 0.06, 0.06], [0.20, 0.13, 0.09], [0.38, 0.25, 0.15],
                        [0.72, 0.58, 0.36], [0.55, 0.26, 0.13], [0.62, 0.61, 0.60]])
IRIS_COLOURS = _linear([[0.33, 0.20, 0.11], [0.22, 0.13, 0.08], [0.45, 0.36, 0.18],
                        [0.33, 0.45, 0.30], [0.32, 0.46, 0.66], [0.50, 0.55, 0.60]])
SCLERA = _linear([0.86, 0.83, 0.79])
PUPIL = _linear([0.03, 0.03, 0.03])
MOUTH_INTERIOR = _linear([0.28, 0.08, 0.08])


@dataclasses.dataclass(frozen=True)
class IdentityAppearance:
    """Per-identity colours (linear RGB) and the per-vertex albedo built from them.

    Attributes:
      skin: [3] base skin colour.
      hair: [3] hair and brow colour.
      iris: [3] iris colour.
      lip: [3] lip colour.
      albedo: float32 [V, 3] per-vertex albedo of the face model.
    """

    skin: np.ndarray
    hair: np.ndarray
    iris: np.ndarray
    lip: np.ndarray
    albedo: np.ndarray


def _smooth_vertex_noise(rng, incidence: scipy.sparse.csr_matrix, triangles, iterations=3):
    """Low-frequency per-vertex noise [V] (random values averaged over the mesh a few times)."""
    num_vertices = incidence.shape[0]
    noise = rng.standard_normal(num_vertices)
    face_count = np.maximum(np.asarray(incidence.sum(axis=1)).ravel(), 1.0)
    t0, t1, t2 = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    for _ in range(iterations):
        face_mean = (noise[t0] + noise[t1] + noise[t2]) / 3.0
        noise = (incidence @ face_mean) / face_count
    return noise / max(noise.std(), 1e-9)


def identity_appearance(model, rng: np.random.Generator) -> IdentityAppearance:
    """Samples one identity's colours and builds its per-vertex albedo.

    Args:
      model: a ``FaceModel`` (its parts and appearance weights are used).
      rng: the identity's appearance stream.
    """
    tone = rng.uniform(0.0, SKIN_TONES.shape[0] - 1.0)
    low = int(np.floor(tone))
    high = min(low + 1, SKIN_TONES.shape[0] - 1)
    skin = SKIN_TONES[low] + (tone - low) * (SKIN_TONES[high] - SKIN_TONES[low])
    skin = skin * (1.0 + rng.uniform(-0.06, 0.06, 3))
    # Darker skin tones get darker hair more often.
    hair_probabilities = np.array([3.0, 3.0, 2.0, 1.5 - tone * 0.25, 1.0 - tone * 0.15, 0.6])
    hair_probabilities = np.maximum(hair_probabilities, 0.05)
    hair = HAIR_COLOURS[rng.choice(6, p=hair_probabilities / hair_probabilities.sum())]
    hair = hair * (1.0 + rng.uniform(-0.1, 0.1, 3))
    iris = IRIS_COLOURS[rng.integers(0, IRIS_COLOURS.shape[0])] * rng.uniform(0.8, 1.2)
    lip = skin * np.array([0.78, 0.42, 0.42]) * rng.uniform(0.8, 1.1)

    weights = model.appearance_weights
    incidence = model.vertex_face_incidence
    texture = _smooth_vertex_noise(rng, incidence, model.triangles, iterations=6)
    grain = rng.standard_normal(model.num_vertices)
    albedo = skin[None, :] * (1.0 + 0.035 * texture[:, None] + 0.02 * grain[:, None])
    if rng.random() < 0.25:  # freckles
        freckles = (rng.random(model.num_vertices) < rng.uniform(0.02, 0.08))
        albedo[freckles] *= np.array([0.78, 0.70, 0.66])
    blush = rng.uniform(0.0, 0.35) * weights["blush"][:, None]
    albedo = albedo * (1.0 - blush) + blush * (albedo * np.array([1.05, 0.78, 0.78]))

    def blend(albedo, weight, colour):
        """albedo + weight * (colour - albedo), only where weight > 0 (regions are small)."""
        where = np.flatnonzero(weight > 0)
        albedo[where] += weight[where, None] * (np.broadcast_to(colour, albedo.shape)[where]
                                                 - albedo[where])
        return albedo

    albedo = blend(albedo, weights["hair"], hair * (1.0 + 0.08 * grain[:, None]))
    albedo = blend(albedo, weights["brow"] * rng.uniform(0.6, 0.95), hair * 0.8)
    albedo = blend(albedo, weights["lip"], lip * (1.0 + 0.03 * grain[:, None]))
    albedo = blend(albedo, weights["nostril"] * 0.7, skin * 0.3)
    albedo = blend(albedo, weights["sclera"], SCLERA)
    albedo = blend(albedo, weights["iris"], iris)
    albedo = blend(albedo, weights["pupil"], PUPIL)
    albedo = blend(albedo, weights["lash"] * 0.85, hair * 0.3)
    albedo = blend(albedo, weights["mouth_interior"], MOUTH_INTERIOR)
    # Ambient occlusion of creases is baked into the albedo.
    albedo *= (1.0 - 0.3 * weights["cavity"])[:, None]
    albedo = np.clip(albedo, 0.0, 1.0).astype(np.float32)
    albedo.setflags(write=False)
    return IdentityAppearance(skin=skin, hair=hair, iris=iris, lip=lip, albedo=albedo)


def shade(albedo: np.ndarray, normals: np.ndarray, lighting: LightingSpec) -> np.ndarray:
    """Lambertian + ambient + Blinn-Phong shading of per-vertex albedo (camera frame; the
    highlight uses the view direction (0, 0, -1), fine for a ~20 degree field of view).

    Args:
      albedo: float [V, 3] linear RGB.
      normals: float32 [V, 3] unit normals in the camera frame.
      lighting: the light.
    Returns:
      float32 [V, 3] linear RGB radiance (may exceed 1 at highlights).
    """
    light = np.asarray(lighting.direction, np.float64)
    light = light / np.linalg.norm(light)
    half = light + np.array([0.0, 0.0, -1.0])
    half = half / np.linalg.norm(half)
    nx, ny, nz = normals[:, 0], normals[:, 1], normals[:, 2]
    # Column arithmetic, not BLAS: tiny matrix-vector products through a multithreaded BLAS
    # stall on a busy CPU.
    lambert = np.maximum(nx * np.float32(light[0]) + ny * np.float32(light[1])
                         + nz * np.float32(light[2]), 0.0)
    half_dot_normal = (nx * np.float32(half[0]) + ny * np.float32(half[1])
                       + nz * np.float32(half[2]))
    highlight = np.maximum(half_dot_normal, 0.0)
    highlight *= highlight                       # ^2
    highlight *= highlight                       # ^4
    highlight = highlight * highlight * highlight  # ^12
    highlight *= highlight                       # ^24
    highlight *= lambert > 0
    irradiance = lighting.ambient + lighting.diffuse * lambert
    colour = np.asarray(lighting.color, np.float32)
    return ((albedo * irradiance[:, None] + (lighting.specular * 0.25) * highlight[:, None])
            * colour).astype(np.float32)


def to_srgb_uint8(linear: np.ndarray) -> np.ndarray:
    """Linear RGB float -> sRGB-ish (gamma 2.2) uint8."""
    return np.clip(np.rint(np.power(np.clip(linear, 0.0, 1.0), 1.0 / _GAMMA) * 255.0),
                   0, 255).astype(np.uint8)


def background(style: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random background, float32 [S, S, 3] linear RGB in [0.003, 1] (never exactly 0).

    Styles: 0 linear gradient, 1 smooth colour noise, 2 gradient with soft blobs, 3 blurred
    stripes.
    """
    # Styles are drawn on a coarse grid and resized (smooth content), then fine grain is added.
    coarse = 32
    colours = _linear(rng.uniform(0.1, 0.95, (2, 3)))
    ramp = np.linspace(0.0, 1.0, coarse)
    angle = rng.uniform(0, 2 * np.pi)
    u = np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None]
    u = (u - u.min()) / max(float(np.ptp(u)), 1e-6)
    image = colours[0] + u[..., None] * (colours[1] - colours[0])
    if style == 1:
        cells = int(rng.integers(3, 7))
        image = cv2.resize(_linear(rng.uniform(0.1, 0.9, (cells, cells, 3))), (coarse, coarse),
                           interpolation=cv2.INTER_CUBIC)
    elif style == 2:
        yy, xx = np.mgrid[0:coarse, 0:coarse]
        for _ in range(int(rng.integers(2, 6))):
            centre = rng.uniform(0, coarse, 2)
            radius = rng.uniform(0.1, 0.4) * coarse
            blob = 0.8 * np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2)
                                / (2 * radius ** 2))[..., None]
            image = image * (1 - blob) + blob * _linear(rng.uniform(0.1, 0.95, 3))
    elif style == 3:
        frequency = rng.uniform(2.0, 8.0)
        stripes = 0.5 + 0.5 * np.tanh(4.0 * np.sin(2 * np.pi * frequency * u
                                                     + rng.uniform(0, 6.3)))
        image = colours[0] + stripes[..., None] * (colours[1] - colours[0])
    image = cv2.resize(image.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    grain = rng.random((size, size, 1), dtype=np.float32)
    image *= 0.95 + 0.1 * grain
    return np.clip(image, 0.003, 1.0)


def degrade(rgb: np.ndarray, depth_mm: np.ndarray, kind: str, strength: float,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Applies a quality degradation to uint8 RGB [S, S, 3] (and depth for ``noise``).

    ``blur``: Gaussian blur of sigma 0.5-2 px (scaled to 112 px crops); ``noise``: Gaussian
    pixel noise (std 3-12 grey levels) and 1-3 mm extra depth noise; ``jpeg``: JPEG
    compression at quality 50-10, decoded back to pixels (so records stay PNG).
    Returns (rgb uint8, depth float32).
    """
    size = rgb.shape[0]
    if kind == "none":
        return rgb, depth_mm
    if kind == "blur":
        sigma = (0.5 + 1.5 * strength) * size / 112.0
        return cv2.GaussianBlur(rgb, (0, 0), sigma), depth_mm
    if kind == "noise":
        noisy = rgb.astype(np.float32) + rng.normal(0, 3 + 9 * strength, rgb.shape)
        extra = rng.normal(0, 1 + 2 * strength, depth_mm.shape).astype(np.float32)
        depth = np.where(depth_mm > 0, np.maximum(depth_mm + extra, 1.0), 0).astype(np.float32)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8), depth
    if kind == "jpeg":
        quality = int(round(50 - 40 * strength))
        ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                                  [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("OpenCV failed to JPEG-encode a synthetic image")
        decoded = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
        return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB), depth_mm
    raise ValueError(f"unknown degradation {kind!r}; expected none, blur, noise or jpeg")
