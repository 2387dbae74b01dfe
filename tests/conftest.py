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


# The longest tests (minutes each on CI's 2 cores) start first, so that with
# `pytest -n 2 --dist worksteal` the other worker drains the short ones meanwhile instead of
# idling while one long test runs at the end. Prefixes of node ids, longest first.
LONG_RUNNING_FIRST = (
    "tests/test_build_md.py::test_the_documented_pipeline_commands_run_in_order",
    "tests/test_build_md.py::test_the_documented_standalone_commands_run",
    "tests/experiments/test_demo.py",
    "tests/training/test_multi_worker.py",
    "tests/deploy/test_export.py",
    "tests/training/test_runner.py",
    "tests/training/test_rgbd_trainer.py",
    "tests/reliability/test_process_faults.py",
)


def pytest_collection_modifyitems(session, config, items):
    def rank(item):
        for index, prefix in enumerate(LONG_RUNNING_FIRST):
            if item.nodeid.startswith(prefix):
                return index
        return len(LONG_RUNNING_FIRST)

    items.sort(key=rank)  # stable: the file order is kept within each rank
