"""The package's shape: its layers, imports only downward (inside functions too), no import cycle, and the engine never
imports the scripts."""

import ast
import fnmatch
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


def _imported(tree: ast.AST, module: str, type_checking: bool = False) -> set[str]:
    """The absolute names ``tree`` imports, at module level and inside functions alike (under
    ``if TYPE_CHECKING:``, which only type checkers run, only with ``type_checking``)."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree) if type_checking else _run_time(tree):
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


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _run_time(node: ast.AST):
    """Every node under ``node`` that can run: all of them but the body of an ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield other
                yield from _run_time(other)
            continue
        yield child
        yield from _run_time(child)


def import_graph() -> dict[str, set[str]]:
    """pvae module → the pvae modules it imports, when it is imported or when one of its functions runs."""
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[name] = {target for target in _imported(tree, name) if target in MODULES} - {name}
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


# --------------------------------------------------------------------------------------------
# The layers.

#: pvae's layers, bottom to top, each a tuple of groups of modules in order: a module imports its own group,
#: the groups before it in its layer, and the layers below. A group is a module's name without ``pvae.``, or a
#: pattern: ``models.*`` is the package and every module in it, ``measures.diagnostics*`` every name that starts
#: so. Every module is in exactly one group, and a layer is a folder of the package
#: (:func:`test_the_folders_are_the_layers`): ``pvae.models`` and ``pvae.guides`` (the repository's top-level
#: ``models/`` and ``guides/``) belong to the engine, ``pvae`` itself to the base, ``cli`` to its own layer.
LAYERS: dict[str, tuple[str, ...]] = {
    "base": (
        "",
        "base",
        "base.options",
        "base.files",
        "base.registry",
        "base.sites",
        "base.device",
        "base.distributed",
        "base.rng",
        "base.results",
        "base.failures",
        "base.runs",
        "base.az",
    ),
    "data": ("data.split", "data.idx", "data.userdata", "data.dsprites", "data"),
    "engine": (
        "engine",
        "engine.nets",
        "engine.likelihoods",
        "engine.surrogate",
        "engine.dreg",
        "engine.tcvae",
        "engine.estimators",
        "engine.pair",
        "engine.objectives",
        "engine.ranks",
        "engine.bounds",
        "engine.trainconfig",
        "models.*",
        "guides.*",
        "engine.compatibility",
        "engine.resolve",
        "engine.train",
        "engine.config",
    ),
    "measures": (
        "measures",
        "measures.evaluate",
        "measures.memory",
        "measures.diagnostics*",
        "measures.disentangle*",
        "measures.quality*",
        "measures.compare*",
        "measures.encode",
    ),
    "plots": ("plots*",),
    "studies": ("studies", "studies.sweep*", "studies.study", "studies.report*", "studies.tensorboard"),
    "app": ("app*",),
    "cli": ("cli", "__main__"),
}


def _matches(name: str, group: str) -> bool:
    """Whether the module ``name`` (without ``pvae.``) is in ``group``."""
    if group.endswith(".*") and name == group[:-2]:
        return True
    return fnmatch.fnmatchcase(name, group)


def group_of(module: str) -> tuple[int, int]:
    """``(layer, group)`` of a module of :data:`MODULES`, as indices of :data:`LAYERS` (and of the layer's groups).

    :raises LookupError: for a module in no group, or in several.
    """
    name = module.removeprefix("pvae").removeprefix(".")
    places = [
        (i, j)
        for i, groups in enumerate(LAYERS.values())
        for j, group in enumerate(groups)
        if _matches(name, group) and (group or not name)
    ]
    if len(places) != 1:
        raise LookupError(f"{module} is in {len(places)} groups of LAYERS: place it in one layer")
    return places[0]


def _short(module: str) -> str:
    return module.removeprefix("pvae").removeprefix(".")


