"""Running what ``pvae sweep`` was asked: list the cells, run one, or run every cell not done yet, in this
process or in workers; a cell runs under its lock, its failure recorded, an interruption not."""

import contextlib
import shlex
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from pvae.base import options
from pvae.base.distributed import under_torchrun
from pvae.base.files import write_json
from pvae.base.runs import RunError
from pvae.studies.sweep.cells import Sweep
from pvae.studies.sweep.grid import Cell
from pvae.studies.sweep.locks import hold
from pvae.studies.sweep.records import (
    PRIVATE,
    STATES,
    SWEEP,
    TAIL_LINES,
    describe,
    error_path,
    lock_path,
    log_path,
    one_line,
    prepare,
    read_cells,
    run_state,
    said_once,
    say,
    states,
    tail,
    write_error,
)
from pvae.studies.sweep.workers import run_workers, sigterm_interrupts

#: Errors whose message names the problem and the fix (as ``pvae train`` prints them): no traceback.
_EXPLAINED = (ValueError, RunError, FloatingPointError)

#: What runs a cell: its settings, and the fields chosen in them (:meth:`Sweep.chosen`).
Train = Callable[[object, set], object]


def run_cell(sweep: Sweep, cell: Cell, train: Train, log: Path | None = None, writes: bool = True) -> bool:
    """Run one cell in this process (unless it is done), recording its error if it fails.

    :param sweep: the sweep.
    :param cell: the cell.
    :param train: trains a cell: ``train(settings, given)`` (:func:`pvae.app.train.train`).
    :param log: append the training's output to this file (``None``: print it).
    :param writes: whether this process writes the sweep's files (under torchrun: rank 0 only).
    :returns: whether the cell is done (``False`` too where another process holds its lock: it is skipped, with
        a line that says so).
    :raises KeyboardInterrupt: Ctrl-C or SIGTERM, after which the cell is partial or pending, never failed.
    """
    out, total = sweep.out, len(sweep.cells)
    if run_state(out / cell.name)[0] == "done":
        return True
    if not writes:  # under torchrun rank 0 holds the lock for every rank
        return _run_cell(sweep, cell, train, log, writes)
    with hold(lock_path(out, cell.name)) as mine:
        if not mine:
            if under_torchrun():  # the other ranks are about to train it: stop them all, with the reason
                raise RunError(
                    f"cell {cell.index} {cell.name} is running elsewhere (another process holds its lock): under "
                    "torchrun every rank would wait for rank 0; run it again once the other process is done"
                )
            say(f"cell {cell.index}/{total} {cell.name}: running elsewhere (another process holds its lock); skipped")
            return False
        if run_state(out / cell.name)[0] == "done":  # the process that held the lock finished it
            return True
        return _run_cell(sweep, cell, train, log, writes)


def _run_cell(sweep: Sweep, cell: Cell, train: Train, log: Path | None, writes: bool) -> bool:
    """:func:`run_cell`, the cell not done, its lock held."""
    out, total = sweep.out, len(sweep.cells)
    extra, doing = prepare(out, cell)
    settings = sweep.settings(cell, out=str(out / cell.name), **dict.fromkeys(extra, True))
    given = sweep.chosen(cell, "out", *extra)
    if writes:
        error_path(out, cell.name).unlink(missing_ok=True)
        say(f"cell {cell.index}/{total} {cell.name}: {doing}" + (f" (log: {log})" if log else ""))
    tic = time.perf_counter()
    try:
        if log is None:
            train(settings, given)
        else:
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a") as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
                argv = [*cell.argv, *map(options.flag, extra)]
                print(f"=== pvae train {shlex.join(argv)} ({time.strftime('%Y-%m-%d %H:%M:%S')})")
                try:
                    train(settings, given)
                except Exception as error:
                    if isinstance(error, _EXPLAINED):
                        print(one_line(error))
                    else:
                        traceback.print_exc()
                    raise
    except Exception as error:
        if writes:
            # a message that names the fix says it all; anything else keeps where it came from
            trace = [] if isinstance(error, _EXPLAINED) else _trace(error)
            lines = tail(log) if log else trace
            write_error(out, cell, one_line(error), log=str(log) if log else None, log_tail=lines)
            seconds = time.perf_counter() - tic
            said = said_once(sweep, cell, one_line(error))
            say(f"cell {cell.index}/{total} {cell.name}: failed in {seconds:.1f} s: {said}")
        if log is None:
            raise
        return False
    if writes:
        say(f"cell {cell.index}/{total} {cell.name}: done in {time.perf_counter() - tic:.1f} s{describe(out, cell)}")
    return True


