"""The dynamic face crop (w = f_x R_x / D) centred on the face, registration, calibration files
and pose angles."""
import functools

import cv2
import numpy as np
import pytest

from tf_rgbd.testing import format_writers as writers
from tf_rgbd.data import faces, geometry, kinect
from tf_rgbd.data.sources import scan
from tf_rgbd.data.synthetic import parametric_head
from tf_rgbd.data.geometry import CameraIntrinsics
from tf_rgbd.data.errors import SkipExample

CAMERA = CameraIntrinsics(fx=290.0, fy=290.0, cx=159.5, cy=119.5)


def test_crop_box_follows_the_formula():
    x, y, w, h = kinect.face_crop_box((160.0, 120.0), 1000.0, CAMERA, 200.0, 250.0)
    assert (w, h) == pytest.approx((290.0 * 200 / 1000, 290.0 * 250 / 1000))
    assert (x + w / 2 - 0.5, y + h / 2 - 0.5) == pytest.approx((160.0, 120.0))
    with pytest.raises(SkipExample):
        kinect.face_crop_box((1, 1), 0.0, CAMERA)


def test_same_face_size_whatever_the_distance():
    """A head at 700 mm and at 1400 mm gives nearly the same crop (the point of the method)."""
    config = kinect.FaceCropConfig(image_size=64, face_width_mm=220, face_height_mm=220)
    crops = []
    for distance in (700.0, 1400.0):
        depth, rgb = writers.kinect_frame(distance, CAMERA, 240, 320)
        centre_mm = np.array([0.0, 20.0, distance - 60.0])
        u, v = CAMERA.project(centre_mm[None])[0]
        crops.append(kinect.crop_face(depth, CAMERA, (u, v), centre_mm[2], config, rgb=rgb))
    near, far = (crop.depth > 0 for crop in crops)
    iou = (near & far).sum() / (near | far).sum()
    assert iou > 0.9, iou
    relief_near = crops[0].depth - crops[0].distance_mm
    relief_far = crops[1].depth - crops[1].distance_mm
    both = near & far
    assert np.median(np.abs(relief_near[both] - relief_far[both])) < 3.0


def test_depth_only_locator_finds_the_head():
    depth, _ = writers.kinect_frame(900.0, CAMERA, 240, 320, offset_mm=(80.0, 0.0))
    (u, v), distance = kinect.locate_head_in_depth(depth, CAMERA, 200.0)
    expected_u = CAMERA.project(np.array([[80.0, 0.0, 900.0]]))[0, 0]
    assert abs(u - expected_u) < 8 and 750 < distance < 900


def test_calibration_round_trip_and_registration(tmp_path):
    rotation = geometry.rotation_matrix(2.0, -1.0, 0.5)
    translation = np.array([25.0, -3.0, 1.0])
    path = str(tmp_path / "rgb.cal")
    writers.write_calibration(path, CAMERA, rotation, translation, 320, 240)
    calibration = kinect.read_calibration(path)
    k = calibration.intrinsics
    assert (k.fx, k.fy, k.cx, k.cy) == pytest.approx((290.0, 290.0, 159.5, 119.5))
    np.testing.assert_allclose(calibration.rotation, rotation, atol=1e-8)
    np.testing.assert_allclose(calibration.translation, translation)
    (tmp_path / "bad.cal").write_text("1 2\n")
    with pytest.raises(SkipExample, match="bad.cal"):
        kinect.read_calibration(str(tmp_path / "bad.cal"))
    # Registration with the identity is a no-op on valid pixels.
    small = CAMERA.scaled(0.5)
    depth, _ = writers.kinect_frame(900.0, small, 120, 160)
    same = kinect.register_depth_to_color(depth, small, small, np.eye(3), np.zeros(3),
                                          depth.shape, fill_holes_px=0)
    np.testing.assert_allclose(same, depth, atol=1e-3)


@pytest.mark.parametrize("angles", [(20.0, -10.0, 5.0), (-45.0, 30.0, -15.0), (0.0, 0.0, 0.0)])
def test_pose_angles_invert_rotation_matrix(angles):
    recovered = kinect.pose_angles_from_rotation(geometry.rotation_matrix(*angles))
    assert recovered == pytest.approx(angles, abs=1e-9)


