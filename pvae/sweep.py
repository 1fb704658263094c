"""Sweeps: one ``pvae train`` per cell of a grid over its options, each cell an ordinary run directory.

::

    OUT/
      sweep.json                the grid, the train options, the cells (index, name, settings, argv)
      beta=1,seed=0/            a run directory, as `pvae train ... --out OUT/beta=1,seed=0` writes it
      ...
      .sweep/logs/NAME.log      what the cell's training printed (appended to by every attempt)
      .sweep/NAME.error.json    why the cell's last attempt failed: one line, the log's tail
      .sweep/NAME.lock          held (flock) by the process that runs the cell, so that no other runs it too

The error and the log stay beside the run directories, not in them: a run directory holds pvae's files only
(:meth:`pvae.runs.Run.create` refuses a folder of other files). A cell is *done* when its ``summary.json``
holds the test numbers, *partial* when it has a checkpoint (it is resumed with ``--resume``), *failed* when
its last attempt left an error (it is tried again), *running* while another process holds its lock (it is
skipped), *pending* otherwise; running the same command again finishes the study, whatever stopped it (Ctrl-C,
SIGTERM, kill -9), with no epoch trained twice and no cell trained by two processes at once. What this machine
cannot run (a device it lacks, data not here with downloads off) is refused before ``sweep.json`` is written, and a
sweep none of whose cells ever ran is replaced by the next command given in OUT: a corrected command is not
refused as "another sweep".

Where the cells run is the caller's choice: one after the other in this process, ``--workers N`` local
processes, or ``--cell I`` (one cell, in this process) from a scheduler's array job, under torchrun too.
"""

import contextlib
import copy
import difflib
import hashlib
import itertools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from pvae import options
from pvae.distributed import under_torchrun
from pvae.files import TEMPORARY, write_json
from pvae.runs import CHECKPOINT, CONFIG, METRICS, SUMMARY, Run, RunError, check_writable

try:
    import fcntl
except ImportError:  # Windows: no cell locks, so one sweep process per folder there
    fcntl = None

SWEEP = "sweep.json"
#: The sweep's own folder in OUT: logs and errors of the cells.
PRIVATE = ".sweep"
#: Options of ``pvae train`` the sweep sets itself for every cell.
RESERVED = ("out", "resume", "overwrite", "help")
#: States of a cell (:func:`cell_status`).
STATES = ("done", "partial", "failed", "pending", "running")
#: Lines of a cell's log kept in its error file.
TAIL_LINES = 20
#: Errors whose message names the problem and the fix (as ``pvae train`` prints them): no traceback.
_EXPLAINED = (ValueError, RunError, FloatingPointError)
_TRUE, _FALSE = ("true", "on", "yes", "1"), ("false", "off", "no", "0")
#: How a worker that was interrupted exits: 130 (pvae after Ctrl-C or SIGTERM), or killed by either signal.
_INTERRUPTED = (130, -signal.SIGINT, -signal.SIGTERM)
#: Seconds a worker gets to stop by itself (after Ctrl-C), then after SIGTERM, before SIGKILL.
GRACE = 10.0
#: Seconds a cell's lock is tried for before the cell counts as running elsewhere: a look at it (``--list``)
#: holds it for an instant.
LOCK_PATIENCE = 0.5


class _Terminated(KeyboardInterrupt):
    """SIGTERM (scancel, timeout, kill) while a sweep runs: it stops as after Ctrl-C."""


