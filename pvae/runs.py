"""The run directory: how stages (train, evaluate, plot) talk to each other.

::

    RUN/
      config.json      the resolved configuration
      checkpoint.pt    modules, optimizer, RNG states, epoch
      metrics.jsonl    one line per epoch
      summary.json     final numbers, one key per stage or split
      figures/         PNGs

Every file is written atomically (:mod:`pvae.files`), so a crash leaves the previous version whole,
never half a file. :func:`pvae.config.restore` rebuilds a trained run's pair from its directory.
"""

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pvae.files import atomic_write, write_json

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
FIGURES = "figures"


class RunError(RuntimeError):
    """A run directory is missing, incomplete, or would be overwritten."""


def rng_state() -> dict[str, Any]:
    """The state of every random number generator training touches."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


class Run:
    """A run directory.

    :param path: the directory.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | os.PathLike, config: dict, overwrite: bool = False) -> "Run":
        """Start a run in ``path`` and write its ``config.json``.

        :raises RunError: if ``path`` already holds a run and ``overwrite`` is false.
        """
        run = cls(path)
        if run.path.exists() and any(run.path.iterdir()):
            if not (run.path / CONFIG).exists():  # never delete a folder that is not a run
                raise RunError(f"{run.path} is not empty and holds no run; choose another --out")
            if not overwrite:
                raise RunError(
                    f"{run.path} already holds a run; pass --overwrite to replace it, or choose another --out"
                )
            shutil.rmtree(run.path)
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config(config)
        return run

    def write_config(self, config: dict) -> None:
        """Write ``config.json`` atomically."""
        write_json(self.path / CONFIG, config)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Run":
        """Open an existing run.

        :raises RunError: if ``path`` has no ``config.json``.
        """
        run = cls(path)
        if not (run.path / CONFIG).is_file():
            raise RunError(
                f"{run.path} is not a run directory (no {CONFIG}); train one with `pvae train --out {run.path}`"
            )
        return run

    @property
    def config(self) -> dict:
        """The resolved configuration the run was made with."""
        return json.loads((self.path / CONFIG).read_text())

    @property
    def figures(self) -> Path:
        """The folder for figures (created on demand)."""
        (self.path / FIGURES).mkdir(exist_ok=True)
        return self.path / FIGURES

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write ``checkpoint.pt`` atomically."""
        atomic_write(self.path / CHECKPOINT, lambda handle: torch.save(state, handle))

    def load_checkpoint(self) -> dict[str, Any]:
        """Read ``checkpoint.pt``.

        :raises RunError: if the run has none yet.
        """
        path = self.path / CHECKPOINT
        if not path.is_file():
            raise RunError(f"{self.path} has no {CHECKPOINT}: its training did not finish an epoch")
        return torch.load(path, map_location="cpu", weights_only=False)

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Replace ``metrics.jsonl`` with ``rows``, one JSON object per line, atomically."""
        text = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
        atomic_write(self.path / METRICS, lambda handle: handle.write(text.encode()))

    def metrics(self) -> list[dict[str, Any]]:
        """The rows of ``metrics.jsonl`` (empty before the first epoch ends)."""
        path = self.path / METRICS
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def summary(self) -> dict[str, Any]:
        """``summary.json`` as a dict (empty before anything was summarised)."""
        path = self.path / SUMMARY
        return json.loads(path.read_text()) if path.is_file() else {}

    def update_summary(self, **entries: Any) -> dict[str, Any]:
        """Set top-level keys of ``summary.json``, keeping the others; written atomically."""
        summary = self.summary()
        summary.update(entries)
        write_json(self.path / SUMMARY, summary)
        return summary


@dataclass(frozen=True)
class RunOptions:
    """Where ``pvae train`` writes its run, and what it shows meanwhile.

    :param out: run directory (None: runs/<time>-<data>-<model>).
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
