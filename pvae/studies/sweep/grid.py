"""What a sweep's cells are: its options, the grid and the explicit cells, each ``NAME=VALUE`` read against the
fields of the settings record every cell is made from, and the cells' names."""

import dataclasses
import difflib
import hashlib
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from pvae.base import options

#: Settings the sweep sets itself for every cell (``help``: no cell's option asks for help).
RESERVED = ("out", "resume", "overwrite", "help")


@options.config
class SweepConfig:
    """What ``pvae sweep`` runs, and where.

    :param grid: options of pvae train to cross, each NAME=V1,V2,... (NAME as in beta, z-dim or z_dim; each
        NAME once); every combination is a cell, the last NAME varying fastest. --grid given again adds its
        options.
    :param cells: explicit cells, each one quoted word of NAME=VALUE settings ("elbo=iwae particles=5"; a value
        may hold commas, as hidden=512,256), crossed with --grid; --cells given again adds its cells.
    :param cell: run cell N alone, in this process (a scheduler's array job: --cell $SLURM_ARRAY_TASK_ID).
    :param workers: run N cells at a time, each in its own process, with the cores divided among them.
    :param list: print the cells with their state (done, partial, failed, pending), write nothing, and stop
        (alone, without --grid or --cells: the cells of the sweep already in OUT).
    """

    grid: tuple[str, ...] = field(default=(), metadata=options.words("NAME=V1,V2"))
    cells: tuple[str, ...] = field(default=(), metadata=options.words("'NAME=V ...'"))
    cell: int | None = None
    workers: int = 1
    list: bool = False

    def __post_init__(self):
        options.require(self, "workers", self.workers >= 1, "a positive integer")
        options.require(self, "cell", self.cell is None or self.cell >= 0, "a cell's index, 0 or more")
        if not self.grid and not self.cells and not self.list:  # --list alone lists the sweep already in OUT
            raise ValueError("give the cells: --grid NAME=V1,V2 ... and/or --cells 'NAME=VALUE ...' ...")
        if self.cell is not None and (self.workers > 1 or self.list):
            raise ValueError("--cell runs one cell in this process: drop --workers and --list")
        if self.list and self.workers > 1:
            raise ValueError("--list prints the cells and runs none: drop --workers")
        self._check_grid_names()

    def _check_grid_names(self) -> None:
        """Refuse an option the grid varies twice (``beta=1,2 beta=3``, ``z-dim=2 z_dim=3``, in one --grid or
        two): every cell would take the last value only."""
        seen: dict[str, tuple[str, str]] = {}
        for text in self.grid:
            key, sep, values = text.partition("=")
            name = option_name(key)
            if not sep or not name:  # malformed: the grid's reading says how to write it
                continue
            if name in seen:
                first, first_values = seen[name]
                merged = ",".join(dict.fromkeys(v.strip() for v in f"{first_values},{values}".split(",")))
                raise ValueError(
                    f"--grid names {name} twice ({first.strip()}={first_values} and {key.strip()}={values}): every "
                    f"cell would take the last value; give its values once, e.g. --grid {first.strip()}={merged}"
                )
            seen[name] = (key, values)


@dataclass(frozen=True)
class Cell:
    """One run of a sweep.

    :param index: its place in the sweep, 0 to the number of cells − 1.
    :param name: its folder in OUT, made from its settings (``beta=2,seed=0``).
    :param settings: ``(option, value)`` pairs, the option by its field name, the value as given.
    :param argv: its ``pvae train`` options, but ``--out`` (and ``--resume`` or ``--overwrite``).
    """

    index: int
    name: str
    settings: tuple[tuple[str, str], ...]
    argv: tuple[str, ...]


def option_name(text: str) -> str:
    """The field name a grid or a cell spells an option by: ``z-dim``, ``--z-dim`` and ``z_dim`` are ``z_dim``."""
    return text.strip().lstrip("-").replace("-", "_")


def refuse_reserved(words: Sequence[str]) -> None:
    """Refuse a word of the cells' shared options (those after ``--``) that names a setting the sweep sets itself
    (``--out``, ``--resume``, ``--overwrite``, ``--help`` or ``-h``), before any parser reads them.

    :raises ValueError: naming the first such word.
    """
    for word in words:
        name = word.split("=", 1)[0]
        if name == "-h" or (name.startswith("--") and option_name(name) in RESERVED):
            refuse_setting(name)


def refuse_setting(spelt: str) -> None:
    """Refuse a setting of every cell's that the sweep sets itself, spelt ``spelt`` (``--out``).

    :raises ValueError: always.
    """
    raise ValueError(f"the sweep sets {spelt} of every cell itself; leave it out")


