"""Where ``pvae report`` writes its page (:class:`ReportConfig`), and the writing (:func:`write_report`)."""

import os
from pathlib import Path

from pvae.base import options
from pvae.base.files import atomic_write, remove_orphans
from pvae.base.runs import CONFIG, REPORT, STALE_SECONDS, Run, RunError, check_writable
from pvae.studies import study
from pvae.studies.report.folder import folder_page
from pvae.studies.report.run import run_page

#: The suffixes of the file ``--out`` names (any case).
HTML = (".html", ".htm")


@options.config
class ReportConfig:
    """Where ``pvae report`` writes its page.

    :param out: the HTML file to write.
    """

    out: str | None = None

    def __post_init__(self):
        if self.out is None or Path(self.out).suffix.lower() in HTML:  # a folder so named: check_writable says so
            return
        if self.out.endswith(("/", os.sep)) or Path(self.out).is_dir():  # a folder: the page goes in it
            example = str(Path(self.out) / REPORT)
        else:  # report.txt → report.html; a name without a suffix gains one
            example = str(Path(self.out).with_suffix(".html"))
        raise ValueError(f"--out {self.out}: give the name of an HTML file to write, e.g. {example}")


def write_report(path: str | os.PathLike, config: ReportConfig | None = None) -> Path:
    """Write the page of the run ``path``, or of the runs under the folder ``path``.

    :param path: a run directory or a folder of runs.
    :param config: where to write (default ``PATH/report.html``).
    :returns: the file written.
    :raises RunError: if ``path`` is neither a run nor holds one, or the page cannot be written there.
    """
    config = ReportConfig() if config is None else config
    path = Path(path)
    runs = study.find_runs(path)
    if not runs:
        raise RunError(
            f"{path} is not a run and holds none (no {CONFIG} in it or below): give a run directory "
            "(`pvae train --out` wrote it) or a folder of runs"
        )
    out = Path(config.out) if config.out else path / REPORT
    check_writable(out, "--out" if config.out else "the folder", file=True, example=REPORT)
    remove_orphans(out, STALE_SECONDS)  # what a kill -9 during an earlier write of this page left
    page = run_page(Run(path)) if runs == [path] else folder_page(path, runs)
    atomic_write(out, lambda handle: handle.write(page.encode()))
    return out
