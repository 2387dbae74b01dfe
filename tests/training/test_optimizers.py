"""The recognizer's SGD: coupled L2 weight decay (InsightFace / PyTorch) against a hand-computed
two-step update (issue 10, defect 5)."""
import keras
import numpy as np
import pytest

from tf_rgbd.config import flags as config_flags
from tf_rgbd.config.recognizer import RecognizerExperimentConfig, SGDConfig
from tf_rgbd.training import rgbd_trainer

LR, MOMENTUM, WD, GRADIENT = 0.1, 0.9, 0.1, 0.5


def _two_steps(config):
    optimizer = rgbd_trainer.build_optimizer(config, steps_per_epoch=1)
    variable = keras.Variable(np.array([1.0], np.float32))
    optimizer.build([variable])
    for _ in range(2):
        optimizer.apply_gradients([(np.array([GRADIENT], np.float32), variable)])
    return float(np.asarray(variable)[0])


def test_default_weight_decay_is_coupled_l2_before_momentum():
    # PyTorch SGD: d = g + wd*w; v = m*v + d (v1 = d1); w -= lr*v.
    w0 = 1.0
    d1 = GRADIENT + WD * w0                    # 0.6
    w1 = w0 - LR * d1                          # 0.94
    d2 = GRADIENT + WD * w1                    # 0.594
    v2 = MOMENTUM * d1 + d2                    # 1.134
    w2 = w1 - LR * v2                          # 0.8266
    config = SGDConfig(learning_rate=LR, lr_decay_epochs=(), momentum=MOMENTUM, weight_decay=WD)
    assert config.weight_decay_mode == "coupled"
    assert _two_steps(config) == pytest.approx(w2, abs=1e-6)


def test_decoupled_weight_decay_is_an_option():
    # Keras: w -= lr*wd*w, then v = m*v - lr*g; w += v.
    w = 1.0 - LR * WD * 1.0
    velocity = -LR * GRADIENT
    w += velocity                               # 0.94
    w -= LR * WD * w
    velocity = MOMENTUM * velocity - LR * GRADIENT
    w += velocity                               # 0.8356
    config = SGDConfig(learning_rate=LR, lr_decay_epochs=(), momentum=MOMENTUM, weight_decay=WD,
                       weight_decay_mode="decoupled")
    assert _two_steps(config) == pytest.approx(w, abs=1e-6)


def test_weight_decay_mode_is_a_flag():
    from absl import flags

    flag_values = flags.FlagValues()
    binding = config_flags.define_config_flags(RecognizerExperimentConfig(), flag_values)
    flag_values(["prog", "--weight_decay_mode=decoupled"])
    assert binding.config().optimizer.weight_decay_mode == "decoupled"
