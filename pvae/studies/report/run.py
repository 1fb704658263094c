"""A run's part of a page: its state, numbers, training curves, settings and figures, and the results of every
command that wrote into it, each results folder recognised by the JSON file it holds (``diagnostics.json``,
``results.json``, ``disentanglement.json``, ``quality.json``), so that a ``--out`` placed inside the run is
found as well as the default."""

import json
from collections.abc import Callable
from pathlib import Path

from pvae.base.results import is_stale, json_object, stale_entries
from pvae.base.runs import CONFIG, METRICS, SUMMARY, Run, RunError
from pvae.studies import study
from pvae.studies.report.images import draw_png, figures_grid, figures_in
from pvae.studies.report.markup import esc, numbers_table, page, settings_table, warning_note


def run_page(run: Run) -> str:
    """The HTML page of one run.

    :param run: the run.
    """
    return page(f"pvae run {run.path.name}", f"<h1>Run <code>{esc(run.path.name)}</code></h1>" + run_body(run, ""))


def run_body(run: Run, prefix: str, bound: int | None = None) -> str:
    """A run's sections; ``prefix`` starts every ``data-key`` (the run's name on a folder's page), and
    ``bound`` (pixels, or None for full size) the size of its figures (:func:`pvae.studies.report.images.reduce_png`).
    A sweep's cell that failed before its run directory (or its ``config.json``) was written has nothing but
    its state and error to show; a file of the run the system refuses to read is said on the page, not a
    crash.

    :param run: the run.
    :param prefix: what starts every ``data-key``.
    :param bound: the largest width and height of its figures in pixels (None: full size).
    """
    failed = study.failure(run.path)
    if not (run.path / CONFIG).is_file():
        where = "its run directory" if not run.path.is_dir() else CONFIG
        state = f"failed before {where} was written" if failed is not None else f"no {CONFIG}"
        error = f'<p class="problem">{esc(f"failed: {failed}")}</p>' if failed is not None else ""
        return f'<p class="status">{esc(state)}</p>{error}'
    try:
        return _run_sections(run, prefix, bound, failed)
    except OSError as error:  # unreadable (permissions, a folder where a file should be), or gone meanwhile
        return f'<p class="problem">{esc(run.path)} cannot be read: {esc(error)}</p>'


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
    parts.append(f'<p class="status">{esc(_status(summary, metrics, failed is not None, found))}</p>')
    parts += [f'<p class="problem">{esc(p)}</p>' for p in problems]
    parts.append("<h2>Numbers</h2>")
    if found == "missing" and failed is None:
        parts.append(
            f"<p>No {SUMMARY} yet: the run is still training, or stopped before its end "
            f"({len(metrics)} epoch{'s' if len(metrics) != 1 else ''} in {METRICS}).</p>"
        )
    elif found == "file" and not summary:
        parts.append(f"<p>{esc(_EMPTY.format(run=run.path))}</p>")
    current = run.current_model_id()
    stale = stale_entries(summary, current)
    tables = [
        f"<div><h3>{esc(key)}</h3>{numbers_table(value, prefix + key)}</div>"
        for key, value in summary.items()
        if isinstance(value, dict) and key not in stale
    ]
    parts.append(f'<div class="row">{"".join(tables)}</div>')
    if stale:
        parts.append(f'<p class="problem">{esc(_STALE.format(what=", ".join(stale), command="pvae evaluate"))}</p>')
    if metrics:
        from pvae.plots.run import plot_curves

        parts.append("<h2>Training curves</h2>")
        png, why, warned = draw_png(lambda: plot_curves(metrics))
        if png is not None:
            parts.append(figures_grid([("curves (from metrics.jsonl)", png, None)], bound))
        else:
            parts.append(f'<p class="problem">{esc(METRICS)} cannot be drawn: {esc(why)}</p>')
        parts.append(warning_note(warned))
    groups = [
        f"<div><h3>{esc(k)}</h3>{settings_table(study.flatten(v), f'{prefix}config.{k}.')}</div>"
        for k, v in config.items()
        if isinstance(v, dict)
    ]
    rest = study.flatten({k: v for k, v in config.items() if not isinstance(v, dict)})
    if rest:
        groups.append(f"<div>{settings_table(rest, prefix + 'config.')}</div>")
    parts.append(f'<h2>Settings</h2><div class="row">{"".join(groups)}</div>')
    figures = figures_in(run.path / "figures", skip={"curves.png"} if metrics else set())
    if figures:
        parts.append(f"<h2>Figures</h2>{figures_grid(figures, bound)}")
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


