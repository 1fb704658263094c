"""Tables of many runs (``pvae runs DIR``): every run directory under a folder, its settings and its numbers.

:func:`collect` finds the runs and reads what the other commands wrote into them (``config.json``,
``summary.json``, ``metrics.jsonl``, ``diagnostics/diagnostics.json``, ``disentanglement/disentanglement.json``,
``quality/quality.json``); :func:`table` keeps the settings that differ between runs and, grouped, pools the
runs that differ only in their seeds into mean ± sd over n; :func:`to_markdown` and :func:`to_csv` write it.
A run that cannot be read is a row that says why, never the end of the table.
"""

import csv
import difflib
import io
import json
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pvae.base import options
from pvae.base.failures import failed_cells, recorded_error
from pvae.base.results import flatten, is_stale, stale_entries
from pvae.base.runs import CONFIG, Run, RunError
from pvae.measures.quality.score import HEADLINES as QUALITY

#: A run's states: ``finished`` (summary.json holds the test numbers), ``not finite`` (evaluated, but a number
#: of it is NaN or infinite: shown as such, never pooled with the finite runs of its group), ``partial`` (trained
#: for some epochs, or not at all, but not evaluated), ``failed`` (its sweep recorded an error), ``unreadable``
#: (a file of it is not the JSON it should be).
STATES = ("finished", "not finite", "partial", "failed", "unreadable")
#: Settings whose runs are replicates of one another: pooled by :func:`table` into mean ± sd. The data seed
#: draws the train/validation split and the fixed binarizations, the training seed everything else; both are
#: draws, not design choices (``--no-group`` shows each run).
SEEDS = ("train.seed", "data.data_seed")
#: Settings that say where data come from, not what is learnt: never columns.
IGNORED = ("data.data_dir", "data.download", "data.checksum")  # a checksum goes with its file, data.data
#: Folders of a run that hold results, never other runs (not searched).
RESULT_FOLDERS = ("figures", "elbos", "diagnostics", "disentanglement", "quality")
#: The numbers a table may show, in order, with their column titles.
NUMBERS = {
    "elbo": "ELBO",
    "log_px": "log p(x)",
    "K": "K",
    "kl": "KL",
    "reconstruction": "reconstruction",
    "accuracy": "accuracy",
    "active_units": "active units",
    "beta_vae": "beta-VAE",
    "factor_vae": "FactorVAE",
    "mig": "MIG",
    "dci": "DCI",
    "dci_completeness": "DCI completeness",
    "sap": "SAP",
    "modularity": "modularity",
    "mig_no_shape": "MIG (no shape)",
    "beta_vae_no_shape": "beta-VAE (no shape)",
    "factor_vae_no_shape": "FactorVAE (no shape)",
    "dci_no_shape": "DCI (no shape)",
    "dci_completeness_no_shape": "DCI completeness (no shape)",
    "sap_no_shape": "SAP (no shape)",
    "modularity_no_shape": "modularity (no shape)",
    **QUALITY,  # the sample-quality scores of prior samples, titled as `pvae quality` titles them
    "seconds_per_epoch": "s/epoch",
    "epochs": "epochs",
}
#: Numbers a table shows only when asked for (``table(..., numbers=...)``): DCI's completeness and the
#: disentanglement scores without the shape factor but MIG's, which would double a dSprites table's width.
ON_REQUEST = (
    "dci_completeness",
    "beta_vae_no_shape",
    "factor_vae_no_shape",
    "dci_no_shape",
    "dci_completeness_no_shape",
    "sap_no_shape",
    "modularity_no_shape",
)
#: summary.json's ``test`` key → number.
_TEST_KEYS = {
    "elbo": "elbo",
    "log_px": "log_px",
    "iwae_samples": "K",
    "kl": "kl",
    "reconstruction": "reconstruction",
    "accuracy": "accuracy",
}


@dataclass(frozen=True)
class RunRecord:
    """One run directory as a table reads it.

    :param path: the run's folder relative to the folder searched (``.`` for the folder itself).
    :param state: one of :data:`STATES`.
    :param settings: its configuration flattened to dotted names (``train.beta``, ``pair.z_dim``), lists as
        comma-separated text.
    :param numbers: its numbers, keys of :data:`NUMBERS` (those it has).
    :param error: why it failed or could not be read, or which of its results are not shown (stale).
    """

    path: str
    state: str
    settings: dict[str, Any] = field(default_factory=dict)
    numbers: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Stat:
    """A number over a group of runs.

    :param mean: the mean of the runs that have it.
    :param sd: their sample standard deviation (n − 1), ``None`` for one run.
    :param n: how many runs have it.
    """

    mean: float
    sd: float | None
    n: int


