"""One self-contained HTML page of a run, or of a folder of runs (``pvae report``).

The page carries everything inline: PNG figures as base64 data URIs, its CSS, and a small script
that marks, once the page has loaded, whether each image decoded. It needs no server and no
network, so it opens from disk, travels by mail and survives the run directory's deletion.

A run's page shows its settings (``config.json``), its numbers (``summary.json``), its learning
curves (drawn from ``metrics.jsonl``, so a run still training has them too) and the results of
every command that wrote into the run: ``figures/`` (train, plot, sample) and each results folder,
recognised by what it holds (``diagnostics.json``, ``results.md``, ``disentanglement.json``,
``quality.json``), so that a ``--out`` placed inside the run is found as well as the default.
A folder of runs (a sweep) gets the table ``pvae runs`` prints (:mod:`pvae.study`: the runs that
differ only in their seeds pooled into mean ± sd over n, failed runs as rows with their error), the
figures of its headline numbers against each numeric setting that differs, then a section per run.

Every number shown sits in an element with ``data-key`` (where it comes from, e.g. ``test.elbo``)
and ``data-value`` (the JSON's value, in full; a setting's list as the comma-separated text
:func:`pvae.study.flatten` makes of it, as in the tables): what a reader of the page, or a test, checks it
against. A run's own numbers show 3 decimals (:func:`format_number`); the table of a folder's runs shows
what ``pvae runs`` prints, the same cell for cell.
"""

import base64
import html
import io
import json
import math
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pvae import study
from pvae.files import atomic_write, remove_orphans
from pvae.runs import (
    CONFIG,
    METRICS,
    REPORT,
    STALE_SECONDS,
    SUMMARY,
    Run,
    RunError,
    check_writable,
    is_stale,
    json_object,
    stale_entries,
)

#: The suffixes of the file ``--out`` names (any case).
HTML = (".html", ".htm")
#: Keys of an evaluation shown first, in this order; the others follow alphabetically.
HEADLINE = ("elbo", "log_px", "reconstruction", "kl", "log_py", "accuracy", "iwae_samples", "n")
#: Names of the numbers of an evaluation, as the page shows them.
LABELS = {
    "elbo": "ELBO",
    "log_px": "log p(x)",
    "reconstruction": "reconstruction",
    "kl": "KL",
    "log_py": "log p(y)",
    "accuracy": "accuracy",
    "iwae_samples": "K (importance samples)",
    "n": "n",
}


@dataclass(frozen=True)
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
        else:
            example = f"{self.out}.html"
        raise ValueError(f"--out {self.out}: give the name of an HTML file to write, e.g. {example}")


def write_report(path: str | os.PathLike, config: ReportConfig = ReportConfig()) -> Path:
    """Write the page of the run ``path``, or of the runs under the folder ``path``.

    :param path: a run directory or a folder of runs.
    :param config: where to write (default ``PATH/report.html``).
    :returns: the file written.
    :raises RunError: if ``path`` is neither a run nor holds one, or the page cannot be written there.
    """
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


def run_page(run: Run) -> str:
    """The HTML page of one run."""
    return _page(f"pvae run {run.path.name}", f"<h1>Run <code>{_e(run.path.name)}</code></h1>" + _run_body(run, ""))


#: A folder's page embeds each run's figures at most this many pixels on their long side: a study's
#: runs at full size made pages of tens of MB; a run's own page (``pvae report RUN``) keeps them whole.
#: 720 px stays sharp in the page's grid cells (about 380 CSS px) on a screen of 2 device pixels per px.
REDUCED = 720


