"""Every experiment script runs with tiny settings and writes its results table."""

import json
import shlex
import sys
from pathlib import Path

import pytest

from tests.conftest import derived_seed

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments"))


def test_bench_speed_smoke(tmp_path):
    import bench_speed

    results = bench_speed.main(
        ["--batch-sizes", "16", "--rounds", "2", "--steps", "2", "--warmup", "1", "--out", str(tmp_path)]
    )
    rows = results[16]
    assert rows["reference"]["ratio"] == 1.0
    assert all(r["ms_per_step"] > 0 for r in rows.values())
    assert set(rows) == {"reference", "reference (control copy)", *bench_speed.VARIANTS}
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["results"]["16"]["pvae trace"]["ratio"] == pytest.approx(rows["pvae trace"]["ratio"])
    assert "| pvae trace |" in (tmp_path / "results.md").read_text()


def test_bench_speed_times_the_evaluation_against_the_reference_with_the_same_draws(tmp_path):
    import bench_speed

    argv = ["--batch-sizes", "--eval-rounds", "1", "--eval-samples", "10", "--eval-batch-size", "4"]
    results = bench_speed.main([*argv, "--out", str(tmp_path)])
    rows = results["evaluation"]
    assert set(rows) == {"reference", "reference (control copy)", "pvae bounds"}
    assert all(r["ms_per_batch"] > 0 for r in rows.values()) and rows["reference"]["ratio"] == 1.0
    assert rows["pvae bounds"]["max_abs_diff_log_px"] < 1e-3  # the same draws of z: the same log p(x)
    assert "| pvae bounds |" in (tmp_path / "results.md").read_text()


def test_bench_speed_times_the_burgess_nets_against_a_reference_with_the_same_nets(tmp_path):
    import bench_speed

    argv = ["--net", "burgess", "--z-dim", "10", "--hidden", "256", "--batch-sizes", "4"]
    argv += ["--variants", "pvae meanfield (default)"]
    results = bench_speed.main([*argv, "--rounds", "1", "--steps", "1", "--warmup", "1", "--out", str(tmp_path)])
    assert set(results[4]) == {"reference", "reference (control copy)", "pvae meanfield (default)"}
    assert json.loads((tmp_path / "results.json").read_text())["settings"]["net"] == "burgess"


def test_quality_reference_smoke(tmp_path):
    import quality_reference

    results = quality_reference.main(
        [
            "--data",
            "digits",
            "--epochs",
            "2",
            "--z-dim",
            "4",
            "--hidden",
            "32",
            "--test-points",
            "40",
            "--samples",
            "300",
            "--out",
            str(tmp_path),
        ]
    )
    pvae, by_hand = results["pvae (pvae evaluate)"], results["pvae (hand-written estimator)"]
    # Two independent estimators of the same model's log p(x) agree within Monte Carlo error.
    assert pvae["log_px"] == pytest.approx(by_hand["log_px"], abs=0.1)
    assert pvae["elbo"] == pytest.approx(by_hand["elbo"], abs=0.2)
    assert pvae["elbo"] < pvae["log_px"] < 0
    assert (tmp_path / "results.md").read_text().count("|") > 10


@pytest.mark.parametrize("net, x_shape", [("mlp", (1, 8, 8)), ("burgess", (1, 64, 64))])
def test_reference_vae_matches_pvae_at_the_same_weights(net, x_shape):
    """The hand-written loss and pvae's meanfield loss are the same function of the same noise."""
    import pyro
    import torch
    from reference_vae import ReferenceVAE

    from pvae.engine.config import PairConfig, build_pair
    from pvae.engine.estimators import make_elbo
    from pvae.engine.objectives import loss_module

    model, guide = build_pair(PairConfig(z_dim=3, hidden=(16,), net=net), x_shape)
    ref = ReferenceVAE.like(model, guide)
    x = torch.bernoulli(torch.rand(10, *x_shape))
    pyro.set_rng_seed(derived_seed(4))
    ours = loss_module(model, guide, make_elbo("meanfield"))(x)
    pyro.set_rng_seed(derived_seed(4))
    theirs = ref(x)
    assert torch.allclose(ours, theirs, rtol=1e-5)


