"""Name → class lookup shared by the model, guide, likelihood and estimator registries."""

import importlib
import importlib.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import TypeVar

T = TypeVar("T")


def lookup(table: Mapping[str, T], name: str, what: str) -> T:
    """Return ``table[name]``, or import ``"module:Attr"`` or ``"path/to/file.py:Attr"`` for a user's own class.

    A dotted module is imported as usual, with the working directory searched too (the
    ``pvae`` command's own ``sys.path`` does not include it); a ``.py`` path is loaded from that file.

    :param table: the registry.
    :param name: a key of ``table``, ``"package.module:ClassName"`` or ``"file.py:ClassName"``.
    :param what: what the registry holds, for the error message (``"model"``, ``"guide"`` ...).
    :raises ValueError: naming the valid choices when ``name`` is neither.
    """
    if name in table:
        return table[name]
    if ":" in name:
        module_name, _, attr = name.rpartition(":")
        try:
            return getattr(_import(module_name), attr)
        except (ImportError, AttributeError, OSError) as error:
            raise ValueError(f"cannot load {what} {name!r}: {error}") from error
    raise ValueError(f"unknown {what} {name!r}; choose one of {sorted(table)} or give 'module:ClassName'")


def _import(module_name: str) -> ModuleType:
    if module_name.endswith(".py"):
        path = Path(module_name).resolve()
        unique = f"pvae_user_{path.stem}_{abs(hash(str(path)))}"  # one module per file, imported once
        if unique in sys.modules:
            return sys.modules[unique]
        spec = importlib.util.spec_from_file_location(unique, path)
        if spec is None or not path.is_file():
            raise ImportError(f"no Python file at {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[unique]
            raise
        return module
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)  # last, so it never shadows an installed module
    return importlib.import_module(module_name)
