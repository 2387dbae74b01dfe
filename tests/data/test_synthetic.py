"""Tests of the embedded synthetic RGB-D face generator (tf_rgbd.data.synthetic)."""
import dataclasses
import os

import cv2
import numpy as np
import pytest

from tf_rgbd.data import preview, schema, synthetic
from tf_rgbd.data.synthetic import plan
from tf_rgbd.data.synthetic.config import SyntheticConfig

SIZE = 64
EYES, GLASSES, NOSE, MOUTH, BROWS, SKIN = 3, 4, 5, 6, 2, 1


@pytest.fixture(scope="module")
def model():
    return synthetic.FaceModel.parametric()


@pytest.fixture(scope="module")
def config():
    return SyntheticConfig(num_identities=6, images_per_identity=8, image_size=SIZE, seed=5,
                           glasses_fraction=0.0)


def _render(model, config, spec):
    return synthetic.SyntheticRenderer(model, config).render(spec)


def _gallery(config, identity):
    return plan.sample_spec(config, identity, 0)


# ------------------------------------------------------------------ the plan

def test_plan_is_deterministic_and_independent_of_the_number_of_identities(config):
    assert synthetic.plan_samples(config) == synthetic.plan_samples(config)
    bigger = dataclasses.replace(config, num_identities=40)
    assert synthetic.identity_plan(bigger, 3) == synthetic.identity_plan(config, 3)
    assert synthetic.plan_samples(bigger)[3 * 8:4 * 8] == synthetic.identity_plan(config, 3)
    other_seed = dataclasses.replace(config, seed=6)
    assert synthetic.identity_plan(other_seed, 3) != synthetic.identity_plan(config, 3)


def test_plan_gallery_image_and_variant_mix(config):
    specs = synthetic.plan_samples(dataclasses.replace(config, num_identities=20,
                                                       degradation_fraction=0.5))
    assert len(specs) == 20 * 8
    for spec in specs:
        if spec.image_index == 0:
            assert (spec.kind, spec.session, spec.expression, spec.occlusion,
                    spec.degradation) == ("gallery", 1, "neutral", "none", "none")
            assert spec.yaw_deg == spec.pitch_deg == spec.roll_deg == 0.0
            assert not any(spec.expression_weights)
        elif spec.kind == "expression":
            assert spec.expression != "neutral" and abs(spec.yaw_deg) <= 15 and spec.session == 1
        elif spec.kind == "pose":
            assert 30 < abs(spec.yaw_deg) <= 90 and abs(spec.pitch_deg) <= 45
            assert abs(spec.roll_deg) <= 20 and spec.occlusion == "none"
        elif spec.kind == "occlusion":
            assert spec.occlusion in ("hand", "glasses", "scarf", "hair") and spec.session == 1
        else:
            assert spec.kind == "time" and spec.session == 2
    kinds = {spec.kind for spec in specs}
    assert kinds == {"gallery", "expression", "pose", "occlusion", "time"}
    assert {s.degradation for s in specs} == {"none", "blur", "noise", "jpeg"}
    assert len({s.seed for s in specs}) == len(specs)
    assert specs[5].example_id == "synthetic/id0000/img0005"


def test_config_validation_says_what_is_wrong():
    with pytest.raises(ValueError, match="max_yaw_deg"):
        SyntheticConfig(max_yaw_deg=120)
    with pytest.raises(ValueError, match="sessions"):
        SyntheticConfig(sessions=3)
    with pytest.raises(ValueError, match="image index"):
        plan.sample_spec(SyntheticConfig(images_per_identity=2), 0, 5)


# ------------------------------------------------------------------ rendered samples

def test_render_is_deterministic(model, config):
    for spec in synthetic.identity_plan(config, 1)[:5]:
        first = synthetic.render_sample(model, spec, config)
        second = synthetic.render_sample(synthetic.FaceModel.parametric(), spec, config)
        for field in ("rgb", "depth", "mask", "landmarks5", "neutral_depth", "identity_coeffs",
                      "expression_coeffs"):
            a, b = getattr(first, field), getattr(second, field)
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), field


