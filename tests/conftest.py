"""Test-wide settings: quiet TF logs, 2 logical CPU devices for distribution tests."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402  (after the log-level variable)

# Two logical CPUs let MirroredStrategy tests run on one physical CPU. This must happen before
# TF initialises its devices, i.e. before any test touches a tensor.
_cpus = tf.config.list_physical_devices("CPU")
if _cpus:
    try:
        tf.config.set_logical_device_configuration(
            _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    except RuntimeError:
        pass  # already initialised (e.g. a plugin touched TF first): distribution tests skip
