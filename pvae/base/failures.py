"""A failed run's error record. A sweep writes it beside its cells' run directories (a run directory holds
pvae's own files only), in ``FOLDER/.sweep/NAME.error.json``; every reader of runs reads it (``pvae runs`` names
the failed cells).
"""

import json
import os
from pathlib import Path

#: The folder beside a sweep's cells where the sweep keeps its own files: error records, logs and locks.
SWEEP_PRIVATE = ".sweep"


def error_path(folder: str | os.PathLike, name: str) -> Path:
    """The error record of the run ``name`` of the sweep in ``folder``: ``folder/.sweep/NAME.error.json``.

    :param folder: the sweep's folder, which holds its cells' run directories.
    :param name: the cell's name, its run directory's.
    """
    return Path(folder) / SWEEP_PRIVATE / f"{name}.error.json"


def error_record(run: str | os.PathLike) -> Path:
    """Where a sweep records why the cell whose run directory is ``run`` failed: beside the cells, in
    ``.sweep/NAME.error.json`` (a run directory holds pvae's own files only).

    :param run: the cell's run directory (made or not).
    """
    run = Path(run)
    return error_path(run.parent, run.name)


def read_error(path: Path) -> dict | None:
    """The error record at ``path`` (its ``error`` a string), ``None`` if there is none; a record that does not
    read (cut short, not JSON, not an object) is one that says so, since it still means the cell failed.

    :param path: the record (:func:`error_path`).
    """
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        record = None
    if not isinstance(record, dict):
        return {"error": f"failed (its error record {path} is unreadable)"}
    return {**record, "error": str(record.get("error", "failed"))}


def recorded_error(run: str | os.PathLike) -> str | None:
    """The error a sweep recorded for the cell whose run directory is ``run`` (one line), or ``None``: its
    last attempt did not fail, or ``run`` is no sweep's cell. (A cell that succeeds again loses its record.)

    :param run: the cell's run directory (made or not).
    """
    record = read_error(error_record(run))
    return None if record is None else record["error"]


def failed_cells(folder: str | os.PathLike) -> list[Path]:
    """The run directories (made or not: a cell can fail before its run directory exists) of the cells a
    sweep in ``folder`` recorded as failed, in name order.

    :param folder: the sweep's folder.
    """
    private = Path(folder) / SWEEP_PRIVATE
    if not private.is_dir():
        return []
    return sorted(Path(folder) / p.name.removesuffix(".error.json") for p in private.glob("*.error.json"))
