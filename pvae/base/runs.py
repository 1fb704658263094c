"""The run directory: how stages (train, evaluate, plot) talk to each other.

::

    RUN/
      config.json      the resolved configuration
      checkpoint.pt    modules, optimizer, RNG states, epoch
      metrics.jsonl    one line per epoch
      summary.json     final numbers, one key per stage or split
      figures/         PNGs
      .pvae-files      the files pvae wrote in the run, one relative path a line

Every file is written atomically (:mod:`pvae.base.files`), so a crash leaves the previous version whole,
never half a file, and is recorded in the run's manifest: ``train --overwrite`` deletes those files and no
other. Each checkpoint carries a new ``model_id``; every result measured on a run records the id of the
model it measured (:func:`pvae.base.results.measured`), so that a result of an earlier model of the run
(before ``--resume`` trained it further) is recognised as stale (:func:`pvae.base.results.is_stale`) and never
shown as the model's.
:func:`pvae.engine.config.restore` rebuilds a trained run's pair from its directory.
"""

import contextlib
import importlib
import json
import os
import pickle
import time
import uuid
from pathlib import Path
from typing import Any

import torch

from pvae.base import options
from pvae.base.failures import SWEEP_PRIVATE
from pvae.base.files import MANIFEST, TEMPORARY, atomic_write, record_written, start_manifest, write_json, written
from pvae.base.results import json_object
from pvae.base.rng import legacy_rng_state

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
FIGURES = "figures"
#: The page ``pvae report`` writes into a run.
REPORT = "report.html"
#: The files of a run pvae always wrote, by name: all that ``--overwrite`` deletes of a run written before
#: runs kept a manifest (:data:`pvae.base.files.MANIFEST`).
FIXED_FILES = (CONFIG, CHECKPOINT, METRICS, SUMMARY, REPORT)
#: Age in seconds past which a temporary file of a run being read counts as orphaned: a live write
#: of another process (``pvae plot`` while training) finishes in less.
STALE_SECONDS = 600.0


class RunError(RuntimeError):
    """A run directory is missing, incomplete, or would be overwritten."""


#: What a checkpoint of pvae 0.1 holds besides tensors and containers: NumPy's RNG state. These
#: build arrays and dtypes from bytes and run no other code; :func:`upgrade_checkpoint` admits them,
#: and nothing else, for its one conversion.
LEGACY_GLOBALS = ("numpy._core.multiarray._reconstruct", "numpy.ndarray", "numpy.dtype", "numpy.dtypes.UInt32DType")


def _legacy_globals() -> list:
    found = []
    for name in LEGACY_GLOBALS:
        module, _, attr = name.rpartition(".")
        try:
            found.append(getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError):  # NumPy < 2 names its core numpy.core
            with contextlib.suppress(ImportError, AttributeError):
                found.append(getattr(importlib.import_module(module.replace("numpy._core", "numpy.core")), attr))
    return found


def unsafe_globals(path: str | os.PathLike) -> list[str]:
    """The Python objects a checkpoint file names besides what ``weights_only=True`` admits, read from its
    pickle without running it (``torch.serialization.get_unsafe_globals_in_checkpoint``)."""
    return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))


def upgrade_checkpoint(path: str | os.PathLike) -> bool:
    """Rewrite the checkpoint of pvae 0.1 at ``path`` in the form read with ``weights_only=True``.

    The old file is read with ``weights_only=True`` too, admitting only NumPy's array and dtype
    constructors (:data:`LEGACY_GLOBALS`): a file that names anything else (``os.system``, ``eval``,
    a class of its own) is refused without being run. The new file replaces the old atomically.

    :param path: the ``checkpoint.pt`` file.
    :returns: whether it was rewritten (``False``: it was already in the current form).
    :raises RunError: for a file that names other objects, or is not a pvae checkpoint.
    """
    path = Path(path)
    names = unsafe_globals(path)
    if not names:
        return False
    allowed = {name.replace("numpy.core.", "numpy._core.") for name in LEGACY_GLOBALS}
    foreign = [n for n in names if n.replace("numpy.core.", "numpy._core.") not in allowed]
    if foreign:
        raise RunError(
            f"{path} names {', '.join(foreign)}, which no pvae checkpoint holds: reading it could run code, so it "
            "is not converted; delete it, or train the run again"
        )
    with torch.serialization.safe_globals(_legacy_globals()):
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not {"model", "guide"} <= set(state):
        raise RunError(f"{path} is not a pvae checkpoint (no model and guide state): {CORRUPT_FIX}")
    if "rng" in state:
        state = {**state, "rng": legacy_rng_state(state["rng"])}
    record_written(path)  # a checkpoint of an older pvae, read as one: pvae's to replace
    atomic_write(path, lambda handle: torch.save(state, handle))
    return True