def folder_page(path: Path, runs: list[Path]) -> str:
    """The HTML page of the runs ``runs`` under ``path``: their table (:func:`pvae.study.table`, grouped
    over the seeds), its figures (:func:`plots`), the settings every run shares, then one collapsible
    section per run."""
    records = [study.read_run(r, path) for r in runs]
    result = study.table(records)
    configured = [r.settings for r in records if r.settings]
    differ = study.differing(records)
    same = {k: v for k, v in configured[0].items() if k not in differ} if configured else {}
    common = f"<details><summary>settings common to every run</summary>{_settings_table(same, '')}</details>"
    anchors = {r.path: _anchor(r.path, i) for i, r in enumerate(records)}
    sections = "".join(
        f'<details id="{anchors[r.path]}" data-run="{_e(r.path)}"><summary>{_e(r.path)}</summary>'
        f"{_run_body(Run(p), r.path + ':', REDUCED)}</details>"
        for r, p in zip(records, runs, strict=True)
    )
    pooled = (
        f"runs that differ only in {', '.join(result.seeds)} share a row: mean ± sd over its n runs"
        if result.seeds
        else "one run per row"
    )
    body = (
        f"<h1>Runs in <code>{_e(path.name or str(path))}</code></h1>"
        f"<p>{len(runs)} run{'s' if len(runs) != 1 else ''}; the settings that differ between them and the test "
        f"numbers (nats per datapoint); {_e(pooled)}. The table of <code>pvae runs</code>.</p>"
        f"{_study_table(result, anchors)}{common}{_study_figures(result, path)}<h2>Each run</h2>"
        f'<p class="status">Each run\'s figures are reduced here to at most {REDUCED} px on their long side; '
        f"<code>pvae report RUN</code> writes a run's page with them at full size.</p>{sections}"
    )
    return _page(f"pvae runs in {path.name}", body)


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

    :param result: a table of :func:`pvae.study.table`.
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
        png, why, said = _drawn(lambda metric=metric, setting=setting: plot_against(result, metric, setting))
        figures.append((name, png, why))
        warned += [f"{name}: {line}" for line in said]
    note = _warned(warned)
    if left:
        pairs = ", ".join(f"{m} against {s}" for m, s in left)
        note += (
            f'<p class="status">Not drawn here (at most {MAX_PLOTS} figures): {_e(pairs)}; draw one with '
            f"<code>pvae runs {_e(path)} --plot METRIC --against SETTING</code>.</p>"
        )
    return f"<h2>Numbers against settings</h2>{_figures_grid(figures)}{note}"


def _study_table(result: study.Table, anchors: dict[str, str]) -> str:
    """The rows of a study's table: settings, n, the runs (links to their sections, whose ids are
    ``anchors``), each number's mean ± sd (its own n where fewer runs have it), and the state and error of
    a run that did not finish. Each number's mean, sd and n are the ``data-value``, ``data-sd`` and
    ``data-n`` of its element; the text is the Markdown table's (:func:`pvae.study.to_markdown`)."""
    failed = any(row.state != "finished" for row in result.rows)
    head = [*result.settings, "n", "runs", *(study.NUMBERS[n] for n in result.numbers), *(["state"] if failed else [])]
    rows = []
    for i, row in enumerate(result.rows):
        n = len(row.runs)
        cells = [
            f'<td data-key="table.{i}.{_e(s)}" data-value="{_e(json.dumps(row.settings[s]))}">'
            f"{_e(study.setting_text(row.settings[s]))}</td>"
            for s in result.settings
        ]
        cells.append(f'<td class="num" data-key="table.{i}.n" data-value="{n}">{n}</td>')
        links = "".join(f'<a href="#{anchors[run]}">{_e(run)}</a>' for run in row.runs)  # one a line (CSS)
        cells.append(f'<td class="links">{links}</td>')
        cells += [_stat_cell(f"table.{i}.{name}", row.numbers.get(name), n) for name in result.numbers]
        if failed:
            state = row.state + (f": {row.error}" if row.error else "")
            cells.append(f'<td class="state {_e(row.state)}" data-key="table.{i}.state">{_e(state)}</td>')
        runs = _e(json.dumps(list(row.runs)))
        rows.append(f'<tr data-row="{i}" data-runs="{runs}" data-state="{_e(row.state)}">{"".join(cells)}</tr>')
    head_cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    table = f'<table class="runs"><thead><tr>{head_cells}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    return f'<div class="scroll">{table}</div>'  # a wide table scrolls on its own, not the whole page


