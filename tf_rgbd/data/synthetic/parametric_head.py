"""The project's own parametric 3D head (license-clean: built from formulas, no scanned data).

The mean head is a star-shaped implicit solid (cranium, jaw, neck and ear ellipsoids blended
with smooth unions, plus a frontal relief for nose, brows, eye sockets, cheekbones, lips and
chin). It is meshed by casting rays from a point inside the head through a latitude/longitude
grid that is dense over the face (about 2.7 mm between vertices) and sparse over the back, so
the mesh is closed and profiles look right. Three extra grid rows at the lip line form the
mouth slit, which opens when the jaw drops.

Model frame (mm): x to the image's right for a frontal face (the subject's left), y down,
z away from the camera (the face looks toward -z); y = 0 is the eye line and the origin lies
inside the head at about ear depth.

Identity and expression are linear displacement fields over the mean vertices (smooth,
region-weighted warps, so region labels move with their geometry):
``vertices = mean + sum_k alpha_k * identity_basis[k] + sum_j beta_j * expression_basis[j]``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

# Per-vertex fine parts (appearance), each mapped to a schema mask class by PART_MASK_CLASS.
PARTS = ("hair", "skin", "neck", "ear", "brow", "eye_white", "iris", "pupil", "nose",
         "nostril", "lip", "mouth_interior")
PART = {name: index for index, name in enumerate(PARTS)}
# schema.MASK_CLASSES: background, skin, brows, eyes, glasses, nose, mouth.
PART_MASK_CLASS = np.array([0, 1, 0, 0, 2, 3, 3, 3, 5, 5, 6, 6], np.uint8)

IDENTITY_MODE_NAMES = (
    "face_width", "lower_face_length", "forehead_height", "head_depth", "nose_length",
    "nose_width", "nose_projection", "nose_bridge_height", "nose_tip_size", "eye_spacing",
    "eye_depth", "eye_opening", "eye_height", "brow_ridge", "brow_height", "cheekbones",
    "cheek_fullness", "jaw_width", "chin_projection", "chin_length", "chin_width",
    "lip_thickness", "mouth_width", "mouth_height", "forehead_slope", "face_flatness",
    "ear_offset", "nose_hump", "residual_0", "residual_1", "residual_2", "residual_3",
    "residual_4", "residual_5", "residual_6", "residual_7")
EXPRESSION_MODE_NAMES = ("smile", "mouth_open", "brow_raise", "frown", "squint", "cheek_puff",
                         "lip_pucker")

# Mean anatomy (mm, model frame).
EYE_X, EYE_Y = 32.0, 0.0
EYE_HALF_WIDTH, EYE_UPPER, EYE_LOWER = 14.0, 6.3, 4.3
IRIS_RADIUS, PUPIL_RADIUS = 5.6, 2.2
BROW_Y = -17.0
NASION_Y, NOSE_TIP_Y, SUBNASALE_Y = -4.0, 34.0, 45.0
MOUTH_Y, MOUTH_HALF_WIDTH = 64.0, 24.0
CHIN_Y = 104.0
HAIRLINE_Y = -66.0
JAW_HINGE = np.array([0.0, 8.0, 8.0])
RAY_ORIGIN = np.array([0.0, 5.0, 0.0])


@dataclasses.dataclass(frozen=True)
class ParametricHead:
    """Arrays of the parametric head (all in the model frame, mm).

    Attributes:
      vertices: float32 [V, 3] mean shape.
      triangles: int32 [F, 3] wound so that normals point out of the head.
      parts: uint8 [V] index into ``PARTS``.
      appearance_weights: dict name -> float32 [V] soft weights in [0, 1] (brow, lip, iris,
        pupil, sclera, lash, nostril, hair, blush, cavity).
      identity_basis: float32 [K, V, 3] displacement per unit identity coefficient.
      expression_basis: float32 [E, V, 3] displacement per unit expression coefficient.
      landmark_vertices: int64 [5] vertices of left eye, right eye, nose tip, left and right
        mouth corners (image left/right for a frontal face).
      grid_shape: (rows, cols) of the latitude/longitude grid.
    """

    vertices: np.ndarray
    triangles: np.ndarray
    parts: np.ndarray
    appearance_weights: dict
    identity_basis: np.ndarray
    expression_basis: np.ndarray
    landmark_vertices: np.ndarray
    grid_shape: tuple


# ----------------------------------------------------------------------------- small helpers

def _smoothstep(edge0, edge1, x):
    t = np.clip((np.asarray(x, np.float64) - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _gauss(x, y, x0, y0, sigma_x, sigma_y):
    return np.exp(-0.5 * (((x - x0) / sigma_x) ** 2 + ((y - y0) / sigma_y) ** 2))


def _pair_gauss(x, y, x0, y0, sigma_x, sigma_y):
    """Two Gaussians mirrored about the midline (at x0 and -x0); smooth at x = 0."""
    return _gauss(x, y, x0, y0, sigma_x, sigma_y) + _gauss(x, y, -x0, y0, sigma_x, sigma_y)


def _smooth_min(a, b, k):
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k * 0.25


def _ellipsoid_sdf(p, center, radii):
    q = (p - center) / radii
    k0 = np.linalg.norm(q, axis=-1)
    k1 = np.linalg.norm(q / radii, axis=-1)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)


# ----------------------------------------------------------------------------- the surface

def _eye_opening(x, y):
    """Signed inside-ness of the almond eye openings: > 0 inside, in mm-ish units."""
    ax = np.abs(x) - EYE_X
    t = np.clip(1.0 - (ax / EYE_HALF_WIDTH) ** 2, 0.0, 1.0)
    # The outer corner sits a little higher (canthal tilt) and the upper lid peaks medially.
    tilt = -0.06 * ax
    top = EYE_Y + tilt - EYE_UPPER * t ** 0.75 * (1.0 - 0.12 * ax / EYE_HALF_WIDTH)
    bottom = EYE_Y + tilt + EYE_LOWER * t ** 0.9
    return np.minimum(y - top, bottom - y)


def _nose_relief(x, y):
    t = np.clip((y - NASION_Y) / (NOSE_TIP_Y - NASION_Y), 0.0, 1.0)
    ridge = 3.0 + 17.0 * t ** 1.35
    # Above the nasion the ridge blends into the glabella; below the tip it drops to the lip.
    ridge *= _smoothstep(NASION_Y - 18.0, NASION_Y, y)
    ridge *= 1.0 - _smoothstep(NOSE_TIP_Y + 1.0, SUBNASALE_Y + 1.0, y)
    half_width = 6.5 + 7.5 * t ** 1.5
    across = np.exp(-np.abs(x / half_width) ** 2.4)
    tip = 4.0 * _gauss(x, y, 0.0, NOSE_TIP_Y - 1.0, 7.5, 5.5)
    alae = 8.5 * _pair_gauss(x, y, 14.0, NOSE_TIP_Y + 5.0, 5.5, 5.0)
    base = 3.0 * _gauss(x, y, 0.0, NOSE_TIP_Y + 4.0, 16.0, 6.0)
    return ridge * across + tip + alae + base


def _face_relief(x, y):
    """Outward (toward the camera) relief of the face in mm over the frontal (x, y) plane."""
    relief = _nose_relief(x, y)
    # Eye sockets, with the eyeball and lids bulging inside them.
    relief -= 8.0 * _pair_gauss(x, y, EYE_X + 1.0, EYE_Y - 1.0, 16.0, 11.0)
    relief += 4.0 * _pair_gauss(x, y, EYE_X, EYE_Y + 0.5, 11.0, 6.5)
    # Brow ridge and glabella.
    relief += 4.0 * _pair_gauss(x, y, 28.0, BROW_Y + 1.0, 20.0, 6.5)
    relief += 2.5 * _gauss(x, y, 0.0, BROW_Y + 5.0, 10.0, 7.0)
    # Cheekbones and the soft cheeks below them.
    relief += 5.0 * _pair_gauss(x, y, 46.0, 22.0, 15.0, 12.0)
    relief += 2.0 * _pair_gauss(x, y, 38.0, 50.0, 14.0, 14.0)
    # Lips, philtrum, the fold under the lower lip and the chin.
    relief += 5.5 * _gauss(x, y, 0.0, MOUTH_Y - 5.0, 21.0, 4.5)
    relief += 5.0 * _gauss(x, y, 0.0, MOUTH_Y + 6.0, 18.0, 4.5)
    relief += 3.0 * _gauss(x, y, 0.0, MOUTH_Y - 12.0, 14.0, 6.0)
    relief -= 3.0 * _gauss(x, y, 0.0, MOUTH_Y + 17.0, 15.0, 4.5)
    relief += 9.0 * _gauss(x, y, 0.0, CHIN_Y, 17.0, 10.0)
    # Nasolabial folds.
    fold_x = 20.0 + 0.35 * (y - SUBNASALE_Y)
    relief -= 1.5 * np.exp(-0.5 * ((np.abs(x) - fold_x) / 3.5) ** 2) * _gauss(
        0.0, y, 0.0, MOUTH_Y - 8.0, 1.0, 12.0)
    return relief


def head_sdf(points: np.ndarray) -> np.ndarray:
    """Approximate signed distance (mm, < 0 inside) of the mean head at points float [..., 3]."""
    cranium = _ellipsoid_sdf(points, np.array([0.0, -30.0, 12.0]), np.array([78.0, 92.0, 100.0]))
    jaw = _ellipsoid_sdf(points, np.array([0.0, 40.0, -14.0]), np.array([62.0, 82.0, 82.0]))
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    neck_radial = np.hypot(x / 1.05, z - 26.0) - 46.0
    neck = np.maximum(neck_radial, y - 210.0)
    ears = _ellipsoid_sdf(np.stack([np.abs(x), y, z], axis=-1), np.array([76.0, 8.0, 14.0]),
                          np.array([10.0, 28.0, 15.0]))
    envelope = _smooth_min(_smooth_min(cranium, jaw, 24.0), neck, 12.0)
    envelope = _smooth_min(envelope, ears, 4.0)
    # The relief displaces the front of the envelope toward the camera.
    direction = points - RAY_ORIGIN
    frontness = _smoothstep(0.25, 0.6, -direction[..., 2] / np.maximum(
        np.linalg.norm(direction, axis=-1), 1e-9))
    return envelope - _face_relief(x, y) * frontness


# ----------------------------------------------------------------------------- meshing

def _ray_directions(theta_deg: np.ndarray, phi_deg: np.ndarray) -> np.ndarray:
    theta, phi = np.deg2rad(theta_deg), np.deg2rad(phi_deg)
    return np.stack([np.sin(theta) * np.cos(phi), np.sin(phi) * np.ones_like(theta),
                     -np.cos(theta) * np.cos(phi)], axis=-1)


def _cast_rays(directions: np.ndarray, iterations: int = 36) -> np.ndarray:
    """Distance from RAY_ORIGIN to the head surface along each unit direction [N, 3]."""
    low = np.full(directions.shape[:-1], 2.0)
    high = np.full(directions.shape[:-1], 280.0)
    for _ in range(iterations):
        middle = 0.5 * (low + high)
        inside = head_sdf(RAY_ORIGIN + middle[..., None] * directions) < 0.0
        low = np.where(inside, middle, low)
        high = np.where(inside, high, middle)
    return 0.5 * (low + high)


def _axis_samples(dense_from, dense_to, dense_step, total_from, total_to, sparse_step):
    dense = np.linspace(dense_from, dense_to, int(round((dense_to - dense_from) / dense_step)) + 1)
    below = np.linspace(total_from, dense_from, max(2, int(np.ceil(
        (dense_from - total_from) / sparse_step)) + 1))[:-1]
    above = np.linspace(dense_to, total_to, max(2, int(np.ceil(
        (total_to - dense_to) / sparse_step)) + 1))[1:]
    return np.concatenate([below, dense, above])


def _mouth_rows(dense_step: float) -> np.ndarray:
    """Elevations (deg) of the three mouth-slit rows: the middle one hits y = MOUTH_Y at x = 0."""
    phi = np.linspace(20.0, 45.0, 2001)
    hits = RAY_ORIGIN + _cast_rays(_ray_directions(np.zeros_like(phi), phi))[:, None] * \
        _ray_directions(np.zeros_like(phi), phi)
    middle = float(np.interp(MOUTH_Y, hits[:, 1], phi))
    offset = 0.06 * dense_step
    return np.array([middle - offset, middle, middle + offset])


def _grid_triangles(rows: int, cols: int) -> np.ndarray:
    """Two triangles per grid cell; columns wrap around (the longitude is periodic)."""
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols), indexing="ij")
    c_next = (c + 1) % cols
    a, b = r * cols + c, r * cols + c_next
    d, e = (r + 1) * cols + c, (r + 1) * cols + c_next
    first = np.stack([a, b, d], axis=-1).reshape(-1, 3)
    second = np.stack([b, e, d], axis=-1).reshape(-1, 3)
    return np.concatenate([first, second]).astype(np.int32)


def _orient_outward(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    v0, v1, v2 = (vertices[triangles[:, k]] for k in range(3))
    normals = np.cross(v1 - v0, v2 - v0)
    outward = np.einsum("fk,fk->f", normals, (v0 + v1 + v2) / 3.0 - RAY_ORIGIN)
    if np.sum(outward < 0) > np.sum(outward > 0):
        triangles = triangles[:, [0, 2, 1]]
    return triangles


# ----------------------------------------------------------------------------- regions

def _region_weights(vertices: np.ndarray, mouth_row_mask: np.ndarray) -> tuple:
    x, y, z = vertices[:, 0], vertices[:, 1], vertices[:, 2]
    front = (z < -25.0).astype(np.float64)
    eye_inside = _eye_opening(x, y)
    eye_x = np.where(x < 0, -EYE_X, EYE_X)
    iris_distance = np.hypot(x - eye_x, y - (EYE_Y - 0.3))
    weights = {
        "sclera": front * _smoothstep(-0.2, 0.6, eye_inside),
        "iris": front * _smoothstep(-0.2, 0.6, eye_inside) * (1.0 - _smoothstep(
            IRIS_RADIUS - 0.8, IRIS_RADIUS + 0.4, iris_distance)),
        "pupil": front * _smoothstep(-0.2, 0.6, eye_inside) * (1.0 - _smoothstep(
            PUPIL_RADIUS - 0.5, PUPIL_RADIUS + 0.5, iris_distance)),
    }
    # Lash line: a dark rim along the upper lid and a faint one along the lower lid.
    ax = np.abs(x) - EYE_X
    lid_band = np.exp(-0.5 * (eye_inside / 1.3) ** 2) * (np.abs(ax) < EYE_HALF_WIDTH + 3)
    weights["lash"] = front * lid_band * np.where(y < EYE_Y - 0.06 * ax, 1.0, 0.35)
    # Brows: an arch above each eye, thicker medially.
    brow_arch = BROW_Y - 5.0 * np.clip(1.0 - ((ax - 3.0) / 22.0) ** 2, 0.0, 1.0)
    brow_thickness = 4.2 - 1.6 * np.clip((ax + 16.0) / 38.0, 0.0, 1.0)
    brow_along = _smoothstep(-19.0, -15.0, ax) * (1.0 - _smoothstep(17.0, 22.0, ax))
    weights["brow"] = front * brow_along * (1.0 - _smoothstep(
        brow_thickness * 0.7, brow_thickness * 1.3, np.abs(y - brow_arch)))
    # Lips: upper lip with a Cupid's bow, lower lip fuller.
    lip_x = np.clip(1.0 - (x / (MOUTH_HALF_WIDTH + 1.5)) ** 2, 0.0, 1.0)
    upper_top = MOUTH_Y - 8.0 * lip_x ** 0.6 + 1.5 * np.exp(-0.5 * (x / 2.5) ** 2) * lip_x
    lower_bottom = MOUTH_Y + 9.5 * lip_x ** 0.6
    lip = front * _smoothstep(-0.8, 0.8, np.minimum(y - upper_top, lower_bottom - y)) * (
        lip_x > 0)
    weights["lip"] = lip * (1 - mouth_row_mask)
    weights["mouth_interior"] = mouth_row_mask.astype(np.float64)
    # Nostrils: dark ellipses under the nose tip.
    weights["nostril"] = front * (1.0 - _smoothstep(0.6, 1.0, np.hypot(
        (np.abs(x) - 7.0) / 3.5, (y - (SUBNASALE_Y - 2.5)) / 1.8)))
    # Hair: everything above a hairline, and the back of the head above the nape.
    hairline = HAIRLINE_Y + 0.004 * x ** 2 + 12.0 * _smoothstep(40.0, 62.0, np.abs(x))
    weights["hair_front"] = _smoothstep(hairline + 3.0, hairline - 3.0, y)
    back = _smoothstep(-10.0, 20.0, z) * _smoothstep(70.0, 40.0, y)
    side_above_ear = _smoothstep(55.0, 65.0, np.abs(x)) * _smoothstep(-5.0, -20.0, y)
    weights["hair"] = np.clip(np.maximum.reduce([weights["hair_front"], back, side_above_ear])
                              * (1.0 - front * _smoothstep(HAIRLINE_Y + 10, HAIRLINE_Y, -y)), 0, 1)
    weights["blush"] = _pair_gauss(x, y, 40.0, 32.0, 13.0, 11.0) * front
    return weights


def _assign_parts(vertices: np.ndarray, weights: dict, mouth_row_mask: np.ndarray) -> np.ndarray:
    x, y, z = vertices[:, 0], vertices[:, 1], vertices[:, 2]
    parts = np.full(vertices.shape[0], PART["skin"], np.uint8)
    # The face oval (MediaPipe-like): forehead to chin, cheek to cheek, front half only.
    oval = (((x / 68.0) ** 2 + ((y - 25.0) / 98.0) ** 2) <= 1.0) & (z < -18.0)
    parts[~oval] = PART["neck"]
    parts[(np.abs(x) > 60.0) & (y < 45.0) & (z > -30.0)] = PART["ear"]
    parts[weights["hair"] > 0.5] = PART["hair"]
    nose_region = (_nose_relief(x, y) > 3.0) & (np.abs(x) < 22.0) & (y > NASION_Y - 2.0) & (
        y < SUBNASALE_Y + 1.0) & oval
    parts[nose_region] = PART["nose"]
    parts[(weights["nostril"] > 0.5) & oval] = PART["nostril"]
    parts[(weights["brow"] > 0.5) & oval] = PART["brow"]
    parts[(weights["lip"] > 0.5) & oval] = PART["lip"]
    parts[mouth_row_mask & oval] = PART["mouth_interior"]
    eye = (weights["sclera"] > 0.5) & oval
    parts[eye] = PART["eye_white"]
    parts[eye & (weights["iris"] > 0.5)] = PART["iris"]
    parts[eye & (weights["pupil"] > 0.5)] = PART["pupil"]
    return parts


def _cavity(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Per-vertex concavity in [0, 1] (1 = deep crease) from the umbrella Laplacian."""
    num = vertices.shape[0]
    neighbour_sum = np.zeros_like(vertices)
    count = np.zeros(num)
    for a, b in ((0, 1), (1, 2), (2, 0), (1, 0), (2, 1), (0, 2)):
        np.add.at(neighbour_sum, triangles[:, a], vertices[triangles[:, b]])
        np.add.at(count, triangles[:, a], 1.0)
    laplacian = neighbour_sum / np.maximum(count, 1)[:, None] - vertices
    outward = vertices - RAY_ORIGIN
    outward /= np.maximum(np.linalg.norm(outward, axis=1, keepdims=True), 1e-9)
    concavity = -np.einsum("vk,vk->v", laplacian, outward)
    return np.clip(concavity / 1.2, 0.0, 1.0)


