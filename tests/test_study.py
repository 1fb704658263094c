"""Run tables (``pvae runs``): the numbers in a table are the JSON's, pooled over seeds as statistics pools them."""

import csv
import io
import json
import random
import shutil
import statistics

import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer

from pvae.base.failures import error_record
from pvae.base.files import write_json
from pvae.base.runs import Run
from pvae.cli import main
from pvae.plots.study import plot_against
from pvae.studies.study import collect, read_run, table, to_csv, to_markdown
from tests.conftest import derived_seed

BETAS = (1.0, 4.0)
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run trained by ``pvae train``: the files every table reads, as their writers wrote them."""
    out = tmp_path_factory.mktemp("trained") / "run"
    argv = ["train", "--data", "digits", "--epochs", "1", "--hidden", "16", "--z-dim", "2", "--samples", "5"]
    assert main([*argv, "--no-progress", "--out", str(out)]) == 0
    return out


def _study(trained, root, rng):
    """A sweep of 2 betas × 3 seeds made of copies of ``trained`` with known numbers: ELBO and KL drawn, MIG
    only in seeds 0 and 1, quality only for beta 4. Returns cell → its numbers."""
    truth = {}
    for beta in BETAS:
        for seed in SEEDS:
            cell = root / f"beta={beta:g}" / f"seed={seed}"
            shutil.copytree(trained, cell, ignore=shutil.ignore_patterns("checkpoint.pt", "figures"))
            run = Run(cell)
            config = run.config
            config["train"].update(beta=beta, seed=seed)
            run.write_config(config)
            test = run.summary()["test"]
            test.update(elbo=rng.uniform(-100, -80), kl=rng.uniform(1, 10))
            run.update_summary(test=test)
            numbers = {"elbo": test["elbo"], "kl": test["kl"], "log_px": test["log_px"]}
            if seed < 2:
                mig = rng.uniform(0, 1)
                numbers["mig"], numbers["active_units"] = mig, seed + 1
                metrics = {"mig": {"all factors": {"discrete_mig": mig, "continuous_mig": 0.5}}}
                scores = {"metrics": metrics, "latent": {"active": list(range(seed + 1))}}
                write_json(cell / "disentanglement" / "disentanglement.json", scores)
            if beta == 4.0:
                numbers["fd"] = rng.uniform(1, 50)
                sets = {"prior": {"fd": numbers["fd"], "precision": 0.5}, "reconstructions": {"fd": 0.1}}
                write_json(cell / "quality" / "quality.json", {"sets": sets, "reference": {"fd": 0.0}})
            truth[cell] = numbers
    return truth


@pytest.fixture
def study(trained, tmp_path):
    return tmp_path / "study", _study(trained, tmp_path / "study", random.Random(derived_seed(0)))


def test_a_run_reads_as_its_files_say(trained):
    record = read_run(trained)
    summary = json.loads((trained / "summary.json").read_text())
    test = summary["test"]
    assert record.state == "finished"
    assert record.numbers["elbo"] == test["elbo"] and record.numbers["log_px"] == test["log_px"]
    assert record.numbers["K"] == 5 and record.numbers["kl"] == test["kl"]
    assert record.numbers["reconstruction"] == test["reconstruction"]
    assert record.numbers["seconds_per_epoch"] == summary["training"]["seconds_per_epoch"]
    assert record.numbers["epochs"] == 1
    assert record.settings["pair.hidden"] == "16" and record.settings["train.beta"] == 1.0
    assert "data.data_dir" not in record.settings  # where the data lie is no setting of the run


def test_grouped_table_is_mean_sd_n_over_seeds(study):
    root, truth = study
    result = table(collect(root))
    assert result.settings == ("train.beta",)  # only what differs, seeds pooled
    assert result.seeds == ("train.seed",)
    assert [row.settings["train.beta"] for row in result.rows] == list(BETAS)
    for row, beta in zip(result.rows, BETAS, strict=True):
        cells = [truth[root / f"beta={beta:g}" / f"seed={s}"] for s in SEEDS]
        assert len(row.runs) == 3
        for name in ("elbo", "kl", "log_px", "mig", "active_units", "fd"):
            values = [c[name] for c in cells if name in c]
            if not values:
                assert name not in row.numbers
                continue
            stat = row.numbers[name]
            assert stat.n == len(values)
            assert stat.mean == pytest.approx(statistics.mean(values), rel=1e-12)
            assert stat.sd == pytest.approx(statistics.stdev(values), rel=1e-12)
    assert result.rows[0].numbers["mig"].n == 2 and "fd" not in result.rows[0].numbers


def test_ungrouped_table_has_a_row_per_run(study):
    root, truth = study
    result = table(collect(root), group=False)
    assert result.settings == ("train.beta", "train.seed")
    assert len(result.rows) == 6
    for row in result.rows:
        (path,) = row.runs
        assert row.numbers["elbo"].mean == truth[root / path]["elbo"] and row.numbers["elbo"].sd is None


def test_csv_reads_back_the_same_numbers(study):
    root, _ = study
    result = table(collect(root))
    rows = list(csv.DictReader(io.StringIO(to_csv(result))))
    assert len(rows) == len(result.rows)
    for parsed, row in zip(rows, result.rows, strict=True):
        assert float(parsed["train.beta"]) == row.settings["train.beta"]
        assert parsed["runs"].split(";") == list(row.runs)
        for name, stat in row.numbers.items():
            assert float(parsed[f"{name}_mean"]) == stat.mean and float(parsed[f"{name}_sd"]) == stat.sd
            assert int(parsed[f"{name}_n"]) == stat.n
        if "fd" not in row.numbers:
            assert (parsed["fd_mean"], parsed["fd_sd"], parsed["fd_n"]) == ("", "", "0")


def test_markdown_shows_mean_sd_and_the_count(study):
    root, truth = study
    text = to_markdown(table(collect(root)))
    head, _, first, second, *_ = text.splitlines()
    assert head.startswith("| train.beta | n | ELBO | log p(x) | K | KL |")
    elbo = [truth[root / "beta=1" / f"seed={s}"]["elbo"] for s in SEEDS]
    assert f"| 1 | 3 | {statistics.mean(elbo):.3f} ± {statistics.stdev(elbo):.3f} |" in first
    assert "(n=2)" in first and "(n=2)" in second  # MIG of 2 seeds out of 3
    assert "differ only in train.seed" in text


def test_failed_and_unreadable_runs_are_rows_and_the_rest_go_on(study):
    root, truth = study
    write_json(error_record(root / "beta=4" / "seed=9"), {"error": "ValueError: --lr must be positive"})
    # a cell can fail before its run directory exists: the sweep's record alone makes it a row
    write_json(error_record(root / "beta=4" / "seed=10"), {"error": "DataError: no such dataset"})
    (root / "beta=1" / "seed=2" / "summary.json").write_text("{not json")
    (root / "beta=4" / "seed=2" / "summary.json").unlink()  # trained, never evaluated
    result = table(collect(root))
    states = {row.runs[0]: (row.state, row.error) for row in result.rows if row.state != "finished"}
    assert states["beta=4/seed=2"] == ("partial", None)
    (partial,) = [row for row in result.rows if row.state == "partial"]
    assert partial.numbers["epochs"].mean == 1 and "elbo" not in partial.numbers
    assert states["beta=4/seed=9"] == ("failed", "ValueError: --lr must be positive")
    assert states["beta=4/seed=10"] == ("failed", "DataError: no such dataset")
    assert states["beta=1/seed=2"][0] == "unreadable" and "summary.json" in states["beta=1/seed=2"][1]
    assert [len(row.runs) for row in result.rows if row.state == "finished"] == [2, 2]  # the seeds that finished
    assert "failed: beta=4/seed=9: ValueError: --lr must be positive" in to_markdown(result)
    # JSON that is not an object is damaged too, not a crash
    (root / "beta=1" / "seed=2" / "summary.json").write_text("[1, 2]")
    assert read_run(root / "beta=1" / "seed=2", root).state == "unreadable"
    # and so is a summary entry that is not an object: the file and the entry named
    (root / "beta=1" / "seed=2" / "summary.json").write_text('{"test": "oops"}')
    record = read_run(root / "beta=1" / "seed=2", root)
    assert record.state == "unreadable" and "summary.json is not a summary pvae wrote: its entry 'test'" in record.error
    # a result file whose parts are not objects leaves its numbers out, not the run
    cell = root / "beta=4" / "seed=1"
    model = {"model_id": Run(cell).current_model_id()}  # results of the model the run holds: read, not stale
    write_json(cell / "diagnostics" / "diagnostics.json", {**model, "latent": "oops"})
    write_json(cell / "quality" / "quality.json", {**model, "sets": ["prior"]})
    write_json(cell / "disentanglement" / "disentanglement.json", {**model, "metrics": {"mig": 3}})
    record = read_run(cell, root)
    assert record.state == "finished" and record.error is None and "elbo" in record.numbers
    assert not {"mig", "active_units", "fd"} & set(record.numbers)


def test_a_number_that_is_not_finite_is_shown_as_such_and_kept_out_of_the_means(study, capsys):
    """A run whose test ELBO is NaN: its row shows nan (not the dash of a missing number) and says why its state
    is not "finished"; its group's mean is over the runs whose numbers are finite; the CSV holds nan."""
    root, truth = study
    run = Run(root / "beta=1" / "seed=2")
    test = run.summary()["test"]
    test.update(elbo=float("nan"), log_px=float("-inf"))
    run.update_summary(test=test)
    record = read_run(run.path, root)
    assert record.state == "not finite" and record.error == "evaluated, but ELBO = nan, log p(x) = -inf"
    assert np.isnan(record.numbers["elbo"]) and record.numbers["log_px"] == float("-inf")
    result = table(collect(root))
    (odd,) = [row for row in result.rows if row.state == "not finite"]
    (group,) = [row for row in result.rows if row.state == "finished" and row.settings["train.beta"] == 1]
    assert odd.runs == ("beta=1/seed=2",) and len(group.runs) == 2
    finite = [truth[root / "beta=1" / f"seed={s}"]["elbo"] for s in (0, 1)]
    assert group.numbers["elbo"].mean == pytest.approx(statistics.mean(finite), rel=1e-12)
    text = to_markdown(result)
    (line,) = [line for line in text.splitlines() if "beta=1/seed=2" in line]
    assert "| nan |" in line and "| -inf |" in line and "—" not in line.split("|")[3]
    assert line.endswith("| not finite: beta=1/seed=2: evaluated, but ELBO = nan, log p(x) = -inf |")
    (parsed,) = [r for r in csv.DictReader(io.StringIO(to_csv(result))) if r["runs"] == "beta=1/seed=2"]
    assert parsed["state"] == "not finite" and parsed["elbo_mean"] == "nan" and parsed["log_px_mean"] == "-inf"
    assert main(["runs", str(root)]) == 0 and capsys.readouterr().out == text