@dataclass(frozen=True)
class Row:
    """A row of a :class:`Table`: one run, or the runs of a group.

    :param settings: the values of the table's settings.
    :param numbers: each number's :class:`Stat` (one run: sd ``None``, n 1).
    :param runs: the paths of the runs in the row.
    :param state: the runs' state (a group pools finished runs only).
    :param error: why the run failed or could not be read.
    """

    settings: dict[str, Any]
    numbers: dict[str, Stat]
    runs: tuple[str, ...]
    state: str
    error: str | None = None


@dataclass(frozen=True)
class Table:
    """Runs as rows, the settings that differ and the numbers as columns.

    :param settings: the settings shown, the dotted names of those that differ between runs.
    :param numbers: the numbers shown, keys of :data:`NUMBERS` some run has.
    :param rows: the rows.
    :param grouped: whether the runs that differ only in :attr:`seeds` share a row.
    :param seeds: the settings pooled over, when grouped.
    """

    settings: tuple[str, ...]
    numbers: tuple[str, ...]
    rows: tuple[Row, ...]
    grouped: bool
    seeds: tuple[str, ...] = ()

    def title(self, number: str) -> str:
        """The title of ``number`` (a key of :data:`NUMBERS`), as a column or an axis shows it.

        :param number: the number.
        """
        return NUMBERS[number]


def failure(path: str | os.PathLike) -> str | None:
    """The error a sweep recorded for the run in ``path`` (its cell's last attempt failed), or ``None``
    (:func:`pvae.base.failures.recorded_error`)."""
    return recorded_error(path)