@pytest.mark.slow
def test_pvae_is_at_least_as_good_as_the_hand_written_vae_on_fashion_mnist(tmp_path):
    """The issue's bar, on the real data: 10 epochs, z=50, first 1000 test images, K=1000."""
    from pvae.data.idx import DEBIAN_FASHION_MNIST

    if not (DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("needs `apt-get install dataset-fashion-mnist`")
    import quality_reference

    results = quality_reference.main(["--out", str(tmp_path), "--seed", str(derived_seed(0))])
    pvae, by_hand = results["pvae (pvae evaluate)"], results["pvae (hand-written estimator)"]
    ref = results["hand-written VAE (hand-written estimator)"]
    assert pvae["log_px"] == pytest.approx(by_hand["log_px"], abs=0.1)
    # Same data, networks, initial weights and budget: pvae's VAE is no worse than the hand-written one.
    # Measured: pvae - reference = -0.17 (ELBO), +0.10 (log p(x)) with seed 0; a change of seed moves
    # either model by 0.5-0.9 nats, so 0.5 is a margin for noise, not for a worse pvae.
    assert pvae["elbo"] > ref["elbo"] - 0.5
    assert pvae["log_px"] > ref["log_px"] - 0.5


def test_zoo_smoke_and_rerunning_a_row_keeps_the_others(tmp_path, quality_data):
    import zoo

    common = ["--data", "digits", "--epochs", "1", "--z-dim", "2", "--hidden", "16", "--test-points", "20"]
    common += ["--samples", "5", "--quality-samples", "100", "--out", str(tmp_path)]
    rows = zoo.main([*common, "--only", "vae", "ae", "cvae", "m2, 100 labels"])
    by_name = {r["pair"]: r for r in rows}
    assert by_name["ae"]["elbo"] is None and by_name["ae"]["reconstruction"] < 0
    assert by_name["vae"]["elbo"] <= by_name["vae"]["log_px"] < 0
    assert 0 <= by_name["cvae"]["conditional_accuracy"] <= 1 and 0 <= by_name["m2, 100 labels"]["accuracy"] <= 1
    assert 0.5 < by_name["m2, 100 labels"]["baseline_accuracy"] < 1  # a logistic regression on 100 digits
    # one epoch of training: samples far from the data, but scored (Fréchet distance > 0, shares in [0, 1])
    assert all(r["sample_fd"] > 0 and 0 <= r["sample_precision"] <= 1 and 0 <= r["sample_recall"] <= 1 for r in rows)
    assert (tmp_path / "vae" / "checkpoint.pt").exists()
    again = zoo.main([*common, "--only", "vae"])
    assert [r["pair"] for r in again] == ["vae", "ae", "cvae", "m2, 100 labels"]
    assert again[1] == by_name["ae"]
    assert "| cvae |" in (tmp_path / "results.md").read_text()
    with pytest.raises(SystemExit):
        zoo.main([*common, "--only", "vea"])


#: The results page that shows each script's command lines (the command that made the result).
RESULTS_PAGES = {"zoo": "zoo.md", "ae_vs_vae": "ae-vs-vae.md"}


def _documented(script: str) -> list[list[str]]:
    """The command lines of ``experiments/SCRIPT.py`` that its results page shows, as argv."""
    page = Path(__file__).resolve().parents[2] / "docs" / "results" / RESULTS_PAGES[script]
    prefix = f"python experiments/{script}.py"
    return [shlex.split(line.removeprefix(prefix)) for line in page.read_text().splitlines() if line.startswith(prefix)]


def test_the_zoo_reads_its_documented_command_lines_as_before():
    """The options come from pvae's declarations; the settings and what results.json records stay those the
    hand-written parser gave (one hidden width as a number, the epochs as given)."""
    import zoo

    from pvae.data import DataConfig
    from pvae.engine.config import PairConfig, RunConfig
    from pvae.engine.train import TrainConfig
    from pvae.measures.compare import CompareConfig

    digits, fashion = _documented("zoo")
    assert fashion == [
        *"--data fashion-mnist --epochs 10 --z-dim 50 --test-points 1000".split(),
        "--out",
        "runs/zoo-fmnist",
    ]
    base, scoring, chosen, out, recorded = zoo.settings(digits)
    assert base == RunConfig(DataConfig("digits"), PairConfig(z_dim=20, hidden=(400,)), TrainConfig(epochs=100))
    assert scoring == CompareConfig(test_points=10_000, samples=1000) and chosen == zoo.Zoo((), 10_000)
    assert out == Path("runs/zoo-digits")
    assert recorded == {
        "data": "digits",
        "data_dir": None,
        "epochs": None,
        "z_dim": 20,
        "hidden": 400,
        "test_points": 10_000,
        "samples": 1000,
        "quality_samples": 10_000,
        "only": None,
        "seed": 0,
        "out": "runs/zoo-digits",
    }
    base, scoring, chosen, out, recorded = zoo.settings([*fashion, "--only", "cvae", "vae"])
    assert base == RunConfig(DataConfig("fashion-mnist"), PairConfig(z_dim=50, hidden=(400,)), TrainConfig(epochs=10))
    assert scoring.test_points == 1000 and chosen.only == ("cvae", "vae")
    assert (recorded["epochs"], recorded["only"], recorded["test_points"]) == (10, ["cvae", "vae"], 1000)
    assert zoo.settings(["--data", "kmnist"])[0].train.epochs == 10  # the dataset's own default


def test_ae_vs_vae_reads_its_documented_command_lines_as_before():
    import ae_vs_vae

    from pvae.data import DataConfig
    from pvae.engine.config import PairConfig, RunConfig
    from pvae.engine.train import TrainConfig
    from pvae.measures.quality.score import QualityConfig

    digits, fashion = _documented("ae_vs_vae")
    assert fashion == ["--data", "fashion-mnist", "--epochs", "10", "--out", "runs/ae-vs-vae-fashion"]
    base, compared, scoring, out, recorded = ae_vs_vae.settings(digits)
    assert base == RunConfig(DataConfig("digits"), PairConfig(z_dim=20, hidden=(400,)), TrainConfig(epochs=100))
    assert compared == ae_vs_vae.AeVsVae((0, 1, 2), ("ae", "vae", "beta 0.5", "beta 2"))
    assert scoring == QualityConfig(samples=10_000) and out == Path("runs/ae-vs-vae-digits")
    assert recorded == {
        "data": "digits",
        "data_dir": None,
        "epochs": None,
        "z_dim": 20,
        "hidden": 400,
        "seeds": [0, 1, 2],
        "pairs": ["ae", "vae", "beta 0.5", "beta 2"],
        "samples": 10_000,
        "train_size": None,
        "out": "runs/ae-vs-vae-digits",
    }
    base, compared, *_ = ae_vs_vae.settings([*fashion, "--seeds", "4", "--pairs", "vae", "--train-size", "500"])
    assert base.data == DataConfig("fashion-mnist", train_size=500) and base.train == TrainConfig(epochs=10)
    assert (compared.seeds, compared.pairs) == ((4,), ("vae",))  # given, the seeds replace the default's


def test_elbo_estimators_smoke(tmp_path):
    import elbo_estimators

    out = tmp_path / "elbos"
    flags = ["--data", "digits", "--base-epochs", "1", "--out", str(out), "--particles", "1,3"]
    flags += ["--estimators", "trace,iwae,dreg", "--repeats", "4", "--grad-repeats", "4", "--cost-steps", "2"]
    flags += ["--train-epochs", "1", "--test-points", "30", "--samples", "20", "--points", "30"]
    assert elbo_estimators.main(flags) == 0
    results = json.loads((out / "results.json").read_text())
    assert [r["label"] for r in results["values"]] == [
        "trace K=1",
        "trace K=3",
        "iwae K=1",
        "iwae K=3",
        "dreg K=1",
        "dreg K=3",
    ]
    # an untrained-ish digits VAE: bounds between the untrained -44 and the trained -23 nats
    assert all(-46 < r["mean"] < -25 for r in results["values"])
    assert results["ordering"]["holds"], results["ordering"]
    assert len(results["training"]) == 6 and {r["budget"] for r in results["training"]} == {"epochs", "seconds"}
    assert {p.name for p in (out / "figures").iterdir()} == {
        "bounds.png",
        "gradient-snr.png",
        "cost.png",
        "training.png",
    }
    assert "| dreg | " in (out / "results.md").read_text()
    # the base run is reused: a second call trains nothing and rewrites the results
    assert (
        elbo_estimators.main(flags[:2] + ["--out", str(out), "--estimators", "trace", "--particles", "1"] + flags[10:])
        == 0
    )
    assert len(json.loads((out / "results.json").read_text())["values"]) == 1


def test_beta_sweep_and_metric_seeds_smoke_and_a_rerun_trains_nothing_twice(tmp_path):
    import beta_sweep
    import metric_seeds

    (tmp_path / "data").mkdir()
    tiny = "--num-train 100 --num-eval 100 --mi-points 300 --metric-options "
    tiny += "dci.n_estimators=2,beta_vae.batch_size=4,factor_vae.batch_size=4,factor_vae.num_variance_estimate=200"
    argv = ["--betas", "2", "--seeds", "0", "--elbos", "meanfield", "tcvae", "--workers", "2", "--z-dim", "3"]
    argv += ["--out", str(tmp_path / "sweep")]
    argv += ["--data-dir", str(tmp_path / "data"), "--disentangle-options", tiny]
    argv += ["--train-options", "--train-size 128 --epochs 1 --hidden 16 --val-size 64"]
    rows = beta_sweep.main(argv)
    assert [(r["estimator"], r["beta"], r["seed"]) for r in rows] == [("meanfield", 2.0, 0), ("tcvae", 2.0, 0)]
    assert all("error" not in r for r in rows)
    for r, name in zip(rows, ["beta2-seed0", "tcvae-beta2-seed0"], strict=True):
        assert json.loads((tmp_path / "sweep" / name / "config.json").read_text())["train"]["elbo"] == r["estimator"]
        summary = json.loads((tmp_path / "sweep" / name / "summary.json").read_text())
        assert r["reconstruction"] == summary["test"]["reconstruction"]
        assert 0 <= r["mig discrete mig"] <= 1 and 0 <= r["mig discrete mig (no shape)"] <= 1
    table = (tmp_path / "sweep" / "results.md").read_text()
    # the tables are pvae runs' tables of the cells (one row per estimator: the one beta does not differ)
    from pvae.studies import study

    records = [
        study.read_run(tmp_path / "sweep" / name, tmp_path / "sweep") for name in ("beta2-seed0", "tcvae-beta2-seed0")
    ]
    for numbers in (beta_sweep.MAIN, beta_sweep.NO_SHAPE):
        assert study.to_markdown(study.table(records, numbers=numbers)) in table
    mig = study.table(records, numbers=("mig",)).rows[0].numbers["mig"]
    assert mig.n == 1 and mig.mean == pytest.approx(rows[0]["mig discrete mig"])
    assert "| meanfield | 1 |" in table and "| tcvae | 1 |" in table and "without shape" in table
    assert (tmp_path / "sweep" / "figures" / "trade_off.png").stat().st_size > 0
    checkpoint = tmp_path / "sweep" / "beta2-seed0" / "checkpoint.pt"
    before = checkpoint.stat().st_mtime_ns
    assert beta_sweep.main(argv) == rows  # finished cells are read back, not trained again
    assert checkpoint.stat().st_mtime_ns == before
    report = beta_sweep.main([*argv[:3], "0", "1", *argv[4:], "--report"])  # seed 1 was never run
    assert report[:2] == rows and [r["error"] for r in report[2:]] == ["not finished (--report trains nothing)"] * 2
    assert not (tmp_path / "sweep" / "beta2-seed1").exists()
    assert "not finished: tcvae-beta2-seed1" in (tmp_path / "sweep" / "results.md").read_text()
    spread = metric_seeds.main([str(tmp_path / "sweep" / "beta2-seed0"), "--seeds", "0", "1", "--options", tiny])
    mig = next(r for r in spread if r["score"] == "discrete_mig" and r["factors"] == "all factors")
    assert mig["range"] == pytest.approx(abs(mig["values"][0] - mig["values"][1]))
    assert len(mig["values"]) == 2


def test_ae_vs_vae_smoke(tmp_path, quality_data):
    import ae_vs_vae

    argv = ["--data", "digits", "--epochs", "2", "--z-dim", "4", "--hidden", "32", "--seeds", "0", "1"]
    summary = ae_vs_vae.main([*argv, "--samples", "120", "--out", str(tmp_path)])
    assert set(summary) == set(ae_vs_vae.PAIRS)
    vae, ae = summary["vae"], summary["ae"]
    assert vae["prior_fd"][2] == 2 and vae["prior_fd"][0] > 0  # two seeds, a positive distance
    assert "holes_density" in vae and "holes_density" not in ae  # the density version needs q(z|x)
    assert 0 < vae["knn_accuracy"][0] <= 1 and vae["step_jump"][0] >= 1  # the largest step is at least the mean
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["summary"]["vae"]["prior_fd"][0] == pytest.approx(vae["prior_fd"][0])
    assert "| ae |" in (tmp_path / "results.md").read_text()
    for figure in ("latent_maps", "prior_samples"):
        assert (tmp_path / "figures" / f"{figure}.png").exists()
    again = ae_vs_vae.main([*argv, "--samples", "120", "--out", str(tmp_path)])  # finished cells are kept
    assert again["vae"]["prior_fd"][0] == vae["prior_fd"][0]


def test_beta_sweep_records_a_failed_cell_where_pvae_runs_reads_it(tmp_path, monkeypatch):
    import subprocess

    import beta_sweep

    from pvae.studies import study
    from pvae.studies.sweep import recorded_error

    monkeypatch.setattr(beta_sweep.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 3))
    out = tmp_path / "sweep"
    (out / "beta2-seed0").mkdir(parents=True)  # a cell whose training failed before its config was written
    rows = beta_sweep.main(["--betas", "2", "--seeds", "0", "--out", str(out), "--z-dim", "3"])
    assert rows[0]["error"].startswith("train exited with 3")
    assert recorded_error(out / "beta2-seed0") == rows[0]["error"]
    assert study.read_run(out / "beta2-seed0", out).state == "failed"
    assert f"failed: beta2-seed0: {rows[0]['error']}" in (out / "results.md").read_text()


