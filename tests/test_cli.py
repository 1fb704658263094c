import json

import pytest

from pvae import cli
from tests.conftest import with_test_device


def main(argv: list[str]) -> int:
    """``pvae`` on the test device (``PVAE_TEST_DEVICE``)."""
    return cli.main(with_test_device(argv))


PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    code = main(
        [
            "train",
            "--epochs",
            "1",
            "--z-dim",
            "2",
            "--hidden",
            "64",
            "--samples",
            "50",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    return out


def test_train_writes_a_complete_run(trained):
    config = json.loads((trained / "config.json").read_text())
    assert config["pair"]["z_dim"] == 2 and config["train"]["epochs"] == 1 and config["data"]["data"] == "digits"
    metrics = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and metrics[0]["epoch"] == 1
    # After one epoch a digits VAE sits between the untrained -44 and the trained -23 nats.
    assert -45 < metrics[0]["val_elbo"] < -25
    test = json.loads((trained / "summary.json").read_text())["test"]
    assert test["n"] == 360 and test["iwae_samples"] == 50
    assert test["binarization"] == "binarized once with seed 2" and test["datapoints"] == "all 360 of the test split"
    assert json.loads((trained / "summary.json").read_text())["training"]["epochs"] == 1
    assert test["kl"] > 0 and test["elbo"] < test["log_px"] < 0
    for name in ("curves", "reconstructions", "samples", "interpolation", "latent", "traversals"):
        assert (trained / "figures" / f"{name}.png").read_bytes().startswith(PNG)


def test_evaluate_and_plot_read_the_run(trained, capsys):
    assert main(["evaluate", str(trained), "--samples", "200", "--split", "val", "--points", "50"]) == 0
    summary = json.loads((trained / "summary.json").read_text())
    val = summary["val_first50_K200"]  # not the run's own K = 50 (training's): kept under its settings
    assert val["n"] == 50 and val["iwae_samples"] == 200 and val["datapoints"] == "first 50 of the val split"
    assert summary["evaluation"] == {"samples": 50, "seed": 0} and val["model_id"] == summary["test"]["model_id"]
    own = summary["test"]
    assert main(["evaluate", str(trained), "--samples", "200", "--seed", "1"]) == 0
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["test"] == own and summary["test_K200_seed1"]["iwae_samples"] == 200  # training's kept
    assert main(["evaluate", str(trained), "--samples", "50"]) == 0  # the run's own settings: its own entry again
    again = json.loads((trained / "summary.json").read_text())["test"]
    assert again["elbo"] == own["elbo"] and again["log_px"] == own["log_px"]  # the same model, seed and K
    assert "log p(x)" in capsys.readouterr().out
    # The training split, binary under its own fixed seed, goes under its own key.
    assert main(["evaluate", str(trained), "--samples", "20", "--split", "train", "--points", "30"]) == 0
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["train_first30_K20"]["binarization"] == "binarized once with seed 3"
    assert summary["training"]["epochs"] == 1 and summary["train_first30_K20"]["elbo"] < 0
    (trained / "figures" / "samples.png").unlink()
    (trained / "figures" / "traversals.png").unlink()
    assert main(["plot", str(trained)]) == 0
    assert (trained / "figures" / "samples.png").read_bytes().startswith(PNG)
    assert (trained / "figures" / "traversals.png").read_bytes().startswith(PNG)
    assert "traversals.png" in capsys.readouterr().out


def test_train_refuses_to_overwrite_a_run(trained, capsys):
    assert main(["train", "--epochs", "1", "--out", str(trained), "--no-progress"]) == 2
    assert "already holds a run; pass --overwrite" in capsys.readouterr().err


def test_bad_input_gets_a_clear_error(tmp_path, capsys):
    assert main(["train", "--model", "vea", "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'vea'; choose one of ['cvae', 'linear', 'm2', " in err and "the preset ae" in err
    assert main(["train", "--binarize", "none", "--out", str(tmp_path / "g"), "--no-progress"]) == 2
    assert "--likelihood gaussian" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert main(["train", "--data", "cifar"]) == 2
    assert "--data 'cifar' is not one of digits, mnist, fashion-mnist, kmnist, dsprites, nor a file" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit):  # a value given to a switch: the command says so, by its name
        main(["compare-elbos", str(tmp_path), "--jit", "on"])
    assert capsys.readouterr().err.startswith("pvae compare-elbos: error: unexpected argument 'on'")


def test_resume_extends_a_run_and_refuses_other_settings(tmp_path, capsys):
    out = str(tmp_path / "run")
    common = ["train", "--z-dim", "2", "--hidden", "32", "--samples", "10", "--out", out, "--no-progress"]
    assert main([*common, "--epochs", "1"]) == 0
    assert main([*common, "--epochs", "3", "--resume"]) == 0
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["epochs"] == 3
    capsys.readouterr()
    assert main([*common, "--epochs", "4", "--resume", "--lr", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "only --epochs and --jit may change" in err and "these differ: train.lr (0.001 → 0.01)" in err
    # the options left out are the run's own: --out alone resumes it
    assert main(["train", "--out", out, "--resume", "--epochs", "4", "--no-progress", "--samples", "10"]) == 0
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3, 4]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["pair"]["z_dim"] == 2 and saved["pair"]["hidden"] == [32] and saved["train"]["epochs"] == 4
    assert main(["train", "--out", out, "--resume", "--epochs", "5", "--z-dim", "3"]) == 2
    assert "these differ: pair.z_dim (2 → 3)" in capsys.readouterr().err


def test_ae_preset_trains_the_autoencoder_and_reports_no_bound(tmp_path, capsys):
    out = tmp_path / "ae"
    common = ["--z-dim", "2", "--hidden", "32", "--epochs", "2", "--samples", "5", "--no-progress"]
    assert main(["train", "--model", "ae", *common, "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["pair"]["model"], config["pair"]["guide"], config["train"]["beta"]) == ("vae", "delta", 0.0)
    test = json.loads((out / "summary.json").read_text())["test"]
    assert test["elbo"] is None and test["log_px"] is None and test["reconstruction"] < 0
    assert "the guide is a point mass" in capsys.readouterr().out
    assert (out / "figures" / "traversals.png").read_bytes().startswith(PNG)  # in the codes' own spread
    assert main(["train", "--model", "ae", "--beta", "1", *common, "--out", str(tmp_path / "x")]) == 2
    assert "--model ae means --beta 0.0" in capsys.readouterr().err
    assert main(["train", "--flows", "2", *common, "--out", str(tmp_path / "y")]) == 2
    assert "takes no 'flows' option: drop --flows" in capsys.readouterr().err
    assert main(["compare-elbos", str(out)]) == 2
    assert "point-mass guide has no density" in capsys.readouterr().err


def test_cvae_samples_the_class_asked_for_and_its_summary_adds_up(tmp_path, capsys):
    out = tmp_path / "cvae"
    common = ["--z-dim", "2", "--hidden", "32", "--epochs", "1", "--samples", "5", "--no-progress"]
    assert main(["train", "--model", "cvae", *common, "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["pair"]["guide"] == "conditional-gaussian"
    # the printed terms add up: ELBO = reconstruction + log p(y) − KL
    test = json.loads((out / "summary.json").read_text())["test"]
    assert test["elbo"] == pytest.approx(test["reconstruction"] + test["log_py"] - test["kl"], abs=1e-4)
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("test: "))
    assert f"(reconstruction {test['reconstruction']:.2f}, log p(y) {test['log_py']:.2f}, KL" in line
    training_samples = (out / "figures" / "samples.png").read_bytes()  # one row per class
    assert training_samples.startswith(PNG)
    assert main(["sample", str(out), "--label", "3", "-n", "20"]) == 0
    assert (out / "figures" / "samples-label3-seed0-n20.png").read_bytes().startswith(PNG)
    assert main(["sample", str(out), "-n", "30"]) == 0  # classes drawn from p(y)
    target = out / "figures" / "samples-seed0-n30.png"
    assert target.read_bytes().startswith(PNG) and str(target) in capsys.readouterr().out
    assert (out / "figures" / "samples.png").read_bytes() == training_samples  # training's figure kept
    assert main(["sample", str(out), "--label", "12"]) == 2
    assert "labels must lie in 0..9" in capsys.readouterr().err
    assert main(["sample", str(out), "--label", "-1"]) == 2
    assert "--label must be a class: its index (a non-negative number) or its name, not -1" in capsys.readouterr().err
    assert main(["sample", str(out), "--label", "three"]) == 2
    assert "--label three names no class of digits: give a class index 0..9" in capsys.readouterr().err


def test_sample_refuses_a_label_for_an_unconditional_model(trained, capsys):
    assert main(["sample", str(trained), "--label", "3"]) == 2
    assert "does not condition on labels" in capsys.readouterr().err
    assert main(["sample", str(trained), "-n", "10", "--out", str(trained / "s.png")]) == 0
    assert (trained / "s.png").read_bytes().startswith(PNG)


def test_m2_preset_uses_enumeration_and_reports_accuracy(tmp_path):
    out = tmp_path / "m2"
    args = ["--model", "m2", "--labels", "50", "--z-dim", "2", "--hidden", "32", "--epochs", "1"]
    assert main(["train", *args, "--samples", "5", "--no-progress", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["pair"]["guide"], config["train"]["elbo"], config["data"]["labels"]) == ("m2", "enum", 50)
    summary = json.loads((out / "summary.json").read_text())
    from pvae.engine.config import restore
    from pvae.measures.evaluate import accuracy

    _, _, dataset, _, guide = restore(out)
    assert summary["test"]["accuracy"] == accuracy(guide, dataset.test.images(), dataset.test.y)
    assert summary["training"]["final_val_accuracy"] == accuracy(guide, dataset.val.images(), dataset.val.y)


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--labels", "50"], "--labels drops training labels, which only a semi-supervised model uses"),
        (
            ["--model", "m2", "--guide", "gaussian", "--labels", "50"],
            "M2 and the guide GaussianGuide do not fit: the guide does not propose ['y']",
        ),
        (["--model", "vae", "--guide", "m2"], "the guide samples ['y'], which the model does not have"),
        (["--model", "m2", "--labels", "5"], "--labels 5 leaves some of the 10 classes without a labelled datapoint"),
        (["--model", "ae", "--beta-schedule", "cyclical"], "moves beta from 0 up to --beta, which is 0 here"),
        (["--likelihood", "continuous-bernoulli"], "use --binarize none"),
        (["--model", "two-layer", "--elbo", "meanfield"], "use --elbo trace"),
        (["--beta-schedule", "cyclical", "--beta-ramp", "1.5"], "0 < ramp ≤ 1"),
        (["--beta", "-1"], "--beta must be a non-negative number, not -1.0"),
    ],
)
def test_settings_that_cannot_train_are_refused_before_anything_is_written(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    assert main(["train", *flags, "--epochs", "1", "--no-progress", "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not (out / "config.json").exists()


def test_a_pair_named_by_file_is_stored_with_its_absolute_path(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "laplace_vae.py"
    (tmp_path / "pair.py").write_text(example.read_text())
    monkeypatch.chdir(tmp_path)
    args = ["--model", "pair.py:LaplaceVAE", "--guide", "pair.py:LaplaceGuide", "--z-dim", "2", "--hidden", "16"]
    assert main(["train", *args, "--epochs", "1", "--samples", "5", "--no-progress", "--out", "r"]) == 0
    banner = capsys.readouterr().err.splitlines()[0]
    assert banner.startswith("training pair.py:LaplaceVAE/pair.py:LaplaceGuide (meanfield, beta 1.0) on digits")
    assert str(tmp_path / "pair.py") not in banner
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["pair"]["model"] == f"{tmp_path / 'pair.py'}:LaplaceVAE"
    monkeypatch.chdir(tmp_path.parent)  # another working directory: the run still restores
    assert main(["sample", str(tmp_path / "r"), "-n", "10"]) == 0


def test_compare_elbos_writes_tables_and_figures_and_refuses_what_the_pair_cannot_use(trained, tmp_path, capsys):
    out = tmp_path / "cmp"
    small = ["--particles", "1,4", "--repeats", "3", "--grad-repeats", "3", "--cost-steps", "2", "--points", "20"]
    assert (
        main(
            [
                "compare-elbos",
                str(trained),
                "--estimators",
                "meanfield,renyi",
                "--alpha",
                "0.2",
                *small,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert [r["label"] for r in results["values"]] == [
        "meanfield K=1",
        "meanfield K=4",
        "renyi α=0.2 K=1",
        "renyi α=0.2 K=4",
    ]
    assert results["settings"]["points"] == 20 and results["training"] == []
    assert results["exact_log_px"] is None  # a VAE has no closed-form log p(x)
    # Rényi bounds rise with K (alpha < 1), within the noise of three estimates
    renyi = [r for r in results["values"] if r["estimator"] == "renyi"]
    assert renyi[1]["mean"] > renyi[0]["mean"] - 3 * (renyi[0]["se"] + renyi[1]["se"])
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["bounds.png", "cost.png", "gradient-snr.png"]
    assert all((out / "figures" / n).read_bytes().startswith(PNG) for n in ("bounds.png", "cost.png"))
    assert "| renyi α=0.2 |" in (out / "results.md").read_text()
    assert main(["compare-elbos", str(trained), "--estimators", "elbow", "--out", str(tmp_path / "x")]) == 2
    assert "--estimators 'elbow' is not one of trace, meanfield" in capsys.readouterr().err
    assert main(["compare-elbos", str(trained), "--alpha", "1", "--out", str(tmp_path / "x")]) == 2
    assert "alpha=1 is the ELBO" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before anything ran
    for flag, value in [("--particles", ""), ("--particles", "0,5"), ("--train-seconds", "-1"), ("--alpha", "nan")]:
        assert main(["compare-elbos", str(trained), flag, value, "--out", str(tmp_path / "x")]) == 2
        assert f"error: {flag} must be" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit):
        main(["compare-elbos", str(trained), "--particles", "1,,5"])
    assert (
        "argument --particles: takes comma-separated integers such as 1,5,10,50, not '1,,5'" in capsys.readouterr().err
    )


def test_diagnose_writes_its_report_and_refuses_bad_settings(trained, tmp_path, capsys):
    """``pvae diagnose`` on the digits run: diagnostics.json with every part, the NetCDF file with
    both groups, the figures; bad settings are refused before the run is read."""
    out = tmp_path / "diag"
    flags = ["--points", "6", "--khat-samples", "100", "--nuts-points", "2", "--chains", "2", "--nuts-warmup", "30"]
    flags += ["--nuts-draws", "30", "--samples", "60", "--latent-points", "40", "--out", str(out)]
    assert main(["diagnose", str(trained), *flags]) == 0
    printed = capsys.readouterr().out
    assert "Pareto k̂ median" in printed and "approximation gap" in printed and "dimensions active" in printed
    results = json.loads((out / "diagnostics.json").read_text())
    assert results["not_applicable"] == {}
    assert results["settings"]["points"] == 6 and results["settings"]["chains"] == 2
    assert len(results["importance"]["per_datapoint"]["k_hat"]) == 6
    gaps = results["gaps"]["per_datapoint"]
    for a, b, px, elbo in zip(
        gaps["approximation_gap"], gaps["amortization_gap"], gaps["log_px"], gaps["amortized_elbo"], strict=True
    ):
        assert a + b == pytest.approx(px - elbo)
    from pvae.base import az

    idata = az.load_netcdf(out / "posterior.nc")
    assert idata.posterior["z"].shape == (2, 30, 2, 2) and idata.guide["z"].shape == (1, 60, 2, 2)
    names = {p.name for p in (out / "figures").iterdir()}
    assert names == {"khat.png", "worst.png", "marginals.png", "gaps.png", "kl-per-dim.png"}
    assert main(["diagnose", str(trained), "--khat-samples", "20", "--out", str(tmp_path / "bad")]) == 2
    assert "--khat-samples must be at least 100" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert main(["diagnose", str(tmp_path / "missing")]) == 2


def test_ctrl_c_during_training_says_how_to_go_on_and_resume_continues(tmp_path, monkeypatch, capsys):
    """Ctrl-C in the second epoch: one line naming the last epoch kept, exit status 130 (128 + SIGINT),
    no traceback; the same command with --resume then finishes the run."""
    import pvae.engine.train

    out = tmp_path / "run"
    common = ["train", "--z-dim", "2", "--hidden", "16", "--epochs", "2", "--samples", "5", "--out", str(out)]
    real_step, steps = pvae.engine.train.step, []

    def step(*args):
        steps.append(1)
        if len(steps) == 15:  # 10 steps of 128 make an epoch of the 1257 training digits
            raise KeyboardInterrupt
        return real_step(*args)

    monkeypatch.setattr(pvae.engine.train, "step", step)
    assert main([*common, "--no-progress"]) == 130
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"pvae train: interrupted after epoch 1 of 2; the same command with --resume continues from {out}"
    assert not any("Traceback" in line for line in err)
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]
    monkeypatch.setattr(pvae.engine.train, "step", real_step)
    assert main([*common, "--no-progress", "--resume"]) == 0
    assert json.loads((out / "summary.json").read_text())["training"]["epochs"] == 2
    steps.clear()
    monkeypatch.setattr(pvae.engine.train, "step", step)
    first = ["train", "--z-dim", "2", "--hidden", "16", "--epochs", "1", "--out", str(tmp_path / "early")]
    assert main([*first, "--batch-size", "64"]) == 130  # the 15th of 20 steps: still in epoch 1
    assert capsys.readouterr().err.splitlines()[-1].endswith("interrupted in the first epoch, before any checkpoint")
    assert json.loads((out / "summary.json").read_text())["training"]["epochs"] == 2


def test_evaluate_refuses_bounds_that_are_not_finite(trained, tmp_path, capsys):
    """A run whose parameters went NaN: exit status 2 and a message, not ``ELBO nan`` with status 0;
    the summary keeps what it had."""
    import shutil

    import torch

    from pvae.base.runs import Run

    broken = tmp_path / "broken"
    shutil.copytree(trained, broken)
    run = Run.open(broken)
    state = run.load_checkpoint()
    state["model"] = {k: torch.full_like(v, float("nan")) for k, v in state["model"].items()}
    run.save_checkpoint(state)
    before = (broken / "summary.json").read_text()
    assert main(["evaluate", str(broken), "--samples", "5", "--points", "10"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"pvae evaluate: error: {broken / 'checkpoint.pt'} holds NaN or infinite weights (model.decoder"
    )
    assert "train again with a lower --lr" in err and len(err.splitlines()) == 1
    assert (broken / "summary.json").read_text() == before


def test_evaluate_refuses_a_bound_that_comes_out_infinite(trained, monkeypatch, capsys):
    import pvae.measures.evaluate

    real = pvae.measures.evaluate.evaluate

    def evaluate(*args, **kwargs):
        return {**real(*args, **kwargs), "log_px": float("-inf")}

    monkeypatch.setattr(pvae.measures.evaluate, "evaluate", evaluate)
    before = (trained / "summary.json").read_text()
    assert main(["evaluate", str(trained), "--samples", "5", "--points", "10"]) == 2
    assert "error: the test split scores log_px -inf: " in capsys.readouterr().err
    assert (trained / "summary.json").read_text() == before


def test_a_diverging_run_stops_with_one_line_and_a_plain_rerun_works(tmp_path, capsys):
    """A learning rate that sends the loss to NaN stops training at once (not after a screen of Pyro's
    warnings) with one error line and the fix; the run had no checkpoint, so the same --out trains again
    without --overwrite."""
    out = str(tmp_path / "run")
    small = ["train", "--epochs", "2", "--hidden", "16", "--z-dim", "4", "--samples", "10", "--no-progress"]
    assert main([*small, "--lr", "1e10", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "Encountered NaN" not in err and err.strip().splitlines()[-1] == (
        "pvae train: error: the loss became nan in epoch 1; try a lower --lr"
    )
    assert main([*small, "--out", out]) == 0
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2


def test_a_long_evaluation_says_how_long_before_it_starts(trained, monkeypatch, capsys):
    import pvae.measures.evaluate

    monkeypatch.setattr(pvae.measures.evaluate, "estimate_seconds", lambda model, guide, x, y, k: 7200.0 * k / 1000)
    assert main(["evaluate", str(trained), "--samples", "1000", "--points", "20"]) == 0
    err = capsys.readouterr().err
    assert "evaluate: about 2.0 h for 20 datapoints × K = 1000 samples of z (timed on the first batch); " in err
    assert main(["evaluate", str(trained), "--samples", "4", "--points", "20"]) == 0  # 29 s: not said
    assert "about" not in capsys.readouterr().err
