"""MediaPipe face preprocessing on a real photograph (skimage's astronaut), a group photo made
from it, and the geometry."""
import pickle

import cv2
import numpy as np
import pytest

skimage_data = pytest.importorskip("skimage.data")

from tf_rgbd.data import faces  # noqa: E402
from tf_rgbd.data.errors import SkipExample  # noqa: E402


@pytest.fixture(scope="module")
def astronaut():
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def analyzer():
    with faces.FaceAnalyzer(faces.FaceConfig()) as face_analyzer:
        yield face_analyzer


# Head crops of the astronaut at four sizes side by side: faces of ~125, 99, 70 and 48 px
# (16%, 12%, 9% and 6% of the canvas width), like people at different distances.
GROUP_TILE_SIDES = (300, 200, 150, 120)


def group_photo() -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """(uint8 [320, 800, 3] RGB canvas, tiles (x, y, side) in pixels, largest first)."""
    head = skimage_data.astronaut()[20:240, 120:340]
    canvas = np.full((320, 800, 3), 90, np.uint8)
    tiles, x = [], 0
    for side in GROUP_TILE_SIDES:
        y = (canvas.shape[0] - side) // 2
        canvas[y:y + side, x:x + side] = cv2.resize(head, (side, side),
                                                    interpolation=cv2.INTER_AREA)
        tiles.append((x, y, side))
        x += side + 8
    return canvas, tiles


def _in_tile(detection, tile) -> bool:
    x, y, side = tile
    bx, by, bw, bh = detection.box
    return x <= bx + bw / 2 <= x + side and y <= by + bh / 2 <= y + side


def _detection(side, x=0.0, score=0.9):
    return faces.FaceDetection(box=(x, 0.0, side, side), score=score, keypoints=np.zeros((6, 2)))