def field_of(text: str, kind: type, where: str) -> str:
    """The field of the settings record ``kind`` that ``text`` names (``z-dim``, ``--z-dim``, ``z_dim``).

    :param where: the item it comes from, for the message (``--grid 'beta=1,2'``).
    :raises ValueError: for a setting the sweep sets itself, or none of ``kind``'s, with the nearest name.
    """
    name = option_name(text)
    if name in RESERVED:
        raise ValueError(f"{where}: the sweep sets --{name} of every cell itself; leave it out")
    known = sorted(f.name for f in dataclasses.fields(kind) if f.name not in RESERVED)
    if name not in known:
        near = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {near[0]}?" if near else "."
        raise ValueError(f"{where}: pvae train has no option {text!r}{hint} Its options: {', '.join(known)}")
    return name


def _checked(kind: type, name: str, value: str, where: str) -> str:
    """``value`` as given, an on/off setting's checked now (the others are read, and refused, cell by cell)."""
    if options.is_switch(kind, name):
        try:
            options.parse_value(kind, name, value)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
    return value


def grid_item(text: str, kind: type) -> tuple[str, tuple[str, ...]]:
    """The field and the values, as given, of the grid item ``text`` (``beta=1,2,4``).

    :param kind: the settings record's class.
    :raises ValueError: for a malformed item, an unknown setting, a value repeated or an on/off value that is not.
    """
    key, sep, values = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--grid {text!r}: give NAME=V1,V2,..., e.g. beta=1,2,4")
    name = field_of(key, kind, f"--grid {text!r}")
    items = tuple(v.strip() for v in values.split(","))
    if len(set(items)) < len(items):
        raise ValueError(f"--grid {text!r} repeats a value")
    return name, tuple(_checked(kind, name, v, f"--grid {text!r}") for v in items)


def explicit_cell(text: str, kind: type) -> tuple[tuple[str, str], ...]:
    """The ``(field, value)`` settings, values as given, of the explicit cell ``text`` (``'elbo=iwae particles=5'``).

    :param kind: the settings record's class.
    :raises ValueError: for a word that is not NAME=VALUE, an unknown setting, one set twice, or none.
    """
    try:
        words = shlex.split(text)
    except ValueError as error:
        raise ValueError(f"--cells {text!r}: {error}") from None
    settings: list[tuple[str, str]] = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--cells {text!r}: {word!r} is not NAME=VALUE, e.g. 'elbo=iwae particles=5'")
        name = field_of(key, kind, f"--cells {text!r}")
        if name in dict(settings):
            raise ValueError(f"--cells {text!r} sets {name} twice")
        settings.append((name, _checked(kind, name, value.strip(), f"--cells {text!r}")))
    if not settings:
        raise ValueError("--cells '': give a cell's settings, e.g. 'elbo=iwae particles=5'")
    return tuple(settings)


def item_words(argv: Sequence[str]) -> list[str]:
    """``pvae sweep``'s own arguments (those before ``--``) with a ``--grid`` or ``--cells`` item spelt as a flag,
    ``--grid --beta=1,2``, written as the grid spells it, ``beta=1,2`` (:func:`option_name` reads both alike):
    argparse would take ``--beta=1,2`` for an option of the sweep and refuse it. An option of the sweep itself
    (``--workers``, ``--device`` ...) ends the items, as it does for argparse.

    :param argv: the arguments, the command's name included or not.
    """
    from pvae.base.device import DeviceConfig

    own = {options.flag(f.name) for config in (SweepConfig, DeviceConfig) for f in dataclasses.fields(config)}
    own |= {"-h", "--help"}
    words, inside = [], False
    for word in argv:
        name = word.split("=", 1)[0]
        if name in ("--grid", "--cells"):
            inside = "=" not in word  # --grid=beta=1,2 is one item; the words after it are not items
        elif word.startswith("-") and name in own:
            inside = False
        elif inside and word.startswith("--") and "=" in word and len(name) > 2:
            word = word[2:]
        words.append(word)
    return words


def cell_name(settings: Sequence[tuple[str, str]]) -> str:
    """The folder name of a cell: ``beta=2,seed=0``, its settings in order; where a value holds characters a
    file name should not (``/``, spaces), they become ``_`` and a hash of the settings keeps names distinct.

    :param settings: ``(option, value)`` pairs.
    """
    raw = ",".join(f"{name}={value}" for name, value in settings)
    safe = re.sub(r"[^A-Za-z0-9._+=,@-]", "_", raw)
    if safe != raw or len(safe) > 120:
        safe = f"{safe[:100]}~{hashlib.sha1(raw.encode()).hexdigest()[:8]}"
    return safe
