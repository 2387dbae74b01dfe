"""Occluder geometry attached to the head (model frame, mm): glasses, hands, scarves, fringes.

Occluders are ordinary triangle meshes rendered in the same z-buffer pass as the face, so RGB,
depth and mask stay consistent: an occluder is nearer than the face it hides, and its pixels get
its own mask class (background 0, except glasses frames and lenses: class 4).

All builders place their mesh relative to the identity's landmarks (``FaceModel.landmarks``),
so they work for any face model.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse

GLASSES_CLASS = 4
BACKGROUND_CLASS = 0


@dataclasses.dataclass(frozen=True)
class OccluderMesh:
    """One occluder.

    Attributes:
      name: what it is (``glasses_frame``, ``sunglasses``, ``hand``, ``scarf``, ``hair``).
      vertices: float32 [N, 3] model frame, mm.
      triangles: int32 [F, 3] outward winding (two-sided meshes hold both windings).
      albedo: float32 [N, 3] linear RGB.
      mask_class: uint8 [N] schema mask class of the occluder's pixels.
      normals: float32 [N, 3] unit normals used for shading.
    """

    name: str
    vertices: np.ndarray
    triangles: np.ndarray
    albedo: np.ndarray
    mask_class: np.ndarray
    normals: np.ndarray


def _vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    face_normals = np.cross(vertices[triangles[:, 1]] - vertices[triangles[:, 0]],
                            vertices[triangles[:, 2]] - vertices[triangles[:, 0]])
    normals = np.zeros_like(vertices)
    for corner in range(3):
        np.add.at(normals, triangles[:, corner], face_normals)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-9)


def _mesh(name, vertices, triangles, albedo, mask_class, normals=None) -> OccluderMesh:
    vertices = np.asarray(vertices, np.float32)
    triangles = np.asarray(triangles, np.int32)
    albedo = np.broadcast_to(np.asarray(albedo, np.float32), vertices.shape).copy()
    mask = np.broadcast_to(np.asarray(mask_class, np.uint8), vertices.shape[:1]).copy()
    if normals is None:
        normals = _vertex_normals(vertices.astype(np.float64), triangles)
    return OccluderMesh(name, vertices, triangles, albedo, mask, np.asarray(normals, np.float32))


def merge(meshes: list[OccluderMesh], name: str) -> OccluderMesh:
    """Concatenates meshes into one (triangle indices shifted)."""
    offsets = np.cumsum([0] + [m.vertices.shape[0] for m in meshes])
    return OccluderMesh(
        name=name,
        vertices=np.concatenate([m.vertices for m in meshes]),
        triangles=np.concatenate([m.triangles + o for m, o in zip(meshes, offsets)]),
        albedo=np.concatenate([m.albedo for m in meshes]),
        mask_class=np.concatenate([m.mask_class for m in meshes]),
        normals=np.concatenate([m.normals for m in meshes]))


def _two_sided(triangles: np.ndarray) -> np.ndarray:
    return np.concatenate([triangles, triangles[:, [0, 2, 1]]])


def _ribbon(path: np.ndarray, across: np.ndarray, width: float, closed: bool) -> tuple:
    """A strip of ``width`` mm centred on ``path`` [N, 3], spanning direction ``across`` [N, 3]."""
    count = path.shape[0]
    vertices = np.concatenate([path - 0.5 * width * across, path + 0.5 * width * across])
    segments = np.arange(count if closed else count - 1)
    following = (segments + 1) % count
    triangles = np.concatenate([
        np.stack([segments, following, segments + count], axis=-1),
        np.stack([following, following + count, segments + count], axis=-1)])
    return vertices, _two_sided(triangles)


def _unit_sphere(lat=7, lon=12) -> tuple:
    """A latitude/longitude unit sphere: (points [N, 3], triangles [F, 3])."""
    theta = np.linspace(0, np.pi, lat + 2)[1:-1]
    phi = np.linspace(0, 2 * np.pi, lon, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    unit = np.stack([np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)], axis=-1)
    unit = np.concatenate([unit.reshape(-1, 3), [[0, 1, 0], [0, -1, 0]]])
    rows, cols = lat, lon
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols), indexing="ij")
    a, b = r * cols + c, r * cols + (c + 1) % cols
    d, e = a + cols, b + cols
    triangles = [np.stack([a, d, b], -1).reshape(-1, 3), np.stack([b, d, e], -1).reshape(-1, 3)]
    pole_near_first_ring, pole_near_last_ring = rows * cols, rows * cols + 1
    first_ring, last_ring = np.arange(cols), (rows - 1) * cols + np.arange(cols)
    following = (np.arange(cols) + 1) % cols
    triangles.append(np.stack([np.full(cols, pole_near_first_ring), first_ring,
                               first_ring[following]], -1))
    triangles.append(np.stack([np.full(cols, pole_near_last_ring), last_ring[following],
                               last_ring], -1))
    triangles = np.concatenate(triangles)
    # Orient outward (an affine map with positive determinant keeps the orientation).
    v0, v1, v2 = (unit[triangles[:, k]] for k in range(3))
    outward = np.einsum("fk,fk->f", np.cross(v1 - v0, v2 - v0), v0 + v1 + v2)
    return unit, np.where((outward < 0)[:, None], triangles[:, [0, 2, 1]], triangles)


def _ellipsoid(sphere: tuple, centre, radii, rotation) -> tuple:
    """An ellipsoid mesh from a unit sphere: (vertices [N, 3], triangles, unit normals [N, 3])."""
    unit, triangles = sphere
    vertices = (unit * radii) @ rotation.T + centre
    normals = (unit / np.asarray(radii) ** 2) @ rotation.T
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return vertices, triangles, normals


def _rotation_z(angle_rad: float) -> np.ndarray:
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def glasses(landmarks: np.ndarray, temple_half_width: float, rng: np.random.Generator,
            sunglasses: bool) -> OccluderMesh:
    """Eyeglass frames (rims, bridge, temples) and, for sunglasses, dark opaque lenses.

    Args:
      landmarks: float [5, 3] the identity's neutral landmarks (model frame).
      temple_half_width: |x| of the side of the head at eye level (the temples end there).
      rng: chooses the shape and colour.
      sunglasses: add opaque dark lenses.
    """
    half_width = rng.uniform(22.0, 27.0)
    half_height = rng.uniform(15.0, 20.0) if not sunglasses else rng.uniform(18.0, 23.0)
    exponent = rng.uniform(2.2, 4.0)
    frame_width = rng.uniform(1.6, 3.5)
    frame_colour = np.power(rng.choice([[0.05, 0.05, 0.05], [0.25, 0.15, 0.08],
                                        [0.55, 0.55, 0.58], [0.45, 0.1, 0.1]]), 2.2)
    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    cos, sin = np.cos(angles), np.sin(angles)
    superellipse = np.stack([np.sign(cos) * np.abs(cos) ** (2 / exponent),
                             np.sign(sin) * np.abs(sin) ** (2 / exponent)], axis=-1)
    parts = []
    eye_z = min(landmarks[0, 2], landmarks[1, 2])
    rim_inner_points = []
    for eye in (landmarks[0], landmarks[1]):
        centre = np.array([eye[0], eye[1] + 2.0, eye_z - 14.0])
        ring = np.zeros((angles.size, 3))
        ring[:, 0] = centre[0] + half_width * superellipse[:, 0]
        ring[:, 1] = centre[1] + half_height * superellipse[:, 1]
        ring[:, 2] = centre[2] + 0.12 * (np.abs(ring[:, 0]) - abs(centre[0]))  # wrap
        outward = ring - centre
        outward[:, 2] = 0.0
        outward /= np.maximum(np.linalg.norm(outward, axis=1, keepdims=True), 1e-9)
        vertices, triangles = _ribbon(ring, outward, frame_width, closed=True)
        parts.append(_mesh("glasses_frame", vertices, triangles, frame_colour, GLASSES_CLASS))
        if sunglasses:
            lens = np.concatenate([[centre + [0, 0, 0.3]], ring + [0, 0, 0.3]])
            fan = np.stack([np.zeros(angles.size, int), 1 + np.arange(angles.size),
                            1 + (np.arange(angles.size) + 1) % angles.size], axis=-1)
            tint = np.power(rng.uniform(0.02, 0.12, 3), 1.0)
            normals = np.tile([0.0, 0.0, -1.0], (lens.shape[0], 1))
            parts.append(_mesh("sunglasses", lens, _two_sided(fan), tint, GLASSES_CLASS,
                               normals))
        inner = ring[np.argmin(np.abs(ring[:, 0]))]
        outer = ring[np.argmax(np.abs(ring[:, 0]))]
        rim_inner_points.append((inner, outer))
    (inner_left, outer_left), (inner_right, outer_right) = rim_inner_points
    bridge_y = min(inner_left[1], inner_right[1]) - 0.2 * half_height
    bridge = np.array([[inner_left[0], bridge_y, inner_left[2]],
                       [0.0, bridge_y - 2.0, inner_left[2] - 2.0],
                       [inner_right[0], bridge_y, inner_right[2]]])
    vertices, triangles = _ribbon(bridge, np.tile([0.0, 1.0, 0.0], (3, 1)), frame_width, False)
    parts.append(_mesh("glasses_frame", vertices, triangles, frame_colour, GLASSES_CLASS))
    for outer in (outer_left, outer_right):
        side = np.sign(outer[0])
        start = outer + [0, -0.3 * half_height, 0]
        end = np.array([side * (temple_half_width + 2.0), start[1] + 4.0, 15.0])
        path = np.linspace(start, end, 6)
        path[1:, 0] = np.maximum(np.abs(path[1:, 0]), abs(start[0])) * side
        vertices, triangles = _ribbon(path, np.tile([0.0, 1.0, 0.0], (6, 1)),
                                      frame_width * 1.2, False)
        parts.append(_mesh("glasses_frame", vertices, triangles, frame_colour, GLASSES_CLASS))
    return merge(parts, "sunglasses" if sunglasses else "glasses_frame")


def hand(landmarks: np.ndarray, skin_albedo: np.ndarray, rng: np.random.Generator
         ) -> OccluderMesh:
    """A hand (palm, four fingers and a thumb) held in front of part of the face."""
    eye_left, eye_right, nose, mouth_left, mouth_right = landmarks
    mouth = (mouth_left + mouth_right) / 2
    targets = [eye_left, eye_right, mouth, nose, (eye_left + mouth_left) / 2,
               (eye_right + mouth_right) / 2]
    target = targets[rng.integers(0, len(targets))]
    palm_centre = target + np.array([rng.uniform(-12, 12), rng.uniform(10, 40), 0.0])
    palm_centre[2] = nose[2] - rng.uniform(12.0, 30.0)
    in_plane = rng.uniform(-0.7, 0.7) + (np.pi if rng.random() < 0.25 else 0.0)
    rotation = _rotation_z(in_plane)
    pieces = [(np.zeros(3), np.array([38.0, 44.0, 12.0]), np.eye(3))]
    for finger, spread in enumerate((-0.25, -0.08, 0.08, 0.25)):
        length = (29.0, 34.0, 35.0, 31.0)[finger]
        x_base = (-24.0, -8.0, 8.0, 24.0)[finger]
        finger_rotation = _rotation_z(spread)
        centre = np.array([x_base, -44.0 - 0.8 * length, -1.0])
        centre[:2] = (finger_rotation @ (centre - [x_base, -40.0, 0]))[:2] + [x_base, -40.0]
        pieces.append((centre, np.array([8.5, length, 8.0]), finger_rotation))
    side = rng.choice([-1.0, 1.0])
    pieces.append((np.array([side * 42.0, 5.0, -3.0]), np.array([9.5, 27.0, 9.0]),
                   _rotation_z(side * 0.9)))
    colour = skin_albedo * rng.uniform(0.88, 1.05)
    meshes = []
    sphere = _unit_sphere()
    for centre, radii, local_rotation in pieces:
        vertices, triangles, normals = _ellipsoid(sphere, np.zeros(3), radii, local_rotation)
        vertices = (vertices + centre) @ rotation.T + palm_centre
        normals = normals @ rotation.T
        meshes.append(_mesh("hand", vertices, triangles, colour, BACKGROUND_CLASS, normals))
    return merge(meshes, "hand")


def shell(vertices: np.ndarray, normals: np.ndarray, triangles: np.ndarray,
          region: np.ndarray, thickness: np.ndarray | float, smooth_depth_iterations: int,
          name: str, albedo, mask_class: int) -> OccluderMesh:
    """A layer over part of the head (fringe, scarf): the head triangles whose three vertices
    are in ``region`` [V] bool, offset ``thickness`` mm along the normals; its depth relief is
    smoothed ``smooth_depth_iterations`` times (never behind the offset surface).

    ``albedo`` is [3] or [V, 3] over the head vertices.
    """
    chosen = triangles[region[triangles[:, 0]] & region[triangles[:, 1]]
                       & region[triangles[:, 2]]]
    used, local = np.unique(chosen, return_inverse=True)
    local = local.reshape(-1, 3)
    thickness = np.broadcast_to(np.asarray(thickness, np.float64), region.shape)[used]
    positions = vertices[used] + normals[used] * thickness[:, None]
    if smooth_depth_iterations and used.size:
        edge_start, edge_end = local.ravel(), local[:, [1, 2, 0]].ravel()
        adjacency = scipy.sparse.coo_matrix(
            (np.ones(local.size * 2), (np.concatenate([edge_start, edge_end]),
                                       np.concatenate([edge_end, edge_start]))),
            shape=(used.size, used.size)).tocsr()
        degree = np.maximum(np.asarray(adjacency.sum(axis=1)).ravel(), 1.0)
        depth = positions[:, 2].copy()
        for _ in range(smooth_depth_iterations):
            depth = np.minimum(adjacency @ depth / degree, positions[:, 2] + 6.0)
        positions[:, 2] = np.minimum(depth, vertices[used, 2] - 1.0)
    albedo = np.asarray(albedo, np.float32)
    albedo = albedo[used] if albedo.ndim == 2 else albedo
    return _mesh(name, positions, local, albedo, mask_class, normals[used])


def hair_fringe(vertices, normals, triangles, landmarks, hair_albedo, rng) -> OccluderMesh:
    """A fringe of hair over the forehead with a jagged lower edge (mask class 0)."""
    x, y = vertices[:, 0], vertices[:, 1]
    eye_y = 0.5 * (landmarks[0, 1] + landmarks[1, 1])
    eye_distance = abs(landmarks[1, 0] - landmarks[0, 0])
    lower_edge = eye_y - rng.uniform(14.0, 24.0) + rng.uniform(-6, 6) * (x / 60.0)
    phase, frequency = rng.uniform(0, 2 * np.pi), rng.uniform(0.25, 0.45)
    lower_edge = lower_edge + 4.0 * np.abs(np.sin(frequency * x + phase))
    front = vertices[:, 2] < landmarks[2, 2] + 75.0
    region = (y < lower_edge) & (np.abs(x) < 1.15 * eye_distance) & front
    strands = 1.0 + 0.12 * np.sin(1.3 * x + phase)[:, None]
    return shell(vertices, normals, triangles, region, rng.uniform(2.5, 5.0), 0, "hair",
                 hair_albedo * strands, BACKGROUND_CLASS)


def scarf(vertices, normals, triangles, landmarks, rng) -> OccluderMesh:
    """A scarf over the mouth, chin and neck (mask class 0)."""
    x, y = vertices[:, 0], vertices[:, 1]
    nose_y = landmarks[2, 1]
    mouth_y = 0.5 * (landmarks[3, 1] + landmarks[4, 1])
    top = nose_y + rng.uniform(0.0, 0.7) * (mouth_y - nose_y) + 3.0 * np.cos(x / 25.0)
    region = (y > top) & (vertices[:, 2] < landmarks[2, 2] + 110.0) & (y < mouth_y + 150.0)
    colours = np.power(rng.uniform(0.05, 0.9, (2, 3)), 2.2)
    stripes = (np.sin(y / rng.uniform(3.0, 9.0)) > 0)[:, None]
    albedo = np.where(stripes, colours[0], colours[1]) if rng.random() < 0.6 else \
        np.broadcast_to(colours[0], (vertices.shape[0], 3))
    return shell(vertices, normals, triangles, region, rng.uniform(7.0, 12.0), 12, "scarf",
                 albedo, BACKGROUND_CLASS)