# ----------------------------------------------------------------------------- bases

def _identity_basis(vertices: np.ndarray, front: np.ndarray) -> np.ndarray:
    x, y, z = vertices[:, 0], vertices[:, 1], vertices[:, 2]
    zero = np.zeros_like(x)
    side = np.sign(x)
    nose_t = np.clip((y - NASION_Y) / (NOSE_TIP_Y - NASION_Y), 0.0, 1.0)
    nose_area = front * _smoothstep(28.0, 18.0, np.abs(x)) * _smoothstep(
        NASION_Y - 10, NASION_Y, y) * _smoothstep(SUBNASALE_Y + 10, SUBNASALE_Y, y)
    nose_lower = nose_area * _smoothstep(10.0, 30.0, y)
    eye_area = front * _pair_gauss(x, y, EYE_X, EYE_Y, 13.0, 10.0)
    eye_opening = front * _pair_gauss(x, y, EYE_X, EYE_Y, 15.0, 7.0)
    brow_area = front * _pair_gauss(x, y, 28.0, BROW_Y, 20.0, 7.0)
    upper_face = front * _smoothstep(55.0, 40.0, y)
    lower_face = _smoothstep(30.0, 60.0, y) * _smoothstep(0.0, -40.0, z)
    mouth_area = front * _gauss(x, y, 0.0, MOUTH_Y, 24.0, 10.0)
    chin_area = front * _gauss(x, y, 0.0, CHIN_Y, 20.0, 14.0)
    upper_lip = front * _gauss(x, y, 0.0, MOUTH_Y - 5.0, 20.0, 3.5)
    lower_lip = front * _gauss(x, y, 0.0, MOUTH_Y + 6.0, 18.0, 3.5)
    cheekbone = front * _pair_gauss(x, y, 48.0, 20.0, 14.0, 12.0)
    cheek = front * _pair_gauss(x, y, 40.0, 50.0, 14.0, 14.0)
    jaw_area = _smoothstep(35.0, 80.0, y) * _smoothstep(20.0, 50.0, np.abs(x)) * (z < 20)
    ear_area = _smoothstep(55.0, 68.0, np.abs(x)) * _smoothstep(-30.0, 0.0, z) * \
        _gauss(0.0, y, 0.0, 8.0, 1.0, 30.0)

    def field(dx=zero, dy=zero, dz=zero):
        return np.stack([dx + zero, dy + zero, dz + zero], axis=-1)

    modes = [
        field(dx=0.045 * x),                                                  # face_width
        field(dy=0.05 * y * _smoothstep(-5.0, 15.0, y)),                      # lower_face_length
        field(dy=0.05 * np.minimum(y, 0.0) * upper_face),                     # forehead_height
        field(dz=0.05 * np.maximum(z, 0.0)),                                  # head_depth
        field(dy=3.5 * nose_t * nose_area, dz=-1.0 * nose_t * nose_area),     # nose_length
        field(dx=0.12 * x * nose_lower),                                      # nose_width
        field(dz=-3.5 * nose_t ** 1.5 * nose_area),                          # nose_projection
        field(dz=-2.5 * np.sin(np.pi * nose_t) * nose_area * (nose_t < 1)),   # bridge_height
        field(dx=0.12 * x * front * _gauss(x, y, 0, NOSE_TIP_Y, 9, 7),        # nose_tip_size
              dz=-2.0 * front * _gauss(x, y, 0, NOSE_TIP_Y, 9, 7)),
        field(dx=2.5 * side * eye_area),                                     # eye_spacing
        field(dz=2.5 * eye_area),                                            # eye_depth
        field(dy=0.18 * (y - EYE_Y) * eye_opening),                          # eye_opening
        field(dy=2.5 * (eye_area + brow_area)),                              # eye_height
        field(dz=-2.5 * brow_area),                                          # brow_ridge
        field(dy=-2.5 * brow_area),                                          # brow_height
        field(dx=2.5 * side * cheekbone, dz=-2.0 * cheekbone),               # cheekbones
        field(dx=2.0 * side * cheek, dz=-3.0 * cheek),                       # cheek_fullness
        field(dx=0.08 * x * jaw_area),                                       # jaw_width
        field(dz=-4.0 * chin_area),                                          # chin_projection
        field(dy=4.0 * _smoothstep(MOUTH_Y + 8, CHIN_Y + 10, y) * lower_face),  # chin_length
        field(dx=0.12 * x * chin_area),                                      # chin_width
        field(dy=-1.2 * upper_lip + 1.2 * lower_lip,                         # lip_thickness
              dz=-1.5 * (upper_lip + lower_lip)),
        field(dx=0.1 * x * mouth_area),                                      # mouth_width
        field(dy=3.0 * mouth_area),                                          # mouth_height
        field(dz=-0.06 * np.minimum(y + 10.0, 0.0) * upper_face),            # forehead_slope
        field(dz=-0.0012 * x ** 2 * front * _smoothstep(70, 40, np.abs(x))),  # face_flatness
        field(dx=3.0 * side * ear_area),                                     # ear_offset
        field(dz=-2.0 * front * _gauss(x, y, 0, 12.0, 6.0, 6.0)),            # nose_hump
    ]
    # Residual modes: fixed random smooth bumps over the face for idiosyncratic shapes.
    rng = np.random.default_rng(20240601)
    for _ in range(8):
        bump = np.zeros_like(x)
        for _ in range(3):
            cx, cy = rng.uniform(-50, 50), rng.uniform(-50, 110)
            sx, sy = rng.uniform(10, 22), rng.uniform(10, 22)
            shape = _pair_gauss if rng.random() < 0.7 else _gauss   # mostly symmetric
            bump += rng.choice([-1.0, 1.0]) * shape(x, y, cx, cy, sx, sy)
        modes.append(field(dz=-1.5 * bump * front))
    basis = np.stack(modes).astype(np.float32)
    assert basis.shape[0] == len(IDENTITY_MODE_NAMES)
    return basis