def test_example_fields_shapes_dtypes_and_ranges(model, config):
    specs = synthetic.identity_plan(config, 2)
    for spec in specs:
        example = synthetic.render_sample(model, spec, config)
        assert example.example_id == f"synthetic/id0002/img{spec.image_index:04d}"
        assert (example.label, example.subject, example.dataset, example.domain) == (
            2, "id0002", "synthetic", "synthetic")
        assert example.rgb.dtype == np.uint8 and example.rgb.shape == (SIZE, SIZE, 3)
        assert example.depth.dtype == np.float32 and example.depth.shape == (SIZE, SIZE)
        assert example.mask.dtype == np.uint8 and example.mask.max() <= 6
        assert example.neutral_depth.shape == (SIZE, SIZE)
        assert example.depth_units == "mm" and example.rgb_format == "png"
        assert np.all(example.depth >= 0) and np.all(example.neutral_depth >= 0)
        face = example.depth > 0
        assert 0.15 < face.mean() < 0.95
        assert 300 < example.depth[face].min() and example.depth[face].max() < 800
        assert np.all(example.mask[~face] == 0)       # no class where there is no surface
        assert example.landmarks5.shape == (5, 2) and example.landmarks5.dtype == np.float32
        assert example.identity_coeffs.shape == (model.num_identity_modes,)
        assert example.expression_coeffs.shape == (model.num_expression_modes,)
        assert (example.expression, example.occlusion, example.session) == (
            spec.expression, spec.occlusion, spec.session)
        assert example.yaw_deg == spec.yaw_deg
        if spec.expression == "neutral" and spec.occlusion == "none":
            np.testing.assert_allclose(example.depth, example.neutral_depth, atol=3.0)


def test_frontal_neutral_face_shows_every_face_class(model, config):
    for identity in range(3):
        mask = synthetic.render_sample(model, _gallery(config, identity), config).mask
        present = set(np.unique(mask))
        assert {0, SKIN, BROWS, EYES, NOSE, MOUTH} <= present, present
        assert GLASSES not in present
    wearing = dataclasses.replace(config, glasses_fraction=1.0)
    example = synthetic.render_sample(model, _gallery(wearing, 0), wearing)
    assert GLASSES in set(np.unique(example.mask))


def _near(mask, point, label, radius):
    col, row = int(round(point[0])), int(round(point[1]))
    window = mask[max(row - radius, 0):row + radius + 1, max(col - radius, 0):col + radius + 1]
    return bool(np.any(window == label))


def test_landmarks_land_on_their_regions(model, config):
    for identity in range(4):
        example = synthetic.render_sample(model, _gallery(config, identity), config)
        (left_eye, right_eye, nose, mouth_left, mouth_right) = example.landmarks5
        mask = example.mask
        assert _near(mask, left_eye, EYES, 1) and _near(mask, right_eye, EYES, 1)
        assert _near(mask, nose, NOSE, 1)
        assert _near(mask, mouth_left, MOUTH, 2) and _near(mask, mouth_right, MOUTH, 2)
        assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
        # ArcFace-like framing: eyes a little above the middle of the crop.
        assert 0.38 * SIZE < (left_eye[1] + right_eye[1]) / 2 < 0.5 * SIZE


def test_positive_yaw_turns_the_face_to_the_image_left(model, config):
    frontal = _gallery(config, 0)
    for yaw in (25.0, 60.0):
        turned = dataclasses.replace(frontal, yaw_deg=yaw)
        left = synthetic.render_sample(model, turned, config)
        right = synthetic.render_sample(model, dataclasses.replace(frontal, yaw_deg=-yaw), config)
        assert left.landmarks5[2, 0] < SIZE / 2 - 2 < SIZE / 2 + 2 < right.landmarks5[2, 0]
        nose_cols = [np.nonzero(example.mask == NOSE)[1].mean() for example in (left, right)]
        assert nose_cols[0] < SIZE / 2 < nose_cols[1]


def test_profile_keeps_the_head_in_the_crop(model, config):
    profile = dataclasses.replace(_gallery(config, 0), yaw_deg=90.0)
    example = synthetic.render_sample(model, profile, config)
    assert (example.depth > 0).mean() > 0.2
    assert 0 <= example.landmarks5[2, 0] < SIZE and NOSE in set(np.unique(example.mask))