# ----- crops centred on the face: a long face keeps its chin -----------------------------------

# lower_face_length and chin_length +1.5: the chin (menton) 126 mm below the eyes (mean 111).
LONG_FACE_MODES = {"lower_face_length": 1.5, "chin_length": 1.5}
HEAD_DISTANCE_MM = 900.0


@functools.lru_cache(maxsize=1)
def _long_face_scene():
    """(depth, rgb, landmarks float [6, 3] camera-frame mm: eyes, nose tip, mouth corners,
    chin) of a long-faced parametric head whose centre (the model origin: eye height, ear
    depth) is HEAD_DISTANCE_MM in front of CAMERA."""
    head = writers.known_head()
    vertices = head.vertices.astype(np.float64)
    for name, weight in LONG_FACE_MODES.items():
        vertices = vertices + weight * head.identity_basis[
            parametric_head.IDENTITY_MODE_NAMES.index(name)]
    # The mesh's top pole is drawn out into a ~140 mm column above the head (a meshing
    # artefact of the parametric head); a real head has none.
    triangles = head.triangles[(vertices[head.triangles, 1] > -140.0).all(axis=1)]
    landmarks = vertices[head.landmark_vertices]
    chin_front = ((np.abs(vertices[:, 0]) < 10) & (vertices[:, 2] < landmarks[2, 2] + 60)
                  & (head.parts == parametric_head.PART["skin"]))
    chin = vertices[chin_front][np.argmax(vertices[chin_front, 1])]
    assert chin[1] - landmarks[0, 1] >= 120.0          # a long face
    offset = np.array([0.0, 0.0, HEAD_DISTANCE_MM])
    mesh = scan.TexturedScan(vertices=vertices + offset, triangles=triangles.astype(np.int64),
                             vertex_colors=writers.PART_COLORS[head.parts])
    depth, rgb = writers.render_camera(mesh, CAMERA, 240, 320)
    return depth, rgb, np.concatenate([landmarks, chin[None]]) + offset


def _inside_crop(crop, points_mm) -> np.ndarray:
    """Which points project inside the crop box (bool [N])."""
    x, y, w, h = crop.box
    uv = CAMERA.project(points_mm) + 0.5           # pixel centres -> box coordinates
    return np.all((uv >= (x, y)) & (uv <= (x + w, y + h)), axis=1)


@pytest.fixture(scope="module")
def analyzer():
    with faces.FaceAnalyzer() as face_analyzer:
        yield face_analyzer


def test_depth_only_locator_keeps_a_long_face_inside_the_crop():
    depth, _, landmarks = _long_face_scene()
    centre, distance = kinect.locate_head_in_depth(depth, CAMERA, 200.0)
    crop = kinect.crop_face(depth, CAMERA, centre, distance, kinect.FaceCropConfig(64))
    inside = _inside_crop(crop, landmarks)
    assert inside.all(), (inside, crop.box)
    nose_v = CAMERA.project(landmarks[2:3])[0, 1]
    assert abs(centre[1] - nose_v) < 3.0            # centred at the nose tip's height


@pytest.mark.parametrize("locator", ["annotation", "mediapipe"])
def test_long_face_keeps_every_landmark_inside_the_crop(locator, request):
    depth, rgb, landmarks = _long_face_scene()
    config = kinect.FaceCropConfig(image_size=64)
    head_centre = np.array([0.0, 0.0, HEAD_DISTANCE_MM])
    if locator == "annotation":      # Biwi: the annotated head centre and rotation
        # The paper's box around the head centre itself cuts this chin.
        u, v = CAMERA.project(head_centre[None])[0]
        centred_on_head = kinect.crop_face(depth, CAMERA, (u, v), head_centre[2], config)
        assert not _inside_crop(centred_on_head, landmarks)[-1]
        face = kinect.face_centre_from_head_centre(head_centre, np.eye(3))
        location = kinect.FaceLocation(tuple(CAMERA.project(face[None])[0]), face[2],
                                       "annotation")
    else:   # Pandora / Lock3DFace: MediaPipe on the RGB frame, the box sized from the mesh
        location = kinect.locate_face(request.getfixturevalue("analyzer"), rgb, depth, CAMERA,
                                      config, "long face")
        assert location.method == "mediapipe" and location.mesh is not None
    crop = kinect.crop_face(depth, CAMERA, location.center_uv, location.distance_mm, config,
                            rgb=rgb, landmarks_uv=location.landmarks_uv)
    inside = _inside_crop(crop, landmarks)
    assert inside.all(), (locator, inside, crop.box)
    # Never smaller than the paper's w = f R / D.
    assert crop.box[2] >= CAMERA.fx * 200.0 / location.distance_mm - 1e-6


