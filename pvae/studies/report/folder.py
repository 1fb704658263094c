"""A folder of runs' page (a sweep's): the table ``pvae runs`` prints (:mod:`pvae.studies.study`: the runs that differ
only in their seeds pooled into mean ± sd over n, failed runs as rows with their error), the figures of its
headline numbers against each numeric setting that differs, then a section per run."""

import json
from pathlib import Path

from pvae.base.runs import Run
from pvae.studies import study
from pvae.studies.report.images import draw_png, figures_grid
from pvae.studies.report.markup import esc, page, settings_table, warning_note
from pvae.studies.report.run import run_body

#: A folder's page embeds each run's figures at most this many pixels on their long side: a study's
#: runs at full size made pages of tens of MB; a run's own page (``pvae report RUN``) keeps them whole.
#: 720 px stays sharp in the page's grid cells (about 380 CSS px) on a screen of 2 device pixels per px.
REDUCED = 720


def folder_page(path: Path, runs: list[Path]) -> str:
    """The HTML page of the runs ``runs`` under ``path``: their table (:func:`pvae.studies.study.table`, grouped
    over the seeds), its figures (:func:`plots`), the settings every run shares, then one collapsible
    section per run.

    :param path: the folder.
    :param runs: the run directories under it.
    """
    records = [study.read_run(r, path) for r in runs]
    result = study.table(records)
    configured = [r.settings for r in records if r.settings]
    differ = study.differing(records)
    same = {k: v for k, v in configured[0].items() if k not in differ} if configured else {}
    common = f"<details><summary>settings common to every run</summary>{settings_table(same, '')}</details>"
    anchors = {r.path: _anchor(r.path, i) for i, r in enumerate(records)}
    sections = "".join(
        f'<details id="{anchors[r.path]}" data-run="{esc(r.path)}"><summary>{esc(r.path)}</summary>'
        f"{run_body(Run(p), r.path + ':', REDUCED)}</details>"
        for r, p in zip(records, runs, strict=True)
    )
    pooled = (
        f"runs that differ only in {', '.join(result.seeds)} share a row: mean ± sd over its n runs"
        if result.seeds
        else "one run per row"
    )
    body = (
        f"<h1>Runs in <code>{esc(path.name or str(path))}</code></h1>"
        f"<p>{len(runs)} run{'s' if len(runs) != 1 else ''}; the settings that differ between them and the test "
        f"numbers (nats per datapoint); {esc(pooled)}. The table of <code>pvae runs</code>.</p>"
        f"{_study_table(result, anchors)}{common}{_study_figures(result, path)}<h2>Each run</h2>"
        f'<p class="status">Each run\'s figures are reduced here to at most {REDUCED} px on their long side; '
        f"<code>pvae report RUN</code> writes a run's page with them at full size.</p>{sections}"
    )
    return page(f"pvae runs in {path.name}", body)


#: At most this many figures of numbers against settings on a folder's page.
MAX_PLOTS = 6
#: The numbers a folder's page draws, in the order they are chosen: the ELBO, the headline score of
#: ``pvae disentangle`` and of ``pvae quality`` (the first of each the runs have: what such a study was
#: run for), then log p(x) and KL.
PLOTTED = (
    ("elbo",),
    ("mig", "dci", "factor_vae", "beta_vae", "sap", "modularity"),
    ("fd", "precision", "recall", "coverage", "confidence"),
    ("log_px",),
    ("kl",),
)