def _stat_cell(key: str, stat: study.Stat | None, n: int) -> str:
    if stat is None:
        return "<td>—</td>"
    text = study.cell_text(stat, n)  # the Markdown table's text of the same cell
    attributes = f'data-key="{_e(key)}" data-value="{_e(json.dumps(stat.mean))}"'
    attributes += f' data-sd="{_e(json.dumps(stat.sd))}" data-n="{stat.n}"'
    return f'<td class="num"><span {attributes}>{_e(text)}</span></td>'


def _run_body(run: Run, prefix: str, bound: int | None = None) -> str:
    """A run's sections; ``prefix`` starts every ``data-key`` (the run's name on a folder's page), and
    ``bound`` (pixels, or None for full size) the size of its figures (:func:`reduce_png`). A sweep's cell
    that failed before its run directory (or its ``config.json``) was written has nothing but its state
    and error to show; a file of the run the system refuses to read is said on the page, not a crash."""
    failed = study.failure(run.path)
    if not (run.path / CONFIG).is_file():
        where = "its run directory" if not run.path.is_dir() else CONFIG
        state = f"failed before {where} was written" if failed is not None else f"no {CONFIG}"
        error = f'<p class="problem">{_e(f"failed: {failed}")}</p>' if failed is not None else ""
        return f'<p class="status">{_e(state)}</p>{error}'
    try:
        return _run_sections(run, prefix, bound, failed)
    except OSError as error:  # unreadable (permissions, a folder where a file should be), or gone meanwhile
        return f'<p class="problem">{_e(run.path)} cannot be read: {_e(error)}</p>'


def _run_sections(run: Run, prefix: str, bound: int | None, failed: str | None) -> str:
    parts, problems = [], []
    try:
        config = run.config
    except RunError as error:
        config, problems = {}, [str(error)]
    found = "file" if (run.path / SUMMARY).is_file() else "missing"
    try:
        summary = run.summary()
    except RunError as error:
        summary, found = {}, "unreadable"
        problems.append(str(error))
    try:
        metrics = run.metrics()
    except RunError as error:
        metrics = []
        problems.append(str(error))
    if failed is not None:
        problems.insert(0, f"failed: {failed}")
    parts.append(f'<p class="status">{_e(_status(summary, metrics, failed is not None, found))}</p>')
    parts += [f'<p class="problem">{_e(p)}</p>' for p in problems]
    parts.append("<h2>Numbers</h2>")
    if found == "missing" and failed is None:
        parts.append(
            f"<p>No {SUMMARY} yet: the run is still training, or stopped before its end "
            f"({len(metrics)} epoch{'s' if len(metrics) != 1 else ''} in {METRICS}).</p>"
        )
    elif found == "file" and not summary:
        parts.append(f"<p>{_e(_EMPTY.format(run=run.path))}</p>")
    current = run.current_model_id()
    stale = stale_entries(summary, current)
    tables = [
        f"<div><h3>{_e(key)}</h3>{_numbers_table(value, prefix + key)}</div>"
        for key, value in summary.items()
        if isinstance(value, dict) and key not in stale
    ]
    parts.append(f'<div class="row">{"".join(tables)}</div>')
    if stale:
        parts.append(f'<p class="problem">{_e(_STALE.format(what=", ".join(stale), command="pvae evaluate"))}</p>')
    if metrics:
        from pvae.plots.run import plot_curves

        parts.append("<h2>Training curves</h2>")
        png, why, warned = _drawn(lambda: plot_curves(metrics))
        if png is not None:
            parts.append(_figures_grid([("curves (from metrics.jsonl)", png, None)], bound))
        else:
            parts.append(f'<p class="problem">{_e(METRICS)} cannot be drawn: {_e(why)}</p>')
        parts.append(_warned(warned))
    groups = [
        f"<div><h3>{_e(k)}</h3>{_settings_table(study.flatten(v), f'{prefix}config.{k}.')}</div>"
        for k, v in config.items()
        if isinstance(v, dict)
    ]
    rest = study.flatten({k: v for k, v in config.items() if not isinstance(v, dict)})
    if rest:
        groups.append(f"<div>{_settings_table(rest, prefix + 'config.')}</div>")
    parts.append(f'<h2>Settings</h2><div class="row">{"".join(groups)}</div>')
    figures = _figures_in(run.path / "figures", skip={"curves.png"} if metrics else set())
    if figures:
        parts.append(f"<h2>Figures</h2>{_figures_grid(figures, bound)}")
    for folder in sorted(p for p in run.path.iterdir() if p.is_dir() and p.name != "figures"):
        parts.append(_results_section(folder, bound, current))
    return "".join(parts)


