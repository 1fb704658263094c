"""The HTML every page is made of: the page itself (its style and script), escaping, numbers as the page
shows them, and tables of numbers and settings."""

import html
import json
import math
from typing import Any

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


def numbers_table(numbers: dict, key: str) -> str:
    """A summary entry (an evaluation, the training's numbers) as rows of name, value ± standard error.

    :param numbers: name → value; ``NAME_se`` is shown beside ``NAME``.
    :param key: what starts every ``data-key``.
    """
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
            cell = f"<td>{esc(_text(value))}</td>"
        rows.append(f"<tr><th>{esc(label)}</th>{cell}</tr>")
    return f'<table class="numbers">{"".join(rows)}</table>'


def _number_cell(key: str, value: Any, se: Any = None) -> str:
    """A table cell of a number; ``data-value`` holds the JSON's value in full, the text a rounding."""
    if value is None:
        return "<td>—</td>"
    text = f'<span data-key="{esc(key)}" data-value="{esc(json.dumps(value))}">{esc(format_number(value))}</span>'
    if isinstance(se, (int, float)):
        text += f' ± <span data-key="{esc(key)}_se" data-value="{esc(json.dumps(se))}">{esc(format_number(se))}</span>'
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


def settings_table(flat: dict, key: str) -> str:
    """Settings as rows of name and value, each value's ``data-key`` the name after ``key``.

    :param flat: name → value (:func:`pvae.studies.study.flatten`).
    :param key: what starts every ``data-key``.
    """
    rows = "".join(
        f'<tr><th>{esc(k)}</th><td data-key="{esc(key + k)}" data-value="{esc(json.dumps(v))}">'
        f"{esc(_text(v))}</td></tr>"
        for k, v in flat.items()
    )
    return f'<table class="settings">{rows}</table>'


def _text(value: Any) -> str:
    if isinstance(value, float):
        return format_number(value)
    return "—" if value is None else str(value)


def warning_note(lines: list[str]) -> str:
    """What drawing warned, as a line of the page ('' for no warning).

    :param lines: the warnings.
    """
    if not lines:
        return ""
    return f'<p class="status">Drawing warned: {esc("; ".join(lines))}</p>'


def esc(value: Any) -> str:
    """The text of ``value`` escaped for HTML, quotes included.

    :param value: anything ``str`` takes.
    """
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


def page(title: str, body: str) -> str:
    """A whole HTML page: its title, the style and script every page carries, and ``body``.

    :param title: the page's title.
    :param body: its HTML.
    """
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>'
        f"<body>{body}<script>{_SCRIPT}</script></body></html>\n"
    )