@dataclass(frozen=True)
class SweepConfig:
    """What ``pvae sweep`` runs, and where.

    :param grid: options of pvae train to cross, each NAME=V1,V2,... (NAME as in beta, z-dim or z_dim; each
        NAME once); every combination is a cell, the last NAME varying fastest. --grid given again adds its
        options.
    :param cells: explicit cells, each one quoted word of NAME=VALUE settings ("elbo=iwae particles=5"; a value
        may hold commas, as hidden=512,256), crossed with --grid; --cells given again adds its cells.
    :param cell: run cell N alone, in this process (a scheduler's array job: --cell $SLURM_ARRAY_TASK_ID).
    :param workers: run N cells at a time, each in its own process, with the cores divided among them.
    :param list: print the cells with their state (done, partial, failed, pending), write nothing, and stop.
    """

    grid: tuple[str, ...] = field(default=(), metadata=options.words("NAME=V1,V2"))
    cells: tuple[str, ...] = field(default=(), metadata=options.words("'NAME=V ...'"))
    cell: int | None = None
    workers: int = 1
    list: bool = False

    def __post_init__(self):
        options.require(self, "workers", self.workers >= 1, "a positive integer")
        options.require(self, "cell", self.cell is None or self.cell >= 0, "a cell's index, 0 or more")
        if not self.grid and not self.cells:
            raise ValueError("give the cells: --grid NAME=V1,V2 ... and/or --cells 'NAME=VALUE ...' ...")
        if self.cell is not None and (self.workers > 1 or self.list):
            raise ValueError("--cell runs one cell in this process: drop --workers and --list")
        self._check_grid_names()

    def _check_grid_names(self) -> None:
        """Refuse an option the grid varies twice (``beta=1,2 beta=3``, ``z-dim=2 z_dim=3``, in one --grid or
        two): every cell would take the last value only."""
        seen: dict[str, tuple[str, str]] = {}
        for text in self.grid:
            key, sep, values = text.partition("=")
            name = option_name(key)
            if not sep or not name:  # malformed: Sweep says how to write it
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


