"""Loading saved models: every model class of the project is registered before a ``.keras``
file is read, and files are read in Keras' safe mode (no arbitrary code, no lambdas).

    generator = load_keras_model("runs/depthnet/generator.keras")

Errors name the file: a missing, truncated or foreign file raises :class:`ModelFileError`.
"""
from __future__ import annotations

import os
import zipfile

import keras

# Imported for their registrations (keras.saving.register_keras_serializable).
from tf_rgbd.models import (backbones, blocks, cgan_depth, depthnet,  # noqa: F401 (registers)
                            discriminators, heads, recognizer)


class ModelFileError(ValueError):
    """A model file is missing, truncated, or not a model of this project."""


def load_keras_model(path: str, compile: bool = False) -> keras.Model:
    """Loads a ``.keras`` file saved by this project (safe mode; no custom_objects needed)."""
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not a .keras archive (truncated, or another format); "
                             "re-save it with model.save('...keras')")
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as error:
        raise ModelFileError(f"{path}: cannot be loaded as a tf-rgbd model ({type(error).__name__}: "
                             f"{error})") from error


def load_depth_generator(path: str) -> keras.Model:
    """A saved depth generator (DepthNet or the cGAN baseline) from its ``.keras`` file."""
    model = load_keras_model(path)
    if not isinstance(model, (depthnet.DepthNetGenerator, cgan_depth.CGANDepthGenerator)):
        raise ModelFileError(f"{path}: holds a {type(model).__name__}, not a depth generator "
                             "(DepthNetGenerator / CGANDepthGenerator)")
    return model


MIXED_POLICIES = ("mixed_float16", "mixed_bfloat16")


def _with_float32_policies(config):
    """``config`` (a serialised Keras object) with every mixed dtype policy set to float32."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and isinstance(config.get("config"), dict) \
                and config["config"].get("name") in MIXED_POLICIES:
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {key: _with_float32_policies(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_with_float32_policies(value) for value in config]
    if isinstance(config, str) and config in MIXED_POLICIES:
        return "float32"
    return config


def uses_mixed_precision(model: keras.Model) -> bool:
    """True when ``model`` or any layer in it computes in float16/bfloat16."""
    layers = [model] + [layer for layer in model._flatten_layers(include_self=False)]
    return any(layer.dtype_policy.name in MIXED_POLICIES for layer in layers)


def float32_copy(model: keras.Model) -> keras.Model:
    """A float32 copy of ``model`` (same class, config and weights) for saving and serving.

    A model built under ``mixed_float16`` / ``mixed_bfloat16`` records that policy in every
    layer's config, so its ``.keras`` file would reload computing in half precision whatever
    the reader's policy. Its variables are float32 already: the copy rebuilds the model with
    float32 policies (the global policy set to float32 while the layers are created) and copies
    the weights. Models without a mixed layer are returned unchanged.
    """
    if not uses_mixed_precision(model):
        return model
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("float32")
    try:
        config = _with_float32_policies(keras.saving.serialize_keras_object(model))
        copy = keras.saving.deserialize_keras_object(config, safe_mode=True)
        if not copy.built:
            copy.build_from_config(model.get_build_config())
        copy.set_weights(model.get_weights())
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return copy


def save_keras_model(model: keras.Model, path: str) -> str:
    """Saves ``model`` as a ``.keras`` file atomically (temporary file, then rename).

    A reader never sees a half-written model; on an error the previous file is kept. A model
    trained under a mixed dtype policy is saved as its :func:`float32_copy`, so the file
    reloads and serves in float32.
    """
    model = float32_copy(model)
    if not path.endswith(".keras"):
        raise ValueError(f"{path}: Keras model files must end with .keras")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # Keras insists on the .keras suffix, so the temporary name keeps it.
    temporary = os.path.join(folder, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        model.save(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return path