def test_crop_box_grows_to_hold_the_landmarks():
    formula = kinect.face_crop_box((160.0, 120.0), 1000.0, CAMERA, 200.0, 200.0)
    small = np.array([[150.0, 110.0], [170.0, 130.0]])
    assert kinect.face_crop_box((0.0, 0.0), 1000.0, CAMERA, landmarks_uv=small)[2:] == \
        pytest.approx(formula[2:])
    tall = np.array([[150.0, 60.0], [170.0, 140.0]])     # 80 px tall, the box is 58 px
    x, y, w, h = kinect.face_crop_box((0.0, 0.0), 1000.0, CAMERA, landmarks_uv=tall, margin=0.1)
    assert h == pytest.approx(80.0 * 1.2) and w == pytest.approx(h)   # aspect kept
    assert (x + w / 2, y + h / 2) == pytest.approx((160.5, 100.5))


# ----- registration adds no depth that was never measured --------------------------------------

def _frame_with_holes():
    """(depth with single-pixel dropouts inside the head, the dropouts, the camera)."""
    depth, _ = writers.kinect_frame(HEAD_DISTANCE_MM, CAMERA, 240, 320)
    interior = cv2.erode((depth > 0).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    rows, cols = np.indices(depth.shape)
    holes = interior & (rows % 6 == 0) & (cols % 6 == 0)
    assert holes.sum() > 50
    return np.where(holes, 0.0, depth).astype(np.float32), holes, CAMERA


def test_identity_registration_fills_no_measured_hole():
    depth, holes, small = _frame_with_holes()
    same = kinect.register_depth_to_color(depth, small, small, np.eye(3), np.zeros(3),
                                          depth.shape)      # default fill_holes_px=1
    np.testing.assert_array_equal(same, depth)
    assert (same[holes] == 0).all()


def test_reprojection_holes_are_filled_measured_holes_are_kept():
    depth, holes, small = _frame_with_holes()
    zoomed = CameraIntrinsics(fx=small.fx * 1.5, fy=small.fy * 1.5, cx=small.cx, cy=small.cy)
    raw = kinect.register_depth_to_color(depth, small, zoomed, np.eye(3), np.zeros(3),
                                         depth.shape, fill_holes_px=0)
    filled = kinect.register_depth_to_color(depth, small, zoomed, np.eye(3), np.zeros(3),
                                            depth.shape, fill_holes_px=1)
    # The face interior, away from the dropouts: speckled by the 1.5x magnification, then whole.
    rows, cols = np.nonzero(holes)
    depth_at_holes, _ = writers.kinect_frame(HEAD_DISTANCE_MM, CAMERA, 240, 320)
    depth_at_holes = depth_at_holes[rows, cols]
    hole_uv = zoomed.project(small.unproject(cols, rows, depth_at_holes))
    near_hole = np.zeros(depth.shape, bool)
    for u, v in np.rint(hole_uv).astype(int):
        near_hole[v - 2:v + 3, u - 2:u + 3] = True
    interior = cv2.erode((filled > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    interior &= ~near_hole
    assert (raw[interior] == 0).mean() > 0.1
    assert (filled[interior] == 0).sum() == 0
    # Every dropout stays a hole where it lands (its colour pixel back-projects onto it).
    assert (filled[np.rint(hole_uv[:, 1]).astype(int), np.rint(hole_uv[:, 0]).astype(int)]
            == 0).all()
    # Filled depths are copies of measured neighbours: never outside the measured range.
    assert filled[filled > 0].min() >= depth[depth > 0].min()