def test_compiled_zoo_says_which_way_each_pair_runs(tmp_path):
    import compiled_zoo

    argv = ["--only", "vae", "vae, dreg (K=5)", "--epochs", "1", "--z-dim", "2", "--hidden", "16"]
    rows = compiled_zoo.main([*argv, "--out", str(tmp_path)])
    assert [r["pair"] for r in rows] == ["vae", "vae, dreg (K=5)"]
    assert rows[0]["auto"]["line"].startswith("loss: compiled") and rows[0]["off"]["line"] == "loss: eager (--jit off)"
    assert rows[1]["auto"]["line"].startswith("loss: eager, because DReG_ELBO")
    assert rows[0]["speedup"] == pytest.approx(rows[0]["off"]["seconds"] / rows[0]["auto"]["seconds"])
    assert "| vae | compiled with torch.jit.trace" in (tmp_path / "results.md").read_text()


def test_bench_user_data_smoke(capsys):
    import bench_user_data

    results = bench_user_data.main(["--rows", "3000", "--table-rows", "300"])
    assert results["file_mib"] == pytest.approx(3000 * 784 / 2**20, rel=1e-3)
    assert results["peak_mib"] > 0 and results["table"]["rows_per_second"] > 0
    assert results["table"]["kind"] == "real" and sum(results["table"]["shares"].values()) == pytest.approx(1)
    assert "trains one epoch with a peak" in capsys.readouterr().out