#: What a page says of a ``summary.json`` that holds no entry (``{}``): pvae never writes one.
_EMPTY = SUMMARY + " is empty ({{}}): it records no numbers; `pvae evaluate {run}` writes the test numbers"


def _status(summary: dict, metrics: list, failed: bool = False, found: str = "file") -> str:
    """The run's state in one line.

    :param found: ``summary.json`` is a ``file`` (read as ``summary``), ``missing`` or ``unreadable``.
    """
    epochs = f"{len(metrics)} epoch{'s' if len(metrics) != 1 else ''}"
    if failed:  # its last attempt failed (the error follows); a rerun of its sweep tries it again
        return f"failed after {epochs}, not evaluated"
    if found == "unreadable":
        return f"{epochs} done; its {SUMMARY} is unreadable (below)"
    if found == "file" and not summary:
        return f"{epochs} done; its {SUMMARY} is empty ({{}}): no numbers recorded"
    if not summary:
        return f"training or interrupted: {epochs} done, no {SUMMARY} yet"
    if "test" not in summary:
        return f"trained ({epochs}), not evaluated on the test split"
    return f"finished: {epochs}, evaluated"


#: Results folders, recognised by the file they hold: their heading, and how their numbers read.
_KINDS = (
    ("diagnostics.json", "Posterior diagnostics (pvae diagnose)", "pvae.diagnostics:describe_diagnostics"),
    ("results.md", "ELBO estimators (pvae compare-elbos)", None),
    ("disentanglement.json", "Disentanglement (pvae disentangle)", "pvae.disentangle.score:describe"),
    ("quality.json", "Sample quality (pvae quality)", "pvae.quality.score:describe"),
)


#: What a page says in place of results of an earlier model of the run.
_STALE = (
    "{what}: measured an earlier model of this run (it was trained since), so not shown; {command} measures the "
    "model it holds now"
)


def _results_section(folder: Path, bound: int | None = None, current: str | None = None) -> str:
    """A results folder's heading, numbers and figures ('' for a folder with neither); in place of them, a
    line where they measured another model than the run's checkpoint (``current``) holds."""
    figures = _figures_in(folder) + _figures_in(folder / "figures")
    for name, title, describer in _KINDS:
        if not (folder / name).is_file():
            continue
        heading = f'<h2>{_e(title)} <span class="where">{_e(folder.name)}/</span></h2>'
        recorded = json_object(folder / (name if name.endswith(".json") else "results.json"))
        if is_stale(recorded, current):
            command = title.partition("(")[2].rstrip(")") or "the command"
            return heading + f'<p class="problem">{_e(_STALE.format(what=f"{folder.name}/", command=command))}</p>'
        if describer is None:
            text = _markdown((folder / name).read_text(errors="replace"))
        else:
            text = _described(folder / name, describer)
        return heading + text + (_figures_grid(figures, bound) if figures else "")
    if figures:
        return f"<h2>Figures in <code>{_e(folder.name)}/</code></h2>{_figures_grid(figures, bound)}"
    return ""


