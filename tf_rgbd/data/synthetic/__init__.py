"""The embedded synthetic RGB-D face generator (identities x expressions x poses x occluders).

Public API::

    config = SyntheticConfig(num_identities=8, images_per_identity=6, image_size=112, seed=1)
    model = FaceModel.parametric()
    for spec in plan_samples(config):
        example = render_sample(model, spec, config)      # schema.FaceExample
    examples = list(generate(config, num_workers=2))      # same, in plan order
    preview.write_preview_sheet(examples[:24], "/tmp/sheet.png")   # tf_rgbd.data.preview

Modules: ``config`` (SyntheticConfig, SampleSpec), ``plan`` (the deterministic sampling plan),
``parametric_head`` (the built-in license-clean head), ``face_model`` (FaceModel, 3DDFA
loader), ``appearance`` (albedo, shading, backgrounds, degradations), ``occluders`` (glasses,
hand, scarf, hair fringe), ``render`` (render_sample, generate).
"""
from tf_rgbd.data.synthetic.config import (
    DEGRADATIONS, EXPRESSION_TEMPLATES, EXPRESSIONS, OCCLUSIONS, SAMPLE_KINDS, LightingSpec,
    SampleSpec, SyntheticConfig, subject_name)
from tf_rgbd.data.synthetic.face_model import LANDMARK_NAMES, FaceModel
from tf_rgbd.data.synthetic.plan import (
    identity_attributes, identity_coefficients, identity_plan, plan_samples, sample_spec)
from tf_rgbd.data.synthetic.render import (
    RenderedSample, SyntheticRenderer, build_face_model, generate, render_sample)

__all__ = [
    "DEGRADATIONS", "EXPRESSION_TEMPLATES", "EXPRESSIONS", "OCCLUSIONS", "SAMPLE_KINDS",
    "LightingSpec", "SampleSpec", "SyntheticConfig", "subject_name", "LANDMARK_NAMES",
    "FaceModel", "identity_attributes", "identity_coefficients", "identity_plan",
    "plan_samples", "sample_spec", "RenderedSample", "SyntheticRenderer",
    "generate", "build_face_model", "render_sample",
]