def _expression_basis(vertices: np.ndarray, front: np.ndarray, rows: np.ndarray,
                      mouth_rows: np.ndarray) -> np.ndarray:
    x, y, z = vertices[:, 0], vertices[:, 1], vertices[:, 2]
    zero = np.zeros_like(x)
    side = np.sign(x)

    def field(dx=zero, dy=zero, dz=zero):
        return np.stack([dx + zero, dy + zero, dz + zero], axis=-1)

    corner = front * _pair_gauss(x, y, MOUTH_HALF_WIDTH, MOUTH_Y, 9.0, 9.0)
    mouth_area = front * _gauss(x, y, 0.0, MOUTH_Y, 26.0, 11.0)
    cheek_raise = front * _pair_gauss(x, y, 36.0, 36.0, 15.0, 13.0)
    smile = field(dx=3.5 * side * corner + 0.06 * x * mouth_area,
                  dy=-4.5 * corner - 2.0 * cheek_raise,
                  dz=2.5 * corner - 2.0 * cheek_raise)

    # Mouth open: the mandible rotates about the jaw hinge; the slit rows open the lips.
    below_slit = (rows > mouth_rows[1]).astype(np.float64)
    slit_middle = (rows == mouth_rows[1]).astype(np.float64)
    lateral = _smoothstep(MOUTH_HALF_WIDTH + 8.0, MOUTH_HALF_WIDTH - 2.0, np.abs(x))
    smooth_jaw = _smoothstep(MOUTH_Y - 8.0, MOUTH_Y + 20.0, y)
    jaw_weight = lateral * (below_slit + 0.5 * slit_middle) + (1 - lateral) * smooth_jaw
    jaw_weight *= _smoothstep(60.0, 35.0, np.abs(x)) * _smoothstep(40.0, 0.0, z)
    jaw_weight *= 1.0 - 0.7 * _smoothstep(CHIN_Y + 15.0, CHIN_Y + 60.0, y)  # neck stretches
    angle = 0.16  # radians of jaw drop at coefficient 1
    mouth_open = field(dy=-angle * (z - JAW_HINGE[2]) * jaw_weight,
                       dz=angle * (y - JAW_HINGE[1]) * jaw_weight
                       + 14.0 * slit_middle * lateral)

    brow_area = front * _pair_gauss(x, y, 28.0, BROW_Y - 4.0, 24.0, 12.0)
    forehead = front * _smoothstep(-5.0, -40.0, y) * _smoothstep(-90.0, -60.0, y)
    brow_raise = field(dy=-4.0 * brow_area - 1.5 * forehead)
    inner_brow = front * _pair_gauss(x, y, 16.0, BROW_Y, 12.0, 8.0)
    frown = field(dx=-2.5 * side * inner_brow, dy=3.0 * inner_brow, dz=-1.0 * inner_brow)
    lids = front * _pair_gauss(x, y, EYE_X, EYE_Y, 17.0, 9.0)
    squint = field(dy=-0.45 * (y - (EYE_Y + 1.2)) * lids
                   - 1.5 * front * _pair_gauss(x, y, EYE_X, EYE_Y + 10.0, 14.0, 6.0))
    puff_area = front * _pair_gauss(x, y, 34.0, 55.0, 15.0, 15.0)
    cheek_puff = field(dx=4.0 * side * puff_area, dz=-5.0 * puff_area)
    lips = front * _gauss(x, y, 0.0, MOUTH_Y, 22.0, 8.0)
    lip_pucker = field(dx=-0.25 * x * lips, dz=-5.0 * lips)
    basis = np.stack([smile, mouth_open, brow_raise, frown, squint, cheek_puff,
                      lip_pucker]).astype(np.float32)
    assert basis.shape[0] == len(EXPRESSION_MODE_NAMES)
    return basis


