"""``pvae report``: the page is read back from a real headless browser (Chromium), and what it shows is
checked against the run's JSON."""

import json
import shutil
import statistics
import subprocess
from html.parser import HTMLParser

import matplotlib.pyplot as plt
import pytest

from pvae.base.files import save_figure, write_json
from pvae.base.runs import REPORT, Run, RunError
from pvae.cli import main
from pvae.studies import study
from pvae.studies.report import MAX_PLOTS, ReportConfig, format_number, plots, write_report
from pvae.studies.sweep import error_record

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary (Debian: apt-get install chromium) to render the page"
)


class _Rendered(HTMLParser):
    """What a test reads from the rendered DOM: each image's load state, each number (data-key →
    (data-value, text shown), and all its attributes), the rows of a folder's table (their runs and
    state), the figures listed as unreadable, and whether the page's script ran."""

    def __init__(self):
        super().__init__()
        self.images, self.numbers, self.attributes, self.unreadable, self.ready = [], {}, {}, [], False
        self.rows = []
        self._key = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.ready = attrs.get("data-ready") == "yes"
        if tag == "img":
            self.images.append((attrs.get("alt"), attrs.get("data-loaded")))
        if tag == "tr" and "data-row" in attrs:
            self.rows.append((json.loads(attrs["data-runs"]), attrs["data-state"]))
        if "data-unreadable" in attrs:
            self.unreadable.append(attrs["data-unreadable"])
        if "data-key" in attrs:
            self._key = attrs["data-key"]
            self.attributes[self._key] = attrs
            self.numbers[self._key] = [json.loads(attrs.get("data-value", "null")), ""]

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
    model_id = Run(run).current_model_id()
    write_json(diagnostics / "diagnostics.json", {"not_applicable": {"nuts": "skipped <here>"}, "model_id": model_id})
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
    assert page.numbers["config.pair.hidden"][0] == "16"  # a list as the tables show it (study.flatten)
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
    assert len(page.images) == 3 + 3 + 3  # each run's samples.png and curves; ELBO, log p(x), KL against beta
    assert page.unreadable == ["broken.png"]
    for name, summary in summaries.items():
        check_numbers(page.numbers, summary, f"{name}:")
    assert page.numbers["beta4:config.train.beta"][0] == 4.0
    html = out.read_text()
    table = html[html.index('<table class="runs">') :].split("</table>")[0]
    assert "<th>train.beta</th>" in table and "<th>train.seed</th>" not in table  # the settings that differ
    assert "No summary.json yet" in html and "2 epochs in metrics.jsonl" in html


@needs_browser
def test_folder_page_table_is_the_study_table(tmp_path):
    """A 2-beta × 2-seed study with a failed cell and a cell still training: the page's table, read from
    Chromium, is :func:`pvae.studies.study.table`'s (rows, runs, state, each number's mean, sd and n, and these
    equal the seeds' mean and sd computed here); the failed cell is a row with its error; the figures of
    ELBO, log p(x) and KL against beta decode."""
    sweep = tmp_path / "sweep"
    elbos = {}
    for beta in (1.0, 4.0):
        for seed in (0, 1):
            elbo = -40.0 - beta - 0.75 * seed
            elbos.setdefault(beta, []).append(elbo)
            test = {"elbo": elbo, "elbo_se": 0.2, "log_px": elbo + 1.5, "kl": 3.0 / beta + seed}
            fake_run(sweep / f"beta={beta:g}" / f"seed={seed}", {"test": test}, beta=beta, seed=seed)
    failed = fake_run(sweep / "beta=8" / "seed=0", None, epochs=1, beta=8.0)
    write_json(error_record(failed), {"error": "ValueError: the loss is nan at epoch 1 <step 12>"})
    fake_run(sweep / "beta=8" / "seed=1", None, epochs=2, beta=8.0, seed=1)
    out = write_report(sweep)
    page = render(out, tmp_path)
    expected = study.table(study.collect(sweep))
    assert expected.settings == ("train.beta",) and expected.seeds == ("train.seed",)
    assert page.rows == [(list(row.runs), row.state) for row in expected.rows]
    assert [state for _, state in page.rows] == ["finished", "finished", "partial", "failed"]
    checked = 0
    for i, row in enumerate(expected.rows):
        assert page.numbers[f"table.{i}.n"][0] == len(row.runs)
        assert page.numbers[f"table.{i}.train.beta"][0] == row.settings["train.beta"]
        for name, stat in row.numbers.items():
            attributes = page.attributes[f"table.{i}.{name}"]
            assert json.loads(attributes["data-value"]) == stat.mean
            assert json.loads(attributes["data-sd"]) == stat.sd and int(attributes["data-n"]) == stat.n
            shown = page.numbers[f"table.{i}.{name}"][1].split(" ± ")
            assert float(shown[0]) == pytest.approx(stat.mean, abs=5.01e-4)
            if stat.sd:
                assert float(shown[1].split(" ")[0]) == pytest.approx(stat.sd, abs=5.01e-4)
            checked += 1
    assert expected.numbers == ("elbo", "log_px", "kl", "epochs") and checked == 2 * 4 + 1  # the partial run: epochs
    for i, beta in enumerate((1.0, 4.0)):  # the numbers themselves, not only study's
        stat = expected.rows[i].numbers["elbo"]
        assert (stat.mean, stat.sd, stat.n) == (statistics.mean(elbos[beta]), statistics.stdev(elbos[beta]), 2)
        assert page.numbers[f"table.{i}.elbo"][1] == f"{stat.mean:.3f} ± {stat.sd:.3f}"
    assert page.numbers["table.3.state"][1] == "failed: ValueError: the loss is nan at epoch 1 <step 12>"
    assert page.numbers["table.2.state"][1] == "partial"
    plotted = [alt for alt, _ in page.images if "-vs-" in alt]
    assert plotted == ["elbo-vs-train.beta.png", "log_px-vs-train.beta.png", "kl-vs-train.beta.png"]
    assert page.ready and all(loaded == "yes" for _, loaded in page.images), page.images
    html = out.read_text()
    assert _links_reach_their_sections(html, [run for runs, _ in page.rows for run in runs])
    section = html[html.index('data-run="beta=8/seed=0"') :].split("</details>")[0]
    assert "failed: ValueError: the loss is nan at epoch 1 &lt;step 12&gt;" in section
    assert "failed after 1 epoch, not evaluated" in section and "still training" not in section