@pytest.mark.parametrize("occlusion", ["hand", "glasses", "scarf", "hair"])
def test_occluders_hide_rgb_depth_and_mask_consistently(model, config, occlusion):
    spec = dataclasses.replace(_gallery(config, 1), occlusion=occlusion, kind="occlusion")
    rendered = _render(model, config, spec)
    example = rendered.example
    occluded = rendered.occluder_map
    assert occluded.sum() > 10, "the occluder should be visible"
    behind = occluded & (example.neutral_depth > 0)
    assert behind.sum() > 10
    # The occluder is in front of the face it hides (clean depth: before sensor noise).
    assert np.all(rendered.clean_depth[behind] < example.neutral_depth[behind] - 0.5)
    expected_class = GLASSES if occlusion == "glasses" else 0
    assert np.all(example.mask[occluded] == expected_class)
    clean = _render(model, config, _gallery(config, 1)).example
    assert np.abs(example.rgb[occluded].astype(int) - clean.rgb[occluded]).mean() > 5
    assert np.array_equal(example.neutral_depth, clean.neutral_depth)


def test_expression_changes_depth_but_not_neutral_depth(model, config):
    neutral = _gallery(config, 0)
    weights = tuple(np.asarray(synthetic.EXPRESSION_TEMPLATES["laugh"]))
    laughing = dataclasses.replace(neutral, expression="laugh", expression_weights=weights)
    a = _render(model, config, neutral)
    b = _render(model, config, laughing)
    assert np.array_equal(a.example.neutral_depth, b.example.neutral_depth)
    face = (a.clean_depth > 0) & (b.clean_depth > 0)
    assert np.abs(a.clean_depth - b.clean_depth)[face].max() > 5.0
    assert b.example.landmarks5[3, 1] < a.example.landmarks5[3, 1] + 2   # corners not lower


def test_encode_decode_round_trip(model, config):
    for spec in synthetic.identity_plan(config, 0)[:4]:
        example = synthetic.render_sample(model, spec, config)
        decoded = schema.decode_example_numpy(schema.encode_example(example))
        np.testing.assert_array_equal(decoded.rgb, example.rgb)
        np.testing.assert_array_equal(decoded.mask, example.mask)
        np.testing.assert_allclose(decoded.depth, example.depth, atol=0.051)
        np.testing.assert_allclose(decoded.neutral_depth, example.neutral_depth, atol=0.051)
        np.testing.assert_array_equal(decoded.depth > 0, example.depth > 0)
        np.testing.assert_allclose(decoded.landmarks5, example.landmarks5, atol=1e-4)
        np.testing.assert_allclose(decoded.identity_coeffs, example.identity_coeffs, atol=1e-6)
        assert (decoded.example_id, decoded.label, decoded.subject, decoded.session,
                decoded.occlusion) == (example.example_id, example.label, example.subject,
                                       example.session, example.occlusion)


def test_identity_is_recoverable_from_depth_and_not_trivial(model):
    """Nearest neighbour on face-normalised depth re-identifies 50 identities across two
    renders that differ in lighting, background and sensor noise."""
    config = SyntheticConfig(num_identities=50, images_per_identity=1, image_size=SIZE, seed=11)
    reseeded = dataclasses.replace(config, seed=12)
    renderer = synthetic.SyntheticRenderer(model, config)

    def normalised(spec):
        example = renderer.render(spec).example
        face = example.mask > 0
        return np.where(face, example.depth - np.median(example.depth[face]), 0.0), face

    renders_a, renders_b, faces = [], [], []
    for identity in range(50):
        spec_a = plan.sample_spec(config, identity, 0)
        other = plan.sample_spec(reseeded, identity, 0)
        spec_b = dataclasses.replace(spec_a, seed=other.seed, lighting=other.lighting,
                                     background_id=other.background_id)
        assert spec_b.lighting != spec_a.lighting
        depth_a, face_a = normalised(spec_a)
        renders_a.append(depth_a.ravel())
        renders_b.append(normalised(spec_b)[0].ravel())
        faces.append(face_a.ravel())
    a, b, faces = np.array(renders_a), np.array(renders_b), np.array(faces)
    distance = np.sqrt(((b[:, None, :] - a[None, :, :]) ** 2).mean(axis=-1))
    accuracy = np.mean(np.argmin(distance, axis=1) == np.arange(50))
    assert accuracy >= 0.95
    others = ~np.eye(50, dtype=bool)
    assert distance[others].mean() > 3.0 * np.diag(distance).mean()
    # Different identities differ by several mm RMS where both show face.
    both = faces[:, None, :] & faces[None, :, :]
    rms = np.sqrt(((a[:, None, :] - a[None, :, :]) ** 2 * both).sum(-1) / both.sum(-1))
    assert np.median(rms[others]) > 4.0 and rms[others].min() > 1.5


