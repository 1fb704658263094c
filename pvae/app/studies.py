"""The commands over many runs, and over what runs wrote: ``runs`` (one table of every run under a folder),
``report`` (an HTML page), ``sweep`` (one training run per cell of a grid) and ``upgrade`` (an older
checkpoint rewritten in the form pvae reads without running code)."""

import sys
from pathlib import Path

from pvae.base.files import atomic_write, save_figure
from pvae.base.runs import check_writable

from .common import given


def runs(folder, config=None) -> str:
    """``pvae runs``: one table of every run under ``folder`` — the settings that differ, the test numbers,
    mean ± sd over seeds — printed as markdown, and written as CSV, markdown or a plot where ``config`` asks.

    :param folder: a folder holding run directories (searched recursively).
    :param config: a :class:`pvae.studies.study.RunsConfig`.
    :returns: the table as markdown.
    """
    from pvae.studies.study import RunsConfig, check_plot, collect, table, to_csv, to_markdown

    config = given(config, RunsConfig)
    for option, target in (("--csv", config.csv), ("--markdown", config.markdown)):
        if target:
            check_writable(target, option, file=True)
    records = collect(folder)
    result = table(records, group=config.group)
    figure = None
    if config.plot:
        from pvae.plots.study import plot_against

        grouped = result if config.group else table(records)  # error bars are over the seeds of a group
        check_plot(grouped, records, config.plot, config.against)
        out = Path(config.out or folder)
        check_writable(out)
        figure = out / f"{config.plot}-vs-{config.against}.png"
        save_figure(plot_against(grouped, config.plot, config.against), figure)
    text = to_markdown(result)
    for target, content in ((config.csv, to_csv(result)), (config.markdown, text)):
        if target:
            atomic_write(target, lambda handle, content=content: handle.write(content.encode()))
    print(text, end="")
    written = [str(p) for p in (config.csv, config.markdown, figure) if p]
    if written:
        print(f"written: {', '.join(written)}", file=sys.stderr)
    return text


def report(run, config=None) -> Path:
    """``pvae report``: one self-contained HTML page of a run, or of the runs under a folder.

    :param run: a run directory, or a folder holding run directories.
    :param config: a :class:`pvae.studies.report.ReportConfig`.
    :returns: the page written.
    """
    from pvae.studies.report import ReportConfig, write_report

    out = write_report(run, given(config, ReportConfig))
    print(f"report in {out}")
    return out


def upgrade(run) -> bool:
    """``pvae upgrade``: rewrite the checkpoint of ``run`` that an older pvae wrote in the form pvae reads
    without running code (admitting only NumPy's array constructors).

    :param run: a run directory.
    :returns: whether the checkpoint was rewritten (``False``: it was already in the current form).
    :raises pvae.base.runs.RunError: for a folder without a checkpoint, or one that names anything else.
    """
    from pvae.base.runs import CHECKPOINT, Run, RunError, upgrade_checkpoint

    path = Run.open(run).path / CHECKPOINT
    if not path.is_file():
        raise RunError(f"{path.parent} has no {CHECKPOINT}: nothing to upgrade")
    if upgrade_checkpoint(path):
        print(f"{path}: rewritten in the current form (tensors and plain values only)")
        return True
    print(f"{path} is already in the current form: nothing written")
    return False


def sweep(out, config, device, base=None, given=None, train_options=None) -> list[dict]:
    """``pvae sweep``: one training run per cell of a grid over :func:`~pvae.app.train.train`'s settings, each
    cell ``dataclasses.replace(base, **its settings)`` trained by it. In Python,
    ``sweep("out", SweepConfig(grid=("beta=1,2",)), DeviceConfig(), base=TrainSettings(epochs=1))`` runs the
    cells of ``pvae sweep out --grid beta=1,2 -- --epochs 1``.

    :param out: the sweep's folder.
    :param config: a :class:`pvae.studies.sweep.SweepConfig`.
    :param device: a :class:`pvae.base.device.DeviceConfig`, every cell's.
    :param base: the :class:`~pvae.app.train.TrainSettings` every cell shares (default: the defaults).
    :param given: the settings chosen in ``base`` (the options typed); default: those that differ from their
        default.
    :param train_options: ``base`` as typed after ``--`` on the command line, recorded in ``sweep.json`` and in
        the command that goes on; default: written from ``base``'s ``given`` settings.
    :returns: :func:`pvae.studies.sweep.cell_status` of its cells at the end.
    :raises ValueError: for a grid or a cell that cannot work, before anything is written.
    :raises Interrupted: on Ctrl-C or SIGTERM, with the command that goes on.
    """
    from pvae.base import distributed
    from pvae.studies.sweep import Sweep, list_cells, run_sweep

    if config.list and not config.grid and not config.cells:  # the sweep already in out, as its sweep.json lists it
        return list_cells(Path(out))

    from .common import Interrupted
    from .train import TrainSettings, run_config, train

    def train_cell(settings, chosen) -> None:
        try:
            train(settings, given=chosen)
        except Interrupted as stop:  # the sweep stops as a whole on Ctrl-C
            raise KeyboardInterrupt(str(stop)) from None

    base = TrainSettings() if base is None else base
    study = Sweep(out, config, base, given, device.device, check=run_config, train_options=train_options)
    try:
        return run_sweep(study, train_cell, writes=distributed.rank_from_environment() == 0)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; the same command goes on where it stopped: {study.command()}") from None
