"""What a sweep keeps in its folder OUT beside the cells' run directories (``sweep.json``, and in ``.sweep/`` each
cell's log, error record and lock), the state of every cell read from them, and the lines the sweep says."""

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pvae.base.failures import SWEEP_PRIVATE as PRIVATE
from pvae.base.failures import error_path, read_error  # read where runs are read (pvae runs names failed cells)
from pvae.base.files import write_json
from pvae.base.runs import CHECKPOINT, CONFIG, METRICS, SUMMARY, Run, RunError
from pvae.studies.sweep.grid import Cell
from pvae.studies.sweep.locks import held

SWEEP = "sweep.json"
#: States of a cell (:func:`cell_status`).
STATES = ("done", "partial", "failed", "pending", "running")
#: Lines of a cell's log kept in its error file.
TAIL_LINES = 20


def write_error(out: Path, cell: Cell, error: str, **extra) -> None:
    """Record that ``cell`` failed with ``error`` (one line), with ``extra`` (its log, the log's tail)."""
    write_json(error_path(out, cell.name), {"index": cell.index, "name": cell.name, "error": error, **extra})


def log_path(out: str | os.PathLike, name: str) -> Path:
    """Where the output of the cell ``name`` of the sweep in ``out`` goes (with ``--workers``, or one process)."""
    return Path(out) / PRIVATE / "logs" / f"{name}.log"


def lock_path(out: str | os.PathLike, name: str) -> Path:
    """The lock file of the cell ``name`` of the sweep in ``out``: the process that runs the cell holds it."""
    return Path(out) / PRIVATE / f"{name}.lock"


def running_elsewhere(out: Path, name: str) -> bool:
    """Whether another process holds the lock of the cell ``name`` of the sweep in ``out``."""
    return held(lock_path(out, name))


def run_state(path: Path) -> tuple[str, int, str | None]:
    """``(state, epochs done, error)`` of the run directory of a cell, its error file aside."""
    run = Run(path)
    try:
        if "test" in run.summary():
            return "done", len(run.metrics()), None
        return ("partial" if (path / CHECKPOINT).is_file() else "pending"), len(run.metrics()), None
    except RunError as error:  # a file a crash of something else than pvae broke
        return "failed", 0, str(error)


def states(out: Path, cells: Sequence[Cell]) -> list[dict]:
    """:func:`cell_status` of ``cells``, the cells of the sweep in ``out``."""
    rows = []
    for cell in cells:
        path = out / cell.name
        state, epochs, error = run_state(path)
        record = read_error(error_path(out, cell.name)) if state != "done" else None
        if record is not None:
            state, error = "failed", record["error"]
        if state != "done" and running_elsewhere(out, cell.name):
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
    return states(Path(out), read_cells(out))


def tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of the log ``path`` (none where there is no log)."""
    if not path.is_file():
        return []
    return path.read_text(errors="replace").splitlines()[-lines:]


def prepare(out: Path, cell: Cell) -> tuple[tuple[str, ...], str]:
    """The settings a cell's next attempt turns on (``resume``, or ``overwrite``, or none), and its line's words."""
    path = out / cell.name
    state, epochs, _ = run_state(path)
    if state == "partial":
        return ("resume",), f"resuming after epoch {epochs}"
    started = any((path / name).exists() for name in (METRICS, SUMMARY))
    if (path / CONFIG).is_file() and started:  # stopped between its metrics and its first checkpoint
        return ("overwrite",), "starting again (no checkpoint)"
    return (), "starting"


def describe(out: Path, cell: Cell) -> str:
    """What a finished cell scored, for its line."""
    test = Run(out / cell.name).summary().get("test", {})
    numbers = [f"{key} {test[key]:.2f}" for key in ("elbo", "log_px") if isinstance(test.get(key), float)]
    return f": test {', '.join(numbers)}" if numbers else ""


def say(line: str) -> None:
    """Say ``line`` of the sweep on stderr."""
    print(f"sweep: {line}", file=sys.stderr, flush=True)


def one_line(error: BaseException) -> str:
    """``error`` as one line: its type and message."""
    text = " ".join(str(error).split()) or "(no message)"
    return f"{type(error).__name__}: {text}"


def said_once(sweep, cell: Cell, error: str) -> str:
    """``error`` the first time a cell of this sweep fails with it; after, a pointer to that cell (a long
    message repeated for every cell of a grid hides the one line that differs).

    :param sweep: the sweep (its ``errors_said``: each message, by the first cell that said it).
    """
    first = sweep.errors_said.setdefault(error, cell)
    if first is cell or len(error) < 80:
        return error
    return f"the same error as cell {first.index} {first.name} ({error[:60]}…)"
