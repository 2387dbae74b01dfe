"""Recognition losses (paper eq. 8-15) against values computed by hand."""
import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf

from tf_rgbd.config.recognizer import RecognizerLossConfig
from tf_rgbd.losses import recognition


def _logits_of_probabilities(probabilities):
    return tf.math.log(tf.constant(probabilities, tf.float32))


def test_classification_loss_is_identity_plus_style_cross_entropy():
    id_logits = tf.constant([[2.0, 0.0, 0.0]])
    style_logits = tf.constant([[1.0, 0.0]])
    loss = recognition.classification_loss(id_logits, tf.constant([0]), style_logits,
                                           style_label=1)
    identity = -math.log(math.exp(2.0) / (math.exp(2.0) + 2.0))
    style = -math.log(1.0 / (math.e + 1.0))
    assert float(loss) == pytest.approx(identity + style, rel=1e-6)


def test_cross_modal_focal_loss_matches_equation_8_9():
    logits_m = _logits_of_probabilities([[0.6, 0.4], [0.3, 0.7]])
    logits_n = _logits_of_probabilities([[0.8, 0.2], [0.5, 0.5]])
    labels = tf.constant([0, 1])
    loss = recognition.cross_modal_focal_loss(logits_m, logits_n, labels, alpha=1.0, gamma=3.0)

    def per_sample(m_t, n_t):
        w = n_t * 2.0 * m_t * n_t / (m_t + n_t)
        return -((1.0 - w) ** 3) * math.log(m_t)

    expected = (per_sample(0.6, 0.8) + per_sample(0.7, 0.5)) / 2.0
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # Without a confident partner (n_t -> 0) the loss is plain cross-entropy.
    plain = recognition.cross_modal_focal_loss(logits_m, _logits_of_probabilities(
        [[1e-9, 1.0], [1.0, 1e-9]]), labels)
    assert float(plain) == pytest.approx(-(math.log(0.6) + math.log(0.7)) / 2.0, rel=1e-4)


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_cross_modal_focal_loss_stop_gradient_through_partner(stop_gradient):
    logits_m = tf.Variable([[0.3, -0.2, 0.1]])
    logits_n = tf.Variable([[0.5, 0.1, -0.4]])
    with tf.GradientTape(persistent=True) as tape:
        loss = recognition.cross_modal_focal_loss(logits_m, logits_n, tf.constant([0]),
                                                  stop_gradient_partner=stop_gradient)
    gradient_n = tape.gradient(loss, logits_n)
    assert np.any(np.abs(tape.gradient(loss, logits_m).numpy()) > 0)
    if stop_gradient:
        assert gradient_n is None or np.all(gradient_n.numpy() == 0)
    else:
        assert np.any(np.abs(gradient_n.numpy()) > 1e-6)


def test_alignment_weight_rho():
    weaker = recognition.alignment_weight(tf.constant(1.5), tf.constant(1.0), beta=2.0)
    assert float(weaker) == pytest.approx(math.e - 1.0, rel=1e-6)
    stronger = recognition.alignment_weight(tf.constant(1.0), tf.constant(1.5), beta=2.0)
    assert float(stronger) == 0.0
    capped = recognition.alignment_weight(tf.constant(3.0), tf.constant(1.0), beta=2.0,
                                          max_loss_gap=0.25)
    assert float(capped) == pytest.approx(math.exp(0.5) - 1.0, rel=1e-6)


def test_semantic_alignment_loss_and_its_gradients():
    features_m = tf.Variable([[1.0, 0.0], [0.0, 2.0]])
    features_n = tf.Variable([[1.0, 1.0], [0.0, 1.0]])
    loss_m, loss_n = tf.Variable(1.5), tf.Variable(1.0)
    with tf.GradientTape(persistent=True) as tape:
        loss = recognition.semantic_alignment_loss(features_m, features_n, loss_m, loss_n,
                                                   beta=2.0)
    expected = (math.e - 1.0) * ((1.0 - 1.0 / math.sqrt(2.0)) + (1.0 - 1.0)) / 2.0
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # rho is a constant and the partner is the target: only f_id^m gets a gradient.
    assert tape.gradient(loss, loss_m) is None
    assert tape.gradient(loss, loss_n) is None
    assert tape.gradient(loss, features_n) is None
    assert np.any(np.abs(tape.gradient(loss, features_m).numpy()) > 0)


def test_semantic_alignment_is_zero_for_the_stronger_branch():
    features_m = tf.Variable([[1.0, 0.0]])
    with tf.GradientTape() as tape:
        loss = recognition.semantic_alignment_loss(features_m, tf.constant([[0.0, 1.0]]),
                                                   tf.constant(0.5), tf.constant(2.0))
    assert float(loss) == 0.0
    gradient = tape.gradient(loss, features_m)
    assert gradient is None or np.all(gradient.numpy() == 0)


