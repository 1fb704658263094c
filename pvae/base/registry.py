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


def lookup(table: Mapping[str, T], name: str, what: str, kind: type | None = None) -> T:
    """Return ``table[name]``, or import ``"module:Attr"`` or ``"path/to/file.py:Attr"`` for a user's own class.

    A dotted module is imported as usual, with the working directory searched too (the
    ``pvae`` command's own ``sys.path`` does not include it); a ``.py`` path is loaded from that file.

    :param table: the registry.
    :param name: a key of ``table``, ``"package.module:ClassName"`` or ``"file.py:ClassName"``.
    :param what: what the registry holds, for the error message (``"model"``, ``"guide"`` ...).
    :param kind: if given, an imported attribute must be a subclass of it (``torch.nn.Module``).
    :raises ValueError: naming the problem and the fix: ``name`` is neither a key nor an import;
        the file or module is missing, has a syntax error or fails when run; the attribute is
        missing, or is not a subclass of ``kind``.
    """
    if name in table:
        return table[name]
    if ":" not in name:
        raise ValueError(f"unknown {what} {name!r}; choose one of {sorted(table)} or give 'module:ClassName'")
    module_name, _, attr = name.rpartition(":")
    if not module_name or not attr:
        raise ValueError(
            f"{what} {name!r} names no {'module' if not module_name else 'class'}: give 'module:ClassName'"
        )
    try:
        module = _import(module_name)
    except SyntaxError as error:
        where = f"{error.filename}, line {error.lineno}" if error.filename else module_name
        text = f": {error.text.strip()}" if error.text and error.text.strip() else ""
        raise ValueError(f"cannot load {what} {name!r}: {where}: {error.msg}{text}; fix the syntax error") from None
    except ModuleNotFoundError as error:
        if module_name.endswith(".py") or error.name != module_name.split(".")[0]:  # an import inside the file
            raise ValueError(
                f"cannot load {what} {name!r}: {module_name} imports {error.name!r}, which is not installed; "
                f"install it (pip install ...) or remove the import"
            ) from None
        raise ValueError(f"cannot load {what} {name!r}: {error}; check the module name") from None
    except (ImportError, OSError) as error:
        raise ValueError(f"cannot load {what} {name!r}: {error}; check the file or module name") from None
    except Exception as error:  # the user's module raised while it ran
        raise ValueError(
            f"cannot load {what} {name!r}: running {module_name} raised {type(error).__name__}: {error}; fix the file"
        ) from error
    if not hasattr(module, attr):
        classes = sorted(n for n, v in vars(module).items() if isinstance(v, type) and not n.startswith("_"))
        found = f"; it defines {', '.join(classes)}" if classes else ""
        raise ValueError(f"cannot load {what} {name!r}: {module_name} has no {attr!r}{found}")
    value = getattr(module, attr)
    if kind is not None and not (isinstance(value, type) and issubclass(value, kind)):
        base = _public_name(kind)
        if isinstance(value, type):
            actual = f"a class that is not a {base}"
        else:
            article = "an" if type(value).__name__[0] in "aeiou" else "a"
            actual = f"{article} {type(value).__name__}, not a class"
        raise ValueError(f"{what} {name!r} is {actual}: give a class that subclasses {base} (PyroModule is one)")
    return value


def _public_name(cls: type) -> str:
    """The shortest dotted name ``cls`` is exported under: ``torch.nn.Module``, not its defining module's."""
    parts = cls.__module__.split(".")
    for end in range(1, len(parts) + 1):
        if getattr(sys.modules.get(".".join(parts[:end])), cls.__name__, None) is cls:
            return f"{'.'.join(parts[:end])}.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


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
