"""Atomic file writes: a crash leaves the previous version of a file whole, never half a file.

Every writer goes to a temporary file in the same folder, flushes it to disk, then renames it over
the old one (a rename within one file system is atomic). A file written inside a folder that keeps a
manifest (:data:`MANIFEST`: a run directory) is recorded in it, so that pvae later deletes what it wrote and
nothing else. This module imports nothing from pvae.
"""

import glob
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

#: The names :func:`atomic_path` gives its temporary files, ``.NAME.XXXXXXXX.tmp`` (mkstemp's 8
#: random characters): what an interrupted write leaves behind, and nothing else.
TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
#: The file of a folder (a run) that lists, one relative path a line, the files pvae wrote under it.
MANIFEST = ".pvae-files"
#: How many folders up from a written file its manifest is looked for (``RUN/quality/figures/x.png``: 3).
MANIFEST_DEPTH = 4


def start_manifest(folder: str | os.PathLike) -> None:
    """Make ``folder`` keep a manifest of what pvae writes under it (an empty one: nothing recorded yet).

    :param folder: the folder (a run directory), created if missing.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / MANIFEST, lambda handle: None)


def manifest_root(path: str | os.PathLike) -> Path | None:
    """The nearest folder above ``path`` (at most :data:`MANIFEST_DEPTH` up) that keeps a manifest, or None."""
    for folder in list(Path(path).absolute().parents)[:MANIFEST_DEPTH]:
        if (folder / MANIFEST).is_file():
            return folder
    return None


#: Files up to this size are recorded with their SHA-256, larger ones (checkpoints of large models) by size.
HASHED_BYTES = 16 << 20


def _fingerprint(path: Path) -> tuple[int, str]:
    """``(size, SHA-256 or "-")``: what tells a file pvae wrote from one edited since, and survives a copy of
    the run (a modification time would not)."""
    size = path.stat().st_size
    if size > HASHED_BYTES:
        return size, "-"
    return size, hashlib.sha256(path.read_bytes()).hexdigest()


def _history(folder: Path) -> dict[str, list[tuple[int, str] | None]] | None:
    """Every record the manifest holds of each path, oldest first: ``(size, digest)`` when written, None when it
    was not (a file another library keeps appending to); None for a folder without a manifest."""
    try:
        lines = (folder / MANIFEST).read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    history: dict[str, list[tuple[int, str] | None]] = {}
    for line in lines:
        name, *stat = line.split("\t")
        if name:
            record = (int(stat[0]), stat[1]) if len(stat) == 2 and stat[0].isdigit() else None
            history.setdefault(name, []).append(record)
    return history


def _records(folder: Path) -> dict[str, tuple[int, str] | None] | None:
    """The manifest's last record of each path (see :func:`_history`)."""
    history = _history(folder)
    return None if history is None else {name: records[-1] for name, records in history.items()}


def _edited_since(records: list[tuple[int, str] | None], path: Path) -> bool:
    """Whether ``path`` holds neither of the last two contents pvae recorded for it: a write is recorded before
    its rename, so a process killed between the two leaves the previous content, which is still pvae's."""
    if records[-1] is None:
        return False
    return all(record is None or _edited(record, path) for record in records[-2:])


def written(folder: str | os.PathLike, changed: bool | None = None) -> list[Path] | None:
    """The files pvae recorded writing under ``folder`` that are still there (regular files, not links,
    inside the folder), or None where the folder keeps no manifest.

    :param folder: the folder (a run directory).
    :param changed: only those changed since pvae wrote them (their size or content differs from its record:
        someone edited them), ``False`` only the others; ``None``: all.
    """
    folder = Path(folder)
    history = _history(folder)
    if history is None:
        return None
    root, files = folder.resolve(), []
    for name, records in history.items():  # in the order first written
        path = folder / name
        if not (path.is_file() and not path.is_symlink() and path.resolve().is_relative_to(root)):
            continue
        edited = _edited_since(records, path)
        if changed is None or changed == edited:
            files.append(path)
    return files


class NotWritten(ValueError):
    """A file in a folder that keeps a manifest that pvae did not write, or that was edited since it did:
    pvae does not write over it."""


