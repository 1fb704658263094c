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
(:meth:`pvae.base.runs.Run.create` refuses a folder of other files). A cell is *done* when its ``summary.json``
holds the test numbers, *partial* when it has a checkpoint (it is resumed with ``--resume``), *failed* when
its last attempt left an error (it is tried again), *running* while another process holds its lock (it is
skipped), *pending* otherwise; running the same command again finishes the study, whatever stopped it (Ctrl-C,
SIGTERM, kill -9), with no epoch trained twice and no cell trained by two processes at once. What this machine
cannot run (a device it lacks, data not here with downloads off) is refused before ``sweep.json`` is written, and a
sweep none of whose cells ever ran is replaced by the next command given in OUT: a corrected command is not
refused as "another sweep".

Where the cells run is the caller's choice: one after the other in this process, ``--workers N`` local
processes, or ``--cell I`` (one cell, in this process) from a scheduler's array job, under torchrun too.

A cell's settings are ``dataclasses.replace(base, **its own)``, ``base`` the settings every cell shares (in
``pvae sweep``, the ``pvae train`` options after ``--``): the sweep is generic over that record and runs a cell
through the function it is given (:func:`pvae.app.train.train`). Its settings are command-line words only in
``sweep.json``, in the processes ``--workers`` starts and in the command printed to go on.

The modules: :mod:`pvae.studies.sweep.grid` (the sweep's options, the grid and explicit cells read against the settings'
fields, the cells' names), :mod:`pvae.studies.sweep.cells` (:class:`Sweep`: the cells checked, ``sweep.json``, the
command), :mod:`pvae.studies.sweep.records` (the files in OUT and every cell's state), :mod:`pvae.studies.sweep.locks`
(a cell's
lock), :mod:`pvae.studies.sweep.workers` (worker processes and signals) and :mod:`pvae.studies.sweep.run` (what a
command runs).
"""

from pvae.base.failures import (
    error_record,
    failed_cells,
    recorded_error,
)  # read by pvae runs too, so kept with the runs
from pvae.studies.sweep.cells import Sweep
from pvae.studies.sweep.grid import RESERVED, Cell, SweepConfig, cell_name, item_words, option_name, refuse_reserved
from pvae.studies.sweep.locks import LOCK_PATIENCE
from pvae.studies.sweep.records import (
    PRIVATE,
    STATES,
    SWEEP,
    TAIL_LINES,
    cell_status,
    lock_path,
    log_path,
    read_cells,
)
from pvae.studies.sweep.run import list_cells, run_cell, run_sweep
from pvae.studies.sweep.workers import GRACE, cores

__all__ = [
    "GRACE",
    "LOCK_PATIENCE",
    "PRIVATE",
    "RESERVED",
    "STATES",
    "SWEEP",
    "TAIL_LINES",
    "Cell",
    "Sweep",
    "SweepConfig",
    "cell_name",
    "cell_status",
    "cores",
    "error_record",
    "failed_cells",
    "item_words",
    "list_cells",
    "lock_path",
    "log_path",
    "option_name",
    "read_cells",
    "recorded_error",
    "refuse_reserved",
    "run_cell",
    "run_sweep",
]