def find_runs(folder: str | os.PathLike) -> list[Path]:
    """Every run directory under ``folder`` (``folder`` itself included), in path order: a folder with a
    ``config.json``, or a sweep's failed cell. The result folders of a run are not searched.

    :raises RunError: if ``folder`` does not exist or is not a folder.
    """
    root = Path(folder)
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is a file, not a folder"
        raise RunError(f"{root} {what}: give the folder that holds the runs (what `pvae train --out` wrote into)")
    found = []
    for here, folders, files in os.walk(root):
        folders[:] = sorted(f for f in folders if f not in RESULT_FOLDERS and not f.startswith("."))
        if (CONFIG in files and not _foreign(Path(here))) or failure(here) is not None:
            found.append(Path(here))
        found += [cell for cell in failed_cells(here) if not cell.is_dir()]  # failed before its directory existed
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def _foreign(path: Path) -> bool:
    """Whether ``path``'s ``config.json`` is a readable JSON object of someone else's (not a pvae run's: no
    manifest, none of the sections ``data``, ``pair``, ``train``); a damaged one is a run to show as unreadable."""
    if Run(path).holds_run():
        return False
    try:
        config = json.loads((path / CONFIG).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(config, dict) and not {"data", "pair", "train"} & set(config)


def read_run(path: str | os.PathLike, root: str | os.PathLike | None = None) -> RunRecord:
    """What a table shows of the run in ``path``.

    :param path: a run directory.
    :param root: the folder searched, which ``path`` is shown relative to (default: ``path`` itself).
    """
    path = Path(path)
    name = path.relative_to(root).as_posix() if root is not None else path.as_posix()
    error = failure(path)
    try:
        settings = {}
        if (path / CONFIG).is_file():
            settings = {k: v for k, v in flatten(_json(path / CONFIG)).items() if k not in IGNORED}
        if error is not None:
            return RunRecord(name, "failed", settings, {}, error)
        numbers, stale = _numbers(path)
    except RunError as unreadable:
        return RunRecord(name, "unreadable", {}, {}, str(unreadable))
    note = (
        f"not shown, of an earlier model of the run (trained since): {', '.join(stale)}; measure it again"
        if stale
        else None
    )
    evaluated = "elbo" in numbers or "reconstruction" in numbers  # a point-mass guide has no ELBO
    if not evaluated:
        return RunRecord(name, "partial", settings, numbers, note)
    infinite = [n for n in NUMBERS if n in numbers and not math.isfinite(numbers[n])]
    if infinite:  # a number that is NaN is a result, not a missing one: said, and kept out of the means
        listed = ", ".join(f"{NUMBERS[n]} = {numbers[n]}" for n in infinite)
        return RunRecord(name, "not finite", settings, numbers, f"evaluated, but {listed}")
    return RunRecord(name, "finished", settings, numbers, note)


def collect(folder: str | os.PathLike) -> list[RunRecord]:
    """Every run under ``folder`` (see :func:`find_runs`), read (see :func:`read_run`).

    :raises RunError: if ``folder`` holds no run, saying how to make some.
    """
    runs = find_runs(folder)
    if not runs:
        raise RunError(
            f"{folder} holds no run (no folder under it has a config.json): train one with `pvae train --out "
            f"{Path(folder) / 'NAME'}`, or a study with `pvae sweep {folder} --grid ...`"
        )
    return [read_run(p, folder) for p in runs]


def _json(path: Path) -> dict:
    """A JSON object pvae wrote (``config.json``, a command's results); anything else is a :class:`RunError`."""
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunError(f"{path.name} is not readable JSON ({error})") from None
    except OSError as error:
        raise RunError(f"{path.name} cannot be read ({error.strerror})") from None
    if not isinstance(value, dict):
        raise RunError(f"{path.name} is not a JSON object")
    return value


def _numbers(path: Path) -> tuple[dict[str, float], list[str]]:
    """The numbers of a run from the files pvae's commands wrote into it, and the results left out because
    they measured an earlier model of the run (:func:`pvae.base.results.is_stale`)."""
    numbers: dict[str, float] = {}
    run = Run(path)
    summary = run.summary()  # a RunError for a damaged or non-object summary.json
    current = run.current_model_id()
    stale = [f"summary.json's {key}" for key in stale_entries(summary, current) if key == "test"]
    test = summary.get("test") or {} if not stale else {}

    def fresh(where: str) -> dict | None:
        """The results JSON at ``where`` in the run, None where missing or of an earlier model."""
        if not (path / where).is_file():
            return None
        result = _json(path / where)
        if is_stale(result, current):
            stale.append(where.split("/")[0] + "/")
            return None
        return result

    for key, name in _TEST_KEYS.items():
        if _is_value(test.get(key)):
            numbers[name] = float(test[key])
    # the latent part of a diagnosis, else of a disentanglement score (both list the active dimensions)
    results = {
        where: fresh(where) for where in ("diagnostics/diagnostics.json", "disentanglement/disentanglement.json")
    }
    for result in results.values():
        if isinstance(_entry(result, "latent", "active"), list):
            numbers["active_units"] = float(len(_entry(result, "latent", "active")))
            break
    if results["disentanglement/disentanglement.json"] is not None:
        from pvae.measures.disentangle.score import HEADLINES

        scores = [(metric, key, metric) for metric, key in HEADLINES.items()] + [
            ("dci", "completeness", "dci_completeness")
        ]
        for metric, key, name in scores:
            for label, suffix in (("all factors", ""), ("without shape", "_no_shape")):
                value = _entry(results["disentanglement/disentanglement.json"], "metrics", metric, label, key)
                if _is_value(value) and name + suffix in NUMBERS:
                    numbers[name + suffix] = float(value)
    quality = fresh("quality/quality.json")
    for key in QUALITY:  # samples from the prior: the set the quality of a generative model is
        value = _entry(quality, "sets", "prior", key)
        if _is_value(value):
            numbers[key] = float(value)
    rows = run.metrics()
    training = summary.get("training") or {}
    if _is_number(training.get("seconds_per_epoch")):
        numbers["seconds_per_epoch"] = float(training["seconds_per_epoch"])
    elif rows and all(_is_number(r.get("seconds")) for r in rows):
        numbers["seconds_per_epoch"] = sum(r["seconds"] for r in rows) / len(rows)
    numbers["epochs"] = float(len(rows))
    return numbers, stale


def _entry(result: Any, *keys: str) -> Any:
    """``result[k1][k2]...``, or None where a level is missing or not an object (a file another version, or a
    hand, wrote): a number it lacks, not the end of the table."""
    for key in keys:
        if not isinstance(result, dict):
            return None
        result = result.get(key)
    return result


def _is_number(value) -> bool:
    return _is_value(value) and math.isfinite(value)


def _is_value(value) -> bool:
    """A number a command wrote, NaN and infinities included (JSON's ``NaN``, ``Infinity``): a result to
    show as it is, not a missing one."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def differing(records: list[RunRecord], ignore: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The settings whose values differ between the runs that have settings (a setting one run lacks
    differs), in name order.

    :param ignore: settings never returned.
    """
    configured = [r.settings for r in records if r.settings]
    names = sorted({k for s in configured for k in s} - set(ignore))
    return tuple(n for n in names if len({json.dumps(s.get(n, _MISSING)) for s in configured}) > 1)


_MISSING = "\0missing"


def table(
    records: list[RunRecord],
    group: bool = True,
    seeds: tuple[str, ...] = SEEDS,
    numbers: tuple[str, ...] | None = None,
) -> Table:
    """The table of ``records``: the settings that differ, then the numbers any run has.

    :param records: what :func:`collect` returned.
    :param group: one row per group of finished runs that differ only in ``seeds``, with each number's mean,
        sd and n; otherwise one row per run. Runs that did not finish are rows of their own either way.
    :param seeds: the settings pooled over when grouping (default :data:`SEEDS`).
    :param numbers: the numbers shown, in this order, those some run has (default: every number of
        :data:`NUMBERS` some run has but those :data:`ON_REQUEST`).
    :raises ValueError: for a name that is no number of :data:`NUMBERS`.
    """
    unknown = [n for n in numbers or () if n not in NUMBERS]
    if unknown:
        raise ValueError(f"no number {unknown[0]!r} in a run table; the numbers: {', '.join(NUMBERS)}")
    names = differing(records)
    wanted = numbers if numbers is not None else tuple(n for n in NUMBERS if n not in ON_REQUEST)
    numbers = tuple(n for n in wanted if any(n in r.numbers for r in records))
    rows: list[Row] = []
    if group:
        shown = tuple(n for n in names if n not in seeds)
        groups: dict[str, list[RunRecord]] = {}
        for record in records:
            if record.state == "finished" and record.error is None:  # a stale result's note keeps its own row
                groups.setdefault(json.dumps([record.settings.get(n) for n in shown]), []).append(record)
        for members in groups.values():
            stats = {n: _stat([m.numbers[n] for m in members if n in m.numbers]) for n in numbers}
            rows.append(
                Row(
                    {n: members[0].settings.get(n) for n in shown},
                    {n: s for n, s in stats.items() if s is not None},
                    tuple(m.path for m in members),
                    "finished",
                )
            )
        others = [r for r in records if r.state != "finished" or r.error is not None]
    else:
        shown, others = names, records
    for record in others:
        rows.append(
            Row(
                {n: record.settings.get(n) for n in shown},
                {n: Stat(v, None, 1) for n, v in record.numbers.items() if n in numbers},
                (record.path,),
                record.state,
                record.error,
            )
        )
    rows.sort(key=lambda row: ([_order(row.settings[n]) for n in shown], STATES.index(row.state), row.runs))
    return Table(shown, numbers, tuple(rows), group, tuple(s for s in seeds if s in names) if group else ())


def _stat(values: list[float]) -> Stat | None:
    if not values:
        return None
    return Stat(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))


