"""The package's shape: no import cycle among pvae's modules, and the engine never imports the scripts."""

import ast
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import pvae


def _modules() -> dict[str, Path]:
    """Every module of the installed pvae (``pvae.models`` and ``pvae.guides`` included), name → file."""
    found = {"pvae": Path(pvae.__file__)}
    # pvae.models and pvae.guides live in folders of their own (setuptools package-dir), out of pvae.__path__
    for package in ("pvae", "pvae.models", "pvae.guides"):
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.origin is not None, package
        found[package] = Path(spec.origin)
        for info in pkgutil.walk_packages(spec.submodule_search_locations, prefix=package + "."):
            sub = importlib.util.find_spec(info.name)
            assert sub is not None and sub.origin is not None, info.name
            found[info.name] = Path(sub.origin)
    return found


MODULES = _modules()


def _imported(tree: ast.AST, module: str, top_level: bool) -> set[str]:
    """The absolute names ``tree`` imports (module-level statements only when ``top_level``)."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    nodes = _top_level(tree.body) if top_level else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names.add(base)
            # `from pvae import data` imports the submodule pvae.data
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _top_level(body: list[ast.stmt]):
    """Statements run when the module is imported: the body, and the branches of its ``if``/``try``
    (not ``if TYPE_CHECKING:``, which only type checkers run)."""
    for node in body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            yield from _top_level(node.orelse)
            continue
        yield node
        if isinstance(node, ast.If):
            yield from _top_level(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            yield from _top_level(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                yield from _top_level(handler.body)


def import_graph() -> dict[str, set[str]]:
    """pvae module → the pvae modules its module-level statements import."""
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[name] = {target for target in _imported(tree, name, top_level=True) if target in MODULES} - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_a_cycle_and_only_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_walk_sees_the_engine_and_the_zoo():
    graph = import_graph()
    assert {"pvae.files", "pvae.runs", "pvae.config", "pvae.models.vae", "pvae.guides.gaussian"} <= set(graph)
    assert "pvae.files" in graph["pvae.runs"]
    assert "pvae.config" not in graph["pvae.runs"]


def test_no_import_cycle_among_pvae_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_files_is_a_leaf():
    assert import_graph()["pvae.files"] == set()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_pvae_never_imports_the_experiments(module):
    tree = ast.parse(MODULES[module].read_text())
    imported = _imported(tree, module, top_level=False)
    assert not {name for name in imported if name == "experiments" or name.startswith("experiments.")}


def test_an_installed_pvae_adds_one_top_level_name():
    """The distribution declares one top-level import name; ``pvae.models``/``pvae.guides`` come from the
    repository's ``models/`` and ``guides/`` folders, not from top-level packages of those names."""
    import importlib.metadata

    assert importlib.metadata.distribution("pvae").read_text("top_level.txt").split() == ["pvae"]
    assert importlib.util.find_spec("pvae.models").origin.endswith(str(Path("models", "__init__.py")))


def test_a_users_models_py_neither_shadows_nor_is_shadowed(tmp_path):
    """A research folder with its own ``models.py`` and ``guides.py`` (very common names) imports both
    its files and pvae's registries."""
    import subprocess
    import sys

    (tmp_path / "models.py").write_text("MINE = 'models'\n")
    (tmp_path / "guides.py").write_text("MINE = 'guides'\n")
    code = (
        "import models, guides, pvae.models, pvae.guides\nprint(models.MINE, guides.MINE, 'vae' in pvae.models.MODELS)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["models", "guides", "True"]
