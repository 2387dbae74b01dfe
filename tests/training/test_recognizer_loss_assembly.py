"""The trainer's loss equals a hand assembly, in NumPy, of the paper's terms.

Pins the wiring between the recognizer's outputs, the CombinedMargin head and the loss terms:
swapping the margin ``logits`` and the margin-free ``cos_logits`` anywhere in
``RGBDRecognizerTrainer.compute_branch_losses``, feeding C_style the identity features, or
dropping the style term would each change the numbers below.
"""
from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from tf_rgbd.config.recognizer import RecognizerLossConfig, RecognizerModelConfig, SGDConfig
from tf_rgbd.models.recognizer import STYLE_LABELS
from tf_rgbd.training import rgbd_trainer

SIZE = 32
NUM_IDS = 5


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(_log_softmax(logits)[np.arange(len(labels)), labels]))


def _arcface_logits(features, weights, labels, s, m2):
    """InsightFace ArcFace: s*cos(theta + m2) on the true class (monotonic fallback past pi)."""
    features = features / np.linalg.norm(features, axis=-1, keepdims=True)
    weights = weights / np.linalg.norm(weights, axis=0, keepdims=True)
    cosine = np.clip(features @ weights, -1 + 1e-7, 1 - 1e-7)
    theta = np.arccos(cosine)
    target = np.where(theta + m2 <= math.pi, np.cos(theta + m2),
                      cosine - math.sin(math.pi - m2) * m2)
    one_hot = np.eye(weights.shape[1])[labels]
    return s * (cosine * (1 - one_hot) + target * one_hot), s * cosine


def test_trainer_loss_equals_hand_assembled_arcface_and_style_terms():
    keras.utils.set_random_seed(3)
    model_config = RecognizerModelConfig(backbone="tiny", image_size=SIZE, embedding_dim=16,
                                         dropout_rate=0.0, margin_s=64.0, margin_m2=0.5)
    loss_config = RecognizerLossConfig(losses=("cls", "cmfl"), lambda_cls=0.5, lambda_cmfl=0.5)
    trainer, _ = rgbd_trainer.build_trainer(model_config, loss_config,
                                            SGDConfig(learning_rate=0.1, lr_decay_epochs=()),
                                            NUM_IDS, steps_per_epoch=10)
    rng = np.random.default_rng(0)
    labels = np.arange(8) % NUM_IDS
    batch = {"rgb": tf.constant(rng.uniform(-1, 1, (8, SIZE, SIZE, 3)), tf.float32),
             "depth": tf.constant(rng.uniform(0, 1, (8, SIZE, SIZE, 1)), tf.float32),
             "mask": tf.one_hot(rng.integers(0, 7, (8, SIZE, SIZE)), 7),
             "label": tf.constant(labels, tf.int32)}
    results = {key: float(value)
               for key, value in trainer.compute_branch_losses(batch, training=False).items()}

    recognizer = trainer.recognizer
    outputs = recognizer({key: batch[key] for key in ("rgb", "depth", "mask")}, training=False)
    class_weights = np.asarray(recognizer.identity_classifier.class_weights)
    style_kernel = np.asarray(recognizer.style_classifier.kernel)
    style_bias = np.asarray(recognizer.style_classifier.bias)
    margin_logits, true_probability = {}, {}
    for branch in ("rgb", "depth"):
        margin_logits[branch], cos_logits = _arcface_logits(
            np.asarray(outputs[f"id_{branch}"]), class_weights, labels, 64.0, 0.5)
        assert not np.allclose(margin_logits[branch], cos_logits), "the margin must matter"
        true_probability[branch] = np.exp(
            _log_softmax(margin_logits[branch])[np.arange(8), labels])
        style_logits = np.asarray(outputs[f"style_{branch}"]) @ style_kernel + style_bias
        identity = _cross_entropy(margin_logits[branch], labels)
        style = _cross_entropy(style_logits, np.full(8, STYLE_LABELS[branch]))
        np.testing.assert_allclose(results[f"id_{branch}"], identity, rtol=1e-4)
        np.testing.assert_allclose(results[f"cls_{branch}"], identity + style, rtol=1e-4)
        accuracy = np.mean(np.argmax(cos_logits, axis=-1) == labels)
        np.testing.assert_allclose(results[f"acc_{branch}"], accuracy)
    for branch, partner in (("rgb", "depth"), ("depth", "rgb")):
        m_t, n_t = true_probability[branch], true_probability[partner]
        weight = n_t * 2 * m_t * n_t / (m_t + n_t)
        cmfl = np.mean(-1.0 * (1 - weight) ** 3.0 * np.log(m_t))
        np.testing.assert_allclose(results[f"cmfl_{branch}"], cmfl, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(results[f"total_{branch}"],
                                   0.5 * results[f"cls_{branch}"] + 0.5 * cmfl, rtol=1e-4)