def _described(path: Path, describer: str) -> str:
    """The module's own text of a results JSON; its flat numbers where that text cannot be made (a file
    from another version, a half-written one)."""
    import importlib

    try:
        results = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return f'<p class="problem">{_e(path.name)} is not readable JSON ({_e(error)})</p>'
    module, _, name = describer.partition(":")
    try:
        return f"<pre>{_e(getattr(importlib.import_module(module), name)(results))}</pre>"
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        flat = {k: v for k, v in study.flatten(results).items() if isinstance(v, (int, float, str, bool))}
        return f"<p>{_e(path.name)}, its numbers:</p>{_settings_table(flat, '')}"


def _figures_in(folder: Path, skip: set[str] = frozenset()) -> list[tuple[str, bytes | None, str | None]]:
    """``(caption, PNG bytes or None, why unreadable)`` of each PNG directly in ``folder``."""
    if not folder.is_dir():
        return []
    return [_read_png(p) for p in sorted(folder.glob("*.png")) if p.name not in skip and not p.name.startswith(".")]


#: The most pixels a figure shown on a page may have (Pillow's own limit, where it sets none): a larger one is
#: said to be too large to show, not decoded (a 20000×20000 PNG is 1.6 GB of pixels).
MAX_PIXELS = 89_478_485


def _read_png(path: Path) -> tuple[str, bytes | None, str | None]:
    from PIL import Image, UnidentifiedImageError

    limit = Image.MAX_IMAGE_PIXELS or MAX_PIXELS
    try:
        data = path.read_bytes()
        size = _png_size(data)
        if size is not None and size[0] * size[1] > limit:
            return (
                path.name,
                None,
                _too_large(f"{size[0]}×{size[1]} px, {size[0] * size[1] / 1e6:.0f} million pixels", limit),
            )
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # said on the page, not on the terminal
            with Image.open(io.BytesIO(data)) as image:
                image.load()  # decodes every pixel: a truncated file fails here, not in the reader's browser
                if image.format != "PNG":
                    return path.name, None, f"a {image.format} file, not a PNG"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        return path.name, None, _too_large(str(error).partition(",")[0], limit)
    except UnidentifiedImageError:
        return path.name, None, "not an image: no format Pillow reads"
    except (OSError, SyntaxError, ValueError) as error:
        text = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", path.name, str(error))  # Pillow names its buffer
        return path.name, None, text or type(error).__name__
    return path.name, data, None


