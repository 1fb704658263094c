"""The reference pages of the site, generated from the code each time the site is built.

- ``commands.md``: every command of :data:`pvae.cli.COMMANDS`, its help line, its positional arguments and a
  table of its options, read from the parser that ``pvae COMMAND --help`` prints
  (:func:`pvae.cli.command_options` and :func:`pvae.base.options.describe_options`);
- ``traits.md``: the pair traits, :func:`pvae.engine.pair.trait_table` of the built-in registries;
- ``api/``: one page per package of pvae with an ``automodule`` directive for each of its modules, found by
  walking the installed package, so that a new module or function appears on the site without a word written.

The pages are written into ``docs/reference/_generated/`` (ignored by git) when the builder starts; a page is
rewritten only when its text changes, so that Sphinx rereads only what changed.
"""

import importlib
import importlib.util
import pkgutil
from pathlib import Path

#: Where the pages go, under the documentation's source folder.
GENERATED = Path("reference", "_generated")

#: The packages whose modules make the Python API, with their own folders (``pvae.models`` and ``pvae.guides``
#: are the repository's ``models/`` and ``guides/``, outside ``pvae/``).
ROOTS = ("pvae", "pvae.models", "pvae.guides")

#: The order of the API's pages: the command line and the application first, the layers below after, each
#: name with the packages inside it; a package not named here comes last.
ORDER = (
    "pvae",
    "pvae.app",
    "pvae.studies",
    "pvae.plots",
    "pvae.measures",
    "pvae.engine",
    "pvae.models",
    "pvae.guides",
    "pvae.data",
    "pvae.base",
)

#: The options of every ``automodule``: the members each module defines (its ``__all__`` aside, so that
#: what it re-exports is documented once, where it is defined), documented or not.
AUTOMODULE_OPTIONS = (":members:", ":undoc-members:", ":ignore-module-all:", ":show-inheritance:")

_MARKDOWN_SPECIAL = set("\\`*_{}[]<>()#+!|$~")


def _text(text: str) -> str:
    """``text`` as literal Markdown inside a table cell: every character Markdown (or MyST) could read as markup
    escaped, line breaks as spaces."""
    return "".join("\\" + c if c in _MARKDOWN_SPECIAL else c for c in " ".join(text.split()))


def _code(text: str) -> str:
    """``text`` as a code span inside a table cell."""
    return "``" + text.replace("|", "\\|") + "``" if "`" in text else f"`{text.replace('|', chr(92) + '|')}`"


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |\n"


# --- commands ----------------------------------------------------------------------------------------------


def subparsers() -> dict:
    """Command → its ``argparse`` parser, as ``pvae`` builds it (every command's options generated)."""
    import argparse

    from pvae.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def command_options(command: str) -> list[tuple[type, list]]:
    """The options of ``command``, by config class: ``(cls, [OptionHelp, ...])``, in the order ``--help``
    shows them."""
    from pvae.base.options import describe_options
    from pvae.cli import command_options as classes

    return [(cls, describe_options(cls, **kwargs)) for cls, kwargs in classes(command)]


def commands_page() -> str:
    """The page of every command: its help line, positional arguments and options."""
    from pvae.cli import COMMANDS

    parsers = subparsers()
    lines = [
        "# Commands\n",
        "\n",
        "Every command of `pvae`, its arguments and its options, generated from the configuration classes that "
        "`pvae COMMAND --help` is made from: each option is a field of a frozen dataclass, with its type, default "
        "and the `:param:` line of the class's docstring as its help. A value that cannot work is refused by "
        "the class itself, in the Python API as on the command line.\n",
        "\n",
    ]
    for command, (text, _) in COMMANDS.items():
        lines += [f"## `pvae {command}`\n", "\n", _text(text[0].upper() + text[1:]) + ".\n", "\n"]
        positionals = [a for a in parsers[command]._actions if not a.option_strings]
        if positionals:
            lines += ["**Arguments**\n", "\n", _row("argument", "help"), _row("---", "---")]
            lines += [_row(_code(a.dest.upper()), _text(a.help or "")) for a in positionals]
            lines.append("\n")
        for cls, options in command_options(command):
            if not options:
                continue
            name = f"{cls.__module__}.{cls.__qualname__}"
            lines += [f"**Options of {{py:class}}`~{name}`**\n", "\n"]
            lines += [_row("option", "takes", "default", "help"), _row("---", "---", "---", "---")]
            for o in options:
                flags = " ".join(_code(f) for f in o.flags)
                default = _code(o.default) if o.default and " " not in o.default else _text(o.default)
                lines.append(_row(flags, _text(o.kind), default, _text(o.help)))
            lines.append("\n")
        if not any(options for _, options in command_options(command)):
            lines += ["No options but `--help`.\n", "\n"]
    return "".join(lines)


# --- traits ------------------------------------------------------------------------------------------------


