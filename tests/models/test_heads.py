"""CombinedMargin (ArcFace / CosFace) and the linear style classifier."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tf_rgbd.models import heads


def _head_with_identity_weights(**margins):
    head = heads.CombinedMargin(2, **margins)
    head.build((None, 2))
    head.class_weights.assign(np.eye(2, dtype=np.float32) * 3.0)  # norms do not matter
    return head


def _features_at_angle(theta):
    return tf.constant([[math.cos(theta), math.sin(theta)]], tf.float32) * 5.0


def test_arcface_target_logit():
    head = _head_with_identity_weights(s=64.0, m2=0.5)
    theta = math.pi / 3
    outputs = head(_features_at_angle(theta), labels=tf.constant([0]))
    logits, cos_logits = np.asarray(outputs["logits"]), np.asarray(outputs["cos_logits"])
    assert logits[0, 0] == pytest.approx(64.0 * math.cos(theta + 0.5), rel=1e-5)
    assert logits[0, 1] == pytest.approx(64.0 * math.sin(theta), rel=1e-5)  # no margin
    np.testing.assert_allclose(cos_logits[0], 64.0 * np.array([0.5, math.sin(theta)]), rtol=1e-5)


def test_cosface_and_monotonic_fallback():
    cosface = _head_with_identity_weights(s=30.0, m2=0.0, m3=0.35)
    outputs = cosface(_features_at_angle(math.pi / 3), labels=tf.constant([0]))
    assert float(outputs["logits"][0, 0]) == pytest.approx(30.0 * (0.5 - 0.35), rel=1e-5)
    # theta + m2 > pi: cos(theta) - m3 - sin(pi - m2) * m2 keeps the logit decreasing in theta.
    arcface = _head_with_identity_weights(s=1.0, m2=0.5)
    theta = math.pi - 0.2
    outputs = arcface(_features_at_angle(theta), labels=tf.constant([0]))
    expected = math.cos(theta) - math.sin(math.pi - 0.5) * 0.5
    assert float(outputs["logits"][0, 0]) == pytest.approx(expected, rel=1e-5)


def test_labels_none_and_frozen_weights():
    head = heads.CombinedMargin(5, name="ids")
    features = tf.Variable(tf.random.normal([3, 4], seed=1))
    outputs = head(features)
    np.testing.assert_array_equal(outputs["logits"], outputs["cos_logits"])
    with tf.GradientTape(persistent=True) as tape:
        frozen = head(features, freeze_weights=True)["cos_logits"]
        trainable = head(features)["cos_logits"]
    assert tape.gradient(frozen, head.class_weights) is None
    assert tape.gradient(frozen, features) is not None
    assert tape.gradient(trainable, head.class_weights) is not None


def test_heads_save_and_reload(tmp_path):
    inputs = keras.Input((6,))
    margin = heads.CombinedMargin(4, s=32.0, m2=0.3, m3=0.1, name="margin")
    style = heads.LinearClassifier(2, name="style")
    model = keras.Model(inputs, {"ids": margin(inputs)["cos_logits"], "style": style(inputs)})
    helpers.run_model_checks(model, tf.random.normal([3, 6], seed=2),
                             {"ids": (3, 4), "style": (3, 2)}, tmp_path, check_config=False)
    helpers.assert_config_round_trip(margin)
    helpers.assert_config_round_trip(style)
    with pytest.raises(ValueError, match="margins"):
        heads.CombinedMargin(4, m2=-0.1)


def test_identity_accuracy():
    logits = tf.constant([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert float(heads.identity_accuracy(logits, tf.constant([0, 1, 1]))) == pytest.approx(2 / 3)
