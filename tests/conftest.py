"""Test-wide settings: quiet TF logs, 2 logical CPU devices for distribution tests."""
import os

import pytest

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


# `make test` runs `pytest -n 2 --dist loadgroup`: the groups of fixture_group (whole modules or
# folders that share an expensive fixture) are dispatched first, largest first (xdist's rule),
# then the single tests in this order. The longest single tests start first, so that the other
# worker drains the short ones meanwhile instead of idling while one long test runs at the end.
# Prefixes of node ids, longest first.
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


def fixture_group(item) -> str:
    """The xdist group that keeps an expensive shared fixture built once: tests using one of
    this suite's session-scoped fixtures share its folder's group (``tests/deploy``), tests
    using a module-scoped one their module's; '' = none (the test goes wherever it fits).

    Without it, `--dist worksteal` split modules across the two workers and each built the
    module's fixture (measured: the deploy export fixture built twice, 77 s + 92 s)."""
    best = ""
    for definitions in item._fixtureinfo.name2fixturedefs.values():
        for definition in definitions:
            where = definition.baseid.split("::")[0]
            if definition.scope not in ("module", "session") or not where.startswith("tests"):
                continue
            if definition.scope == "session" or not best:
                best = where
    return best


@pytest.hookimpl(tryfirst=True)  # before xdist's hook reads the groups
def pytest_collection_modifyitems(session, config, items):
    def rank(item):
        for index, prefix in enumerate(LONG_RUNNING_FIRST):
            if item.nodeid.startswith(prefix):
                return index
        return len(LONG_RUNNING_FIRST)

    items.sort(key=rank)  # stable: the file order is kept within each rank
    for item in items:
        group = fixture_group(item)
        if group:
            item.add_marker(pytest.mark.xdist_group(name=group))