def traits_page() -> str:
    """The page of the pair traits: :func:`pvae.engine.pair.trait_table` of the built-in models, guides and
    likelihoods."""
    from pvae.engine.likelihoods import LIKELIHOODS
    from pvae.engine.pair import trait_table
    from pvae.guides import GUIDES
    from pvae.models import MODELS

    return (
        "# Pair traits\n\n"
        "What a model, a guide or a likelihood may declare about itself, as class attributes (or methods), read "
        "once by {py:func}`pvae.engine.pair.traits` into one frozen {py:class}`~pvae.engine.pair.Traits` record "
        "that everything else reads. A near-miss name (`latent_site` for `latent_sites`) is refused. The last "
        "column names the built-in classes that declare each trait, with their values. Generated from "
        "{py:data}`pvae.engine.pair.DECLARATIONS` by {py:func}`pvae.engine.pair.trait_table`.\n\n"
        + trait_table({"model": MODELS, "guide": GUIDES, "likelihood": LIKELIHOODS})
    )


# --- Python API --------------------------------------------------------------------------------------------


def modules() -> list[str]:
    """Every public module of the installed pvae (``pvae.models`` and ``pvae.guides`` included): none whose
    name has a part starting with an underscore (``__main__`` runs the command line)."""
    found = []
    for root in ROOTS:
        spec = importlib.util.find_spec(root)
        found.append(root)
        for info in pkgutil.walk_packages(spec.submodule_search_locations, prefix=root + "."):
            if not any(part.startswith("_") for part in info.name.split(".")):
                found.append(info.name)
    return sorted(set(found))


def package_of(module: str) -> str:
    """The package whose page documents ``module``: the module itself if it is a package, else its parent."""
    spec = importlib.util.find_spec(module)
    return module if spec.submodule_search_locations is not None else module.rpartition(".")[0]


def _order(package: str) -> tuple:
    place = next(
        (i for i, name in enumerate(ORDER) if package == name or (name != "pvae" and package.startswith(name + "."))),
        len(ORDER),
    )
    return place, package


def api_pages() -> dict[str, list[str]]:
    """Package → its modules (itself first), in the order of the site."""
    pages: dict[str, list[str]] = {}
    for module in modules():
        pages.setdefault(package_of(module), []).append(module)
    return {p: sorted(pages[p], key=lambda m: (m != p, m)) for p in sorted(pages, key=_order)}


def _summary(module: str) -> str:
    """The first paragraph of ``module``'s docstring, on one line."""
    doc = (importlib.import_module(module).__doc__ or "").strip()
    return " ".join(doc.split("\n\n")[0].split())


def _heading(text: str, underline: str) -> str:
    return f"``{text}``\n{underline * (len(text) + 4)}\n\n"


def api_page(package: str, members: list[str]) -> str:
    """The reStructuredText page of ``package``: an ``automodule`` directive for each of its modules."""
    text = [_heading(package, "=")]
    for module in members:
        if module != package:
            text.append(_heading(module, "-"))
        text.append(f".. automodule:: {module}\n")
        text += [f"   {option}\n" for option in AUTOMODULE_OPTIONS]
        text.append("\n")
    return "".join(text)


def api_index(pages: dict[str, list[str]]) -> str:
    """The page that lists the packages and their modules, with the first line of each module's docstring."""
    text = [
        "Python API\n==========\n\n",
        "Every public module of pvae, a page per package, from the docstrings. The packages are the layers "
        "(see :doc:`/guides/architecture`): the command line and the application on top, the base at the "
        "bottom; ``pvae.models`` and ``pvae.guides`` hold the built-in model/guide pairs.\n\n",
        ".. toctree::\n   :maxdepth: 1\n   :hidden:\n\n",
    ]
    text += [f"   {package}\n" for package in pages]
    text.append("\n")
    for package, members in pages.items():
        text.append(f":doc:`{package} <{package}>`\n")
        for module in members:
            summary = _summary(module)
            text.append(f"   - :mod:`{module}`" + (f": {summary}" if summary else "") + "\n")
        text.append("\n")
    return "".join(text)


# --- the pages, written ------------------------------------------------------------------------------------


def pages() -> dict[str, str]:
    """Every generated page: its path under :data:`GENERATED` → its text."""
    api = api_pages()
    found = {"commands.md": commands_page(), "traits.md": traits_page(), "api/index.rst": api_index(api)}
    found.update({f"api/{package}.rst": api_page(package, members) for package, members in api.items()})
    return found


def write(folder: Path) -> list[Path]:
    """Write :func:`pages` into ``folder``, each only where its text changed, and delete the pages no longer
    generated.

    :returns: the pages written.
    """
    written = []
    wanted = pages()
    for name, text in wanted.items():
        path = folder / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(path)
    for path in folder.rglob("*"):
        if path.is_file() and path.relative_to(folder).as_posix() not in wanted:
            path.unlink()
    return written


def _generate(app) -> None:
    write(Path(app.srcdir) / GENERATED)


def setup(app) -> dict:
    """The Sphinx extension: the pages are generated when the builder starts."""
    app.connect("builder-inited", _generate)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
