"""A sweep: its cells made from a settings record and the grid, each checked before the first starts, the
record of them in ``sweep.json`` and the command that goes on with them."""

import itertools
import json
import os
import shlex
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from pathlib import Path

from pvae.base import options
from pvae.base.files import TEMPORARY
from pvae.base.runs import RunError, check_writable
from pvae.studies.sweep.grid import RESERVED, Cell, SweepConfig, cell_name, explicit_cell, grid_item, refuse_setting
from pvae.studies.sweep.records import PRIVATE, SWEEP, error_path, log_path, running_elsewhere, say


class Sweep:
    """A sweep's cells, checked: every setting named exists, every cell's settings pass ``check``. A cell's
    settings are ``dataclasses.replace(base, **its settings)``, with its progress bar off (a log, not a terminal)
    unless ``given`` names it, and the sweep's device where it names one.

    :param out: the sweep's folder.
    :param config: the sweep's options.
    :param base: the settings every cell shares: a frozen dataclass instance (:class:`pvae.app.train.TrainSettings`)
        with the fields ``out``, ``resume``, ``overwrite``, ``progress`` and ``device`` (and ``data``, ``download``
        and ``data_dir``, which :meth:`check_here` reads).
    :param given: the fields of ``base`` its maker chose (the options typed after ``--``); default: those that
        differ from their default.
    :param device: the sweep's ``--device``, given to every cell (``auto``: the cells' own).
    :param check: checks a cell's settings, raising what it refuses (ValueError ...); default: none.
    :param train_options: ``base`` as ``pvae train`` options, recorded in ``sweep.json`` and given to the processes
        of ``--workers`` (as typed after ``--``: a sweep.json of an older pvae compares equal); default: written
        from ``base``'s ``given`` fields.
    :raises ValueError: for an unknown setting, a malformed one, or a cell ``check`` refuses, naming the cell;
        nothing has been written then.
    """

    def __init__(
        self,
        out: str | os.PathLike,
        config: SweepConfig,
        base,
        given: Collection[str] | None = None,
        device: str = "auto",
        *,
        check: Callable[[object], object] | None = None,
        train_options: Sequence[str] | None = None,
    ):
        self.out, self.config, self.base, self.device = Path(out), config, base, device
        self.given = options.given_fields(base) if given is None else set(given)
        if train_options is None:
            train_options = options.to_argv(base, self.given)
        self.train_options = tuple(train_options)
        self.errors_said: dict[str, Cell] = {}  # each failure's message, by the first cell that said it
        #: The record of the sweep in OUT that this one replaces (none of its cells ran): see :meth:`check_out`.
        self.replaces: dict | None = None
        for name in RESERVED:
            if name in self.given:
                refuse_setting(options.flag(name))
        kind = type(base)
        grid = [grid_item(text, kind) for text in config.grid]
        explicit = [explicit_cell(text, kind) for text in config.cells] or [()]
        names = [name for name, _ in grid]
        for settings in explicit:
            for name, _ in settings:
                if name in names:
                    raise ValueError(f"--cells sets {name}, which --grid varies: give it in one of them")
        for name in [*names, *(n for settings in explicit for n, _ in settings)]:
            if name in self.given:
                raise ValueError(
                    f"{options.flag(name)} is given after -- and varied by the sweep: give it in one place"
                )
        if device != "auto" and (
            "device" in self.given or "device" in names or any("device" in dict(s) for s in explicit)
        ):
            raise ValueError("--device is given to the sweep and to its cells: give it in one place")
        self.grid, self.explicit = grid, explicit
        self.cells: list[Cell] = []
        for index, (fixed, varied) in enumerate(itertools.product(explicit, itertools.product(*(v for _, v in grid)))):
            settings = (*fixed, *zip(names, varied, strict=True))
            self.cells.append(Cell(index, cell_name(settings), settings, self._argv(settings)))
        seen: dict[str, Cell] = {}
        for cell in self.cells:
            if cell.name in seen:
                raise ValueError(f"cells {seen[cell.name].index} and {cell.index} are the same cell, {cell.name}")
            seen[cell.name] = cell
        self._overrides: list[dict] = []
        self._read_values: dict[tuple[str, str], object] = {}
        for cell in self.cells:  # every cell's settings, as pvae train would take them, before any cell starts
            try:
                self._overrides.append(self._read(cell))
                if check is not None:
                    check(self.settings(cell))
            except (ValueError, RunError) as error:
                raise ValueError(f"cell {cell.name}: {error}") from None
            except ImportError as error:  # a --model file:Class that does not import
                raise ValueError(f"cell {cell.name}: {error}") from None

    def _read(self, cell: Cell) -> dict:
        """The fields ``cell`` sets in ``base``, their values read from the text given."""
        values: dict = {}
        if "progress" not in self.given:  # a log, not a terminal; a progress given after -- wins
            values["progress"] = False
        if self.device != "auto":
            values["device"] = self.device
        for name, text in cell.settings:
            if (name, text) not in self._read_values:  # a grid's value recurs in many cells: read once
                self._read_values[name, text] = options.parse_value(type(self.base), name, text)
            values[name] = self._read_values[name, text]
        return values

    def settings(self, cell: Cell, **more):
        """The settings ``cell`` runs with: ``base`` with the cell's own, then ``more`` (``out=...``).

        :param cell: one of :attr:`cells`.
        """
        return replace(self.base, **{**self._overrides[cell.index], **more})

    def chosen(self, cell: Cell, *more: str) -> set[str]:
        """The fields chosen in :meth:`settings` of ``cell``: those ``given``, the cell's, and ``more``."""
        return self.given | set(self._overrides[cell.index]) | set(more)

    def _argv(self, settings: Sequence[tuple[str, str]]) -> tuple[str, ...]:
        kind = type(self.base)
        argv = ["--device", self.device] if self.device != "auto" else []
        argv += options.switch_words(kind, "progress", False)  # a --progress after -- still wins
        argv += self.train_options
        for name, value in settings:
            if options.is_switch(kind, name):
                argv += options.switch_words(kind, name, value.lower() in options.TRUE)
            else:  # `--beta=-1`: a value that starts with a dash stays a value
                argv.append(f"{options.flag(name)}={value}")
        return tuple(argv)

    def record(self) -> dict:
        """What ``sweep.json`` holds."""
        return {
            "grid": [{"option": name, "values": list(values)} for name, values in self.grid],
            "explicit": [[list(pair) for pair in settings] for settings in self.explicit if settings],
            "train_options": list(self.train_options),
            "device": self.device,
            "command": self.command(),
            "cells": [
                {"index": c.index, "name": c.name, "settings": [list(s) for s in c.settings], "argv": list(c.argv)}
                for c in self.cells
            ],
        }

    def command(self, cell: int | None = None) -> str:
        """The ``pvae sweep`` command line of this sweep (of its cell ``cell`` alone)."""
        return shlex.join(["pvae", *self.sweep_argv(cell)])

    def sweep_argv(self, cell: int | None = None) -> list[str]:
        """The arguments of ``pvae`` that run this sweep (its cell ``cell`` alone)."""
        argv = ["sweep", str(self.out)]
        if self.config.grid:
            argv += ["--grid", *self.config.grid]
        if self.config.cells:
            argv += ["--cells", *self.config.cells]
        if self.device != "auto":
            argv += ["--device", self.device]
        if cell is not None:
            argv += ["--cell", str(cell)]
        elif self.config.workers > 1:  # the whole sweep, as it was started
            argv += ["--workers", str(self.config.workers)]
        return [*argv, "--", *self.train_options]

    def check_out(self) -> bool:
        """Refuse an OUT that holds another sweep some cell of which ran, or files that are not a sweep's. A sweep
        none of whose cells ever ran (each failed before its run directory was made: a device this machine lacks,
        data not here) is to be replaced by this one (:attr:`replaces`; :meth:`replace_unrun` does it).

        :returns: whether OUT holds this sweep's ``sweep.json`` already.
        :raises RunError: naming the fix.
        """
        check_writable(self.out, "OUT")
        self.replaces = None
        path = self.out / SWEEP
        if path.is_file():
            try:
                saved = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise RunError(f"{path} is not a readable sweep record; delete it and run the same command") from None
            mine = self.record()
            keys = ("grid", "explicit", "train_options", "device", "cells")
            if not isinstance(saved, dict) or {k: saved.get(k) for k in keys} != {k: mine[k] for k in keys}:
                command = (
                    saved.get("command", "see its sweep.json") if isinstance(saved, dict) else "see its sweep.json"
                )
                if self._never_ran(saved):
                    self.replaces = saved
                    return False
                raise RunError(
                    f"{self.out} holds another sweep ({command}), some of whose cells ran; choose another OUT for this "
                    "one, or run that sweep's own command to go on with it"
                )
            return True
        # an array job's tasks start together: another task's sweep.json may be a temporary file still
        if self.out.is_dir() and any(p.name != PRIVATE and not TEMPORARY.match(p.name) for p in self.out.iterdir()):
            raise RunError(f"{self.out} is not empty and holds no sweep ({SWEEP}); choose another OUT")
        return False

    def _never_ran(self, saved) -> bool:
        """Whether the sweep recorded as ``saved`` (another than this one) never ran a cell: its record reads, no
        cell of it has a run directory, none is running, and OUT holds nothing else but its own folder."""
        try:
            names = [str(c["name"]) for c in saved["cells"]]
        except (KeyError, TypeError):
            return False
        if any((self.out / name).exists() or running_elsewhere(self.out, name) for name in names):
            return False
        return all(p.name in (SWEEP, PRIVATE) or TEMPORARY.match(p.name) for p in self.out.iterdir())

    def replace_unrun(self) -> None:
        """Delete what the sweep this one replaces (:attr:`replaces`) wrote for its cells — their error records
        and logs in OUT/.sweep, pvae's own files — and say so; nothing where it replaces none. (Their lock files
        stay: empty, and another process may hold one of a cell of the same name.)"""
        if self.replaces is None:
            return
        for cell in self.replaces["cells"]:
            name = str(cell["name"])
            for path in (error_path(self.out, name), log_path(self.out, name)):
                path.unlink(missing_ok=True)
        command = self.replaces.get("command", "")
        say(f"{self.out} held a sweep none of whose cells ran ({command}): replaced by this one")
        self.replaces = None

    def check_here(self, cells: Sequence[Cell]) -> None:
        """Refuse, before anything is written, what ``pvae train`` would refuse of ``cells`` on this machine alone:
        a ``--device`` it lacks, or a built-in dataset that is not here with downloads off (``--no-download``) or
        a ``--data-dir`` that does not exist. (The cells' settings themselves are checked when the sweep is made;
        what fails later, before a cell's run directory is made, leaves a sweep the corrected command replaces.)

        :raises ValueError: the message ``pvae train`` would give, naming the first cell it concerns unless it
            concerns them all.
        """
        from pvae.base.device import resolve_device
        from pvae.data.idx import IDX_DATASETS, check_data_dir, locate_idx

        problems: dict[str, list[str]] = {}
        for cell in cells:
            settings = self.settings(cell)
            try:
                resolve_device(settings.device)
                if settings.data in IDX_DATASETS and not settings.download:
                    locate_idx(settings.data, settings.data_dir, allow_download=False)
                elif settings.data in IDX_DATASETS and settings.data_dir is not None:
                    check_data_dir(Path(settings.data_dir), settings.data)
            except (ValueError, RunError) as error:
                problems.setdefault(str(error), []).append(cell.name)
        if problems:
            message, names = next(iter(problems.items()))
            raise ValueError(message if len(names) == len(cells) else f"cell {names[0]}: {message}")