def test_generate_in_worker_processes_matches_one_process(model, config):
    small = dataclasses.replace(config, num_identities=3, images_per_identity=2)
    serial = list(synthetic.generate(small, model=model))
    parallel = list(synthetic.generate(small, num_workers=2, model=model))
    assert [e.example_id for e in parallel] == [e.example_id for e in serial]
    assert [e.example_id for e in serial] == [s.example_id for s in synthetic.plan_samples(small)]
    for a, b in zip(serial, parallel):
        assert a.rgb.tobytes() == b.rgb.tobytes() and a.depth.tobytes() == b.depth.tobytes()
    only = list(synthetic.generate(small, identities=[2], model=model))
    assert [e.example_id for e in only] == [e.example_id for e in serial[4:]]


def test_preview_sheet_is_written_atomically(model, config, tmp_path):
    examples = list(synthetic.generate(dataclasses.replace(config, num_identities=2,
                                                           images_per_identity=3), model=model))
    path = str(tmp_path / "sheet.png")
    assert preview.write_preview_sheet(examples, path) == path
    sheet = cv2.imread(path)
    assert sheet is not None and sheet.shape[0] == 2 * (SIZE + 2)
    assert sheet.shape[1] >= 3 * 3 * SIZE
    assert os.listdir(tmp_path) == ["sheet.png"]
    with pytest.raises(ValueError, match="at least one"):
        preview.write_preview_sheet([], path)


# ------------------------------------------------------------------ the face model

def test_parametric_model_has_named_smooth_modes(model):
    assert model.num_identity_modes >= 20 and model.num_expression_modes >= 6
    assert {"smile", "mouth_open", "brow_raise", "frown", "squint", "cheek_puff"} <= set(
        model.expression_mode_names)
    assert {"nose_length", "eye_spacing", "jaw_width", "lip_thickness"} <= set(
        model.identity_mode_names)
    assert model.has_back_of_head and model.triangles.shape[0] > 10000
    for basis in (model.identity_basis, model.expression_basis):
        magnitude = np.linalg.norm(basis, axis=-1).max(axis=1)
        assert np.all(magnitude > 0.5) and np.all(magnitude < 25.0)   # mm per unit coefficient
    assert set(np.unique(model.mask_classes)) == {0, 1, 2, 3, 5, 6}
    with pytest.raises(ValueError, match="identity coefficients"):
        model.shape(np.zeros(model.num_identity_modes + 1))


