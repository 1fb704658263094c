"""The experiment scripts declare no option by hand and restate none of pvae's constants: their parsers are
generated from config dataclasses (:mod:`pvae.base.options`), pvae's settings from pvae's own classes."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((ROOT / "experiments").glob("*.py"))


def _literal(node: ast.AST):
    """The value of a literal collection of two items or more, comparable whatever its order; else None."""
    if not isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
        return None
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return None
    if len(value) < 2:
        return None
    if isinstance(value, dict):
        return frozenset((k, repr(v)) for k, v in value.items())
    try:
        return frozenset(value)
    except TypeError:  # items that cannot be hashed (lists): compared in order
        return repr(value)


def _pvae_constants() -> dict:
    """pvae's module-level constants that are literal collections: value → ``module.NAME``."""
    constants = {}
    for path in sorted((ROOT / "pvae").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
            target = node.target if isinstance(node, ast.AnnAssign) else target
            if isinstance(target, ast.Name) and target.id.isupper() and node.value is not None:
                value = _literal(node.value)
                if value is not None:
                    constants[value] = f"{path.relative_to(ROOT)}: {target.id}"
    return constants


CONSTANTS = _pvae_constants()


def test_the_scripts_are_found():
    assert len(SCRIPTS) >= 10 and CONSTANTS  # a glob that matched nothing would make the others pass


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_a_script_declares_no_option_by_hand(path):
    """Every option comes from a config dataclass through :func:`pvae.base.options.add_options`."""
    calls = [
        f"{path.name}:{node.lineno}"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"
    ]
    assert not calls, f"add_argument called by hand at {', '.join(calls)}: declare a config field, or use pvae's"


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_a_script_restates_no_constant_of_pvae(path):
    """A literal collection equal to one of pvae's constants (``("auto", "on", "off")`` for
    :data:`pvae.engine.objectives.JIT_MODES`) is a copy that goes stale: import the constant."""
    copies = [
        f"{path.name}:{node.lineno} copies {CONSTANTS[value]}"
        for node in ast.walk(ast.parse(path.read_text()))
        if (value := _literal(node)) is not None and value in CONSTANTS
    ]
    assert not copies, "; ".join(copies)


def test_the_check_sees_a_copied_constant():
    """The check of the constants finds the copy it was written against."""
    from pvae.engine.objectives import JIT_MODES

    node = ast.parse(f"choices = {list(JIT_MODES)!r}").body[0].value
    assert CONSTANTS[_literal(node)].endswith("JIT_MODES")