# ----------------------------------------------------------------------------- the builder

def build_parametric_head(dense_step_deg: float = 1.6) -> ParametricHead:
    """Builds the mean head mesh, its parts and its identity/expression bases.

    Args:
      dense_step_deg: grid step over the face (1.6 deg is about 2.7 mm on the face: ~10.5k
        vertices, ~21k triangles). Smaller is finer and slower.
    """
    theta = _axis_samples(-80.0, 80.0, dense_step_deg, -180.0, 180.0 - 8.0, 8.0)
    theta = theta[theta < 180.0 - 1e-6]
    phi = _axis_samples(-46.0, 62.0, dense_step_deg, -89.0, 89.0, 6.0)
    mouth_phi = _mouth_rows(dense_step_deg)
    phi = phi[np.abs(phi - mouth_phi[1]) > 0.55 * dense_step_deg]
    phi = np.sort(np.concatenate([phi, mouth_phi]))
    rows_count, cols_count = phi.size, theta.size
    theta_grid, phi_grid = np.meshgrid(theta, phi)
    directions = _ray_directions(theta_grid.ravel(), phi_grid.ravel())
    distances = _cast_rays(directions)
    vertices = RAY_ORIGIN + distances[:, None] * directions
    triangles = _orient_outward(vertices, _grid_triangles(rows_count, cols_count))

    rows = np.repeat(np.arange(rows_count), cols_count)
    mouth_rows = np.searchsorted(phi, mouth_phi)
    x = vertices[:, 0]
    in_slit = np.isin(rows, mouth_rows) & (np.abs(x) < MOUTH_HALF_WIDTH) & (vertices[:, 2] < -40)
    # Recess the slit: the middle row deepest, tapering toward the mouth corners.
    taper = np.clip(1.0 - (x / MOUTH_HALF_WIDTH) ** 2, 0.0, 1.0) ** 0.5
    recess = np.where(rows == mouth_rows[1], 5.0, 1.0) * taper * in_slit
    vertices = vertices + np.stack([np.zeros_like(x), np.zeros_like(x), recess], axis=-1)

    front = _smoothstep(-20.0, -45.0, vertices[:, 2])
    weights = _region_weights(vertices, in_slit)
    parts = _assign_parts(vertices, weights, in_slit)
    cavity = _cavity(vertices, triangles)
    # The three slit rows are nearly coincident: outside the mouth their Laplacian is noise.
    slit_rows = np.isin(rows, mouth_rows)
    cavity[slit_rows & ~in_slit] = 0.0
    weights["cavity"] = cavity

    landmark_vertices = _landmark_vertices(vertices, parts, rows, mouth_rows, in_slit)
    return ParametricHead(
        vertices=vertices.astype(np.float32),
        triangles=triangles,
        parts=parts,
        appearance_weights={k: v.astype(np.float32) for k, v in weights.items()},
        identity_basis=_identity_basis(vertices, front),
        expression_basis=_expression_basis(vertices, front, rows, mouth_rows),
        landmark_vertices=landmark_vertices,
        grid_shape=(rows_count, cols_count))