class Sweep:
    """A sweep's cells, checked: every option named exists, every cell's settings pass ``pvae train``'s checks.

    :param out: the sweep's folder.
    :param config: the sweep's options.
    :param train_options: the ``pvae train`` options every cell shares (those after ``--``).
    :param parser: the parser of ``pvae train``'s options (the ``train`` subparser of ``pvae``).
    :param check: builds a cell's configuration from its parsed options, raising what it refuses (ValueError ...).
    :param device: ``--device`` of the sweep, given to every cell (``auto``: the cells' own).
    :raises ValueError: for an unknown option, a malformed setting, or a cell ``pvae train`` would refuse,
        naming the cell; nothing has been written then.
    """

    def __init__(
        self,
        out: str | os.PathLike,
        config: SweepConfig,
        train_options: Sequence[str],
        parser,
        check: Callable[[object], object],
        device: str = "auto",
    ):
        self.out, self.config, self.train_options = Path(out), config, tuple(train_options)
        self.parser, self.device = parser, device
        self.errors_said: dict[str, Cell] = {}  # each failure's message, by the first cell that said it
        #: The record of the sweep in OUT that this one replaces (none of its cells ran): see :meth:`check_out`.
        self.replaces: dict | None = None
        self.actions = {a.dest: a for a in parser._actions if a.option_strings}
        given = self._given(self.train_options)
        grid = [self._grid_item(text) for text in config.grid]
        explicit = [self._explicit(text) for text in config.cells] or [()]
        names = [name for name, _ in grid]
        for settings in explicit:
            for name, _ in settings:
                if name in names:
                    raise ValueError(f"--cells sets {name}, which --grid varies: give it in one of them")
        for name in [*names, *(n for settings in explicit for n, _ in settings)]:
            if name in given:
                raise ValueError(
                    f"{options.flag(name)} is given after -- and varied by the sweep: give it in one place"
                )
        if device != "auto" and ("device" in given or "device" in names or any("device" in dict(s) for s in explicit)):
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
        for cell in self.cells:  # every cell's settings, as pvae train would take them, before any cell starts
            try:
                check(self.parse(cell.argv))
            except (ValueError, RunError) as error:
                raise ValueError(f"cell {cell.name}: {error}") from None
            except ImportError as error:  # a --model file:Class that does not import
                raise ValueError(f"cell {cell.name}: {error}") from None

    def parse(self, argv: Sequence[str]):
        """``pvae train``'s parsed options from ``argv``.

        :raises ValueError: with argparse's message, where ``pvae train`` would print it and exit.
        """

        def refuse(message):
            raise ValueError(message)

        parser = copy.copy(self.parser)  # the caller's parser keeps exiting on an error
        parser.error = refuse  # its message, not an exit
        return parser.parse_args(list(argv))

    def _option(self, text: str, where: str) -> str:
        """The field name of the ``pvae train`` option ``text`` names (``z-dim``, ``--z-dim``, ``z_dim``)."""
        name = option_name(text)
        if name in RESERVED:
            raise ValueError(f"{where}: the sweep sets --{name} of every cell itself; leave it out")
        if name not in self.actions:
            known = sorted(n for n in self.actions if n not in RESERVED)
            near = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]}?" if near else ""
            raise ValueError(f"{where}: pvae train has no option {text!r}{hint} Its options: {', '.join(known)}")
        return name

    def _grid_item(self, text: str) -> tuple[str, tuple[str, ...]]:
        key, sep, values = text.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--grid {text!r}: give NAME=V1,V2,..., e.g. beta=1,2,4")
        name = self._option(key, f"--grid {text!r}")
        items = tuple(v.strip() for v in values.split(","))
        if len(set(items)) < len(items):
            raise ValueError(f"--grid {text!r} repeats a value")
        return name, tuple(self._value(name, v, f"--grid {text!r}") for v in items)

    def _explicit(self, text: str) -> tuple[tuple[str, str], ...]:
        try:
            words = shlex.split(text)
        except ValueError as error:
            raise ValueError(f"--cells {text!r}: {error}") from None
        settings: list[tuple[str, str]] = []
        for word in words:
            key, sep, value = word.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"--cells {text!r}: {word!r} is not NAME=VALUE, e.g. 'elbo=iwae particles=5'")
            name = self._option(key, f"--cells {text!r}")
            if name in dict(settings):
                raise ValueError(f"--cells {text!r} sets {name} twice")
            settings.append((name, self._value(name, value.strip(), f"--cells {text!r}")))
        if not settings:
            raise ValueError("--cells '': give a cell's settings, e.g. 'elbo=iwae particles=5'")
        return tuple(settings)

    def _value(self, name: str, value: str, where: str) -> str:
        if self._is_flag(name) and value.lower() not in _TRUE + _FALSE:
            raise ValueError(f"{where}: {name} is on or off: give true or false, not {value!r}")
        return value

    def _is_flag(self, name: str) -> bool:
        return self.actions[name].nargs == 0

    def _argv(self, settings: Sequence[tuple[str, str]]) -> tuple[str, ...]:
        argv = ["--device", self.device] if self.device != "auto" else []
        argv.append("--no-progress")  # a log, not a terminal; a --progress after -- still wins
        argv += self.train_options
        for name, value in settings:
            action = self.actions[name]
            if self._is_flag(name):
                on = value.lower() in _TRUE
                if on:
                    argv.append(action.option_strings[0])
                elif len(action.option_strings) > 1:  # --flag/--no-flag
                    argv.append(action.option_strings[1])
            else:  # `--beta=-1`: a value that starts with a dash stays a value
                argv.append(f"{options.flag(name)}={value}")
        return tuple(argv)

    def _given(self, argv: Sequence[str]) -> set[str]:
        """The field names of the options ``argv`` gives."""
        strings = {s: a.dest for a in self.actions.values() for s in a.option_strings}
        given = set()
        for word in argv:
            dest = strings.get(word.split("=", 1)[0]) if word.startswith("-") else None
            if dest in RESERVED:
                raise ValueError(f"the sweep sets {word.split('=', 1)[0]} of every cell itself; leave it out")
            if dest is not None:
                given.add(dest)
        return given

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
        if any((self.out / name).exists() or _running_elsewhere(self.out, name) for name in names):
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
            for path in (_error_path(self.out, name), log_path(self.out, name)):
                path.unlink(missing_ok=True)
        command = self.replaces.get("command", "")
        _say(f"{self.out} held a sweep none of whose cells ran ({command}): replaced by this one")
        self.replaces = None

    def check_here(self, cells: Sequence[Cell]) -> None:
        """Refuse, before anything is written, what ``pvae train`` would refuse of ``cells`` on this machine alone:
        a ``--device`` it lacks, or a built-in dataset that is not here with downloads off (``--no-download``) or
        a ``--data-dir`` that does not exist. (The cells' settings themselves are checked when the sweep is made;
        what fails later, before a cell's run directory is made, leaves a sweep the corrected command replaces.)

        :raises ValueError: the message ``pvae train`` would give, naming the first cell it concerns unless it
            concerns them all.
        """
        from pvae.device import resolve_device
        from pvae.idx import IDX_DATASETS, check_data_dir, locate_idx

        problems: dict[str, list[str]] = {}
        for cell in cells:
            args = self.parse(cell.argv)
            try:
                resolve_device(args.device)
                if args.data in IDX_DATASETS and not args.download:
                    locate_idx(args.data, args.data_dir, allow_download=False)
                elif args.data in IDX_DATASETS and args.data_dir is not None:
                    check_data_dir(Path(args.data_dir), args.data)
            except (ValueError, RunError) as error:
                problems.setdefault(str(error), []).append(cell.name)
        if problems:
            message, names = next(iter(problems.items()))
            raise ValueError(message if len(names) == len(cells) else f"cell {names[0]}: {message}")