def _links_reach_their_sections(html: str, runs: list[str]) -> bool:
    """Each run of the table links to the section of that run, and no two sections share an id."""
    import re

    ids = dict(re.findall(r'<details id="([^"]+)" data-run="([^"]+)"', html))
    links = re.findall(r'<td class="links">(.*?)</td>', html)
    targets = {run: target for cell in links for target, run in re.findall(r'<a href="#([^"]+)">([^<]+)</a>', cell)}
    assert len(ids) == html.count("<details id="), "two sections share an id"
    assert sorted(targets) == sorted(runs)
    return all(ids.get(target) == run for run, target in targets.items())


def _parsed(html: str) -> _Rendered:
    """The page as written (no browser): its numbers, rows and attributes."""
    parsed = _Rendered()
    parsed.feed(html)
    return parsed


def test_failed_cell_without_its_folder(tmp_path, capsys):
    """A sweep's cell that failed before its run directory existed, and one that failed before its
    config.json was written: the folder's page is written (exit 0), their rows and sections show the state
    and the error; ``pvae report CELL`` of the second shows the same."""
    sweep = tmp_path / "sweep"
    fake_run(sweep / "beta=1", {"test": {"elbo": -40.0}}, beta=1.0)
    write_json(error_record(sweep / "beta=2"), {"error": "ValueError: --beta-2 <bad>"})  # no folder at all
    (sweep / "beta=4").mkdir()
    write_json(error_record(sweep / "beta=4"), {"error": "MemoryError: out of memory"})
    assert main(["report", str(sweep)]) == 0
    assert capsys.readouterr().err == ""
    html = (sweep / REPORT).read_text()
    page = _parsed(html)
    assert page.rows == [(["beta=1"], "finished"), (["beta=2"], "failed"), (["beta=4"], "failed")]
    assert page.numbers["table.1.state"][1] == "failed: ValueError: --beta-2 <bad>"
    assert page.numbers["table.2.state"][1] == "failed: MemoryError: out of memory"
    section = html[html.index('data-run="beta=2"') :].split("</details>")[0]
    assert "failed before its run directory was written" in section
    assert "failed: ValueError: --beta-2 &lt;bad&gt;" in section and "<h2>" not in section  # state and error only
    section = html[html.index('data-run="beta=4"') :].split("</details>")[0]
    assert "failed before config.json was written" in section and "MemoryError: out of memory" in section
    assert main(["report", str(sweep / "beta=4")]) == 0
    assert "failed: MemoryError: out of memory" in (sweep / "beta=4" / REPORT).read_text()


