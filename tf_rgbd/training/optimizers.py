"""The recognizer's SGD with the paper's weight decay.

InsightFace / PyTorch SGD (the paper's recipe: momentum 0.9, weight decay 5e-4) adds L2 to the
gradient BEFORE momentum::

    d_t = g_t + wd * w_t
    v_t = momentum * v_{t-1} + d_t        (v_1 = d_1)
    w_{t+1} = w_t - lr * v_t

Keras ``SGD(weight_decay=wd)`` instead decouples it (``w -= lr * wd * w`` outside momentum),
which at momentum 0.9 is about 10x weaker. :class:`CoupledWeightDecaySGD` is the coupled form
(``SGDConfig.weight_decay_mode = "coupled"``, the default); :func:`build_sgd` builds either.
"""
from __future__ import annotations

import keras
from keras import ops

from tf_rgbd.config.recognizer import SGDConfig


@keras.saving.register_keras_serializable(package="tf_rgbd")
class CoupledWeightDecaySGD(keras.optimizers.SGD):
    """Keras SGD (momentum, nesterov) with L2 weight decay coupled into the gradient.

    Args:
      l2: coefficient wd; ``wd * w`` is added to every variable's gradient before the momentum
        update (every trainable variable, as InsightFace's default parameter group).
      Other arguments: those of ``keras.optimizers.SGD`` (``weight_decay`` must stay None).
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, l2: float = 0.0,
                 name="coupled_wd_sgd", **kwargs):
        if kwargs.get("weight_decay"):
            raise ValueError("CoupledWeightDecaySGD: use l2=..., not the decoupled weight_decay")
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov,
                         name=name, **kwargs)
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        if self.l2:
            gradient = ops.add(gradient, ops.multiply(ops.cast(variable, gradient.dtype),
                                                      ops.cast(self.l2, gradient.dtype)))
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}


def build_sgd(config: SGDConfig, learning_rate) -> keras.optimizers.Optimizer:
    """SGD with momentum and ``config.weight_decay`` applied as ``config.weight_decay_mode``.

    Args:
      config: the optimiser config.
      learning_rate: a float or a ``LearningRateSchedule``.
    """
    if config.weight_decay_mode == "coupled":
        return CoupledWeightDecaySGD(learning_rate=learning_rate, momentum=config.momentum,
                                     l2=config.weight_decay)
    return keras.optimizers.SGD(learning_rate=learning_rate, momentum=config.momentum,
                                weight_decay=config.weight_decay or None)