def item_words(argv: Sequence[str]) -> list[str]:
    """``pvae sweep``'s own arguments (those before ``--``) with a ``--grid`` or ``--cells`` item spelt as a flag,
    ``--grid --beta=1,2``, written as the grid spells it, ``beta=1,2`` (:func:`option_name` reads both alike):
    argparse would take ``--beta=1,2`` for an option of the sweep and refuse it. An option of the sweep itself
    (``--workers``, ``--device`` ...) ends the items, as it does for argparse.

    :param argv: the arguments, the command's name included or not.
    """
    from pvae.device import DeviceConfig

    own = {options.flag(f.name) for config in (SweepConfig, DeviceConfig) for f in fields(config)} | {"-h", "--help"}
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


def option_name(text: str) -> str:
    """The field name a grid or a cell spells an option by: ``z-dim``, ``--z-dim`` and ``z_dim`` are ``z_dim``."""
    return text.strip().lstrip("-").replace("-", "_")


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


def _error_path(out: Path, name: str) -> Path:
    return out / PRIVATE / f"{name}.error.json"


def error_record(run: str | os.PathLike) -> Path:
    """Where a sweep records why the cell whose run directory is ``run`` failed: beside the cells, in
    ``.sweep/NAME.error.json`` (a run directory holds pvae's own files only)."""
    run = Path(run)
    return _error_path(run.parent, run.name)


def recorded_error(run: str | os.PathLike) -> str | None:
    """The error a sweep recorded for the cell whose run directory is ``run`` (one line), or ``None``: its
    last attempt did not fail, or ``run`` is no sweep's cell. (A cell that succeeds again loses its record.)"""
    record = _read_error(error_record(run))
    return None if record is None else record["error"]


def _read_error(path: Path) -> dict | None:
    """The error record at ``path`` (its ``error`` a string), ``None`` if there is none; a record that does not
    read (cut short, not JSON, not an object) is one that says so, since it still means the cell failed."""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        record = None
    if not isinstance(record, dict):
        return {"error": f"failed (its error record {path} is unreadable)"}
    return {**record, "error": str(record.get("error", "failed"))}


def failed_cells(folder: str | os.PathLike) -> list[Path]:
    """The run directories (made or not: a cell can fail before its run directory exists) of the cells a
    sweep in ``folder`` recorded as failed, in name order."""
    private = Path(folder) / PRIVATE
    if not private.is_dir():
        return []
    return sorted(Path(folder) / p.name.removesuffix(".error.json") for p in private.glob("*.error.json"))


def log_path(out: str | os.PathLike, name: str) -> Path:
    """Where the output of the cell ``name`` of the sweep in ``out`` goes (with ``--workers``, or one process)."""
    return Path(out) / PRIVATE / "logs" / f"{name}.log"


def _run_state(path: Path) -> tuple[str, int, str | None]:
    """``(state, epochs done, error)`` of the run directory of a cell, its error file aside."""
    run = Run(path)
    try:
        if "test" in run.summary():
            return "done", len(run.metrics()), None
        return ("partial" if (path / CHECKPOINT).is_file() else "pending"), len(run.metrics()), None
    except RunError as error:  # a file a crash of something else than pvae broke
        return "failed", 0, str(error)


