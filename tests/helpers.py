"""Checks shared by every model test: output shapes, config round trip, .keras save/load.

Usage (inside a test)::

    outputs = helpers.run_model_checks(model, inputs, expected_shapes={"depth": (2, 64, 64, 1)},
                                       tmp_path=tmp_path)
    helpers.run_precision_checks(lambda: build_model(), inputs, tmp_path)  # mixed policies
"""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf


def _as_dict(outputs: Any) -> dict[str, np.ndarray]:
    if isinstance(outputs, Mapping):
        return {key: keras.ops.convert_to_numpy(value) for key, value in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return {str(index): keras.ops.convert_to_numpy(value) for index, value in enumerate(outputs)}
    return {"output": keras.ops.convert_to_numpy(outputs)}


def assert_output_shapes(outputs: Any, expected_shapes: Mapping[str, tuple]) -> None:
    """Every named output has the expected shape (``None`` in an expected dim matches any)."""
    named = _as_dict(outputs)
    for name, expected in expected_shapes.items():
        assert name in named, f"missing output {name!r}; outputs are {sorted(named)}"
        actual = named[name].shape
        assert len(actual) == len(expected) and all(
            e is None or e == a for e, a in zip(expected, actual)), (
                f"output {name!r}: shape {actual}, expected {expected}")


def assert_outputs_close(first: Any, second: Any, atol: float = 1e-5, rtol: float = 1e-5) -> None:
    first, second = _as_dict(first), _as_dict(second)
    assert sorted(first) == sorted(second), (sorted(first), sorted(second))
    for name in first:
        np.testing.assert_allclose(first[name], second[name], atol=atol, rtol=rtol,
                                   err_msg=f"output {name!r} differs")


def assert_config_round_trip(layer: keras.layers.Layer) -> keras.layers.Layer:
    """``from_config(get_config())`` rebuilds an equal config (every argument is stored)."""
    config = layer.get_config()
    rebuilt = layer.__class__.from_config(config)
    assert rebuilt.get_config() == config, "get_config() of the rebuilt layer differs"
    return rebuilt


def assert_keras_file_round_trip(model: keras.Model, inputs: Any, tmp_path: Any,
                                 atol: float = 1e-5) -> keras.Model:
    """Saves ``model`` as ``.keras``, reloads it WITHOUT custom_objects and compares outputs."""
    path = os.path.join(str(tmp_path), f"{model.name}.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path, compile=False)
    assert_outputs_close(model(inputs, training=False), reloaded(inputs, training=False), atol=atol)
    assert (len(reloaded.weights), reloaded.count_params()) == (
        len(model.weights), model.count_params()), "the reloaded model has other weights"
    return reloaded


def assert_trains(model: keras.Model, inputs: Any) -> None:
    """A training-mode forward/backward pass: finite loss, and finite gradients that reach
    the model's variables (a disconnected graph or a stop-gradient in the wrong place fails).
    The model's state (BatchNorm statistics, seeds) is restored afterwards: no side effect."""
    state = [(variable, np.array(variable)) for variable in model.non_trainable_variables]
    with tf.GradientTape() as tape:
        outputs = model(inputs, training=True)
        loss = tf.add_n([tf.reduce_mean(tf.square(tf.cast(value, tf.float32)))
                         for value in _flat(outputs).values()])
    assert np.isfinite(float(loss)), "training-mode loss is not finite"
    gradients = [gradient for gradient in tape.gradient(loss, model.trainable_variables)
                 if gradient is not None]
    assert gradients, "no gradient reaches the model's trainable variables"
    assert all(np.all(np.isfinite(tf.convert_to_tensor(g).numpy())) for g in gradients), (
        "non-finite gradients")
    for variable, value in state:
        variable.assign(value)


def run_model_checks(model: keras.Model, inputs: Any, expected_shapes: Mapping[str, tuple],
                     tmp_path: Any, check_config: bool = True, check_saving: bool = True,
                     atol: float = 1e-5, check_training: bool = True) -> dict[str, np.ndarray]:
    """The standard battery: forward pass shapes + finiteness, a training-mode gradient pass,
    config and .keras round trips (same outputs, same weight count). Mixed precision:
    :func:`run_precision_checks`."""
    outputs = model(inputs, training=False)
    assert_output_shapes(outputs, expected_shapes)
    for name, value in _as_dict(outputs).items():
        assert np.all(np.isfinite(value)), f"output {name!r} has non-finite values"
    if check_training:
        assert_trains(model, inputs)
    if check_config:
        assert_config_round_trip(model)
    if check_saving:
        assert_keras_file_round_trip(model, inputs, tmp_path, atol=atol)
    return _as_dict(outputs)


PRECISION_POLICIES = ("mixed_float16", "mixed_bfloat16")


def run_precision_checks(make_model: Callable[[], keras.Model], inputs: Any, tmp_path: Any,
                         policies: Sequence[str] = PRECISION_POLICIES,
                         relative_tolerance: float = 0.1) -> None:
    """The model under every mixed dtype policy: built by ``make_model()`` while the policy is
    set, a symbolic call and a training-mode forward/backward pass give float32, finite outputs
    and finite gradients, and its ``.keras`` file (``loading.save_keras_model``) reloads as a
    float32 model whose outputs match the mixed model's within ``relative_tolerance`` of their
    scale. The global policy is restored afterwards.
    """
    from tf_rgbd.models import loading
    previous = keras.mixed_precision.global_policy().name
    for policy in policies:
        keras.mixed_precision.set_global_policy(policy)
        try:
            model = make_model()
            symbolic = model(tf.nest.map_structure(
                lambda value: keras.Input(tuple(value.shape[1:])), inputs))
            for name, value in _flat(symbolic).items():
                assert value.dtype == "float32", f"{policy}: symbolic output {name!r} is {value.dtype}"
            with tf.GradientTape() as tape:
                outputs = model(inputs, training=True)
                loss = tf.add_n([tf.reduce_mean(tf.square(tf.cast(value, tf.float32)))
                                 for value in _flat(outputs).values()])
            for name, value in _flat(outputs).items():
                assert value.dtype == tf.float32, f"{policy}: output {name!r} is {value.dtype}"
                assert np.all(np.isfinite(value.numpy())), f"{policy}: output {name!r} not finite"
            gradients = [gradient for gradient in tape.gradient(loss, model.trainable_variables)
                         if gradient is not None]
            assert gradients, f"{policy}: no gradient reaches the model's variables"
            assert all(np.all(np.isfinite(tf.convert_to_tensor(g).numpy())) for g in gradients), (
                f"{policy}: non-finite gradients")
            mixed = _as_dict(model(inputs, training=False))
            path = loading.save_keras_model(model, os.path.join(str(tmp_path),
                                                                f"{policy}-{model.name}.keras"))
        finally:
            keras.mixed_precision.set_global_policy(previous)
        reloaded = loading.load_keras_model(path)
        assert not loading.uses_mixed_precision(reloaded), f"{policy}: saved model is not float32"
        served = _as_dict(reloaded(inputs, training=False))
        for name, value in served.items():
            assert value.dtype == np.float32, f"{policy}: reloaded output {name!r} is {value.dtype}"
            scale = float(np.max(np.abs(value))) + 1e-3
            np.testing.assert_allclose(value, mixed[name], atol=relative_tolerance * scale,
                                       err_msg=f"{policy}: reloaded output {name!r} differs")


def _flat(outputs: Any) -> dict:
    if isinstance(outputs, Mapping):
        return dict(outputs)
    if isinstance(outputs, (list, tuple)):
        return {str(index): value for index, value in enumerate(outputs)}
    return {"output": outputs}


def random_images(batch: int, size: int, channels: int, seed: int = 0,
                  low: float = -1.0, high: float = 1.0) -> tf.Tensor:
    """float32 [batch, size, size, channels] uniform in [low, high]."""
    rng = np.random.default_rng(seed)
    return tf.constant(rng.uniform(low, high, (batch, size, size, channels)).astype(np.float32))


def random_masks(batch: int, size: int, num_classes: int = 7, seed: int = 0) -> tf.Tensor:
    """float32 [batch, size, size, num_classes] one-hot masks of random class indices."""
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, num_classes, (batch, size, size))
    return tf.one_hot(indices, num_classes, dtype=tf.float32)


# TF-free example factory (also used by spawned writer workers in tests).
from tests.examples import make_face_example  # noqa: E402,F401