def test_folder_table_rounds_as_the_markdown_table(tmp_path):
    """The page's table shows each cell as ``pvae runs`` prints it (1 decimal from 100 in size, small
    numbers in e-notation), while a run's own numbers keep 3 decimals."""
    sweep = tmp_path / "sweep"
    for seed, elbo in ((0, -140.125), (1, -141.5)):
        fake_run(sweep / f"seed={seed}", {"test": {"elbo": elbo, "kl": 0.0012 * (seed + 1)}}, seed=seed)
    html = write_report(sweep).read_text()
    page = _parsed(html)
    assert page.numbers["table.0.elbo"][1] == "-140.8 ± 0.972"
    assert page.numbers["table.0.kl"][1] == "1.80e-03 ± 8.49e-04"
    markdown = study.to_markdown(study.table(study.collect(sweep)))
    row = [c.strip() for c in markdown.splitlines()[2].strip("|").split("|")]
    head = [c.strip() for c in markdown.splitlines()[0].strip("|").split("|")]
    assert row[head.index("ELBO")] == page.numbers["table.0.elbo"][1]
    assert row[head.index("KL")] == page.numbers["table.0.kl"][1]
    assert page.numbers["seed=0:test.elbo"][1] == "-140.125"  # a run's own number: 3 decimals


def test_section_ids_are_unique(tmp_path):
    """Runs whose names differ only in characters an id cannot hold (``beta=1.5``, ``beta=1-5``) get
    sections of their own, each the target of its own link."""
    sweep = tmp_path / "sweep"
    fake_run(sweep / "beta=1.5", {"test": {"elbo": -40.0}}, beta=1.5)
    fake_run(sweep / "beta=1-5", {"test": {"elbo": -41.0}}, beta=2.5)
    html = write_report(sweep).read_text()
    assert _links_reach_their_sections(html, ["beta=1-5", "beta=1.5"])


def test_folder_figures_are_chosen_and_bounded():
    """Numeric settings that differ, most values first, share the figures; the numbers come in
    :data:`pvae.studies.report.PLOTTED`'s order (the first disentanglement score the runs have); the rest are left
    out."""
    numbers = ("elbo", "log_px", "kl", "mig", "dci")
    rows = tuple(
        study.Row(
            {"pair.name": name, "pair.z_dim": z, "train.beta": beta},
            {n: study.Stat(1.0, None, 1) for n in numbers},
            (f"{name}-{z}-{beta}",),
            "finished",
        )
        for name in ("vae", "iwae")
        for z in (2, 10)
        for beta in (1.0, 2.0, 4.0)
    )
    result = study.Table(("pair.name", "pair.z_dim", "train.beta"), numbers, rows, True)
    drawn, left = plots(result)
    assert len(drawn) == MAX_PLOTS
    assert drawn == [
        ("elbo", "train.beta"), ("mig", "train.beta"), ("log_px", "train.beta"),
        ("elbo", "pair.z_dim"), ("mig", "pair.z_dim"), ("log_px", "pair.z_dim"),
    ]  # fmt: skip
    assert left == [("kl", "train.beta"), ("kl", "pair.z_dim")]
    one = study.Table(("train.beta",), ("elbo", "kl"), tuple(r for r in rows if r.settings["pair.z_dim"] == 2), True)
    assert plots(one) == ([("elbo", "train.beta"), ("kl", "train.beta")], [])
    assert plots(study.Table(("pair.name",), numbers, rows, True)) == ([], [])  # no numeric setting


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


def _embedded(html: str) -> dict:
    """Each embedded figure of a page: its alt (the file's name) → (width, height) decoded by Pillow."""
    import base64
    import io
    import re

    from PIL import Image

    sizes = {}
    for data, alt in re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]+)"', html):
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            image.load()
            sizes[alt] = image.size
    return sizes


