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


def save_keras_model(model: keras.Model, path: str) -> str:
    """Saves ``model`` as a ``.keras`` file atomically (temporary file, then rename).

    A reader never sees a half-written model; on an error the previous file is kept.
    """
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
