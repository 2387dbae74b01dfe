"""The package's import graph: no cycle, no import from a higher layer, no program imported.

Every ``import`` statement of every module counts, function-local ones included (a cycle
hidden inside a function is still a cycle). Layers, bottom to top (see ARCHITECTURE.md)::

    io_utils, config  <  data, testing  <  metrics  <  losses, models
      <  training, augmentation  <  eval  <  deploy  <  experiments, benchmarks, cli

A module may import its own layer and the layers below. Programs (``datasets``, ``training``,
``export``, ``bench``) are never imported by the library, the tests or other programs; tests
run them as subprocesses.
"""
from __future__ import annotations

import ast
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROGRAM_PACKAGES = ("datasets", "training", "export", "bench")

# Layer rank of each part of the library (tf_rgbd.<part>).
LAYERS = {
    "io_utils": 0, "config": 0,
    "data": 1, "testing": 1,
    "metrics": 2,
    "losses": 3, "models": 3,
    "training": 4, "augmentation": 4,
    "eval": 5,
    "deploy": 6,
    "experiments": 7, "benchmarks": 7, "cli": 7,
}
# Parts only tests and benchmarks may use.
TEST_ONLY_PARTS = ("testing",)


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _python_files(*tops: str) -> list[pathlib.Path]:
    files = []
    for top in tops:
        base = ROOT / top
        files += sorted(base.rglob("*.py")) if base.is_dir() else [base]
    return files


def _imports(path: pathlib.Path) -> list[tuple[str, int]]:
    """Every module name imported by ``path`` (absolute names), with line numbers."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, node.lineno))
            # ``from tf_rgbd.x import y`` may import the submodule tf_rgbd.x.y.
            found += [(f"{module}.{alias.name}", node.lineno) for alias in node.names]
    return found


def _library_graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in _python_files("tf_rgbd")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for imported, _ in _imports(path):
            # A module's own parent packages are imported before it anyway (no cycle).
            if imported in modules and imported != name and not name.startswith(imported + "."):
                graph[name].add(imported)
    return graph


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_library_has_no_import_cycle():
    graph = _library_graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_no_module_imports_a_higher_layer():
    unknown = sorted({_part(name) for name in _library_graph()} - set(LAYERS) - {""})
    assert not unknown, f"tf_rgbd parts without a layer in this test: {unknown}"
    violations = []
    for path in _python_files("tf_rgbd"):
        module = _module_name(path)
        rank = LAYERS.get(_part(module), -1)
        for imported, line in _imports(path):
            if not imported.startswith("tf_rgbd.") or imported == module:
                continue
            part = _part(imported)
            if part not in LAYERS:
                continue
            if LAYERS[part] > rank:
                violations.append(f"{path.relative_to(ROOT)}:{line} ({_part(module) or 'tf_rgbd'},"
                                  f" layer {rank}) imports {imported} (layer {LAYERS[part]})")
            if part in TEST_ONLY_PARTS and _part(module) not in TEST_ONLY_PARTS:
                violations.append(f"{path.relative_to(ROOT)}:{line} imports the test helpers "
                                  f"{imported}")
    assert not violations, "imports from a higher layer:\n" + "\n".join(violations)


@pytest.mark.parametrize("scope", ["tf_rgbd", "tests", *PROGRAM_PACKAGES])
def test_no_program_module_is_imported(scope):
    """Programs are run (``python -m``), never imported: by the library, by the tests, or by
    another program (benches included). A program may import its own package's ``__init__``."""
    violations = []
    for path in _python_files(scope):
        own = _module_name(path).split(".")[0]
        for imported, line in _imports(path):
            top = imported.split(".")[0]
            if top in PROGRAM_PACKAGES and not (top == own and imported == own):
                violations.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    assert not violations, "program modules imported:\n" + "\n".join(violations)


def test_the_unpackaged_tests_folder_is_never_imported_outside_tests():
    violations = [f"{path.relative_to(ROOT)}:{line} imports {imported}"
                  for scope in ("tf_rgbd", *PROGRAM_PACKAGES)
                  for path in _python_files(scope)
                  for imported, line in _imports(path)
                  if imported.split(".")[0] == "tests"]
    assert not violations, "\n".join(violations)


def test_every_program_defines_main_and_runs_it_through_cli():
    """Thin wrappers: each program module has ``main`` and hands it to ``tf_rgbd.cli.run``."""
    missing = []
    for package in PROGRAM_PACKAGES:
        for path in _python_files(package):
            if path.name == "__init__.py":
                continue
            text = path.read_text(encoding="utf-8")
            if "def main(" not in text or "cli.run(main)" not in text:
                missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"programs without main() run by cli.run: {missing}"
    assert os.path.isdir(ROOT / "tf_rgbd")