def _trace(error: BaseException) -> list[str]:
    return "".join(traceback.format_exception(error)).splitlines()[-TAIL_LINES:]


def run_sweep(sweep: Sweep, train: Train, writes: bool = True) -> list[dict]:
    """Run what ``pvae sweep`` was asked: list the cells, run one, or run every cell not done yet.

    :param sweep: the checked sweep.
    :param train: trains a cell in this process: ``train(settings, given)`` (used unless ``--workers``).
    :param writes: whether this process writes the sweep's files (under torchrun: rank 0 only).
    :returns: :func:`pvae.studies.sweep.cell_status` at the end.
    :raises ValueError: for ``--cell`` out of range.
    :raises RunError: if any cell failed or was interrupted, naming them, after every other cell ran (a cell
        another process runs is not an error: the line of counts says so).
    :raises KeyboardInterrupt: Ctrl-C or SIGTERM; the workers are stopped, the cells left partial or pending.
    """
    config, out, cells = sweep.config, sweep.out, sweep.cells
    if config.list:
        return list_cells(out, cells)
    with sigterm_interrupts():
        return _run_sweep(sweep, train, writes)


def list_cells(out: Path, cells: list | None = None) -> list[dict]:
    """Print one line per cell of the sweep in ``out``: its index, state and name (and why it failed).

    :param out: the sweep's folder.
    :param cells: its cells (default: those its ``sweep.json`` records).
    :returns: :func:`pvae.studies.sweep.cell_status` of the cells.
    :raises RunError: for a folder that holds no sweep, where ``cells`` is not given.
    """
    rows = states(out, read_cells(out) if cells is None else cells)
    for row in rows:
        why = f"  ({row['error']})" if row["error"] else ""
        print(f"{row['index']:>4}  {row['state']:<8} {row['name']}{why}")
    return rows


def _run_sweep(sweep: Sweep, train: Train, writes: bool) -> list[dict]:
    """:func:`run_sweep` but ``--list``."""
    config, out, cells = sweep.config, sweep.out, sweep.cells
    if config.cell is not None and config.cell >= len(cells):
        raise ValueError(f"--cell {config.cell}: the sweep has {len(cells)} cells, 0 to {len(cells) - 1}")
    held = sweep.check_out()
    # what this machine cannot run, refused before sweep.json is written: a corrected command is not refused then
    here = [cells[config.cell]] if config.cell is not None else cells
    sweep.check_here([cell for cell in here if run_state(out / cell.name)[0] != "done"])
    if not held and writes:
        sweep.replace_unrun()
        write_json(out / SWEEP, sweep.record())
    if config.cell is not None:
        cell = cells[config.cell]
        if run_state(out / cell.name)[0] == "done":
            if writes:
                say(f"cell {cell.index}/{len(cells)} {cell.name}: done already")
        else:
            run_cell(sweep, cell, train, writes=writes)
        return states(out, cells)
    todo = [cell for cell, row in zip(cells, states(out, cells), strict=True) if row["state"] != "done"]
    if len(todo) < len(cells):
        say(f"{len(cells) - len(todo)} of {len(cells)} cells done already")
    if config.workers > 1:
        run_workers(sweep, todo)
    else:
        for cell in todo:
            run_cell(sweep, cell, train, log=log_path(out, cell.name))
    rows = states(out, cells)
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