def test_disentanglement_uniform_optimum():
    num_ids, num_styles = 5, 2
    uniform = recognition.disentanglement_loss(tf.zeros([3, num_ids]), tf.zeros([3, num_styles]))
    assert float(uniform) == pytest.approx(math.log(num_ids) + math.log(num_styles), rel=1e-6)
    rng = np.random.default_rng(0)
    for _ in range(5):
        other = recognition.disentanglement_loss(
            tf.constant(rng.normal(size=(3, num_ids)), tf.float32),
            tf.constant(rng.normal(size=(3, num_styles)), tf.float32))
        assert float(other) > float(uniform)
    # Stationary at the uniform point (any constant shift of the logits is uniform too).
    logits = tf.Variable(tf.fill([2, num_ids], 3.0))
    with tf.GradientTape() as tape:
        value = recognition.uniform_cross_entropy(logits)
    np.testing.assert_allclose(tape.gradient(value, logits).numpy(), 0.0, atol=1e-7)
    # Hand value of one non-uniform row: -(1/K) sum log softmax.
    row = np.array([1.0, 0.0, 0.0, 0.0, 0.0])
    log_softmax = row - math.log(np.exp(row).sum())
    assert float(recognition.uniform_cross_entropy(tf.constant([row], tf.float32))) == \
        pytest.approx(-log_softmax.mean(), rel=1e-6)


def _branch(rng, batch=4, classes=3, dim=6):
    def tensor(*shape):
        return tf.constant(rng.normal(size=shape), tf.float32)

    return recognition.BranchOutputs(
        id_logits=tensor(batch, classes), style_logits=tensor(batch, 2),
        identity_features=tensor(batch, dim), dis_identity_logits=tensor(batch, classes),
        dis_style_logits=tensor(batch, 2))


def test_branch_totals_are_weighted_sums_of_the_terms():
    rng = np.random.default_rng(1)
    outputs = {"rgb": _branch(rng), "depth": _branch(rng)}
    labels = tf.constant([0, 1, 2, 0])
    config = RecognizerLossConfig()
    results = recognition.branch_losses(outputs, labels, {"rgb": 0, "depth": 1}, config)
    for branch in ("rgb", "depth"):
        expected = (0.5 * results[f"cls_{branch}"] + 0.5 * results[f"cmfl_{branch}"]
                    + 0.05 * results[f"sa_{branch}"] + 0.5 * results[f"dis_{branch}"])
        assert float(results[f"total_{branch}"]) == pytest.approx(float(expected), rel=1e-6)
    # Exactly one branch is the weaker one: the other's rho is 0.
    rhos = sorted(float(results[f"rho_{branch}"]) for branch in ("rgb", "depth"))
    assert rhos[0] == 0.0 and rhos[1] > 0.0

    only_cls = recognition.branch_losses(outputs, labels, {"rgb": 0, "depth": 1},
                                         RecognizerLossConfig(losses=("cls",)))
    assert not any(key.startswith(("sa_", "cmfl_", "dis_")) for key in only_cls)
    assert float(only_cls["total_rgb"]) == pytest.approx(0.5 * float(only_cls["cls_rgb"]))

    single = recognition.branch_losses({"rgb": outputs["rgb"]}, labels, {"rgb": 0}, config)
    # One branch: no cross-modal terms, no style to disentangle (issue 10, defect 2).
    assert not any(key in single for key in ("cmfl_rgb", "sa_rgb", "dis_rgb"))


def test_unknown_loss_term_is_rejected():
    with pytest.raises(ValueError, match="unknown"):
        RecognizerLossConfig(losses=("cls", "triplet"))


# --- issue 10, defect 2: one image branch has no style to classify or disentangle -------------

def test_single_branch_cls_is_the_identity_loss_alone_and_dis_is_not_used():
    id_logits = tf.constant([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    labels = tf.constant([0, 1])
    outputs = {"depth": recognition.BranchOutputs(
        id_logits=id_logits, style_logits=tf.constant([[0.3, -0.2], [0.1, 0.4]]),
        identity_features=tf.ones([2, 4]), dis_identity_logits=tf.zeros([2, 3]),
        dis_style_logits=tf.zeros([2, 2]))}
    results = recognition.branch_losses(outputs, labels, {"depth": 1}, RecognizerLossConfig())
    identity = float(recognition.identity_loss(id_logits, labels))
    assert float(results["cls_depth"]) == pytest.approx(identity, rel=1e-6)
    assert "dis_depth" not in results and "sa_depth" not in results
    assert float(results["total_depth"]) == pytest.approx(0.5 * identity, rel=1e-6)


def test_table7_variants_are_classification_only_and_table8_full_is_its_own_run():
    from tf_rgbd.config import recognizer as config

    for name in config.TABLE7_VARIANTS:
        assert config.VARIANTS[name].losses == ("cls",), name
    # Table 7's last row IS Table 8's baseline; Table 8's full model differs from it.
    assert config.VARIANTS["t7_rgbd_mask"] == dataclasses.replace(
        config.VARIANTS["t8_cls"], description=config.VARIANTS["t7_rgbd_mask"].description)
    assert config.VARIANTS["t8_all"].losses != config.VARIANTS["t7_rgbd_mask"].losses