def _order(value) -> tuple:
    """A sort key under which numbers sort by value, before text, before a missing value."""
    if _is_number(value):
        return (0, float(value), "")
    return (1, 0.0, str(value)) if value is not None else (2, 0.0, "")


def setting_text(value) -> str:
    """A setting's value as a table shows it (the Markdown table and the HTML report's): ``—`` for none,
    ``yes``/``no``, a float in its shortest form (``%g``).

    :param value: the value, as :func:`flatten` gives it.
    """
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _number(value: float) -> str:
    if not math.isfinite(value):  # nan, inf, -inf: a result, not the missing value's dash
        return str(value)
    if value == round(value) and abs(value) < 1e6:  # counts: epochs, K, active units
        return str(int(value))
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.3f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2e}"


def cell_text(stat: Stat | None, n: int) -> str:
    """A table cell: ``mean ± sd`` (the mean alone where every run has the same value: K, epochs), with its
    own ``(n=…)`` where fewer than the row's ``n`` runs have it; ``—`` for no value, ``nan`` or ``inf`` for a
    value that is not finite. One rounding for the Markdown table and the report's."""
    if stat is None:
        return "—"
    # the same in every run (K, epochs): the value alone
    text = _number(stat.mean) if not stat.sd else f"{_number(stat.mean)} ± {_number(stat.sd)}"
    return text if stat.n == n else f"{text} (n={stat.n})"