def plots(result: study.Table) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Which ``(metric, setting)`` figures a folder's page draws, and which it leaves out.

    The settings: those of the table whose values are numbers, at least two of them among the finished
    rows, the one with the most values first. The numbers: :data:`PLOTTED`'s that the table has. Each
    setting gets an equal share of :data:`MAX_PLOTS` (at least one figure), its numbers in that order.

    :param result: a table of :func:`pvae.studies.study.table`.
    :returns: the pairs drawn, and those left out.
    """
    finished = [row for row in result.rows if row.state == "finished"]
    values = {s: {row.settings[s] for row in finished} for s in result.settings}
    numeric = [
        s
        for s, v in values.items()
        if len(v) > 1 and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
    ]
    numeric.sort(key=lambda s: (-len(values[s]), s))
    metrics = [next(m for m in choice if m in result.numbers) for choice in PLOTTED if set(choice) & {*result.numbers}]
    every = [(m, s) for s in numeric for m in metrics]
    share = max(1, MAX_PLOTS // len(numeric)) if numeric else 0
    drawn = [(m, s) for s in numeric for m in metrics[:share]][:MAX_PLOTS]
    return drawn, [pair for pair in every if pair not in drawn]


def _study_figures(result: study.Table, path: Path) -> str:
    from pvae.plots.study import plot_against

    drawn, left = plots(result)
    if not drawn:
        return ""
    figures, warned = [], []
    for metric, setting in drawn:
        name = f"{metric}-vs-{setting}.png"  # the name `pvae runs --plot` gives the same figure
        png, why, said = draw_png(lambda metric=metric, setting=setting: plot_against(result, metric, setting))
        figures.append((name, png, why))
        warned += [f"{name}: {line}" for line in said]
    note = warning_note(warned)
    if left:
        pairs = ", ".join(f"{m} against {s}" for m, s in left)
        note += (
            f'<p class="status">Not drawn here (at most {MAX_PLOTS} figures): {esc(pairs)}; draw one with '
            f"<code>pvae runs {esc(path)} --plot METRIC --against SETTING</code>.</p>"
        )
    return f"<h2>Numbers against settings</h2>{figures_grid(figures)}{note}"


def _study_table(result: study.Table, anchors: dict[str, str]) -> str:
    """The rows of a study's table: settings, n, the runs (links to their sections, whose ids are
    ``anchors``), each number's mean ± sd (its own n where fewer runs have it), and the state and error of
    a run that did not finish. Each number's mean, sd and n are the ``data-value``, ``data-sd`` and
    ``data-n`` of its element; the text is the Markdown table's (:func:`pvae.studies.study.to_markdown`)."""
    failed = any(row.state != "finished" for row in result.rows)
    head = [*result.settings, "n", "runs", *(study.NUMBERS[n] for n in result.numbers), *(["state"] if failed else [])]
    rows = []
    for i, row in enumerate(result.rows):
        n = len(row.runs)
        cells = [
            f'<td data-key="table.{i}.{esc(s)}" data-value="{esc(json.dumps(row.settings[s]))}">'
            f"{esc(study.setting_text(row.settings[s]))}</td>"
            for s in result.settings
        ]
        cells.append(f'<td class="num" data-key="table.{i}.n" data-value="{n}">{n}</td>')
        links = "".join(f'<a href="#{anchors[run]}">{esc(run)}</a>' for run in row.runs)  # one a line (CSS)
        cells.append(f'<td class="links">{links}</td>')
        cells += [_stat_cell(f"table.{i}.{name}", row.numbers.get(name), n) for name in result.numbers]
        if failed:
            state = row.state + (f": {row.error}" if row.error else "")
            cells.append(f'<td class="state {esc(row.state)}" data-key="table.{i}.state">{esc(state)}</td>')
        runs = esc(json.dumps(list(row.runs)))
        rows.append(f'<tr data-row="{i}" data-runs="{runs}" data-state="{esc(row.state)}">{"".join(cells)}</tr>')
    head_cells = "".join(f"<th>{esc(h)}</th>" for h in head)
    table = f'<table class="runs"><thead><tr>{head_cells}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    return f'<div class="scroll">{table}</div>'  # a wide table scrolls on its own, not the whole page


def _stat_cell(key: str, stat: study.Stat | None, n: int) -> str:
    if stat is None:
        return "<td>—</td>"
    text = study.cell_text(stat, n)  # the Markdown table's text of the same cell
    attributes = f'data-key="{esc(key)}" data-value="{esc(json.dumps(stat.mean))}"'
    attributes += f' data-sd="{esc(json.dumps(stat.sd))}" data-n="{stat.n}"'
    return f'<td class="num"><span {attributes}>{esc(text)}</span></td>'


def _anchor(name: str, index: int) -> str:
    """The id of a run's section: its name with other characters than letters, digits, ``-`` and ``_`` as
    ``-``, then its index, which keeps apart the names that differ only there (``beta=1.5``, ``beta=1-5``)."""
    return "run-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in name) + f"-{index}"
