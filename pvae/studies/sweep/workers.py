"""Cells run in worker processes (``--workers N``: ``python -m pvae sweep OUT ... --cell I`` each), and how a
sweep stops: SIGTERM taken as Ctrl-C, its workers stopped with it, none outliving it."""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence

from pvae.base.files import write_json
from pvae.studies.sweep.grid import Cell
from pvae.studies.sweep.records import (
    describe,
    error_path,
    log_path,
    prepare,
    read_error,
    run_state,
    running_elsewhere,
    said_once,
    say,
    tail,
)

#: How a worker that was interrupted exits: 130 (pvae after Ctrl-C or SIGTERM), or killed by either signal.
INTERRUPTED = (130, -signal.SIGINT, -signal.SIGTERM)
#: Seconds a worker gets to stop by itself (after Ctrl-C), then after SIGTERM, before SIGKILL.
GRACE = 10.0


class Terminated(KeyboardInterrupt):
    """SIGTERM (scancel, timeout, kill) while a sweep runs: it stops as after Ctrl-C."""


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (scancel, timeout, kill) stops the sweep as Ctrl-C does, while the block runs; the old handler
    is back after it."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def interrupt(signum, frame):
        raise Terminated(f"stopped by {signal.Signals(signum).name}")

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if old is None else old)


def cores() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def run_workers(sweep, cells: Sequence[Cell]) -> None:
    """Run ``cells`` in ``sweep.config.workers`` processes of ``python -m pvae sweep OUT --cell I``.

    :param sweep: the :class:`pvae.studies.sweep.Sweep`.
    :raises KeyboardInterrupt: Ctrl-C or SIGTERM, after the workers are stopped.
    """
    workers = sweep.config.workers
    threads = str(max(1, cores() // workers))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    queue, running = list(cells), {}
    patience = 0.0  # whatever ends this loop early ends the workers too: no trainer outlives the sweep
    try:
        while queue or running:
            while queue and len(running) < workers:
                cell = queue.pop(0)
                if running_elsewhere(sweep.out, cell.name):
                    say(f"cell {cell.index}/{len(sweep.cells)} {cell.name}: running elsewhere; skipped")
                    continue
                _, doing = prepare(sweep.out, cell)
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
                say(f"cell {cell.index}/{len(sweep.cells)} {cell.name}: {doing} (log: {log})")
            time.sleep(0.05)
            for process in [p for p in running if p.poll() is not None]:
                cell, handle, tic = running.pop(process)
                handle.close()
                finished(sweep, cell, process.returncode, time.perf_counter() - tic)
    except KeyboardInterrupt as stop:
        if not isinstance(stop, Terminated):  # Ctrl-C reached them too (one process group): let them stop
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


def finished(sweep, cell: Cell, status: int, seconds: float) -> None:
    """Say how a worker's cell ended; where it could not say why it failed (a signal), record it.

    :param sweep: the :class:`pvae.studies.sweep.Sweep`.
    :param cell: the worker's cell.
    :param status: the worker's exit status (negative: the signal that killed it).
    :param seconds: how long it ran.
    """
    out, total, log = sweep.out, len(sweep.cells), log_path(sweep.out, cell.name)
    state = run_state(out / cell.name)[0]
    if status == 0 and state == "done":
        say(f"cell {cell.index}/{total} {cell.name}: done in {seconds:.1f} s{describe(out, cell)}")
        return
    if status in INTERRUPTED:  # stopped, not failed: no error record, the same command goes on with it
        say(f"cell {cell.index}/{total} {cell.name}: interrupted after {seconds:.1f} s; it is {state}")
        return
    if status == 0:  # its process found the cell's lock held and left the cell to that process
        say(f"cell {cell.index}/{total} {cell.name}: running elsewhere; skipped")
        return
    path = error_path(out, cell.name)
    record = read_error(path)
    if record is None:
        why = f"killed by {signal.Signals(-status).name}" if status < 0 else f"exited with status {status}"
        record = {"index": cell.index, "name": cell.name, "error": f"the process {why}"}
    record.update(log=str(log), log_tail=tail(log))
    write_json(path, record)
    say(f"cell {cell.index}/{total} {cell.name}: failed in {seconds:.1f} s: {said_once(sweep, cell, record['error'])}")
