"""MediaPipe face preprocessing on a real photograph (skimage's astronaut) and the geometry."""
import pickle

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


def test_analyzer_pickles_without_mediapipe_graphs(astronaut, analyzer):
    clone = pickle.loads(pickle.dumps(analyzer))
    assert clone._solutions == {}
    assert clone.analyze(astronaut).num_faces == 1
    clone.close()
    assert clone._solutions == {}
