"""Atomic file writes: a crash leaves the previous version of a file whole, never half a file.

Every writer goes to a temporary file in the same folder, flushes it to disk, then renames it over
the old one (a rename within one file system is atomic). This module imports nothing from pvae.
"""

import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

#: The names :func:`atomic_path` gives its temporary files, ``.NAME.XXXXXXXX.tmp`` (mkstemp's 8
#: random characters): what an interrupted write leaves behind, and nothing else.
TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # a TEMPORARY name
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


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