def test_plot_error_bars_are_the_table(study):
    root, _ = study
    result = table(collect(root))
    fig = plot_against(result, "elbo", "train.beta")
    (container,) = [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]
    data_line, _, (bars,) = container.lines
    x, y = data_line.get_data()
    np.testing.assert_array_equal(x, BETAS)
    np.testing.assert_array_equal(y, [row.numbers["elbo"].mean for row in result.rows])
    half = [abs(seg[1, 1] - seg[0, 1]) / 2 for seg in bars.get_segments()]
    np.testing.assert_allclose(half, [row.numbers["elbo"].sd for row in result.rows], rtol=1e-12)
    assert fig.axes[0].get_ylabel() == result.title("elbo") == "ELBO"
    assert fig.axes[0].get_title().startswith("ELBO against train.beta (mean ± sd over seeds")


def test_command_prints_writes_and_draws(study, tmp_path, capsys):
    root, _ = study
    out = tmp_path / "tables"
    argv = ["runs", str(root), "--csv", str(out / "t.csv"), "--markdown", str(out / "t.md"), "--out", str(out)]
    assert main([*argv, "--plot", "elbo", "--against", "train.beta"]) == 0
    printed = capsys.readouterr().out
    assert printed == (out / "t.md").read_text() == to_markdown(table(collect(root)))
    assert (out / "t.csv").read_text() == to_csv(table(collect(root)))
    assert (out / "elbo-vs-train.beta.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["runs", str(root), "--no-group"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2 + 6


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--plot", "elbo"], "--plot needs --against"),
        (
            ["--plot", "elbow", "--against", "train.beta"],
            "--plot elbow is not a number pvae tables; did you mean elbo? It is one of elbo",
        ),
        (["--plot", "mig_no_shape", "--against", "train.beta"], "no run has it; these runs have elbo, log_px"),
        (["--plot", "elbo", "--against", "beta"], "--against beta is not a setting; the settings that differ: train."),
        (["--plot", "elbo", "--against", "train.lr"], "--against train.lr: every run has the same value"),
    ],
)
def test_bad_plots_say_what_there_is(study, capsys, extra, message):
    root, _ = study
    assert main(["runs", str(root), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pvae runs: error: ") and message in err and len(err.splitlines()) == 1


def test_a_folder_without_runs_says_how_to_make_some(tmp_path, capsys):
    (tmp_path / "figures").mkdir()
    assert main(["runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "holds no run" in err and "pvae train --out" in err and "pvae sweep" in err
    assert main(["runs", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_results_of_an_earlier_model_of_a_run_are_left_out_of_the_table_and_named(tmp_path):
    from pvae.base.files import write_json
    from pvae.base.runs import Run
    from pvae.cli import main
    from pvae.studies.study import read_run

    run = tmp_path / "run"
    args = ["--hidden", "16", "--z-dim", "2", "--samples", "5", "--no-progress", "--out", str(run)]
    assert main(["train", *args, "--epochs", "1"]) == 0
    first = Run(run).current_model_id()
    write_json(run / "quality" / "quality.json", {"model_id": first, "sets": {"prior": {"fd": 12.5}}})
    record = read_run(run)
    assert record.state == "finished" and record.numbers["fd"] == 12.5 and record.error is None
    # trained further, but interrupted before its evaluation: the test numbers and the quality are the old model's
    Run(run).save_checkpoint(Run(run).load_checkpoint())
    record = read_run(run)
    assert "fd" not in record.numbers and "elbo" not in record.numbers and record.state == "partial"
    assert record.error == (
        "not shown, of an earlier model of the run (trained since): summary.json's test, quality/; measure it again"
    )


def test_csv_or_markdown_naming_a_folder_suggests_a_file_in_it(tmp_path):
    from pvae.studies.study import RunsConfig

    with pytest.raises(ValueError, match=f"^--csv {tmp_path} is a folder: give the name of a file to write, e.g. "):
        RunsConfig(csv=str(tmp_path))
    with pytest.raises(ValueError, match=r"--markdown new/ is a folder: .* e\.g\. new/runs\.md$"):
        RunsConfig(markdown="new/")
    assert RunsConfig(csv=str(tmp_path / "table.csv")).csv.endswith("table.csv")


def test_the_table_of_one_run_names_its_stale_results(tmp_path, capsys):
    from pvae.base.files import write_json
    from pvae.base.runs import Run
    from pvae.cli import main

    run = tmp_path / "run"
    args = ["--hidden", "16", "--z-dim", "2", "--samples", "5", "--no-progress", "--out", str(run)]
    assert main(["train", *args, "--epochs", "1"]) == 0
    write_json(run / "quality" / "quality.json", {"model_id": Run(run).current_model_id(), "sets": {}})
    assert main(["train", *args, "--epochs", "2", "--resume"]) == 0
    capsys.readouterr()
    assert main(["runs", str(run)]) == 0
    assert "| finished: not shown, of an earlier model of the run (trained since): quality/;" in capsys.readouterr().out
