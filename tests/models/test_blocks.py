"""Conv/SE/IR-SE units and the CBAM spatial attention module."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tf_rgbd.models import blocks


def _wrap(layer, input_shape):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, layer(inputs), name=f"wrap_{layer.name}")


def _checks(layer, input_shape, inputs, expected_shape, tmp_path):
    """The shared battery on a functional wrapper, plus the layer's own config round trip
    (the wrapper's config differs after rebuilding only by auto-generated input names)."""
    outputs = helpers.run_model_checks(_wrap(layer, input_shape), inputs,
                                       {"output": expected_shape}, tmp_path, check_config=False)
    helpers.assert_config_round_trip(layer)
    return outputs


@pytest.mark.parametrize("strides,activation", [(1, "prelu"), (2, "relu"), (1, None)])
def test_conv_norm_act(tmp_path, strides, activation):
    outputs = _checks(blocks.ConvNormAct(8, 3, strides, activation, name="unit"), (16, 16, 3),
                      helpers.random_images(2, 16, 3), (2, 16 // strides, 16 // strides, 8),
                      tmp_path)
    if activation == "relu":
        assert outputs["output"].min() >= 0.0
    helpers.assert_config_round_trip(blocks.ConvNormAct(8, 5, 2, "relu", bn_momentum=0.99))


def test_squeeze_excitation_gates_channels(tmp_path):
    layer = blocks.SqueezeExcitation(reduction=16, name="se")
    inputs = helpers.random_images(2, 8, 32, low=0.1, high=1.0)
    outputs = _checks(layer, (8, 8, 32), inputs, (2, 8, 8, 32), tmp_path)
    # Bottleneck has 32 // 16 = 2 channels; a sigmoid gate only shrinks positive inputs.
    assert layer.squeeze.kernel.shape == (1, 1, 32, 2)
    ratio = outputs["output"] / np.asarray(inputs)
    assert np.all(ratio > 0.0) and np.all(ratio < 1.0)
    # The gate is one value per (image, channel).
    np.testing.assert_allclose(ratio.std(axis=(1, 2)), 0.0, atol=1e-5)
    # Tiny widths keep a 1-channel bottleneck instead of 0.
    tiny = blocks.SqueezeExcitation(16)
    tiny.build((None, 4, 4, 8))
    assert tiny.squeeze.kernel.shape[-1] == 1


@pytest.mark.parametrize("in_channels,filters,strides", [(8, 8, 1), (8, 8, 2), (8, 16, 2)])
def test_ir_se_unit(tmp_path, in_channels, filters, strides):
    unit = blocks.IRSEUnit(filters, strides, name="unit")
    _checks(unit, (16, 16, in_channels), helpers.random_images(2, 16, in_channels),
            (2, 16 // strides, 16 // strides, filters), tmp_path)
    assert (unit.projection is not None) == (in_channels != filters)
    # PReLU after the first conv, SE at the end of the residual branch.
    assert isinstance(unit.conv1.act, keras.layers.PReLU)
    assert unit.se.reduction == 16


def test_spatial_attention_is_cbam(tmp_path):
    layer = blocks.SpatialAttention(7, name="sam")
    inputs = helpers.random_images(2, 12, 5)
    outputs = _checks(layer, (12, 12, 5), inputs, (2, 12, 12, 1), tmp_path)
    attention = outputs["output"]
    assert np.all(attention > 0.0) and np.all(attention < 1.0)
    # A 7x7 conv over [channel mean, channel max] + bias: check one pixel by hand.
    kernel, bias = (np.asarray(weight) for weight in layer.conv.weights)
    assert kernel.shape == (7, 7, 2, 1)
    values = np.asarray(inputs)
    pooled = np.stack([values.mean(-1), values.max(-1)], axis=-1)
    padded = np.pad(pooled, ((0, 0), (3, 3), (3, 3), (0, 0)))
    row, col = 5, 6
    logit = np.sum(padded[0, row:row + 7, col:col + 7, :] * kernel[..., 0]) + bias[0]
    assert attention[0, row, col, 0] == pytest.approx(1.0 / (1.0 + np.exp(-logit)), rel=1e-4)
    # The same module serves maps of any width.
    assert layer(helpers.random_images(1, 6, 64)).shape == (1, 6, 6, 1)


def test_spatial_attention_batch_norm_variant(tmp_path):
    """CBAM reference SpatialGate: conv (no bias) -> BN -> sigmoid, one BN per input slot."""
    layer = blocks.SpatialAttention(7, normalization="batch", num_inputs=2, name="sam")
    inputs = helpers.random_images(4, 12, 5)
    attention = _checks(layer, (12, 12, 5), inputs, (4, 12, 12, 1), tmp_path)["output"]
    assert np.all(attention > 0.0) and np.all(attention < 1.0)
    assert len(layer.conv.weights) == 1 and len(layer.norms) == 2  # shared conv, BN per slot
    # Training mode: the logit is normalised over the batch, whatever the conv's magnitude.
    logits = lambda a: np.log(a) - np.log1p(-a)  # noqa: E731
    for scale in (1.0, 100.0):
        trained = np.asarray(layer(inputs * scale, training=True, input_index=1))
        assert abs(logits(trained).mean()) < 1e-3 and logits(trained).std() == pytest.approx(
            1.0, rel=1e-2)
    # Only the called slot's moving statistics move.
    assert float(layer.norms[0].moving_mean.numpy()[0]) == 0.0
    assert float(layer.norms[1].moving_mean.numpy()[0]) != 0.0
    with pytest.raises(ValueError, match="input_index"):
        layer(inputs, input_index=2)
    with pytest.raises(ValueError, match="normalization"):
        blocks.SpatialAttention(7, normalization="layer")


def test_spatial_attention_saturation_without_normalization():
    """The failure the BN variant prevents: a kernel pushed positive (what momentum SGD does to
    the un-normalised SAM in the first steps at lr 0.1) saturates sigma at 1 everywhere, where
    the gradient vanishes; with BN the same kernel keeps a spatial contrast around 0.5."""
    inputs = helpers.random_images(4, 12, 8, low=0.0, high=4.0)  # ReLU-like mask features
    plain = blocks.SpatialAttention(7)
    normalized = blocks.SpatialAttention(7, normalization="batch")
    plain.build(inputs.shape)
    normalized.build(inputs.shape)
    pushed = np.full((7, 7, 2, 1), 0.8, np.float32)  # sum(kernel) = +78
    plain.conv.kernel.assign(pushed)
    normalized.conv.kernel.assign(pushed)
    assert np.all(np.asarray(plain(inputs)) > 0.9999)
    contrast = np.asarray(normalized(inputs, training=True))
    assert contrast.std() > 0.1 and 0.3 < contrast.mean() < 0.7


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_fused_batch_norm_and_prelu_match_keras(policy):
    """The fused training path equals Keras' BatchNormalization (outputs, input and parameter
    gradients, moving statistics); PReLU equals Keras' PReLU, at both precisions."""
    inputs = helpers.random_images(4, 8, 6, seed=3) * 3.0 + 1.0
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        pairs = [(blocks.FusedBatchNormalization(momentum=0.9, epsilon=2e-5),
                  keras.layers.BatchNormalization(momentum=0.9, epsilon=2e-5)),
                 (blocks.PReLU(shared_axes=[1, 2], alpha_initializer="glorot_uniform"),
                  keras.layers.PReLU(shared_axes=[1, 2]))]
        for ours, reference in pairs:
            ours.build(inputs.shape)
            reference.build(inputs.shape)
            reference.set_weights(ours.get_weights())
            results = []
            for layer in (ours, reference):
                with tf.GradientTape() as tape:
                    tape.watch(inputs)
                    outputs = layer(inputs, training=True)
                    loss = tf.reduce_sum(tf.cast(outputs, tf.float32) * tf.range(
                        6, dtype=tf.float32))
                gradients = tape.gradient(loss, [inputs] + layer.trainable_variables)
                results.append([outputs] + gradients + layer.non_trainable_variables)
            tolerance = 1e-4 if policy == "float32" else 5e-2
            for mine, theirs in zip(*results):
                np.testing.assert_allclose(np.asarray(tf.cast(mine, tf.float32)),
                                           np.asarray(tf.cast(theirs, tf.float32)),
                                           rtol=tolerance, atol=tolerance)
            assert results[0][0].dtype == (tf.float32 if policy == "float32" else tf.bfloat16)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_unit_normalization_is_exact_and_float16_safe(tmp_path):
    rng = np.random.default_rng(0)
    features = rng.normal(0, 3000, (4, 16)).astype(np.float32)   # x * x overflows float16
    layer = blocks.UnitNormalization()
    expected = features / np.linalg.norm(features, axis=-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(layer(features)), expected, atol=1e-6)
    half = np.asarray(blocks.UnitNormalization(dtype="float16")(features.astype(np.float16)))
    assert half.dtype == np.float16 and np.isfinite(half).all(), "float16 overflow"
    np.testing.assert_allclose(half.astype(np.float32), expected, atol=2e-3)
    # The trap it avoids: Keras' layer computed in float16 squares 3000 -> inf -> zeros / NaN.
    keras_half = np.asarray(keras.layers.UnitNormalization(axis=-1, dtype="float16")(
        features.astype(np.float16))).astype(np.float32)
    assert not np.allclose(keras_half, expected, atol=2e-3)
    np.testing.assert_array_equal(np.asarray(layer(np.zeros((1, 4), np.float32))), 0.0)
    helpers.assert_config_round_trip(layer)