@pytest.mark.parametrize(
    "script, argv, said",
    [
        ("compiled_zoo", ["--only", "vea"], "--only 'vea' is not one of vae,"),
        ("zoo", ["--only", "vea"], "--only 'vea' is not one of vae,"),
        ("zoo", ["--data", "README.md"], "--data 'README.md': the zoo runs on a built-in dataset, one of digits,"),
        ("ae_vs_vae", ["--pairs", "ea"], "--pairs 'ea' is not one of ae, vae, beta 0.5, beta 2"),
        ("ae_vs_vae", ["--seeds", "0", "-1"], "--seeds must be integers from 0 to 4294967295, not 0,-1"),
        ("beta_sweep", ["--workers", "0"], "--workers must be a positive integer, not 0"),
        ("beta_sweep", ["--elbos", "iwae"], "--elbos 'iwae' is not one of meanfield, trace, tcvae"),
        ("metric_seeds", ["run", "--seeds", "1"], "--seeds must be two seeds or more, to measure a spread, not 1"),
        ("bench_speed", ["--image-shape", "1", "8"], "--image-shape must be three positive sizes, C H W, not 1,8"),
        ("quality_reference", ["--jit", "yes"], "invalid choice: 'yes'"),
        ("elbo_estimators", ["--model", "cvae", "--out", "x"], "--model cvae: the base pairs are vae, linear"),
        ("bench_user_data", ["--rows", "0"], "--rows must be a positive number, not 0"),
    ],
)
def test_a_script_refuses_what_its_configs_refuse_before_any_work(script, argv, said, capsys):
    import importlib

    with pytest.raises(SystemExit) as stop:
        importlib.import_module(script).main(argv)
    assert stop.value.code == 2
    assert said in capsys.readouterr().err