def violations(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """The imports of ``graph`` that go up a layer, or to a later group of their own layer."""
    # a module in no group fails test_every_module_is_in_one_layer
    placed = {module for module in set(graph).union(*graph.values()) if _placed(module)}
    return {
        (_short(importer), _short(target))
        for importer in placed & set(graph)
        for target in graph[importer] & placed
        if group_of(target) > group_of(importer)
    }


def _placed(module: str) -> bool:
    try:
        group_of(module)
    except LookupError:
        return False
    return True


def test_every_module_is_in_one_layer():
    misplaced = [module for module in MODULES if not _placed(module)]
    assert not misplaced, f"modules in no group of LAYERS, or in several: place each in one: {misplaced}"


#: Modules outside the layer folders, and the layer each belongs to.
OUTSIDE_FOLDERS = {"": "base", "models": "engine", "guides": "engine", "cli": "cli", "__main__": "cli"}


def test_the_folders_are_the_layers():
    """Every module of the folder ``pvae/L/`` is in the layer ``L``, so that ``ls pvae/`` reads as the layers."""
    names = list(LAYERS)
    wrong = []
    for module in MODULES:
        name = _short(module)
        folder = name.split(".")[0]
        layer = OUTSIDE_FOLDERS.get(folder, folder)
        if layer not in names or names[group_of(module)[0]] != layer:
            wrong.append(f"{module} (in {folder or 'pvae'}/, placed in {names[group_of(module)[0]]})")
    assert not wrong, f"modules whose folder is not their layer: {wrong}"


def test_every_group_of_the_layers_holds_a_module():
    names = [_short(m) for m in MODULES]
    empty = [g for groups in LAYERS.values() for g in groups if not any(_matches(n, g) for n in names if n or not g)]
    assert not empty, f"groups of LAYERS that hold no module: {empty}"


def test_imports_go_down_the_layers():
    found = sorted(violations(import_graph()))
    assert not found, "imports up a layer, or up their layer's order: " + ", ".join(f"{a} → {b}" for a, b in found)


def test_the_layer_check_sees_imports_inside_functions_and_not_those_for_type_checkers():
    source = (
        "from typing import TYPE_CHECKING\nimport pvae.base.sites\nif TYPE_CHECKING:\n"
        "    from pvae.engine.train import A\nelse:\n    from pvae.base import files\n\ndef f():\n"
        "    from pvae.cli import main\n    if TYPE_CHECKING:\n"
        "        import pvae.base.runs\n"
    )
    imported = _imported(ast.parse(source), "pvae.engine.pair")
    assert {"pvae.base.sites", "pvae.base", "pvae.base.files", "pvae.cli", "pvae.cli.main"} == imported - {
        "typing",
        "typing.TYPE_CHECKING",
    }
    graph = {
        "pvae.engine.pair": {"pvae.cli", "pvae.base.sites"},
        "pvae.models.vae": {"pvae.engine.pair"},
        "pvae.base.sites": set(),
    }
    assert violations(graph) == {("engine.pair", "cli")}
    layer, group = group_of("pvae.models.vae")
    assert group_of("pvae.models") == (layer, group) and list(LAYERS.items())[layer][1][group] == "models.*"
    assert group_of("pvae") == (0, 0) and group_of("pvae.measures.diagnostics") < group_of("pvae.measures.compare")


def test_find_cycle_finds_a_cycle_and_only_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_walk_sees_the_engine_and_the_zoo():
    graph = import_graph()
    assert {
        "pvae.base.files",
        "pvae.base.runs",
        "pvae.engine.config",
        "pvae.models.vae",
        "pvae.guides.gaussian",
    } <= set(graph)
    assert "pvae.base.files" in graph["pvae.base.runs"]
    assert "pvae.engine.config" not in graph["pvae.base.runs"]


def test_no_import_cycle_among_pvae_modules():
    """No cycle, imports inside functions included."""
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_files_is_a_leaf():
    assert import_graph()["pvae.base.files"] == set()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_pvae_never_imports_the_experiments(module):
    tree = ast.parse(MODULES[module].read_text())
    imported = _imported(tree, module, type_checking=True)
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