def test_similarity_transform_recovers_a_known_warp():
    angle, scale, shift = np.radians(17.0), 1.7, np.array([12.0, -4.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    source = faces.ARCFACE_TEMPLATE_112
    target = source @ (scale * rotation).T + shift
    matrix = faces.similarity_transform(source, target)
    np.testing.assert_allclose(matrix, np.concatenate([scale * rotation, shift[:, None]], 1),
                               atol=1e-9)


def test_one_face_found_and_aligned_eyes_on_the_template(astronaut, analyzer):
    analysis = analyzer.analyze(astronaut, "astronaut")
    assert analysis.num_faces == 1 and analysis.mesh is not None
    assert analysis.mesh.shape == (478, 2)
    x, y, w, h = analysis.detection.box
    # Landmarks in the detected box, image-left eye first.
    assert np.all((analysis.landmarks5[:, 0] > x) & (analysis.landmarks5[:, 0] < x + w))
    assert analysis.landmarks5[0, 0] < analysis.landmarks5[1, 0]
    aligned = faces.align_face(astronaut, analysis.landmarks5, 112, mesh=analysis.mesh)
    eye_error = np.linalg.norm(aligned.landmarks5[:2] - faces.ARCFACE_TEMPLATE_112[:2], axis=1)
    assert eye_error.max() < 4.0, eye_error
    # Pseudo segmentation: every class but glasses, in plausible places.
    mask = aligned.mask
    assert set(np.unique(mask)) == {0, 1, 2, 3, 5, 6}
    rows, cols = np.nonzero(mask == faces.MASK_EYES)
    assert abs(rows.mean() - 51.6) < 6
    mouth_rows, _ = np.nonzero(mask == faces.MASK_MOUTH)
    assert abs(mouth_rows.mean() - 92.3) < 8
    assert 0.25 < (mask > 0).mean() < 0.8


def test_depthnet_crop_is_looser_and_depth_follows_the_warp(astronaut):
    depth = np.zeros(astronaut.shape[:2], np.float32)
    depth[100:200, 150:300] = 800.0        # a box around the face, with a hole
    depth[140:150, 200:210] = 0.0
    preprocess = faces.FacePreprocessor(faces.FaceConfig(image_size=64, crop="depthnet"))
    tight = faces.FacePreprocessor(faces.FaceConfig(image_size=64))
    loose = preprocess(astronaut, depth)
    aligned = tight(astronaut)
    eye_distance = lambda a: np.linalg.norm(a.landmarks5[1] - a.landmarks5[0])  # noqa: E731
    assert eye_distance(loose) == pytest.approx(faces.DEPTHNET_CROP_TIGHTNESS *
                                                eye_distance(aligned), rel=0.05)
    # Nearest-neighbour depth: only the original values, and the hole survives.
    assert set(np.unique(loose.depth)) == {0.0, 800.0}
    hole = faces.transform_points(loose.matrix, np.array([[205.0, 145.0]]))[0]
    assert loose.depth[int(round(hole[1])), int(round(hole[0]))] == 0.0
    preprocess.close()
    tight.close()


def test_no_face_tiny_face_and_multiple_faces_are_skips(astronaut, analyzer):
    rng = np.random.default_rng(0)
    with pytest.raises(SkipExample) as error:
        analyzer.analyze(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), "noise")
    assert error.value.reason == "no_face"
    small = faces.FaceAnalyzer(faces.FaceConfig(min_face_px=200))
    with pytest.raises(SkipExample) as error:
        small.analyze(astronaut, "astronaut")
    assert error.value.reason == "tiny_face"
    small.close()
    face = astronaut[60:200, 160:300]
    twins = np.concatenate([face, face], axis=1)
    with pytest.raises(SkipExample) as error:
        analyzer.analyze(twins, "twins")
    assert error.value.reason == "multiple_faces"
    # The message says why (the ratio and its flag) and never suggests the current setting.
    assert "--ambiguous_face_ratio=0.8" in error.value.message
    assert "--multiple_faces=largest" not in error.value.message


def test_analyzer_pickles_without_mediapipe_graphs(astronaut, analyzer):
    clone = pickle.loads(pickle.dumps(analyzer))
    assert clone._solutions == {}
    assert clone.analyze(astronaut).num_faces == 1
    clone.close()
    assert clone._solutions == {}


def test_group_photo_auto_runs_both_models_and_finds_every_face(analyzer):
    """Measured on this canvas: short range finds 1 of the 4 faces (the largest), full range
    all 4; ``auto`` (both, merged by non-maximum suppression) finds the 4, each once. Before,
    ``auto`` ran full range only when short range found nothing, and so found 1."""
    photo, tiles = group_photo()
    found = analyzer.detect(photo)
    assert len(found) == len(tiles), [d.box for d in found]
    short = analyzer.detect(photo, detector="short")
    assert 1 <= len(short) < len(tiles), [d.box for d in short]
    assert [sum(_in_tile(d, tile) for d in found) for tile in tiles] == [1, 1, 1, 1]
    assert all(_in_tile(found[k], tiles[k]) for k in range(len(tiles)))   # largest first
    # largest: the biggest face (the second has ~0.6x its area: not ambiguous).
    analysis = analyzer.analyze(photo, "group")
    assert analysis.num_faces == 4 and _in_tile(analysis.detection, tiles[0])
    # all: every face, each with its own landmarks on its own face.
    every = analyzer.analyze_all(photo, "group")
    assert [a.face_index for a in every] == [0, 1, 2, 3]
    for one, tile in zip(every, tiles):
        x, y, side = tile
        assert np.all((one.landmarks5 >= (x, y)) & (one.landmarks5 <= (x + side, y + side)))
        aligned = faces.align_face(photo, one.landmarks5, 112)
        eye_error = np.abs(aligned.landmarks5[:2] - faces.ARCFACE_TEMPLATE_112[:2]).max()
        assert eye_error < 4.0, (tile, eye_error)


def test_non_max_suppression_merges_the_two_models_boxes():
    near = _detection(100, 0.0, score=0.8)
    same_face = faces.FaceDetection(box=(5.0, -3.0, 110, 110), score=0.9,
                                    keypoints=np.zeros((6, 2)))
    other = _detection(40, 300.0, score=0.6)
    assert faces.box_iou(near.box, same_face.box) > 0.7
    kept = faces.non_max_suppression([near, other, same_face], iou_threshold=0.3)
    assert kept == [same_face, other]        # the higher score wins; largest first


def test_multiple_faces_policy_says_the_ratio_and_suggests_other_settings():
    two = [_detection(100), _detection(95, 200.0)]      # second/largest area 0.9025
    with pytest.raises(SkipExample) as error:
        faces.subject_face(two, faces.FaceConfig(), "p.jpg")
    message = error.value.message
    assert error.value.reason == "multiple_faces"
    assert message.startswith("p.jpg: 2 faces") and "0.90x" in message
    assert "--ambiguous_face_ratio=0.8" in message and "--multiple_faces=all" in message
    assert "--multiple_faces=largest" not in message      # it is the current setting
    assert faces.subject_face(two, faces.FaceConfig(ambiguous_face_ratio=0.95)) is two[0]
    with pytest.raises(SkipExample) as error:
        faces.subject_face(two, faces.FaceConfig(multiple_faces="skip"), "p.jpg")
    assert "--multiple_faces=largest" in error.value.message
    assert "use --multiple_faces=skip" not in error.value.message
    every = faces.FaceConfig(multiple_faces="all")
    assert faces.subject_face(two, every) is two[0]
    assert faces.every_usable_face(two, every) == [(0, two[0]), (1, two[1])]
    assert faces.every_usable_face(two, faces.FaceConfig(multiple_faces="all",
                                                         min_face_px=98)) == [(0, two[0])]
    for config, reason in ((faces.FaceConfig(multiple_faces="all", min_face_px=200), "tiny_face"),
                           (every, "no_face")):
        with pytest.raises(SkipExample) as error:
            faces.every_usable_face(two if reason == "tiny_face" else [], config)
        assert error.value.reason == reason
    with pytest.raises(ValueError, match="ambiguous_face_ratio"):
        faces.FaceConfig(ambiguous_face_ratio=0.0)