def to_markdown(result: Table) -> str:
    """The table as Markdown: the settings, then (grouped) ``n``, the runs in the row, then each number as
    mean ± sd (with its own n where fewer runs have it); runs that did not finish say their state and error."""
    head = [*result.settings, *(["n"] if result.grouped else ["run"]), *(NUMBERS[n] for n in result.numbers)]
    failed = any(row.state != "finished" or row.error for row in result.rows)
    head += ["state"] if failed else []
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in result.rows:
        n = len(row.runs)
        cells = [setting_text(row.settings[s]) for s in result.settings]
        cells.append(str(n) if result.grouped else row.runs[0])
        cells += [cell_text(row.numbers.get(name), n) for name in result.numbers]
        if failed:
            state = row.state if row.state == "finished" or not result.grouped else f"{row.state}: {row.runs[0]}"
            cells.append(state + (f": {row.error}" if row.error else ""))
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    if result.grouped and result.seeds:
        lines.append(f"\nmean ± sd over the runs of each row (n), which differ only in {', '.join(result.seeds)}")
    return "\n".join(lines) + "\n"


def to_csv(result: Table) -> str:
    """The table as CSV: a column per setting, ``runs`` (the run paths, ``;``-separated), ``state``,
    ``error``, then ``NAME_mean``, ``NAME_sd`` and ``NAME_n`` per number (empty where there is none); settings
    as JSON values read them (``true``, empty for none)."""
    head = [*result.settings, "runs", "state", "error"]
    for name in result.numbers:
        head += [f"{name}_mean", f"{name}_sd", f"{name}_n"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(head)
    for row in result.rows:
        cells = [_csv_setting(row.settings[s]) for s in result.settings]
        cells += [";".join(row.runs), row.state, row.error or ""]
        for name in result.numbers:
            stat = row.numbers.get(name)
            sd = "" if stat is None or stat.sd is None else repr(stat.sd)
            cells += ["", "", 0] if stat is None else [repr(stat.mean), sd, stat.n]
        writer.writerow(cells)
    return buffer.getvalue()


def _csv_setting(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


@options.config
class RunsConfig:
    """Settings of ``pvae runs``.

    :param group: one row per group of runs that differ only in their seeds (train.seed, data.data_seed), with
        mean ± sd and n; --no-group gives one row per run.
    :param csv: also write the table as CSV (mean, sd and n columns) to this file.
    :param markdown: also write the Markdown table to this file.
    :param plot: draw this number (elbo, log_px, kl, active_units, mig ...) against --against, mean ± sd per group.
    :param against: the setting on the x axis of --plot (a dotted name as the table's columns, e.g. train.beta).
    :param out: folder of the --plot figure.
    """

    group: bool = True
    csv: str | None = field(default=None, metadata=options.output())
    markdown: str | None = field(default=None, metadata=options.output())
    plot: str | None = None
    against: str | None = None
    out: str | None = None

    def __post_init__(self):
        options.check_outputs(self)  # --csv and --markdown: one file each
        for name, example in (("csv", "runs.csv"), ("markdown", "runs.md")):
            value = getattr(self, name)
            if value and (value.endswith(("/", os.sep)) or Path(value).is_dir()):
                raise ValueError(
                    f"{options.flag(name)} {value} is a folder: give the name of a file to write, e.g. "
                    f"{Path(value) / example}"
                )
        if (self.plot is None) != (self.against is None):
            given, missing = ("--plot", "--against") if self.plot is not None else ("--against", "--plot")
            raise ValueError(f"{given} needs {missing}: e.g. --plot elbo --against train.beta")
        if self.plot is not None:
            near = difflib.get_close_matches(self.plot, list(NUMBERS), n=1, cutoff=0.6)
            hint = f"did you mean {near[0]}? It is " if near else "it is "
            if self.plot not in NUMBERS:
                raise ValueError(f"--plot {self.plot} is not a number pvae tables; {hint}one of {', '.join(NUMBERS)}")


def check_plot(result: Table, records: list[RunRecord], metric: str, setting: str) -> None:
    """Refuse a ``--plot METRIC --against SETTING`` the runs cannot draw, listing what they can.

    :raises ValueError: naming the metric or setting and the available ones.
    """
    if metric not in result.numbers:
        raise ValueError(f"--plot {metric}: no run has it; these runs have {', '.join(result.numbers) or 'no number'}")
    every = sorted({k for r in records for k in r.settings})
    if setting not in every:
        differ = ", ".join(result.settings) or "none"
        raise ValueError(f"--against {setting} is not a setting; the settings that differ: {differ}")
    if setting not in result.settings:
        raise ValueError(
            f"--against {setting}: every run has the same value; the settings that differ: "
            f"{', '.join(result.settings) or 'none'}"
        )
