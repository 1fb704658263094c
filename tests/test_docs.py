"""The site's reference is generated from the code, and its links hold.

The reference pages (``docs/_ext/pvae_reference.py``) are checked against the code they are made from: every
option of every command, every pair trait and every public function or class of every module must be on them.
Every internal link and image of the Markdown pages, the README and the contributing page must point at a file
that exists. These checks run without Sphinx; ``-m slow`` also builds the site as CI does.
"""

import argparse
import importlib
import importlib.util
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pvae.base.options import describe_options
from pvae.cli import COMMANDS, build_parser, command_options
from pvae.engine.likelihoods import LIKELIHOODS
from pvae.engine.pair import DECLARATIONS, trait_table
from pvae.guides import GUIDES
from pvae.models import MODELS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: The command CI builds the site with (``.ci/run``); every page that gives one gives this one.
BUILD = "sphinx-build -W --keep-going -b html docs docs/_build/html"


def _load_reference():
    spec = importlib.util.spec_from_file_location("pvae_reference", DOCS / "_ext" / "pvae_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference = _load_reference()


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    return reference.pages()


# --- commands ----------------------------------------------------------------------------------------------


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _section(page: str, command: str) -> str:
    found = re.search(rf"^## `pvae {re.escape(command)}`\n(.*?)(?=^## |\Z)", page, re.S | re.M)
    assert found, f"the commands page has no section for pvae {command}"
    return found.group(1)


def test_every_option_of_every_command_is_in_the_commands_reference(pages):
    page = pages["commands.md"]
    parsers = _subparsers()
    assert set(parsers) == set(COMMANDS)
    for command, parser in parsers.items():
        section = _section(page, command)
        rows = [line for line in section.splitlines() if line.startswith("| `-")]
        options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
        for action in options:  # each option once, in a row of its own that gives every spelling
            row = [r for r in rows if r.startswith("| " + " ".join(f"`{s}`" for s in action.option_strings) + " |")]
            assert len(row) == 1, f"pvae {command} {action.option_strings[0]}: {len(row)} rows in the reference"
        assert len(rows) == len(options), f"pvae {command}: the reference has options --help does not"
        for action in parser._actions:
            if not action.option_strings:
                assert f"| `{action.dest.upper()}` |" in section, f"pvae {command}: argument {action.dest} missing"
        assert section.lstrip().startswith(reference._text(COMMANDS[command][0][0].upper()))


def test_the_options_table_shows_what_help_shows():
    parsers = _subparsers()
    for command in COMMANDS:
        actions = {a.dest: a for a in parsers[command]._actions}
        formatter = parsers[command]._get_formatter()
        for cls, kwargs in command_options(command):
            for option in describe_options(cls, **kwargs):
                shown = formatter._expand_help(actions[option.name])
                said = f"{option.help} (default: {option.default})" if option.default else option.help
                assert shown == said, f"pvae {command} {option.flags[0]}"
    train = {o.name: o for cls, kwargs in command_options("train") for o in describe_options(cls, **kwargs)}
    assert (train["lr"].flags, train["lr"].kind, train["lr"].default) == (("--lr",), "number", "0.001")
    assert train["progress"].flags == ("--progress", "--no-progress") and train["progress"].kind == "on/off"
    assert train["progress"].default == "on" and train["overwrite"].default == "off"
    assert train["binarize"].kind.startswith("one of dynamic, static")
    assert train["hidden"].kind == "integers, comma-separated" and train["epochs"].kind == "integer"
    grid = next(o for cls, kwargs in command_options("sweep") for o in describe_options(cls, **kwargs))
    assert grid.name == "grid" and grid.kind.startswith("one or more ")


def test_a_table_cell_keeps_markdown_and_math_out():
    assert reference._text("a|b *c* $PVAE_DATA <time>") == r"a\|b \*c\* \$PVAE\_DATA \<time\>"
    assert reference._code("runs/<time>") == "`runs/<time>`"


# --- traits ------------------------------------------------------------------------------------------------


def test_every_pair_trait_is_in_the_traits_reference(pages):
    page = pages["traits.md"]
    assert trait_table({"model": MODELS, "guide": GUIDES, "likelihood": LIKELIHOODS}) in page
    for d in DECLARATIONS:
        name = d.name if d.args is None else f"{d.name}({d.args})"
        assert f"| `{name}` | {d.side} |" in page, f"trait {name} missing from the traits reference"


# --- the Python API ----------------------------------------------------------------------------------------


def _modules() -> list[str]:
    """Every module of the installed pvae, ``pvae.models`` and ``pvae.guides`` (out of ``pvae/``) included."""
    found = []
    for package in ("pvae", "pvae.models", "pvae.guides"):
        spec = importlib.util.find_spec(package)
        found.append(package)
        found += [info.name for info in pkgutil.walk_packages(spec.submodule_search_locations, prefix=package + ".")]
    return sorted(set(found))


def _automodules(pages: dict[str, str]) -> dict[str, set[str]]:
    """Module → the options of its ``automodule`` directive, over the API's pages."""
    found: dict[str, set[str]] = {}
    for name, text in pages.items():
        if not name.startswith("api/"):
            continue
        for match in re.finditer(r"^\.\. automodule:: (\S+)\n((?:   :.*\n)*)", text, re.M):
            assert match.group(1) not in found, f"{match.group(1)} is documented twice"
            found[match.group(1)] = {line.strip().split()[0] for line in match.group(2).splitlines()}
    return found


def _public(module: str) -> list[str]:
    """The public functions and classes ``module`` defines (not those it imports)."""
    mod = importlib.import_module(module)
    return [
        name
        for name, obj in vars(mod).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and getattr(obj, "__module__", None) == module
    ]


def test_every_public_function_and_class_is_in_the_api_reference(pages):
    documented = _automodules(pages)
    public = [m for m in _modules() if not any(part.startswith("_") for part in m.split("."))]
    assert sorted(documented) == public, "every public module has its automodule, and only those"
    missing = []
    for module in public:
        options = documented[module]
        assert ":members:" in options, module
        exported = getattr(importlib.import_module(module), "__all__", None)
        for name in _public(module):
            obj = getattr(importlib.import_module(module), name)
            if ":ignore-module-all:" not in options and exported is not None and name not in exported:
                missing.append(f"{module}.{name} (not in __all__)")
            elif ":undoc-members:" not in options and not inspect.getdoc(obj):
                missing.append(f"{module}.{name} (no docstring)")
    assert not missing, f"public names the API reference leaves out: {missing}"
    # a private module's public functions are reached through the modules that use them
    assert "pvae.measures.disentangle._common" in _modules() and "pvae.measures.disentangle._common" not in documented


def test_every_api_page_is_in_the_toctree(pages):
    index = pages["api/index.rst"]
    listed = re.search(r"^\.\. toctree::\n((?:   .*\n|\n)*)", index, re.M).group(1).splitlines()
    entries = [e.strip() for e in listed if e.strip() and not e.strip().startswith(":")]
    assert sorted(f"api/{e}.rst" for e in entries) == sorted(p for p in pages if p.startswith("api/pvae"))
    place = {e: i for i, e in enumerate(entries)}
    assert entries[0] == "pvae" and place["pvae.app"] < place["pvae.engine"] < place["pvae.base"]
    home = (DOCS / "reference" / "index.md").read_text()
    assert all(f"_generated/{stem}\n" in home for stem in ("commands", "traits", "api/index"))


def test_the_pages_are_rewritten_only_when_they_change(tmp_path, pages):
    written = reference.write(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == sorted(pages)
    (tmp_path / "api" / "pvae.gone.rst").write_text("a module removed since\n")
    assert reference.write(tmp_path) == [] and not (tmp_path / "api" / "pvae.gone.rst").exists()


# --- links and images --------------------------------------------------------------------------------------


def _pages_with_links() -> list[Path]:
    skipped = ("_build", "auto_examples", "_generated")
    docs = [p for p in DOCS.rglob("*.md") if not any(part in skipped for part in p.relative_to(DOCS).parts)]
    return sorted(docs) + [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]


FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")


def _targets(text: str) -> list[tuple[int, str, str]]:
    """``(line, kind, target)`` of every link, image, ``{doc}`` role and file-naming directive of a Markdown page
    (code blocks and code spans aside); ``kind`` is ``file`` or ``doc`` (a document, named without its suffix)."""
    found = []
    fence, directive = None, None
    for number, line in enumerate(text.splitlines(), 1):
        opened = FENCE.match(line)
        if fence is not None:
            if opened and opened.group(2).startswith(fence) and not opened.group(3).strip():
                fence, directive = None, None
            elif directive == "toctree" and line.strip() and not line.strip().startswith(":"):
                entry = re.search(r"<([^>]+)>\s*$", line.strip())
                entry = entry.group(1) if entry else line.strip()
                if entry != "self" and not set(entry) & set("*?["):  # not a glob pattern
                    found.append((number, "doc", entry))
            continue
        if opened:
            fence = opened.group(2)
            name = re.match(r"\{([\w-]+)\}\s*(\S*)", opened.group(3).strip())
            directive = name.group(1) if name else None
            if directive in ("include", "literalinclude", "image", "figure") and name.group(2):
                found.append((number, "file", name.group(2)))
            continue
        for role in re.finditer(r"\{doc\}`(?:[^`<]*<)?([^`>]+)>?`", line):
            found.append((number, "doc", role.group(1).strip()))
        line = re.sub(r"(`+).*?\1", "", line)  # code spans
        for link in re.finditer(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", line):
            found.append((number, "file", link.group(1)))
        for link in re.finditer(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", line):
            found.append((number, "file", link.group(1)))
        for link in re.finditer(r"<(?:img|a|source)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", line):
            found.append((number, "file", link.group(1)))
    return found


def _generated_document(document: Path) -> bool:
    """Whether ``document`` (a path under docs/, no suffix) is a page the build generates."""
    relative = document.relative_to(DOCS).as_posix()
    if relative.startswith("reference/_generated/"):
        stem = relative.removeprefix("reference/_generated/")
        return any(page.rsplit(".", 1)[0] == stem for page in reference.pages())
    if relative.startswith("auto_examples/"):  # sphinx-gallery's pages, one per script, and the gallery's index
        stem = relative.removeprefix("auto_examples/")
        gallery = ROOT / "examples" / "gallery"
        if stem == "index":
            return (gallery / "README.rst").exists() or (gallery / "README.txt").exists()
        return (gallery / f"{stem}.py").exists()
    return False


def _resolve(page: Path, kind: str, target: str) -> bool:
    """Whether the link ``target`` of ``page`` reaches a file (a document, for ``doc``)."""
    path = target.split("#", 1)[0].split("?", 1)[0]
    if not path:  # an anchor of the page itself
        return True
    inside_docs = DOCS in page.parents
    base = DOCS if (path.startswith("/") and inside_docs) else page.parent
    resolved = (base / path.lstrip("/")).resolve()
    if kind == "file":
        if resolved.exists():
            return True
        if inside_docs and resolved.suffix in (".md", ".rst", ".html", ""):
            return _generated_document(resolved.with_suffix("")) if DOCS in resolved.parents else False
        return False
    return any(resolved.with_name(resolved.name + s).exists() for s in (".md", ".rst")) or (
        DOCS in resolved.parents and _generated_document(resolved)
    )


def test_the_link_checker_reads_links_images_roles_and_directives():
    text = "\n".join(
        [
            "See [the guide](guides/a.md#part), ![a figure](_static/figures/b.png) and `[not](a link)`.",
            '<img src="c.png" width="300"> and {doc}`the reference <reference/index>` and {doc}`results/index`.',
            "```python",
            "x = [1](2)",
            "```",
            "```{figure} _static/d.png",
            ":width: 50%",
            "```",
            "```{toctree}",
            ":maxdepth: 1",
            "",
            "guides/index",
            "Examples <auto_examples/index>",
            "```",
            "[e]: https://example.org",
            "[out](https://pyro.ai) and [here](#anchor)",
        ]
    )
    assert _targets(text) == [
        (1, "file", "guides/a.md#part"),
        (1, "file", "_static/figures/b.png"),
        (2, "doc", "reference/index"),
        (2, "doc", "results/index"),
        (2, "file", "c.png"),
        (6, "file", "_static/d.png"),
        (12, "doc", "guides/index"),
        (13, "doc", "auto_examples/index"),
        (15, "file", "https://example.org"),
        (16, "file", "https://pyro.ai"),
        (16, "file", "#anchor"),
    ]


def test_every_internal_link_and_image_points_at_a_file():
    broken = []
    for page in _pages_with_links():
        for line, kind, target in _targets(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
                continue
            if not _resolve(page, kind, target):
                broken.append(f"{page.relative_to(ROOT)}:{line}: {target}")
    assert not broken, "links and images that point at no file:\n" + "\n".join(broken)


def test_the_build_command_is_the_one_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install --quiet -e ".[docs]"' in ci and f"\n{BUILD}\n" in ci
    for page in _pages_with_links():
        for command in re.findall(r"sphinx-build[^\n`]*", page.read_text(encoding="utf-8")):
            assert command.strip() == BUILD, f"{page.relative_to(ROOT)} builds the site otherwise: {command}"


@pytest.mark.slow
def test_the_site_builds(tmp_path):
    """The site builds as CI builds it (``.ci/run``, which runs this build itself and deselects this test)."""
    for package in ("sphinx", "myst_parser", "sphinx_gallery", "furo"):
        pytest.importorskip(package, reason=f'the docs extra is not installed: pip install -e ".[docs]" ({package})')
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "docs", str(tmp_path / "html")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    assert (tmp_path / "html" / "reference" / "_generated" / "commands.html").exists()
