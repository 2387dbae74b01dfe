"""Mesh shape targets recomputed from a record's coefficients equal the rendered mesh."""
import numpy as np
import pytest

from tf_rgbd.data import schema, synthetic
from tf_rgbd.data.synthetic import shape_targets

CONFIG = synthetic.SyntheticConfig(num_identities=1, images_per_identity=2, image_size=32,
                                   seed=5, expression_fraction=1.0, pose_fraction=0.0,
                                   occlusion_fraction=0.0, time_fraction=0.0, sessions=1)


@pytest.fixture(scope="module")
def rendered():
    model = synthetic.FaceModel.parametric()
    renderer = synthetic.SyntheticRenderer(model, CONFIG)
    specs = synthetic.plan_samples(CONFIG)
    records = [schema.decode_example_numpy(schema.encode_example(renderer.render(spec).example))
               for spec in specs]
    return model, renderer, specs, records


def test_recomputed_vertices_equal_the_renderers_mesh_bit_for_bit(rendered):
    model, renderer, specs, records = rendered
    vertices = shape_targets.face_vertex_subset(model, 300)
    assert vertices.shape == (300,) and len(np.unique(vertices)) == 300
    assert np.all(np.isin(model.mask_classes[vertices], shape_targets.FACE_MASK_CLASSES))
    for spec, record in zip(specs, records):
        shape, neutral = shape_targets.shape_targets(
            model, vertices, record.identity_coeffs, record.expression_coeffs)
        assets = renderer.identity_assets(spec.identity)
        expression = renderer.expression_coeffs(spec)
        rendered_mesh = (model.shape(assets.coeffs, expression) if np.any(expression)
                         else assets.neutral_vertices)
        np.testing.assert_array_equal(shape, rendered_mesh[vertices])
        np.testing.assert_array_equal(neutral, assets.neutral_vertices[vertices])
    assert records[1].expression != "neutral"
    assert np.abs(shape - neutral).max() > 1.0  # the expression moves the mesh (mm)


def test_landmark_check_accepts_the_dataset_and_refuses_another_pose_or_model(rendered):
    model, _, _, records = rendered
    record = records[1]
    args = (record.identity_coeffs, record.expression_coeffs, record.yaw_deg, record.pitch_deg,
            record.roll_deg, 32, record.landmarks5)
    assert shape_targets.check_against_landmarks(model, CONFIG, "r", *args) < 1e-3
    with pytest.raises(shape_targets.ShapeTargetError, match="landmarks"):
        shape_targets.check_against_landmarks(model, CONFIG, "r", record.identity_coeffs * 0,
                                              *args[1:])
    with pytest.raises(shape_targets.ShapeTargetError, match="identity modes"):
        shape_targets.shape_targets(model, np.arange(3), record.identity_coeffs[:5],
                                    record.expression_coeffs)
    with pytest.raises(shape_targets.ShapeTargetError, match="no expression"):
        shape_targets.shape_targets(model, np.arange(3), record.identity_coeffs, [])
