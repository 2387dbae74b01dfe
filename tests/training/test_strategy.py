"""build_strategy, replica_scaled, build_optimizers, make_distributable."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_rgbd.training import strategy as strategy_lib


def _needs_two_cpus():
    if len(tf.config.list_logical_devices("CPU")) < 2:
        pytest.skip("needs the 2 logical CPUs configured in tests/conftest.py")


def test_default_strategy_has_one_replica_and_leaves_losses_alone():
    strategy = strategy_lib.build_strategy("default")
    assert strategy.num_replicas_in_sync == 1
    assert float(strategy_lib.replica_scaled(tf.constant(3.0))) == 3.0
    with pytest.raises(ValueError, match="unknown strategy"):
        strategy_lib.build_strategy("tpu")


def test_mirrored_over_logical_cpus_scales_the_loss_inside_replicas():
    _needs_two_cpus()
    strategy = strategy_lib.build_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 2
    per_replica = strategy.run(lambda: strategy_lib.replica_scaled(tf.constant(3.0)))
    values = [float(v) for v in strategy.experimental_local_results(per_replica)]
    assert values == [1.5, 1.5]


class ScaledRegression(keras.Model):
    """A custom train_step that uses replica_scaled, as every trainer should."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(1, kernel_initializer="ones")

    def call(self, inputs):
        return self.dense(inputs)

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = strategy_lib.replica_scaled(tf.reduce_mean(tf.square(self(x) - y)))
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return {"scaled_loss": loss}


def _one_step(strategy):
    with strategy.scope():
        model = ScaledRegression()
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        model(tf.zeros([1, 3]))
        strategy_lib.build_optimizers([(model.optimizer, model.trainable_variables)])
    x = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    y = np.ones([4, 1], np.float32)
    model.fit(tf.data.Dataset.from_tensors((x, y)).repeat(), epochs=1, steps_per_epoch=1,
              verbose=0)
    return [np.asarray(v) for v in model.weights]


def test_mirrored_update_equals_single_device_update():
    _needs_two_cpus()
    single = _one_step(strategy_lib.build_strategy("default"))
    mirrored = _one_step(strategy_lib.build_strategy("mirrored"))
    assert not np.allclose(single[0], 1.0)
    for expected, actual in zip(single, mirrored):
        np.testing.assert_allclose(actual, expected, atol=1e-6)


def test_build_optimizers_builds_slots_and_rejects_empty_variable_lists():
    dense = keras.layers.Dense(2)
    dense.build((None, 3))
    adam = keras.optimizers.Adam()
    (built,) = strategy_lib.build_optimizers([(adam, dense.trainable_variables)])
    assert built is adam and adam.built and len(adam.variables) > 2
    with pytest.raises(ValueError, match="no variables"):
        strategy_lib.build_optimizers([(keras.optimizers.Adam(), [])])


def test_make_distributable_casts_flags_and_drops_strings():
    dataset = tf.data.Dataset.from_tensors({"x": tf.ones([2, 3]), "has_depth": tf.constant([True, False]),
                                            "example_id": tf.constant(["a", "b"])})
    element = next(iter(strategy_lib.make_distributable(dataset)))
    assert set(element) == {"x", "has_depth"}
    assert element["has_depth"].dtype == tf.float32
    np.testing.assert_array_equal(element["has_depth"], [1.0, 0.0])