def _png_size(data: bytes) -> tuple[int, int] | None:
    """A PNG's width and height from its header (its first chunk, IHDR), without decoding it; None for
    data that are not a PNG."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _too_large(what: str, limit: int) -> str:
    millions = f"{limit / 1e6:.0f} million pixels"
    return f"too large to show ({what}; a page shows figures of at most {millions}): open the file itself"


def reduce_png(data: bytes, bound: int) -> tuple[bytes, tuple[int, int] | None]:
    """A PNG at most ``bound`` pixels on its long side (Pillow's LANCZOS, re-encoded as PNG).

    :param data: a PNG that decodes.
    :param bound: the largest width and height.
    :returns: the PNG (``data`` itself where it is within the bound), and the original width and height
        where it was reduced (else None).
    """
    from PIL import Image  # Pillow comes with matplotlib; imported here like matplotlib, only to draw

    with Image.open(io.BytesIO(data)) as image:
        if max(image.size) <= bound:
            return data, None
        size = image.size
        image.thumbnail((bound, bound), Image.Resampling.LANCZOS)
        # a palette of 256 colours: a figure's flat colours survive it, and the smooth edges LANCZOS makes
        # would otherwise take more bytes than the full-size figure (no alpha: figures are on white)
        image = image.convert("RGB").quantize(256, dither=Image.Dither.NONE)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue(), size


def _figures_grid(figures: list[tuple[str, bytes | None, str | None]], bound: int | None = None) -> str:
    """The figures as a grid of images (each a link that downloads it), reduced to ``bound`` pixels on
    their long side where given; an unreadable one as its caption and why."""
    cells = []
    for caption, data, why in figures:
        if data is None:
            cells.append(
                f'<figure class="unreadable" data-unreadable="{_e(caption)}"><figcaption>{_e(caption)}: '
                f"unreadable ({_e(why)})</figcaption></figure>"
            )
        else:
            original = None
            if bound is not None:
                data, original = reduce_png(data, bound)
            uri = "data:image/png;base64," + base64.b64encode(data).decode()
            note = f" (reduced from {original[0]}×{original[1]} px)" if original else ""
            cells.append(
                # the link's href is the image's own data, set by the page's script: written twice, every
                # figure would take twice its bytes
                f'<figure><a download="{_e(caption)}"><img src="{uri}" alt="{_e(caption)}"></a>'
                f"<figcaption>{_e(caption)}{note}</figcaption></figure>"
            )
    return f'<div class="grid">{"".join(cells)}</div>'


def _drawn(draw: Callable[[], Any]) -> tuple[bytes | None, str | None, list[str]]:
    """The PNG of the figure ``draw()`` returns, or why it cannot be drawn, and the warnings drawing it gave
    (matplotlib's, NumPy's): said on the page, not printed on the terminal with a line of their source.

    :returns: ``(png, None, warnings)`` or ``(None, why, warnings)``.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            png, why = _png_of(draw()), None
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            png, why = None, str(error) or type(error).__name__
    return png, why, list(dict.fromkeys(str(w.message) for w in caught))


def _warned(lines: list[str]) -> str:
    if not lines:
        return ""
    return f'<p class="status">Drawing warned: {_e("; ".join(lines))}</p>'


def _png_of(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _numbers_table(numbers: dict, key: str) -> str:
    """A summary entry (an evaluation, the training's numbers) as rows of name, value ± standard error."""
    names = [k for k in HEADLINE if k in numbers] + sorted(k for k in numbers if k not in HEADLINE)
    rows = []
    for name in names:
        value = numbers[name]
        if (name.endswith("_se") and name[:-3] in numbers) or isinstance(value, (dict, list)):
            continue
        label = LABELS.get(name, name.replace("_", " "))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            cell = _number_cell(f"{key}.{name}", value, numbers.get(f"{name}_se"))
        else:
            cell = f"<td>{_e(_text(value))}</td>"
        rows.append(f"<tr><th>{_e(label)}</th>{cell}</tr>")
    return f'<table class="numbers">{"".join(rows)}</table>'


def _number_cell(key: str, value: Any, se: Any = None) -> str:
    """A table cell of a number; ``data-value`` holds the JSON's value in full, the text a rounding."""
    if value is None:
        return "<td>—</td>"
    text = f'<span data-key="{_e(key)}" data-value="{_e(json.dumps(value))}">{_e(format_number(value))}</span>'
    if isinstance(se, (int, float)):
        text += f' ± <span data-key="{_e(key)}_se" data-value="{_e(json.dumps(se))}">{_e(format_number(se))}</span>'
    return f'<td class="num">{text}</td>'


def format_number(value: float | int) -> str:
    """A number as the page shows it: integers whole, other numbers with 3 decimals (3 significant
    digits below 0.01 in size, which 3 decimals would show as 0).

    :param value: the number.
    """
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.3g}" if 0 < abs(value) < 0.01 else f"{value:.3f}"


def _settings_table(flat: dict, key: str) -> str:
    rows = "".join(
        f'<tr><th>{_e(k)}</th><td data-key="{_e(key + k)}" data-value="{_e(json.dumps(v))}">{_e(_text(v))}</td></tr>'
        for k, v in flat.items()
    )
    return f'<table class="settings">{rows}</table>'


def _text(value: Any) -> str:
    if isinstance(value, float):
        return format_number(value)
    return "—" if value is None else str(value)


def _markdown(text: str) -> str:
    """The Markdown ``pvae compare-elbos`` writes (headings, paragraphs, pipe tables) as HTML."""
    out, table = [], []

    def close_table():
        if table:
            rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table]
            body = [r for r in rows[1:] if not all(set(c) <= set("-: ") for c in r)]
            head = "".join(f"<th>{_e(c)}</th>" for c in rows[0])
            cells = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in body)
            out.append(f'<table class="md"><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>')
            table.clear()

    for line in text.splitlines():
        if line.lstrip().startswith("|"):
            table.append(line)
            continue
        close_table()
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")) + 2, 6)  # under the page's own h2
            out.append(f"<h{level}>{_e(line.lstrip('#').strip())}</h{level}>")
        elif line.strip():
            out.append(f"<p>{_e(line)}</p>")
    close_table()
    return "".join(out)