def check_ours(path: str | os.PathLike) -> None:
    """Refuse to write over a file of a run (a folder that keeps a manifest) that pvae did not write, or that
    someone edited since it did (its size or content differs from the record); nothing to check elsewhere.

    :raises NotWritten: naming the file and the fix.
    """
    path = Path(path).absolute()
    root = manifest_root(path)
    if root is None or not path.is_file() or path.name == MANIFEST:
        return
    name = path.relative_to(root).as_posix()
    history = _history(root)
    if name not in history:
        raise NotWritten(
            f"{path} is a file of yours, not one pvae wrote: it is not written over; move it, or give another name"
        )
    if _edited_since(history[name], path):
        raise NotWritten(
            f"{path} was edited since pvae wrote it: it is not written over; move it (or delete it), then run again"
        )


def _edited(record: tuple[int, str], path: Path) -> bool:
    size, digest = record
    if path.stat().st_size != size:
        return True
    return digest != "-" and _fingerprint(path)[1] != digest


def record_written(path: str | os.PathLike, stat: bool = True, content: str | os.PathLike | None = None) -> None:
    """Add ``path`` to the manifest of the folder that keeps one above it (nothing where none does), with its
    size and SHA-256 (:data:`HASHED_BYTES`), so that a file edited since is told from what pvae wrote.

    Appends one line (an append of a line is atomic between processes: two writers of one run never mix
    their lines; the last line of a path is its record).

    :param path: a file pvae has just written.
    :param stat: record its size and digest (``False`` for a file another library goes on appending to).
    :param content: the file that holds what ``path`` is about to hold (an atomic write's temporary file, recorded
        before its rename); default: ``path`` itself.
    """
    path = Path(path).absolute()
    root = manifest_root(path)
    if root is None or path.name == MANIFEST:
        return
    name = path.relative_to(root).as_posix()
    record = _fingerprint(Path(content) if content is not None else path) if stat else None
    if _records(root).get(name, ()) == record:
        return
    line = name if record is None else f"{name}\t{record[0]}\t{record[1]}"
    with open(root / MANIFEST, "a") as handle:
        handle.write(line + "\n")


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it to ``path``.

    :param path: the file to write.
    :param write: writes the whole content to the binary handle it gets.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file name beside ``path``, renamed to ``path`` when the block ends without error.

    For writers that want a file name rather than a handle (NetCDF); the temporary file is
    removed if the block raises, so ``path`` is either the old file or the whole new one.

    :param path: the file to write; its folder is created if missing.
    """
    path = Path(path)
    check_ours(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # a TEMPORARY name
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        record_written(path, content=tmp)  # first: a kill before the rename leaves pvae's previous content
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def remove_orphans(path: str | os.PathLike, older_than: float) -> list[Path]:
    """Delete the temporary files that interrupted atomic writes of ``path`` left beside it (its own
    ``.NAME.XXXXXXXX.tmp`` names only, :data:`TEMPORARY`; a kill -9 during the write leaves one for ever).

    :param path: the file whose writes left them.
    :param older_than: keep those modified less than this many seconds ago: another process may be writing
        ``path`` now.
    :returns: the files deleted.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    now, removed = time.time(), []
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if (
                TEMPORARY.match(candidate.name)
                and len(candidate.name) == len(path.name) + len("..XXXXXXXX.tmp")  # this file's, not a longer name's
                and candidate.is_file()
                and not candidate.is_symlink()
                and now - candidate.stat().st_mtime >= older_than
            ):
                candidate.unlink()
                removed.append(candidate)
        except OSError:  # gone meanwhile, or a read-only folder: the write itself says so
            pass
    return removed


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    """Write a matplotlib figure as a PNG atomically, then close it.

    :param fig: a :class:`matplotlib.figure.Figure`.
    :param path: the PNG file.
    :param dpi: resolution.
    """
    import matplotlib.pyplot as plt

    atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=dpi))
    plt.close(fig)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically.

    :param path: the JSON file.
    :param obj: anything :func:`json.dumps` takes; NaN and infinities are written as such.
    """
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode()))
