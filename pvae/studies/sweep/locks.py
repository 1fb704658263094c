"""The lock that keeps a cell to one process: the kernel's (flock) on a file, so that it goes with its process,
kill -9 included."""

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no cell locks, so one sweep process per folder there
    fcntl = None

#: Seconds a cell's lock is tried for before the cell counts as running elsewhere: a look at it (``--list``)
#: holds it for an instant.
LOCK_PATIENCE = 0.5


@contextlib.contextmanager
def hold(path: Path) -> Iterator[bool]:
    """Hold the lock on the file ``path`` (made if need be) while the block runs; yields whether this process got
    it (``False``: another process holds it)."""
    if fcntl is None:
        yield True
        return
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


def held(path: Path) -> bool:
    """Whether another process holds the lock on the file ``path`` (this look holds it for an instant)."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
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
