"""One self-contained HTML page of a run, or of a folder of runs (``pvae report``).

The page carries everything inline: PNG figures as base64 data URIs, its CSS, and a small script
that marks, once the page has loaded, whether each image decoded. It needs no server and no
network, so it opens from disk, travels by mail and survives the run directory's deletion.

A run's page shows its settings (``config.json``), its numbers (``summary.json``), its learning
curves (drawn from ``metrics.jsonl``, so a run still training has them too) and the results of
every command that wrote into the run: ``figures/`` (train, plot, sample) and each results folder,
recognised by the JSON file it holds (``diagnostics.json``, ``results.json``, ``disentanglement.json``,
``quality.json``), so that a ``--out`` placed inside the run is found as well as the default.
A folder of runs (a sweep) gets the table ``pvae runs`` prints (:mod:`pvae.studies.study`: the runs that
differ only in their seeds pooled into mean ± sd over n, failed runs as rows with their error), the
figures of its headline numbers against each numeric setting that differs, then a section per run.

Every number shown sits in an element with ``data-key`` (where it comes from, e.g. ``test.elbo``)
and ``data-value`` (the JSON's value, in full; a setting's list as the comma-separated text
:func:`pvae.studies.study.flatten` makes of it, as in the tables): what a reader of the page, or a test, checks it
against. A run's own numbers show 3 decimals (:func:`format_number`); the table of a folder's runs shows
what ``pvae runs`` prints, the same cell for cell.

The modules: :mod:`pvae.studies.report.write` (the command's settings and the file written),
:mod:`pvae.studies.report.run` (a run's sections), :mod:`pvae.studies.report.folder` (a folder's page),
:mod:`pvae.studies.report.images` (the figures: PNGs read, checked and reduced) and :mod:`pvae.studies.report.markup`
(the HTML every page is made of).
"""

from pvae.studies.report.folder import MAX_PLOTS, PLOTTED, REDUCED, folder_page, plots
from pvae.studies.report.images import MAX_PIXELS, reduce_png
from pvae.studies.report.markup import format_number
from pvae.studies.report.run import run_page
from pvae.studies.report.write import HTML, ReportConfig, write_report

__all__ = [
    "HTML",
    "MAX_PIXELS",
    "MAX_PLOTS",
    "PLOTTED",
    "REDUCED",
    "ReportConfig",
    "folder_page",
    "format_number",
    "plots",
    "reduce_png",
    "run_page",
    "write_report",
]
