"""What every command of the application shares: where it computes and what it says of it, opening a run,
where results go and what they record of the model they measured, the cost said before it is spent."""

import os
import sys
from pathlib import Path

import torch

from pvae.base import distributed, options
from pvae.base.device import DeviceConfig, describe_device, resolve_device
from pvae.base.results import keep_earlier_results
from pvae.base.runs import check_writable
from pvae.measures.memory import format_seconds

#: Seconds of work past which a command says up front how long it will take.
SAY_ABOVE_SECONDS = 30.0


class Interrupted(Exception):
    """Ctrl-C stopped a command; the message says what was kept and how to go on."""


def given(value, cls: type, what: str = "config"):
    """``value`` if it is a ``cls``, ``cls()`` (its defaults) if it is None, else refused: a command's function
    takes its own config class, as the command line builds it.

    :raises TypeError: naming the class it takes and what it was given.
    """
    if value is None:
        return cls()
    if not isinstance(value, cls):
        raise TypeError(f"{what} must be a {cls.__module__}.{cls.__name__} (or None: its defaults), not {value!r}")
    return value


def short_name(name: str) -> str:
    """A pair's name as a banner shows it: ``/abs/path/to/file.py:Class`` → ``file.py:Class``."""
    module, sep, attr = name.rpartition(":")
    return f"{Path(module).name}{sep}{attr}" if sep and module.endswith(".py") else name


def device_of(config: DeviceConfig) -> torch.device:
    """The device ``config`` names, refused (naming the devices there are) where this machine lacks it: checked
    before a run is read, said by :func:`say_device` once it has been."""
    return resolve_device(config.device)


def rank_device(config: DeviceConfig) -> torch.device:
    """:func:`device_of`, or under torchrun this rank's device."""
    return distributed.device_for_rank(config.device, device_of(config))


def say_device(name: str | None, device: torch.device) -> None:
    """One line on stderr: where the command computes (``name``: what ``--device`` said; ``None``: say
    nothing, as when ``train`` evaluates its run after its banner said it)."""
    if name is not None:
        print(f"device: {describe_device(name, device)}", file=sys.stderr)


def open_run(run: str | os.PathLike, device: DeviceConfig):
    """The run in ``run``, restored onto ``device`` (refused before the run is read where this machine lacks
    it; under torchrun, this rank's device), with one line (rank 0's) saying where the command computes.

    :returns: ``(run, config, dataset, model, guide)``, as :func:`pvae.engine.config.restore`.
    """
    from pvae.engine.config import restore

    where = rank_device(device)
    restored = restore(run, where)
    if distributed.rank_from_environment() == 0:
        say_device(device.device, where)
    return restored


def check_out(out: str | None) -> None:
    """Refuse an ``--out`` that cannot be written before the run is read (a large dataset takes a while)."""
    if out:
        check_writable(out, "--out")


class Record(dict):
    """What a result records of the model it measured and how (``model_id``, ``command_settings``);
    :attr:`defaults`: the command's defaults, for naming an earlier result moved aside (None: nothing is moved)."""

    defaults: dict | None = None


def results_folder(out: str | None, run, name: str, *configs) -> tuple[Path, Record]:
    """Where a command that reads a run writes: ``out``, else ``RUN/name``, refused before any work when it
    cannot be written; an earlier result there of the same model with other settings is kept, moved beside it
    (:func:`pvae.base.results.keep_earlier_results`) when the new one is written (:func:`write_results`, so that a
    command stopped before its end leaves it where it was), and said.

    :returns: the folder, and what the result records of what it measured and how.
    """
    folder = Path(out) if out else run.path / name
    check_writable(folder, "--out" if out else "the results folder")
    settings, defaults = options.what_settings(*configs)
    record = Record(model_id=run.model_id, command_settings=settings)
    record.defaults = None if out else defaults  # --out: a folder of the user's choice, nothing moved there
    return folder, record


def write_results(folder: Path, record: Record) -> None:
    """Before a command writes its results into ``folder``: move an earlier result of other settings aside
    (see :func:`results_folder`), and say where it went."""
    if record.defaults is None:
        return
    kept = keep_earlier_results(folder, record["command_settings"], record.defaults, record["model_id"])
    if kept is not None:
        print(f"note: the earlier results in {folder} (other settings) are kept in {kept}", file=sys.stderr)


def measured(run, run_config, record: Record) -> dict:
    """What every result of a command that reads a run records of what it measured: the run, the model's
    ``model_id`` and the command's settings (``record``: a later training of the run makes the result stale), and
    the pair.

    :param run: the :class:`pvae.base.runs.Run` measured.
    :param run_config: its :class:`pvae.engine.config.RunConfig`.
    :param record: what :func:`results_folder` returned beside the folder.
    """
    return {"run": str(run.path), **record, "pair": f"{run_config.pair.model}/{run_config.pair.guide}"}


def save_figures(figures: dict, folder: Path) -> list[Path]:
    """Write each figure of ``figures`` (name → matplotlib figure) as ``folder/NAME.png``, atomically.

    :returns: the files written, in order.
    """
    from pvae.base.files import save_figure

    written = []
    for name, fig in figures.items():
        save_figure(fig, folder / f"{name}.png")
        written.append(folder / f"{name}.png")
    return written


def say_estimate(
    what: str, seconds: float | None, points: int, samples: int, rank0: bool = True, lower: str = "--samples, --points"
) -> None:
    """Say how long an importance-sampling pass will take, before it starts, when that is long."""
    if seconds is None or seconds < SAY_ABOVE_SECONDS or not rank0:
        return
    ranks = distributed.world_size()
    shared = f", shared by {ranks} processes" if ranks > 1 else ""
    print(
        f"{what}: about {format_seconds(seconds / ranks)} for {points} datapoints × K = {samples} samples of z "
        f"(timed on the first batch{shared}); {lower} make it shorter",
        file=sys.stderr,
    )


def progress(command: str):
    """What a long measure calls with the name of each stage: one line on stderr."""
    return lambda name: print(f"{command}: {name} ...", file=sys.stderr)