def _states(out: Path, cells: Sequence[Cell]) -> list[dict]:
    rows = []
    for cell in cells:
        path = out / cell.name
        state, epochs, error = _run_state(path)
        record = _read_error(_error_path(out, cell.name)) if state != "done" else None
        if record is not None:
            state, error = "failed", record["error"]
        if state != "done" and _running_elsewhere(out, cell.name):
            state, error = "running", None
        rows.append(
            {
                "index": cell.index,
                "name": cell.name,
                "settings": dict(cell.settings),
                "state": state,
                "error": error,
                "epochs": epochs,
                "path": str(path),
            }
        )
    return rows


def read_cells(out: str | os.PathLike) -> list[Cell]:
    """The cells of the sweep in ``out``, as its ``sweep.json`` lists them.

    :raises RunError: if ``out`` holds no sweep.
    """
    path = Path(out) / SWEEP
    if not path.is_file():
        raise RunError(f"{out} holds no sweep (no {SWEEP}); start one with pvae sweep {out} --grid ...")
    try:
        record = json.loads(path.read_text())
        return [
            Cell(c["index"], c["name"], tuple(map(tuple, c["settings"])), tuple(c["argv"])) for c in record["cells"]
        ]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise RunError(f"{path} is not a readable sweep record; run the sweep's command again to rewrite it") from None


def cell_status(out: str | os.PathLike) -> list[dict]:
    """The state of every cell of the sweep in ``out``, in its order.

    :param out: the sweep's folder (it holds ``sweep.json``).
    :returns: one dict per cell: ``index``, ``name``, ``settings`` (option → value as given), ``state``
        (``done``: tested; ``partial``: has a checkpoint, not tested; ``failed``: its last attempt failed,
        ``error`` says why; ``pending``: not started, or stopped before its first checkpoint; ``running``:
        another process holds its lock), ``error`` (one
        line, or ``None``), ``epochs`` (rows of its ``metrics.jsonl``) and ``path`` (its run directory).
    :raises RunError: if ``out`` holds no sweep.
    """
    return _states(Path(out), read_cells(out))


def _tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    if not path.is_file():
        return []
    return path.read_text(errors="replace").splitlines()[-lines:]


def _write_error(out: Path, cell: Cell, error: str, **extra) -> None:
    write_json(_error_path(out, cell.name), {"index": cell.index, "name": cell.name, "error": error, **extra})


def _said_once(sweep: "Sweep", cell: Cell, error: str) -> str:
    """``error`` the first time a cell of this sweep fails with it; after, a pointer to that cell (a long
    message repeated for every cell of a grid hides the one line that differs)."""
    first = sweep.errors_said.setdefault(error, cell)
    if first is cell or len(error) < 80:
        return error
    return f"the same error as cell {first.index} {first.name} ({error[:60]}…)"


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or "(no message)"
    return f"{type(error).__name__}: {text}"


def _describe(out: Path, cell: Cell) -> str:
    """What a finished cell scored, for its line."""
    test = Run(out / cell.name).summary().get("test", {})
    numbers = [f"{key} {test[key]:.2f}" for key in ("elbo", "log_px") if isinstance(test.get(key), float)]
    return f": test {', '.join(numbers)}" if numbers else ""


def _prepare(out: Path, cell: Cell) -> tuple[list[str], str]:
    """The extra ``pvae train`` options of a cell's next attempt, and its line's words."""
    path = out / cell.name
    state, epochs, _ = _run_state(path)
    if state == "partial":
        return ["--resume"], f"resuming after epoch {epochs}"
    started = any((path / name).exists() for name in (METRICS, SUMMARY))
    if (path / CONFIG).is_file() and started:  # stopped between its metrics and its first checkpoint
        return ["--overwrite"], "starting again (no checkpoint)"
    return [], "starting"


def lock_path(out: str | os.PathLike, name: str) -> Path:
    """The lock file of the cell ``name`` of the sweep in ``out``: the process that runs the cell holds it."""
    return Path(out) / PRIVATE / f"{name}.lock"