def _write_fake_3ddfa_dir(directory):
    """A tiny BFM-like model: a dome face in micrometres, y up, z toward the viewer."""
    n = 41
    x, y = np.meshgrid(np.linspace(-85, 85, n), np.linspace(-115, 85, n))
    dome = 60.0 * np.sqrt(np.clip(1 - (x / 90) ** 2 - ((y + 15) / 110) ** 2, 0, 1))
    nose = 22.0 * np.exp(-(x ** 2 + (y + 10) ** 2) / (2 * 9.0 ** 2))
    vertices_mm = np.stack([x, y, dome + nose], axis=-1).reshape(-1, 3)
    rng = np.random.default_rng(0)

    def smooth_columns(count):
        columns = []
        for _ in range(count):
            centre = rng.uniform(-50, 50, 2)
            bump = np.exp(-((vertices_mm[:, 0] - centre[0]) ** 2
                            + (vertices_mm[:, 1] - centre[1]) ** 2) / (2 * 20.0 ** 2))
            columns.append((bump[:, None] * [0.0, 0.0, 1000.0]).reshape(-1))
        return np.stack(columns, axis=1)

    index = np.arange(n * n).reshape(n, n)
    a, b = index[:-1, :-1].ravel(), index[:-1, 1:].ravel()
    c, d = index[1:, :-1].ravel(), index[1:, 1:].ravel()
    triangles = np.concatenate([np.stack([a, b, c], -1), np.stack([b, d, c], -1)])
    t = np.linspace(np.pi, 2 * np.pi, 17)
    template = np.concatenate([
        np.stack([70 * np.cos(t), -15 + 90 * np.sin(t)], -1),                  # jaw 0-16
        np.stack([np.linspace(-55, -15, 5), np.full(5, 35.0)], -1),            # brows
        np.stack([np.linspace(15, 55, 5), np.full(5, 35.0)], -1),
        np.stack([np.zeros(4), np.linspace(25, -10, 4)], -1),                  # nose ridge
        np.stack([np.linspace(-15, 15, 5), np.full(5, -20.0)], -1),            # nostrils
    ])
    hexagon = np.stack([np.cos(np.linspace(np.pi, -np.pi, 7)[:6]),
                        np.sin(np.linspace(np.pi, -np.pi, 7)[:6])], -1)
    template = np.concatenate([
        template, hexagon * [14, 5] + [-32, 20], hexagon * [14, 5] + [32, 20],   # eyes
        np.stack([25 * np.cos(np.linspace(np.pi, -np.pi, 13)[:12]),
                  -45 + 10 * np.sin(np.linspace(np.pi, -np.pi, 13)[:12])], -1),  # outer lips
        np.stack([18 * np.cos(np.linspace(np.pi, -np.pi, 9)[:8]),
                  -45 + 4 * np.sin(np.linspace(np.pi, -np.pi, 9)[:8])], -1),    # inner lips
    ])
    assert template.shape == (68, 2)
    nearest = np.argmin(((vertices_mm[None, :, :2] - template[:, None, :]) ** 2).sum(-1), axis=1)
    np.save(os.path.join(directory, "u.npy"), (vertices_mm * 1000.0).reshape(-1, 1))
    np.save(os.path.join(directory, "w_shp.npy"), smooth_columns(10))
    np.save(os.path.join(directory, "w_exp.npy"), smooth_columns(4))
    np.save(os.path.join(directory, "tri.npy"), triangles + 1)           # 1-based, MATLAB style
    np.save(os.path.join(directory, "keypoints.npy"),
            (3 * nearest[:, None] + np.arange(3)).reshape(-1))


def test_from_3ddfa_dir_loads_and_renders(tmp_path):
    _write_fake_3ddfa_dir(str(tmp_path))
    loaded = synthetic.FaceModel.from_3ddfa_dir(str(tmp_path))
    assert (loaded.num_identity_modes, loaded.num_expression_modes) == (10, 4)
    assert not loaded.has_back_of_head
    assert 150 < np.ptp(loaded.mean_vertices[:, 0]) < 200        # micrometres -> mm
    eyes, nose = loaded.mean_vertices[loaded.landmark_vertices[:2]], \
        loaded.mean_vertices[loaded.landmark_vertices[2]]
    assert eyes[:, 1].max() < nose[1] and nose[2] < eyes[:, 2].min()   # y down, nose nearest
    assert {SKIN, BROWS, EYES, NOSE, MOUTH} <= set(np.unique(loaded.mask_classes))
    config = SyntheticConfig(num_identities=2, images_per_identity=3, image_size=SIZE,
                             morphable_model_dir=str(tmp_path), glasses_fraction=0.0)
    examples = list(synthetic.generate(config, model=loaded))
    frontal = examples[0]
    assert {SKIN, EYES, NOSE, MOUTH} <= set(np.unique(frontal.mask))
    assert frontal.identity_coeffs.shape == (10,) and frontal.expression_coeffs.shape == (4,)
    schema.encode_example(frontal)
    with pytest.raises(FileNotFoundError, match="w_shp"):
        os.remove(tmp_path / "w_shp.npy")
        synthetic.FaceModel.from_3ddfa_dir(str(tmp_path))
