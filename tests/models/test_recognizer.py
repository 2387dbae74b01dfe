"""The segmentation-guided recognizer: shapes, switches, shared SAM, saving, export graph."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tf_rgbd.models import blocks, recognizer as recognizer_lib

SIZE = 32


def _inputs(batch=2, size=SIZE, seed=0):
    return {"rgb": helpers.random_images(batch, size, 3, seed=seed),
            "depth": helpers.random_images(batch, size, 1, seed=seed + 1, low=0.0),
            "mask": helpers.random_masks(batch, size, seed=seed + 2)}


def _tiny(modalities=recognizer_lib.MODALITIES, num_classes=5, **kwargs):
    model = recognizer_lib.SegmentationGuidedRecognizer(
        num_classes=num_classes, backbone="tiny", modalities=modalities, embedding_dim=16,
        dropout_rate=0.0, name="recognizer", **kwargs)
    model.build_for_size(SIZE)
    return model


def test_outputs_saving_and_classifier_weights(tmp_path):
    model = _tiny()
    inputs = _inputs()
    expected = {"id_rgb": (2, 16), "style_rgb": (2, 16), "id_depth": (2, 16),
                "style_depth": (2, 16), "attention_stage1": (2, SIZE // 2, SIZE // 2, 1),
                "attention_stage3": (2, SIZE // 8, SIZE // 8, 1)}
    helpers.run_model_checks(model, inputs, expected, tmp_path)
    # The reloaded file also restores the (call-free) classifiers.
    model.save(tmp_path / "again.keras")
    reloaded = keras.saving.load_model(tmp_path / "again.keras", compile=False)
    np.testing.assert_array_equal(reloaded.identity_classifier.class_weights,
                                  model.identity_classifier.class_weights)
    np.testing.assert_array_equal(reloaded.style_classifier.kernel, model.style_classifier.kernel)


def test_mask_encoder_resolutions_at_112():
    encoder = recognizer_lib.MaskEncoder((64, 128, 256))
    maps = encoder(keras.Input((112, 112, 7)))
    assert maps["stage1"].shape[1:] == (56, 56, 64)
    assert maps["stage3"].shape[1:] == (14, 14, 256)


def test_sam_is_one_shared_variable_set():
    model = _tiny()
    sams = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, blocks.SpatialAttention)]
    assert len(sams) == 1
    sam_ids = {id(variable) for variable in sams[0].trainable_variables}
    # One 7x7x2x1 kernel (no bias before BN) + gamma/beta of each attention stage's BN.
    expected = 1 + 2 * len(recognizer_lib.ATTENTION_STAGES)
    assert len(sam_ids) == expected
    assert sum(id(variable) in sam_ids for variable in model.trainable_variables) == expected
    # Both branches depend on it: each branch's identity feature has a SAM gradient.
    inputs = _inputs()
    for branch in ("rgb", "depth"):
        with tf.GradientTape() as tape:
            features = model(inputs, training=True)[f"id_{branch}"]
            value = tf.reduce_sum(tf.square(features))
        gradients = tape.gradient(value, sams[0].trainable_variables)
        assert all(g is not None and np.any(np.abs(g.numpy()) > 0) for g in gradients), branch


def test_variable_groups_partition_the_model():
    model = _tiny()
    rgb, depth, shared = (model.branch_variables("rgb"), model.branch_variables("depth"),
                          model.shared_variables())
    ids = [id(variable) for variable in rgb + depth + shared]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(variable) for variable in model.trainable_variables}


@pytest.mark.parametrize("modalities,branches", [(("rgb",), ("rgb",)),
                                                 (("depth", "mask"), ("depth",)),
                                                 (("rgb", "depth"), ("rgb", "depth"))])
def test_modality_switches(modalities, branches):
    model = _tiny(modalities)
    outputs = model({key: value for key, value in _inputs().items() if key in modalities})
    assert model.branches == branches
    assert sorted(key for key in outputs if key.startswith("id_")) == sorted(
        f"id_{branch}" for branch in branches)
    assert ("attention_stage1" in outputs) == ("mask" in modalities)
    assert (model.mask_encoder is not None) == ("mask" in modalities)
    with pytest.raises(KeyError, match="lack"):
        model({"mask": _inputs()["mask"]})


def test_bad_modalities_are_rejected():
    with pytest.raises(ValueError, match="no image branch"):
        recognizer_lib.check_modalities(("mask",))
    with pytest.raises(ValueError, match="unknown"):
        recognizer_lib.check_modalities(("rgb", "thermal"))


def test_inference_model_is_training_free_and_normalised(tmp_path):
    model = _tiny()
    inference = recognizer_lib.build_inference_model(model, SIZE)
    assert sorted(inference.input_names if hasattr(inference, "input_names") else
                  [tensor.name for tensor in inference.inputs]) == ["depth", "mask", "rgb"]
    variable_ids = {id(variable) for variable in inference.weights}
    assert not variable_ids & {id(v) for v in model.identity_classifier.weights}
    assert not variable_ids & {id(v) for v in model.style_encoders["rgb"].weights}
    for batch in (1, 3):  # dynamic batch
        inputs = _inputs(batch, seed=batch)
        outputs = inference(inputs)
        reference = model(inputs, training=False)
        for branch in ("rgb", "depth"):
            embedding = np.asarray(outputs[f"id_{branch}"])
            np.testing.assert_allclose(np.linalg.norm(embedding, axis=-1), 1.0, rtol=1e-5)
            np.testing.assert_allclose(
                embedding, np.asarray(tf.math.l2_normalize(reference[f"id_{branch}"], -1)),
                atol=1e-5)
    helpers.run_model_checks(inference, _inputs(2), {"id_rgb": (2, 16), "id_depth": (2, 16)},
                             tmp_path, check_config=False)


def test_attention_options_save_and_apply(tmp_path):
    """sam_normalization="batch" (conv shared, one BN per stage) and attention_mode="residual"
    (x * (1 + A)) survive saving; A = 0 in residual mode and A = 1 in multiply mode are
    no-ops."""
    model = _tiny(sam_normalization="batch", attention_mode="residual")
    inputs = _inputs()
    helpers.run_model_checks(model, inputs, {"id_rgb": (2, 16), "id_depth": (2, 16)}, tmp_path)
    sam = model.spatial_attention
    assert sam.normalization == "batch" and len(sam.norms) == len(recognizer_lib.ATTENTION_STAGES)
    shared_ids = {id(variable) for variable in model.shared_variables()}
    assert all(id(variable) in shared_ids for variable in sam.trainable_variables)
    assert len(sam.trainable_variables) == 1 + 2 * len(recognizer_lib.ATTENTION_STAGES)

    def embedding(recognizer, attention):
        return np.asarray(recognizer.encode_branch("rgb", inputs["rgb"], attention,
                                                   training=False, with_style=False)["id"])

    def constant(value):
        return {f"attention_stage{stage}": tf.fill((2, SIZE // 2 ** stage, SIZE // 2 ** stage, 1),
                                                   value)
                for stage in recognizer_lib.ATTENTION_STAGES}

    np.testing.assert_allclose(embedding(model, constant(0.0)), embedding(model, {}), atol=1e-5)
    default = _tiny()
    assert (default.attention_mode, default.sam_normalization) == ("multiply", "batch")
    plain = _tiny(sam_normalization="none")        # the printed form
    np.testing.assert_allclose(embedding(plain, constant(1.0)), embedding(plain, {}), atol=1e-5)
    with pytest.raises(ValueError, match="attention_mode"):
        _tiny(attention_mode="add")
    with pytest.raises(ValueError, match="sam_normalization"):
        _tiny(sam_normalization="group")


def test_mixed_precision_outputs_gradients_and_float32_files(tmp_path):
    """Under mixed_float16 / mixed_bfloat16 the encoders compute in half precision but every
    output (features, attention) is float32, the classifiers stay float32, and the saved file
    serves in float32."""
    helpers.run_precision_checks(_tiny, _inputs(), tmp_path)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = _tiny()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.identity_encoders["rgb"].stem.conv.compute_dtype == "bfloat16"
    assert model.identity_classifier.compute_dtype == "float32"
    logits = model.identity_classifier(model(_inputs())["id_rgb"], tf.constant([0, 1]))
    assert logits["logits"].dtype == tf.float32