class Run:
    """A run directory.

    :param path: the directory.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        #: The id of the model last read (:meth:`load_checkpoint`) or written; None before either.
        self.model_id: str | None = None
        #: Files of an old run that ``create(..., overwrite=True)`` left because pvae cannot tell them as its own.
        self.left: list[Path] = []
        #: Why they were left, in words.
        self.left_why = ""

    @classmethod
    def create(cls, path: str | os.PathLike, config: dict, overwrite: bool = False) -> "Run":
        """Start a run in ``path`` and write its ``config.json``.

        A folder holding a run that never reached its first checkpoint (only ``config.json``) is
        reused without ``overwrite``. ``overwrite`` deletes pvae's own files only (:meth:`own_files`):
        a file of the user's in the folder (notes, a script, a figure of their own) stays where it is; the
        files of a run written before runs kept a manifest that pvae cannot tell from the user's are left too,
        and listed in :attr:`left` (the caller says so).

        :raises RunError: if ``path`` cannot be written (a file, under a file, read-only), holds a
            trained run and ``overwrite`` is false, or is a non-empty folder that holds no run.
        """
        run = cls(path)
        check_writable(run.path)
        if run.path.is_dir() and (run.holds_run() or all(TEMPORARY.match(p.name) for p in run.path.iterdir())):
            run.remove_temporary()  # only in a run (or what an interrupted first write left), never elsewhere
        if run.path.is_dir() and any(run.path.iterdir()):
            if not run.holds_run():  # never touch a folder that is not a run (a config.json of the user's too)
                what = "a config.json that is not a pvae run's" if (run.path / CONFIG).exists() else "no run"
                raise RunError(f"{run.path} is not empty and holds {what}; choose another --out")
            started = any((run.path / name).exists() for name in (CHECKPOINT, METRICS, SUMMARY))
            if started and not overwrite:
                if not (run.path / SUMMARY).exists():  # stopped before its end (Ctrl-C, a kill, a crash)
                    raise RunError(
                        f"{run.path} holds a run that stopped before its end: --resume continues it (the same "
                        "command with --resume), --overwrite replaces it, or choose another --out"
                    )
                raise RunError(
                    f"{run.path} already holds a run; pass --overwrite to replace it, or choose another --out"
                )
            legacy = written(run.path) is None
            edited = [] if legacy else written(run.path, changed=True)  # pvae wrote them, someone edited them since
            if edited:  # pvae would write most of them again: checked before anything is deleted
                shown = ", ".join(str(p.relative_to(run.path)) for p in edited[:5]) + (
                    " ..." if len(edited) > 5 else ""
                )
                raise RunError(
                    f"{run.path}: {len(edited)} file(s) pvae wrote were edited since ({shown}): --overwrite would "
                    "replace them; move them out of the run (or delete them), then run again"
                )
            own = run.own_files()
            folders = {p.parent for p in own if p.parent != run.path}
            for path in own:
                path.unlink()
            for folder in sorted(folders, key=lambda f: -len(f.parts)):  # emptied by the deletions: removed
                while folder != run.path and folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
                    folder.rmdir()
                    folder = folder.parent
            if legacy:
                run.left = sorted(p for p in run.path.rglob("*") if p.is_file() and not TEMPORARY.match(p.name))
                run.left_why = "the run was written before runs recorded their files: pvae cannot tell them from yours"
            else:
                run.left = edited
                run.left_why = "pvae wrote them, but they were edited since: they are yours now"
        try:
            run.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunError(
                f"cannot create the run directory {run.path} ({error.strerror}): choose another --out"
            ) from None
        start_manifest(run.path)
        run.write_config(config)
        return run

    def holds_run(self) -> bool:
        """Whether the folder holds a pvae run: its manifest (:data:`pvae.base.files.MANIFEST`), or (a run written
        before runs kept one) a ``config.json`` with pvae's sections ``data``, ``pair`` and ``train``."""
        if (self.path / MANIFEST).is_file():
            return True
        config = json_object(self.path / CONFIG)
        return {"data", "pair", "train"} <= set(config)

    def own_files(self) -> list[Path]:
        """The files of this run that pvae wrote, as its manifest records them (:data:`pvae.base.files.MANIFEST`:
        every file written through :mod:`pvae.base.files`, and TensorBoard's event files), and the manifest itself;
        not one edited since pvae wrote it (its size or content differs from the record: someone's now).
        For a run written before runs kept a manifest, only the files it always wrote
        (:data:`FIXED_FILES`). What :meth:`create` deletes on ``overwrite``; every other file is the user's.
        """
        recorded = written(self.path, changed=False)
        if recorded is None:
            files = [self.path / name for name in FIXED_FILES]
            return [p for p in files if p.is_file() and not p.is_symlink()]
        return [*recorded, self.path / MANIFEST]

    def _folders(self) -> list[Path]:
        """The run's folder and every folder inside it, never through a symbolic link (a link to a user's
        folder of figures is not pvae's to clean)."""
        return [Path(root) for root, _, _ in os.walk(self.path)]  # os.walk does not follow links

    def remove_temporary(self, older_than: float = 0.0) -> list[Path]:
        """Delete the temporary files that interrupted atomic writes left in the run (pvae's own
        ``.NAME.XXXXXXXX.tmp`` names only).

        :param older_than: keep the files modified less than this many seconds ago (a write in progress).
        :returns: the files deleted.
        """
        if not self.path.is_dir():
            return []
        now, removed = time.time(), []
        for folder in self._folders():
            for p in folder.iterdir():
                if TEMPORARY.match(p.name) and p.is_file() and now - p.stat().st_mtime >= older_than:
                    try:
                        p.unlink()
                        removed.append(p)
                    except OSError:  # a read-only run: leave it, reading still works
                        pass
        return removed

    def write_config(self, config: dict) -> None:
        """Write ``config.json`` atomically."""
        write_json(self.path / CONFIG, config)

    @classmethod
    def open(cls, path: str | os.PathLike, writing: bool = False) -> "Run":
        """Open an existing run, deleting the temporary files of interrupted writes.

        :param writing: the caller will write the run's checkpoint (``train --resume``): every
            temporary file is an orphan then; otherwise only those older than :data:`STALE_SECONDS`.
        :raises RunError: if ``path`` has no ``config.json``.
        """
        run = cls(path)
        if not (run.path / CONFIG).is_file():
            if not run.path.exists():
                raise RunError(
                    f"{run.path} does not exist, so it is not a run directory: give a folder `pvae train --out` "
                    "wrote (`pvae runs FOLDER` lists the runs under a folder)"
                )
            if not run.path.is_dir():
                raise RunError(f"{run.path} is a file, not a run directory; give the folder `pvae train --out` wrote")
            if (run.path / SWEEP_PRIVATE).is_dir():
                raise RunError(
                    f"{run.path} holds a sweep, not a run directory: give one of its cells' run directories "
                    f"(`pvae runs {run.path}` lists them)"
                )
            raise RunError(
                f"{run.path} is not a run directory (no {CONFIG}); train one with `pvae train --out {run.path}`"
            )
        run.remove_temporary(0.0 if writing else STALE_SECONDS)
        return run

    @property
    def config(self) -> dict:
        """The resolved configuration the run was made with.

        :raises RunError: if ``config.json`` is not a JSON object.
        """
        path = self.path / CONFIG
        config = _read_json(path, "configuration")
        if not isinstance(config, dict):
            raise RunError(f"{path} is not a run configuration (a JSON object): {CORRUPT_FIX}")
        return config

    @property
    def figures(self) -> Path:
        """The folder for figures (created on demand)."""
        (self.path / FIGURES).mkdir(exist_ok=True)
        return self.path / FIGURES

    def save_checkpoint(self, state: dict[str, Any]) -> str:
        """Write ``checkpoint.pt`` atomically, with a new ``model_id`` (the identity of the model it holds).

        :returns: the model id.
        """
        model_id = uuid.uuid4().hex  # from the OS, not from the RNGs the checkpoint restores
        if (self.path / CHECKPOINT).is_file():  # read as a pvae checkpoint to resume from (or another machine's)
            record_written(self.path / CHECKPOINT)
        atomic_write(self.path / CHECKPOINT, lambda handle: torch.save({**state, "model_id": model_id}, handle))
        self.model_id = model_id
        return model_id

    def current_model_id(self) -> str | None:
        """The ``model_id`` of the checkpoint in the run now (None: no checkpoint, or one written before
        checkpoints had ids), read without loading its tensors (a memory map)."""
        try:
            state = torch.load(self.path / CHECKPOINT, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # missing, unreadable: load_checkpoint says why where it matters
            return None
        return state.get("model_id") if isinstance(state, dict) else None

    def load_checkpoint(self) -> dict[str, Any]:
        """Read ``checkpoint.pt`` onto the CPU (``map_location``), whatever device wrote it: a caller
        moves what it needs to its own device.

        :raises RunError: if the run has none yet, or it is not a whole checkpoint (zero bytes,
            truncated, another kind of file).
        """
        path = self.path / CHECKPOINT
        if not path.is_file():
            try:
                epochs = len(self.metrics())
            except RunError:  # a broken metrics.jsonl records nothing to go by
                epochs = 0
            if epochs:  # epochs were done, and each wrote the checkpoint: it was deleted or moved since
                raise RunError(
                    f"{self.path} has no {CHECKPOINT}, though its {METRICS} records {epochs} epoch"
                    f"{'s' if epochs != 1 else ''}: the checkpoint was deleted or moved since; put it back (or "
                    f"restore it from a copy), or train the run again with --overwrite"
                )
            raise RunError(
                f"{self.path} has no {CHECKPOINT}: its training did not finish an epoch; train it again (the same "
                "command, without --resume)"
            )
        try:
            # tensors and containers only: a checkpoint never runs code when a run is opened
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            names = _names_or_none(path)
            if names:  # a whole file that names Python objects: an old pvae's, or one that would run code
                raise RunError(_objects_message(path, names)) from None
            kind = "empty (0 bytes)" if path.stat().st_size == 0 else "truncated or corrupt"
            raise RunError(
                f"{path} is not a readable checkpoint ({kind}: {_first_line(error)}): {CORRUPT_FIX}"
            ) from error
        except Exception as error:  # torch raises EOFError, RuntimeError, ValueError ...
            kind = "empty (0 bytes)" if path.stat().st_size == 0 else "truncated or corrupt"
            raise RunError(
                f"{path} is not a readable checkpoint ({kind}: {_first_line(error)}): {CORRUPT_FIX}"
            ) from error
        if not isinstance(state, dict) or not {"model", "guide"} <= set(state):
            raise RunError(f"{path} is not a pvae checkpoint (no model and guide state): {CORRUPT_FIX}")
        self.model_id = state.get("model_id")
        return state

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Replace ``metrics.jsonl`` with ``rows``, one JSON object per line, atomically."""
        text = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
        atomic_write(self.path / METRICS, lambda handle: handle.write(text.encode()))

    def metrics(self) -> list[dict[str, Any]]:
        """The rows of ``metrics.jsonl`` (empty before the first epoch ends).

        :raises RunError: for a line that is not JSON, or not an epoch's row (:data:`METRICS_FIELDS`).
        """
        path = self.path / METRICS
        if not path.is_file():
            return []
        rows = []
        for number, line in enumerate(_read_text(path).splitlines(), 1):
            if line.strip():
                try:
                    rows.append((number, json.loads(line)))
                except json.JSONDecodeError as error:
                    raise RunError(f"{path}, line {number}, is not JSON ({error.msg}): {CORRUPT_FIX}") from None
        return [_metrics_row(row, path, number) for number, row in rows]  # a file cut short is said first

    def summary(self) -> dict[str, Any]:
        """``summary.json`` as a dict (empty before anything was summarised).

        :raises RunError: if it is not JSON, not an object, or an entry of it is not an object (every entry is a
            stage's numbers: ``test``, ``training`` ...).
        """
        path = self.path / SUMMARY
        summary = _read_json(path, "summary") if path.is_file() else {}
        if not isinstance(summary, dict):
            raise RunError(f"{path} is not a summary (a JSON object): {CORRUPT_FIX}")
        for key, value in summary.items():
            if not isinstance(value, dict):
                raise RunError(
                    f"{path} is not a summary pvae wrote: its entry {key!r} is {_shown(value)}, not a JSON object of "
                    f"numbers: {CORRUPT_FIX}"
                )
        return summary

    def update_summary(self, **entries: Any) -> dict[str, Any]:
        """Set top-level keys of ``summary.json``, keeping the others; written atomically."""
        summary = self.summary()
        summary.update(entries)
        write_json(self.path / SUMMARY, summary)
        return summary


CORRUPT_FIX = "train again with --overwrite, or restore the file from a copy"
#: The fields every row of ``metrics.jsonl`` holds, and what each is.
METRICS_FIELDS = {"epoch": "an epoch's number", "train_loss": "a number"}


def _shown(value: Any) -> str:
    """A JSON value as a message shows it: itself in JSON, cut to 40 characters."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _metrics_row(row: Any, path: Path, number: int) -> dict[str, Any]:
    """A row of ``metrics.jsonl`` (line ``number`` of ``path``), refused unless it is an object that holds
    :data:`METRICS_FIELDS` as numbers (the other fields, validation's, may be missing: an epoch without one)."""
    if not isinstance(row, dict):
        raise RunError(f"{path}, line {number}, is {_shown(row)}, not an epoch's row (a JSON object): {CORRUPT_FIX}")
    for key, what in METRICS_FIELDS.items():
        value = row.get(key)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if key == "epoch":
            ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok:
            held = "has no " + key if key not in row else f"has {key} {_shown(value)}"
            raise RunError(f"{path}, line {number}, {held}, not {what}: {CORRUPT_FIX}")
    return row


def _first_line(error: BaseException) -> str:
    return ((str(error).strip().splitlines() or [type(error).__name__])[0])[:80]


def _names_or_none(path: Path) -> list[str]:
    try:
        return unsafe_globals(path)
    except Exception:  # not a zip checkpoint at all: the caller reports it as corrupt
        return []


def _objects_message(path: Path, names: list[str]) -> str:
    allowed = {name.replace("numpy.core.", "numpy._core.") for name in LEGACY_GLOBALS}
    if all(n.replace("numpy.core.", "numpy._core.") in allowed for n in names):
        return (
            f"{path} was written by an older pvae (its RNG state holds NumPy objects, which pvae no longer unpickles): "
            f"convert it once with `pvae upgrade {path.parent}`, which reads it without running code"
        )
    return (
        f"{path} names Python objects ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''}) that reading it "
        "would run, and no pvae checkpoint holds them: it was not read. Do not use this run; train it again"
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise RunError(f"{path} is not a text file (truncated or corrupt): {CORRUPT_FIX}") from None


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        kind = "empty" if not path.read_bytes().strip() else f"line {error.lineno}: {error.msg}"
        raise RunError(f"{path} is not a readable {what} ({kind}): {CORRUPT_FIX}") from None


#: The file a message suggests where an option that names a file to write names a folder (with ``file``,
#: :func:`check_writable`): one the option takes.
EXAMPLE_FILES = {"--csv": "runs.csv", "--markdown": "runs.md"}


def check_writable(
    path: str | os.PathLike, option: str = "--out", file: bool = False, example: str | None = None
) -> None:
    """Refuse, before any work, a place that cannot be written: a file where a folder is meant (or a
    folder where a file is), a path under a file, a read-only folder (or one under a read-only
    folder, if it does not exist yet).

    Uses :func:`os.access`, so the superuser, for whom permission bits do not apply, passes.

    :param path: the folder (or with ``file``, the file) a command will write (it may not exist yet).
    :param option: the option that named it, for the message.
    :param file: ``path`` is a file to write, not a folder.
    :param example: with ``file``, the name of a file the option takes, which the message suggests in the
        folder given (default: by the option, :data:`EXAMPLE_FILES`, else ``out.png``).
    :raises RunError: naming the path, the reason and the fix.
    """
    path = Path(path)
    if file and path.is_dir():
        name = example or EXAMPLE_FILES.get(option, "out.png")
        raise RunError(f"{option} {path} is a folder: give the name of a file to write, e.g. {path / name}")
    if not file and path.exists() and not path.is_dir():
        raise RunError(f"{option} {path} is a file, not a folder: choose a folder (it is created if missing)")
    existing = path.parent if file else path
    while not existing.exists() and existing.parent != existing:  # the nearest part that exists is written into
        existing = existing.parent
    if not existing.is_dir():
        raise RunError(f"{option} {path} lies under {existing}, which is a file: choose a place elsewhere")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunError(
            f"{option} {path}: {existing} is read-only; choose a place you can write to, or make it writable"
        )


@options.config
class RunOptions:
    """Where ``pvae train`` writes its run, and what it shows meanwhile.

    :param out: run directory.
    :param overwrite: replace a run already in --out.
    :param resume: continue the run in --out from its checkpoint (only --epochs may change).
    :param progress: show a progress bar.
    """

    out: str | None = None
    overwrite: bool = False
    resume: bool = False
    progress: bool = True

    def __post_init__(self):
        if self.overwrite and self.resume:
            raise ValueError("--resume continues the run in --out, --overwrite replaces it: give one of them")
        if self.out is not None and not str(self.out).strip():
            raise ValueError("--out '' names no folder: give one, or leave --out out (runs/DATE-DATA-MODEL)")
