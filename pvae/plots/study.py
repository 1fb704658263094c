"""Figures of a study (:mod:`pvae.studies.study`, ``pvae runs --plot``): one number against one setting over many
runs."""

import textwrap
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

if TYPE_CHECKING:  # only for annotations: figures take the table's data, and studies draw them
    from pvae.studies.study import Table


def plot_against(result: "Table", metric: str, setting: str) -> Figure:
    """``metric`` against ``setting``: each row's mean with ± sd error bars (none for a single run), one line
    per combination of the table's other settings. Only finished rows are drawn.

    :param result: a grouped :func:`pvae.studies.study.table` (an ungrouped one draws each run).
    :param metric: a number of the table (a key of :data:`pvae.studies.study.NUMBERS`).
    :param setting: a setting of the table, the x axis: at its values where they are all numbers, else at
        evenly spaced positions labelled with them.
    :raises ValueError: for a metric or setting the table does not have.
    """
    if metric not in result.numbers or setting not in result.settings:
        raise ValueError(f"the table has no number {metric!r} or no setting {setting!r}")
    rows = [r for r in result.rows if r.state == "finished" and metric in r.numbers]
    values = list(dict.fromkeys(r.settings[setting] for r in sorted(rows, key=lambda r: _key(r.settings[setting]))))
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    position = {v: (float(v) if numeric else float(i)) for i, v in enumerate(values)}
    others = [s for s in result.settings if s != setting]
    lines: dict[str, list] = {}
    for row in rows:
        label = ", ".join(f"{s}={row.settings[s]}" for s in others) or metric
        lines.setdefault(label, []).append(row)
    # the legend goes below the axes, one line per combination: the figure grows with it, so that
    # many or long labels never squeeze the axes to nothing
    legend_lines = sum(len(textwrap.wrap(label, 70)) for label in lines) if len(lines) > 1 else 0
    fig, ax = plt.subplots(figsize=(6.4, 4.2 + 0.2 * legend_lines), layout="constrained")
    for label, members in lines.items():
        members.sort(key=lambda r: position[r.settings[setting]])
        stats = [r.numbers[metric] for r in members]
        ax.errorbar(
            [position[r.settings[setting]] for r in members],
            [s.mean for s in stats],
            yerr=[0.0 if s.sd is None else s.sd for s in stats],
            marker="o",
            capsize=3,
            label="\n".join(textwrap.wrap(label, 70)),
        )
    if not numeric:
        ax.set_xticks(list(position.values()), [textwrap.shorten(str(v), 24) for v in values])
        if len(values) > 4:
            ax.tick_params(axis="x", labelrotation=30)
    ax.set_xlabel(setting)
    ax.set_ylabel(result.title(metric))
    counts = sorted({len(r.runs) for r in rows})
    n = f"n = {counts[0]}" if len(counts) == 1 else f"n = {counts[0]}–{counts[-1]}"
    ax.set_title("\n".join(textwrap.wrap(f"{result.title(metric)} against {setting} (mean ± sd over seeds, {n})", 60)))
    ax.grid(alpha=0.3)
    if len(lines) > 1:
        fig.legend(fontsize="small", loc="outside lower center")
    return fig


def _key(value) -> tuple:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))
