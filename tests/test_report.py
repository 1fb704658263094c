"""``pvae report``: the page is read back from a real headless browser (Chromium), and what it shows is
checked against the run's JSON."""

import json
import shutil
import subprocess
from html.parser import HTMLParser

import matplotlib.pyplot as plt
import pytest

from pvae.cli import main
from pvae.files import save_figure, write_json
from pvae.report import REPORT, ReportConfig, format_number, write_report
from pvae.runs import RunError

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary (Debian: apt-get install chromium) to render the page"
)


class _Rendered(HTMLParser):
    """What a test reads from the rendered DOM: each image's load state, each number (data-key →
    (data-value, text shown)), the figures listed as unreadable, and whether the page's script ran."""

    def __init__(self):
        super().__init__()
        self.images, self.numbers, self.unreadable, self.ready = [], {}, [], False
        self._key = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.ready = attrs.get("data-ready") == "yes"
        if tag == "img":
            self.images.append((attrs.get("alt"), attrs.get("data-loaded")))
        if "data-unreadable" in attrs:
            self.unreadable.append(attrs["data-unreadable"])
        if "data-key" in attrs:
            self._key = attrs["data-key"]
            self.numbers[self._key] = [json.loads(attrs["data-value"]), ""]

    def handle_data(self, data):
        if self._key is not None:
            self.numbers[self._key][1] += data

    def handle_endtag(self, tag):
        if tag in ("span", "td"):
            self._key = None


def render(path, tmp_path) -> _Rendered:
    """The DOM of the page at ``path`` after Chromium loaded it (and its script ran)."""
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            path.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # (Chromium reserves far more address space than it uses: a `ulimit -v` of a few GB stops it at start)
    assert dom.returncode == 0, f"chromium exited with {dom.returncode}: {dom.stderr[-800:]}"
    parsed = _Rendered()
    parsed.feed(dom.stdout)
    return parsed


def check_numbers(numbers: dict, summary: dict, prefix: str = "") -> int:
    """Every number of ``summary`` is on the page with its JSON value, shown as that value rounded."""
    checked = 0
    for split, entries in summary.items():
        for name, value in entries.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                key = f"{prefix}{split}.{name}"
                assert key in numbers, f"{key} is not on the page"
                shown_value, text = numbers[key]
                assert shown_value == value
                assert text == format_number(value)
                assert float(text) == pytest.approx(value, rel=5e-3, abs=5.01e-4)  # half the last digit shown
                checked += 1
    return checked


def _figure(path, title):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    ax.set_title(title)
    save_figure(fig, path, dpi=40)


def fake_run(path, summary: dict | None, epochs: int = 3, beta: float = 1.0, seed: int = 0):
    """A run directory as ``pvae train`` leaves it (config, metrics, summary, figures), with made-up numbers."""
    path.mkdir(parents=True)
    write_json(path / "config.json", {"data": {"data": "digits"}, "train": {"beta": beta, "seed": seed}})
    rows = [
        {"epoch": e, "train_loss": 50.0 - e, "val_elbo": -51.0 + e, "val_objective": -51.0 + e}
        for e in range(1, epochs + 1)
    ]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if summary is not None:
        write_json(path / "summary.json", summary)
    _figure(path / "figures" / "samples.png", "samples")
    return path


def test_trained_run_page_in_browser(tmp_path):
    """A real run, evaluated and plotted by ``pvae train``: every figure decodes in Chromium, every
    number of summary.json is shown as the JSON has it, and the settings are those of config.json."""
    run = tmp_path / "run"
    args = ["--data", "digits", "--epochs", "2", "--hidden", "16", "--z-dim", "2", "--samples", "5"]
    assert main(["train", *args, "--no-progress", "--out", str(run)]) == 0
    diagnostics = run / "diagnostics"  # as `pvae diagnose` writes it, with made-up numbers
    write_json(diagnostics / "diagnostics.json", {"not_applicable": {"nuts": "skipped <here>"}})
    _figure(diagnostics / "figures" / "khat.png", "k")
    assert main(["report", str(run)]) == 0
    assert (run / REPORT).is_file()
    if CHROMIUM is None:
        pytest.skip("no chromium binary (Debian: apt-get install chromium) to render the page")
    page = render(run / REPORT, tmp_path)
    assert page.ready
    figures = sorted(p.name for p in (run / "figures").glob("*.png") if p.name != "curves.png")
    assert sorted(alt for alt, _ in page.images) == sorted([*figures, "khat.png", "curves (from metrics.jsonl)"])
    assert all(loaded == "yes" for _, loaded in page.images), page.images
    summary = json.loads((run / "summary.json").read_text())
    assert check_numbers(page.numbers, summary) >= 12
    assert page.numbers["config.train.epochs"][0] == 2
    assert page.numbers["config.pair.hidden"][0] == [16]
    text = (run / REPORT).read_text()
    assert "skipped &lt;here&gt;" in text  # escaped, as every text the page shows


@needs_browser
def test_folder_page_and_broken_inputs(tmp_path):
    """A folder of runs: the table shows each run's test numbers and the settings that differ; a run
    still training says so; an unreadable figure is listed, not a crash."""
    test = {"elbo": -40.5, "elbo_se": 0.25, "kl": 5.125, "log_px": -39.0, "log_px_se": 0.0625}
    summaries = {}
    for beta in (1.0, 4.0):
        summaries[f"beta{beta:g}"] = {"test": {**test, "elbo": test["elbo"] - beta}}
        fake_run(tmp_path / "sweep" / f"beta{beta:g}", summaries[f"beta{beta:g}"], beta=beta)
    fake_run(tmp_path / "sweep" / "training", None, epochs=2, beta=8.0)
    broken = tmp_path / "sweep" / "beta1" / "figures" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = write_report(tmp_path / "sweep")
    assert out == tmp_path / "sweep" / REPORT
    page = render(out, tmp_path)
    assert page.ready and all(loaded == "yes" for _, loaded in page.images)
    assert len(page.images) == 3 + 3  # each run's samples.png and curves
    assert page.unreadable == ["broken.png"]
    for name, summary in summaries.items():
        check_numbers(page.numbers, summary, f"{name}:")
    assert page.numbers["beta4:config.train.beta"][0] == 4.0
    html = out.read_text()
    table = html[html.index('<table class="runs">') :].split("</table>")[0]
    assert "<th>train.beta</th>" in table and "<th>train.seed</th>" not in table  # the settings that differ
    assert "No summary.json yet" in html and "2 epochs in metrics.jsonl" in html


def test_bad_paths(tmp_path, capsys):
    """A path that does not exist, a file, a folder without runs: one line each, status 2."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    for path, words in [
        (tmp_path / "missing", "does not exist"),
        (tmp_path / "file.txt", "is a file"),
        (tmp_path / "empty", "is not a run and holds none"),
    ]:
        assert main(["report", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("pvae report: error: ") and words in err and "\n" not in err
    with pytest.raises(ValueError, match="HTML file"):
        ReportConfig(out="page.png")
    run = fake_run(tmp_path / "run", {"test": {"elbo": -1.0}})
    (run / "summary.json").write_text("{")  # a half-written summary: said on the page, not a crash
    assert "is not a readable summary" in write_report(run).read_text()
    (run / "x.html").mkdir()
    with pytest.raises(RunError, match="is a folder"):
        write_report(run, ReportConfig(out=str(run / "x.html")))


def test_format_number():
    assert [format_number(v) for v in (3, -42.8212, 0.0012345, 0.0, float("nan"))] == [
        "3",
        "-42.821",
        "0.00123",
        "0.000",
        "nan",
    ]