def _diagnostics(results: dict) -> str:
    from pvae.measures.diagnostics import describe_diagnostics

    return f"<pre>{esc(describe_diagnostics(results))}</pre>"


def _comparison(results: dict) -> str:
    from pvae.measures.compare.results import results_document

    return _document(results_document(results))


def _disentanglement(results: dict) -> str:
    from pvae.measures.disentangle.score import describe

    return f"<pre>{esc(describe(results))}</pre>"


def _quality(results: dict) -> str:
    from pvae.measures.quality.score import describe

    return f"<pre>{esc(describe(results))}</pre>"


def _document(blocks: list) -> str:
    """A document of :mod:`pvae.measures.compare.results` (headings, paragraphs, tables) as HTML, its headings under
    the page's own ``h2``."""
    from pvae.measures.compare.results import Heading, Paragraph

    out = []
    for block in blocks:
        if isinstance(block, Heading):
            level = min(block.level + 2, 6)
            out.append(f"<h{level}>{esc(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            out += [f"<p>{esc(line)}</p>" for line in block.lines]
        else:
            head = "".join(f"<th>{esc(c)}</th>" for c in block.header)
            cells = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in block.rows)
            out.append(f'<table class="md"><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>')
    return "".join(out)


#: Results folders, recognised by the JSON file they hold: their heading, and their numbers as HTML.
_KINDS: tuple[tuple[str, str, Callable[[dict], str]], ...] = (
    ("diagnostics.json", "Posterior diagnostics (pvae diagnose)", _diagnostics),
    ("results.json", "ELBO estimators (pvae compare-elbos)", _comparison),
    ("disentanglement.json", "Disentanglement (pvae disentangle)", _disentanglement),
    ("quality.json", "Sample quality (pvae quality)", _quality),
)


#: What a page says in place of results of an earlier model of the run.
_STALE = (
    "{what}: measured an earlier model of this run (it was trained since), so not shown; {command} measures the "
    "model it holds now"
)


def _results_section(folder: Path, bound: int | None = None, current: str | None = None) -> str:
    """A results folder's heading, numbers and figures ('' for a folder with neither); in place of them, a
    line where they measured another model than the run's checkpoint (``current``) holds."""
    figures = figures_in(folder) + figures_in(folder / "figures")
    for name, title, render in _KINDS:
        if not (folder / name).is_file():
            continue
        heading = f'<h2>{esc(title)} <span class="where">{esc(folder.name)}/</span></h2>'
        if is_stale(json_object(folder / name), current):
            command = title.partition("(")[2].rstrip(")") or "the command"
            return heading + f'<p class="problem">{esc(_STALE.format(what=f"{folder.name}/", command=command))}</p>'
        return heading + _described(folder / name, render) + (figures_grid(figures, bound) if figures else "")
    if figures:
        return f"<h2>Figures in <code>{esc(folder.name)}/</code></h2>{figures_grid(figures, bound)}"
    return ""


def _described(path: Path, render: Callable[[dict], str]) -> str:
    """The command's own presentation of a results JSON (``render``); its flat numbers where that cannot be
    made (a file from another version, a half-written one)."""
    try:
        results = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return f'<p class="problem">{esc(path.name)} is not readable JSON ({esc(error)})</p>'
    try:
        return render(results)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        flat = {k: v for k, v in study.flatten(results).items() if isinstance(v, (int, float, str, bool))}
        return f"<p>{esc(path.name)}, its numbers:</p>{settings_table(flat, '')}"
