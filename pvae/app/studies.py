"""The commands over many runs, and over what runs wrote: ``runs`` (one table of every run under a folder),
``report`` (an HTML page), ``sweep`` (one training run per cell of a grid) and ``upgrade`` (an older
checkpoint rewritten in the form pvae reads without running code)."""

import sys
from pathlib import Path

from pvae.files import atomic_write, save_figure
from pvae.runs import check_writable


def runs(folder, config=None) -> str:
    """``pvae runs``: one table of every run under ``folder`` — the settings that differ, the test numbers,
    mean ± sd over seeds — printed as markdown, and written as CSV, markdown or a plot where ``config`` asks.

    :param folder: a folder holding run directories (searched recursively).
    :param config: a :class:`pvae.study.RunsConfig`.
    :returns: the table as markdown.
    """
    from pvae.study import RunsConfig, check_plot, collect, table, to_csv, to_markdown

    config = config or RunsConfig()
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
    :param config: a :class:`pvae.report.ReportConfig`.
    :returns: the page written.
    """
    from pvae.report import ReportConfig, write_report

    out = write_report(run, config or ReportConfig())
    print(f"report in {out}")
    return out


def upgrade(run) -> bool:
    """``pvae upgrade``: rewrite the checkpoint of ``run`` that an older pvae wrote in the form pvae reads
    without running code (admitting only NumPy's array constructors).

    :param run: a run directory.
    :returns: whether the checkpoint was rewritten (``False``: it was already in the current form).
    :raises pvae.runs.RunError: for a folder without a checkpoint, or one that names anything else.
    """
    from pvae.runs import CHECKPOINT, Run, RunError, upgrade_checkpoint

    path = Run.open(run).path / CHECKPOINT
    if not path.is_file():
        raise RunError(f"{path.parent} has no {CHECKPOINT}: nothing to upgrade")
    if upgrade_checkpoint(path):
        print(f"{path}: rewritten in the current form (tensors and plain values only)")
        return True
    print(f"{path} is already in the current form: nothing written")
    return False


def sweep(out, config, device, train_options=()) -> None:
    """``pvae sweep``: one training run per cell of a grid over ``pvae train``'s settings.

    :param out: the sweep's folder.
    :param config: a :class:`pvae.sweep.SweepConfig`.
    :param device: a :class:`pvae.device.DeviceConfig`, every cell's.
    :param train_options: ``pvae train``'s options every cell shares.
    """
    from pvae import distributed, options
    from pvae.cli import build_parser, given_options
    from pvae.sweep import Sweep, run_sweep

    from .common import Interrupted
    from .train import TrainSettings, run_config, train

    def parse(args):
        return options.from_args(TrainSettings, args)

    def train_cell(argv: list[str]) -> None:
        try:
            train(parse(build_parser(only="train").parse_args(["train", *argv])), given=given_options(argv))
        except Interrupted as stop:  # the sweep stops as a whole on Ctrl-C
            raise KeyboardInterrupt(str(stop)) from None

    parser = next(a for a in build_parser(only="train")._actions if a.dest == "command").choices["train"]
    study = Sweep(out, config, train_options, parser, lambda args: run_config(parse(args)), device.device)
    try:
        run_sweep(study, train_cell, writes=distributed.rank_from_environment() == 0)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; the same command goes on where it stopped: {study.command()}") from None