def _landmark_vertices(vertices, parts, rows, mouth_rows, in_slit) -> np.ndarray:
    """The 5 landmark vertices: eye centres (pupils), the most protruding nose vertex, and the
    ends of the middle mouth-slit row (so the corners follow the lips in expressions)."""
    front = vertices[:, 2] < -40.0
    eye_left = _nearest_xy(vertices, -EYE_X, EYE_Y - 0.3, front)
    eye_right = _nearest_xy(vertices, EYE_X, EYE_Y - 0.3, front)
    nose = np.flatnonzero(parts == PART["nose"])
    nose_tip = int(nose[np.argmin(vertices[nose, 2])])
    slit = np.flatnonzero(in_slit & (rows == mouth_rows[1]))
    mouth_left = int(slit[np.argmin(vertices[slit, 0])])
    mouth_right = int(slit[np.argmax(vertices[slit, 0])])
    return np.array([eye_left, eye_right, nose_tip, mouth_left, mouth_right], np.int64)


def _nearest_xy(vertices, x, y, candidates) -> int:
    """The candidate vertex nearest to (x, y) in the frontal plane."""
    index = np.flatnonzero(candidates)
    distance = np.hypot(vertices[index, 0] - x, vertices[index, 1] - y)
    return int(index[np.argmin(distance)])