def _anchor(name: str, index: int) -> str:
    """The id of a run's section: its name with other characters than letters, digits, ``-`` and ``_`` as
    ``-``, then its index, which keeps apart the names that differ only there (``beta=1.5``, ``beta=1-5``)."""
    return "run-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in name) + f"-{index}"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; color: #222; max-width: 1200px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }
h3 { margin-bottom: .3em; } code, pre { font-family: ui-monospace, monospace; }
pre { background: #f6f8fa; padding: .8em; white-space: pre-wrap; font-size: 13px; }
.row { display: flex; flex-wrap: wrap; gap: 0 2em; align-items: flex-start; }
table { border-collapse: collapse; margin: .4em 0 1em; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
thead th { background: #f0f3f6; } tbody tr:nth-child(even) { background: #fafbfc; }
table.numbers th, table.settings th { background: #f6f8fa; font-weight: 500; }
td.num { font-variant-numeric: tabular-nums; text-align: right; white-space: nowrap; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 1em; align-items: start; }
figure { margin: 0; border: 1px solid #e3e3e3; padding: .5em; background: #fff; }
figure img { width: 100%; height: auto; display: block; }
figcaption { font-size: 13px; color: #555; margin-top: .3em; }
figure.unreadable { background: #fff4f4; border-color: #e5b5b5; }
.state.failed, .state.unreadable { color: #a00; } td.links { font-size: 13px; }
td.links a { display: block; white-space: nowrap; } .scroll { overflow-x: auto; }
.status { color: #555; } .problem { color: #a00; } .where { font-weight: normal; color: #777; font-size: .8em; }
details { border: 1px solid #ddd; padding: .4em .8em; margin: .5em 0; }
details > summary { cursor: pointer; font-weight: 600; }
"""

#: Marks, once every image has loaded or failed, whether each decoded (``data-loaded``), and the page
#: as ready (``data-ready`` on ``body``): what a headless browser reads back. Opens a run's section
#: when a link points to it.
_SCRIPT = """
window.addEventListener("load", () => {
  for (const image of document.images) image.dataset.loaded = image.naturalWidth > 0 ? "yes" : "no";
  for (const link of document.querySelectorAll("figure a[download]")) link.href = link.querySelector("img").src;
  document.body.dataset.ready = "yes";
});
// a link to a run's section opens it (a closed <details> hides its target)
function openTarget() {
  const target = document.getElementById(decodeURIComponent(location.hash.slice(1)));
  if (target && target.tagName === "DETAILS") target.open = true;
}
window.addEventListener("hashchange", openTarget);
openTarget();
"""


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>'
        f"<body>{body}<script>{_SCRIPT}</script></body></html>\n"
    )
