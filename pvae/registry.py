"""Name → class lookup shared by the model, guide, likelihood and estimator registries."""

import importlib
from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def lookup(table: Mapping[str, T], name: str, what: str) -> T:
    """Return ``table[name]``, or import ``"module:Attr"`` for a user's own class.

    :param table: the registry.
    :param name: a key of ``table``, or ``"package.module:ClassName"``.
    :param what: what the registry holds, for the error message (``"model"``, ``"guide"`` ...).
    :raises ValueError: naming the valid choices when ``name`` is neither.
    """
    if name in table:
        return table[name]
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"cannot load {what} {name!r}: {error}") from error
    raise ValueError(f"unknown {what} {name!r}; choose one of {sorted(table)} or give 'module:ClassName'")