@contextlib.contextmanager
def _cell_lock(out: Path, name: str) -> Iterator[bool]:
    """Hold the cell's lock while the block runs; yields whether this process got it (``False``: another process
    runs the cell). It is the kernel's (flock), so it goes with its process, kill -9 included."""
    if fcntl is None:
        yield True
        return
    path = lock_path(out, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        stop = time.monotonic() + LOCK_PATIENCE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                got = True
            except BlockingIOError:
                got = False
            except OSError:  # a file system without flock: run unlocked, as before locks existed
                got = True
            if got or time.monotonic() >= stop:
                break
            time.sleep(0.05)
        yield got
    finally:
        os.close(fd)  # which releases the lock


def _running_elsewhere(out: Path, name: str) -> bool:
    """Whether another process holds the lock of the cell ``name`` (this look holds it for an instant)."""
    if fcntl is None:
        return False
    try:
        fd = os.open(lock_path(out, name), os.O_RDONLY)
    except OSError:  # no lock file: never run
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def run_cell(
    sweep: Sweep, cell: Cell, train: Callable[[list[str]], None], log: Path | None = None, writes: bool = True
) -> bool:
    """Run one cell in this process (unless it is done), recording its error if it fails.

    :param sweep: the sweep.
    :param cell: the cell.
    :param train: runs ``pvae train`` with the options it gets.
    :param log: append the training's output to this file (``None``: print it).
    :param writes: whether this process writes the sweep's files (under torchrun: rank 0 only).
    :returns: whether the cell is done (``False`` too where another process holds its lock: it is skipped, with
        a line that says so).
    :raises KeyboardInterrupt: Ctrl-C or SIGTERM, after which the cell is partial or pending, never failed.
    """
    out, total = sweep.out, len(sweep.cells)
    if _run_state(out / cell.name)[0] == "done":
        return True
    if not writes:  # under torchrun rank 0 holds the lock for every rank
        return _run_cell(sweep, cell, train, log, writes)
    with _cell_lock(out, cell.name) as mine:
        if not mine:
            if under_torchrun():  # the other ranks are about to train it: stop them all, with the reason
                raise RunError(
                    f"cell {cell.index} {cell.name} is running elsewhere (another process holds its lock): under "
                    "torchrun every rank would wait for rank 0; run it again once the other process is done"
                )
            _say(f"cell {cell.index}/{total} {cell.name}: running elsewhere (another process holds its lock); skipped")
            return False
        if _run_state(out / cell.name)[0] == "done":  # the process that held the lock finished it
            return True
        return _run_cell(sweep, cell, train, log, writes)


def _run_cell(sweep: Sweep, cell: Cell, train: Callable[[list[str]], None], log: Path | None, writes: bool) -> bool:
    """:func:`run_cell`, the cell not done, its lock held."""
    out, total = sweep.out, len(sweep.cells)
    extra, doing = _prepare(out, cell)
    if writes:
        _error_path(out, cell.name).unlink(missing_ok=True)
        _say(f"cell {cell.index}/{total} {cell.name}: {doing}" + (f" (log: {log})" if log else ""))
    tic = time.perf_counter()
    try:
        if log is None:
            train([*cell.argv, *extra, "--out", str(out / cell.name)])
        else:
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a") as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
                print(f"=== pvae train {shlex.join([*cell.argv, *extra])} ({time.strftime('%Y-%m-%d %H:%M:%S')})")
                try:
                    train([*cell.argv, *extra, "--out", str(out / cell.name)])
                except Exception as error:
                    if isinstance(error, _EXPLAINED):
                        print(_one_line(error))
                    else:
                        traceback.print_exc()
                    raise
    except Exception as error:
        if writes:
            # a message that names the fix says it all; anything else keeps where it came from
            trace = [] if isinstance(error, _EXPLAINED) else _trace(error)
            tail = _tail(log) if log else trace
            _write_error(out, cell, _one_line(error), log=str(log) if log else None, log_tail=tail)
            seconds = time.perf_counter() - tic
            said = _said_once(sweep, cell, _one_line(error))
            _say(f"cell {cell.index}/{total} {cell.name}: failed in {seconds:.1f} s: {said}")
        if log is None:
            raise
        return False
    if writes:
        _say(f"cell {cell.index}/{total} {cell.name}: done in {time.perf_counter() - tic:.1f} s{_describe(out, cell)}")
    return True


def _trace(error: BaseException) -> list[str]:
    return "".join(traceback.format_exception(error)).splitlines()[-TAIL_LINES:]


def _say(line: str) -> None:
    print(f"sweep: {line}", file=sys.stderr, flush=True)


def cores() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def _run_workers(sweep: Sweep, cells: Sequence[Cell]) -> None:
    """Run ``cells`` in ``sweep.config.workers`` processes of ``python -m pvae sweep OUT --cell I``."""
    workers = sweep.config.workers
    threads = str(max(1, cores() // workers))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    queue, running = list(cells), {}
    patience = 0.0  # whatever ends this loop early ends the workers too: no trainer outlives the sweep
    try:
        while queue or running:
            while queue and len(running) < workers:
                cell = queue.pop(0)
                if _running_elsewhere(sweep.out, cell.name):
                    _say(f"cell {cell.index}/{len(sweep.cells)} {cell.name}: running elsewhere; skipped")
                    continue
                extra, doing = _prepare(sweep.out, cell)
                log = log_path(sweep.out, cell.name)
                log.parent.mkdir(parents=True, exist_ok=True)
                handle = open(log, "a")  # closed when its process ends
                command = [sys.executable, "-m", "pvae", *sweep.sweep_argv(cell.index)]
                try:
                    process = subprocess.Popen(
                        command, stdout=handle, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with(os.getpid())
                    )
                except BaseException:
                    handle.close()
                    raise
                running[process] = (cell, handle, time.perf_counter())
                _say(f"cell {cell.index}/{len(sweep.cells)} {cell.name}: {doing} (log: {log})")
            time.sleep(0.05)
            for process in [p for p in running if p.poll() is not None]:
                cell, handle, tic = running.pop(process)
                handle.close()
                _finished(sweep, cell, process.returncode, time.perf_counter() - tic)
    except KeyboardInterrupt as stop:
        if not isinstance(stop, _Terminated):  # Ctrl-C reached them too (one process group): let them stop
            patience = GRACE
        raise
    finally:
        _stop(running, patience)


def _die_with(parent: int):
    """What a worker runs before its program (Linux): the kernel sends it SIGTERM when the sweep's process ends
    (``PR_SET_PDEATHSIG``), even by SIGKILL, which no handler of the sweep sees, so no worker outlives its sweep
    as an orphan; a worker whose sweep already ended stops at once. Elsewhere, nothing (``None``)."""
    if not sys.platform.startswith("linux"):
        return None

    def die_with_parent() -> None:
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:  # the sweep ended before the line above: nobody to die with
            os.kill(os.getpid(), signal.SIGTERM)

    return die_with_parent


def _stop(running: dict, patience: float) -> None:
    """End the workers still running: ``patience`` seconds to end by themselves, then SIGTERM (which a worker
    takes as Ctrl-C: its cell stays partial), then SIGKILL; their logs closed."""
    for signal_them in (None, subprocess.Popen.terminate, subprocess.Popen.kill):
        alive = [p for p in running if p.poll() is None]
        if not alive:
            break
        if signal_them is not None:
            for process in alive:
                signal_them(process)
        stop = time.monotonic() + (patience if signal_them is None else GRACE)
        for process in alive:
            try:
                process.wait(timeout=max(0.0, stop - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
    for _, handle, _ in running.values():
        handle.close()


def _finished(sweep: Sweep, cell: Cell, status: int, seconds: float) -> None:
    """Say how a worker's cell ended; where it could not say why it failed (a signal), record it."""
    out, total, log = sweep.out, len(sweep.cells), log_path(sweep.out, cell.name)
    state = _run_state(out / cell.name)[0]
    if status == 0 and state == "done":
        _say(f"cell {cell.index}/{total} {cell.name}: done in {seconds:.1f} s{_describe(out, cell)}")
        return
    if status in _INTERRUPTED:  # stopped, not failed: no error record, the same command goes on with it
        _say(f"cell {cell.index}/{total} {cell.name}: interrupted after {seconds:.1f} s; it is {state}")
        return
    if status == 0:  # its process found the cell's lock held and left the cell to that process
        _say(f"cell {cell.index}/{total} {cell.name}: running elsewhere; skipped")
        return
    path = _error_path(out, cell.name)
    record = _read_error(path)
    if record is None:
        why = f"killed by {signal.Signals(-status).name}" if status < 0 else f"exited with status {status}"
        record = {"index": cell.index, "name": cell.name, "error": f"the process {why}"}
    record.update(log=str(log), log_tail=_tail(log))
    write_json(path, record)
    _say(
        f"cell {cell.index}/{total} {cell.name}: failed in {seconds:.1f} s: {_said_once(sweep, cell, record['error'])}"
    )


def run_sweep(sweep: Sweep, train: Callable[[list[str]], None], writes: bool = True) -> list[dict]:
    """Run what ``pvae sweep`` was asked: list the cells, run one, or run every cell not done yet.

    :param sweep: the checked sweep.
    :param train: runs ``pvae train`` in this process with the options it gets (used unless ``--workers``).
    :param writes: whether this process writes the sweep's files (under torchrun: rank 0 only).
    :returns: :func:`cell_status` at the end.
    :raises ValueError: for ``--cell`` out of range.
    :raises RunError: if any cell failed or was interrupted, naming them, after every other cell ran (a cell
        another process runs is not an error: the line of counts says so).
    :raises KeyboardInterrupt: Ctrl-C or SIGTERM; the workers are stopped, the cells left partial or pending.
    """
    config, out, cells = sweep.config, sweep.out, sweep.cells
    if config.list:
        for row in _states(out, cells):
            why = f"  ({row['error']})" if row["error"] else ""
            print(f"{row['index']:>4}  {row['state']:<8} {row['name']}{why}")
        return _states(out, cells)
    with _sigterm_interrupts():
        return _run_sweep(sweep, train, writes)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (scancel, timeout, kill) stops the sweep as Ctrl-C does, while the block runs; the old handler
    is back after it."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def interrupt(signum, frame):
        raise _Terminated(f"stopped by {signal.Signals(signum).name}")

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if old is None else old)


def _run_sweep(sweep: Sweep, train: Callable[[list[str]], None], writes: bool) -> list[dict]:
    """:func:`run_sweep` but ``--list``."""
    config, out, cells = sweep.config, sweep.out, sweep.cells
    if config.cell is not None and config.cell >= len(cells):
        raise ValueError(f"--cell {config.cell}: the sweep has {len(cells)} cells, 0 to {len(cells) - 1}")
    held = sweep.check_out()
    # what this machine cannot run, refused before sweep.json is written: a corrected command is not refused then
    here = [cells[config.cell]] if config.cell is not None else cells
    sweep.check_here([cell for cell in here if _run_state(out / cell.name)[0] != "done"])
    if not held and writes:
        sweep.replace_unrun()
        write_json(out / SWEEP, sweep.record())
    if config.cell is not None:
        cell = cells[config.cell]
        if _run_state(out / cell.name)[0] == "done":
            if writes:
                _say(f"cell {cell.index}/{len(cells)} {cell.name}: done already")
        else:
            run_cell(sweep, cell, train, writes=writes)
        return _states(out, cells)
    todo = [cell for cell, row in zip(cells, _states(out, cells), strict=True) if row["state"] != "done"]
    if len(todo) < len(cells):
        _say(f"{len(cells) - len(todo)} of {len(cells)} cells done already")
    if config.workers > 1:
        _run_workers(sweep, todo)
    else:
        for cell in todo:
            run_cell(sweep, cell, train, log=log_path(out, cell.name))
    rows = _states(out, cells)
    unfinished = [row for row in rows if row["state"] not in ("done", "running")]
    counts = {state: sum(row["state"] == state for row in rows) for state in STATES}
    said = ", ".join(f"{n} {'running elsewhere' if state == 'running' else state}" for state, n in counts.items() if n)
    print(f"sweep {out}: {said} of {len(cells)} cells")
    if unfinished:
        listed = "; ".join(f"{row['name']}: {row['error'] or 'interrupted'}" for row in unfinished[:3])
        listed += "; ..." if len(unfinished) > 3 else ""
        what = "failed" if all(row["state"] == "failed" for row in unfinished) else "are not done"
        raise RunError(
            f"{len(unfinished)} of {len(cells)} cells {what} ({listed}); their logs are in "
            f"{out / PRIVATE / 'logs'}, and the same command tries them again"
        )
    return rows