def test_folder_page_reduces_figures_run_page_keeps_them(tmp_path):
    """A folder's page embeds each run's figures at most :data:`pvae.studies.report.REDUCED` px on their long side
    (keeping their shape), says so, and embeds each only once; a run's own page embeds them at full size."""
    from PIL import Image

    from pvae.studies.report import REDUCED

    runs = [fake_run(tmp_path / "sweep" / f"beta{b}", {"test": {"elbo": -40.0 - b}}, beta=b) for b in (1, 2)]
    big = runs[0] / "disentanglement" / "figures" / "big.png"
    fig, ax = plt.subplots(figsize=(12, 6))
    ax.imshow([[0, 1], [1, 0]])
    save_figure(fig, big, dpi=150)  # 1800 × 900
    with Image.open(big) as image:
        full = image.size
    assert full == (1800, 900)
    folder = write_report(tmp_path / "sweep").read_text()
    sizes = _embedded(folder)
    assert sizes["big.png"] == (REDUCED, REDUCED // 2)
    assert "reduced from 1800×900 px" in folder and "pvae report RUN" in folder
    assert all(max(size) <= REDUCED for size in sizes.values()), sizes
    with Image.open(runs[0] / "figures" / "samples.png") as image:
        small = image.size
    assert max(small) <= REDUCED and sizes["samples.png"] == small  # within the bound: as it is
    images = folder.count("<img ")  # samples and curves of each run, big.png, ELBO against beta
    assert images == 2 + 2 + 1 + 1 and folder.count("base64,") == images  # each figure's bytes once
    own = _embedded(write_report(runs[0]).read_text())
    assert own["big.png"] == full and own["samples.png"] == small


def test_results_of_an_earlier_model_of_the_run_are_named_and_not_shown(tmp_path):
    run = tmp_path / "run"
    args = ["--data", "digits", "--hidden", "16", "--z-dim", "2", "--samples", "5", "--no-progress", "--out", str(run)]
    assert main(["train", *args, "--epochs", "1"]) == 0
    first = Run(run).current_model_id()
    assert json.loads((run / "summary.json").read_text())["test"]["model_id"] == first
    write_json(run / "diagnostics" / "diagnostics.json", {"model_id": first, "importance": {"k_hat_mean": 0.123456}})
    _figure(run / "diagnostics" / "figures" / "khat.png", "k")
    assert main(["report", str(run)]) == 0
    assert "0.123456" in (run / REPORT).read_text()
    assert main(["train", *args, "--epochs", "2", "--resume"]) == 0  # trained further: another model
    assert Run(run).current_model_id() != first
    assert main(["report", str(run)]) == 0
    page = (run / REPORT).read_text()
    assert "0.123456" not in page and "khat.png" not in page
    assert "diagnostics/: measured an earlier model of this run (it was trained since), so not shown" in page


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` × ``height`` pixels and holds none: what a 20000×20000 figure looks like to
    a reader of its header, in 57 bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_what_a_page_meets_in_a_run_is_said_on_it_not_a_traceback(tmp_path, capsys):
    """A summary entry that is not an object: the run is an unreadable row naming the file, in `pvae runs` and on
    the page, and the other run is shown. A figure too large to decode, one that is no image: said as such (not
    Pillow's name of its buffer). An empty summary.json: said so, not "no summary.json yet". Curves matplotlib
    cannot draw: said on the page, with its warnings, which never reach the terminal."""
    import warnings

    folder = tmp_path / "runs"
    fake_run(folder / "good", {"test": {"elbo": -40.0}})
    bad = fake_run(folder / "bad", None, beta=2.0)
    (bad / "summary.json").write_text('{"test": "oops"}')
    (bad / "figures" / "huge.png").write_bytes(_png_header(20000, 20000))
    (bad / "figures" / "text.png").write_text("not an image at all")

    assert main(["runs", str(folder)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "unreadable" in line)
    assert "unreadable: bad: " in row and "bad/summary.json" in row and "'test' is \"oops\"" in row
    assert any("| -40 |" in line and "finished" in line for line in out.splitlines())  # the other run, shown

    with warnings.catch_warnings(record=True) as printed:
        warnings.simplefilter("always")
        assert main(["report", str(folder)]) == 0
    assert not printed and "Warning" not in capsys.readouterr().err
    html = (folder / REPORT).read_text()
    page = _parsed(html)
    assert (["bad"], "unreadable") in page.rows and (["good"], "finished") in page.rows
    assert "summary.json is not a summary pvae wrote: its entry &#x27;test&#x27; is &quot;oops&quot;" in html
    assert sorted(page.unreadable) == ["huge.png", "text.png"]
    assert "huge.png: unreadable (too large to show (20000×20000 px, 400 million pixels" in html
    assert "text.png: unreadable (not an image: no format Pillow reads)" in html and "BytesIO" not in html

    empty = fake_run(tmp_path / "empty", {})
    html = write_report(empty).read_text()
    assert "its summary.json is empty ({}): no numbers recorded" in html and "No summary.json yet" not in html

    # numbers matplotlib cannot scale: the curves are said not to draw, with matplotlib's warnings, on the page
    wild = fake_run(tmp_path / "wild", {"test": {"elbo": -1.0}})
    rows = [{"epoch": 1, "train_loss": 1e308}, {"epoch": 2, "train_loss": -1e308}]
    (wild / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with warnings.catch_warnings(record=True) as printed:
        warnings.simplefilter("always")
        html = write_report(wild).read_text()
    assert not printed
    assert "metrics.jsonl cannot be drawn" in html and "Drawing warned: overflow" in html


def test_a_temporary_a_killed_report_left_is_removed_by_the_next(tmp_path):
    """kill -9 while the page was written leaves ``.report.html.XXXXXXXX.tmp``: the next report deletes it once it
    is old enough not to be another report's write in progress, and no other file (another name's temporary, a
    fresh one, the user's)."""
    import os
    import time

    run = fake_run(tmp_path / "run", {"test": {"elbo": -1.0}})
    old = time.time() - 3600
    names = [".report.html.a1b2c3d4.tmp", ".report.html.fresh123.tmp", ".notes.html.a1b2c3d4.tmp",
             ".report.html.bak.a1b2c3d4.tmp", "report.html.a1b2c3d4.tmp"]  # fmt: skip
    for name in names:
        (run / name).write_text("half a page")
        if "fresh" not in name:
            os.utime(run / name, (old, old))
    write_report(run)
    assert sorted(p.name for p in run.glob("*.tmp")) == sorted(names[1:])
    out = tmp_path / "pages" / "mine.html"
    out.parent.mkdir()
    (out.parent / ".mine.html.zz99yy88.tmp").write_text("half")
    os.utime(out.parent / ".mine.html.zz99yy88.tmp", (old, old))
    write_report(run, ReportConfig(out=str(out)))
    assert sorted(p.name for p in out.parent.iterdir()) == ["mine.html"]


def test_out_names_an_html_file_and_a_folder_gets_one_in_it(tmp_path):
    for given, example in [
        (f"{tmp_path}/", f"{tmp_path}/report.html"),
        (str(tmp_path), f"{tmp_path}/report.html"),
        ("page.png", "page.html"),
        ("notes", "notes.html"),
    ]:
        with pytest.raises(ValueError) as refused:
            ReportConfig(out=given)
        assert str(refused.value).endswith(f"give the name of an HTML file to write, e.g. {example}")
    assert ReportConfig(out="Page.HTML").out == "Page.HTML"  # the suffix in any case


def test_a_comparison_is_shown_from_its_results_json(tmp_path):
    """``pvae compare-elbos``'s tables come from its ``results.json`` (``results.md`` is for people and not read):
    each bound, its ordering and the notes; a ``results.json`` of another kind shows its flat numbers."""
    from pvae.measures.compare import ordering

    run = fake_run(tmp_path / "run", {"test": {"elbo": -30.0}})
    estimators = [("trace", 1, -30.123), ("iwae", 5, -29.75)]
    fields = [
        {"estimator": n, "particles": k, "alpha": None, "jit": False, "setting": n, "label": f"{n} K={k}"}
        for n, k, _ in estimators
    ]
    means = [m for _, _, m in estimators]
    values = [{**f, "mean": m, "se": 0.01, "sd": 0.05, "repeats": 4} for f, m in zip(fields, means, strict=True)]
    snr = {"snr_mean": 0.5, "snr_median": 0.4, "variance": 2e-3, "mean_norm": 1.0, "parameters": 10, "repeats": 3}
    settings = {"points": 20, "repeats": 4, "grad_points": 8, "grad_repeats": 3, "cost_batch": 16, "cost_steps": 2}
    results = {
        "settings": settings,
        "values": values,
        "exact_log_px": None,
        "ordering": ordering(values),
        "gradients": [{**f, "encoder": snr, "decoder": snr} for f in fields],
        "cost": [{**f, "seconds": 0.0021, "peak_mib": 1.5} for f in fields],
        "training": [],
        "notes": ["graph is left out: it cannot run on this pair (why)"],
    }
    write_json(run / "elbos" / "results.json", results)
    write_json(run / "other" / "results.json", {"rows": [], "score": 0.625})
    page = write_report(run).read_text()
    assert '<h2>ELBO estimators (pvae compare-elbos) <span class="where">elbos/</span></h2>' in page
    assert "<h4>Bounds at fixed parameters (20 test points, 4 estimates each)</h4>" in page
    assert "<thead><tr><th>estimator</th><th>K=1</th><th>K=5</th></tr></thead>" in page
    assert "<tr><td>trace</td><td>-30.123 ± 0.010 (sd 0.050)</td><td></td></tr>" in page
    assert "<tr><td>iwae</td><td></td><td>0.500 / 0.50</td></tr>" in page
    assert "<td>2.1 ms · 1.5 MiB</td>" in page
    ordered = "Ordering ELBO ≤ IWAE-K ≤ log p(x) holds: ELBO (trace K=1) -30.123 ≤ IWAE-5 (iwae K=5) -29.750."
    assert f"<p>{ordered}</p>" in page
    assert "<p>Note: graph is left out: it cannot run on this pair (why).</p>" in page
    assert "results.json, its numbers:" in page and 'data-key="score" data-value="0.625"' in page
