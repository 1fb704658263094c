"""Every command runs with its defaults, on every pair of the zoo it applies to.

A default that cannot run must fail here, not for a user. The default run keeps each command's
defaults for *what* it runs (estimators, metrics, checks, figures) and shrinks only *how much*
(points, repeats, steps: :data:`SMALL`); the slow run (``-m slow``, which CI runs) gives no option at
all. A command missing from :data:`SMALL` fails :func:`test_every_command_is_run_with_its_defaults`,
so a new command is held to the same rule. Where a command does not apply to a pair, it must refuse
in one line that says why (:data:`REFUSALS`), before writing anything.
"""

import json
import math

import pytest

from pvae import cli
from tests.conftest import with_test_device

#: Each pair of the zoo: the options of its tiny run (besides the size options of :data:`TINY`).
ZOO = {
    "vae": [],
    "ae": ["--model", "ae"],
    "linear": ["--model", "linear"],
    "cvae": ["--model", "cvae"],
    "two-layer": ["--model", "two-layer"],
    "m2": ["--model", "m2", "--labels", "100"],
    "fullrank": ["--guide", "fullrank"],
    "iaf": ["--guide", "iaf"],
}
TINY = ["--epochs", "1", "--z-dim", "2", "--samples", "10", "--no-progress"]

#: Command → the options that shrink how much it computes, never what. ``None``: run elsewhere here
#: (``train`` makes the zoo with its defaults but the sizes of :data:`TINY`; ``runs`` and ``report``
#: read the zoo with no option) or in ``tests/test_sweep.py`` (``sweep`` has no default grid) and
#: ``tests/test_runs.py`` (``upgrade`` takes a run and no option).
SMALL = {
    "evaluate": ["--samples", "20"],
    "plot": [],
    "sample": [],
    "compare-elbos": [
        "--points",
        "8",
        "--repeats",
        "2",
        "--grad-points",
        "4",
        "--grad-repeats",
        "2",
        "--particles",
        "1,5",
    ]
    + ["--cost-batch", "8", "--cost-steps", "1"],
    "diagnose": ["--points", "8", "--khat-samples", "100", "--nuts-points", "1", "--chains", "2"]
    + ["--nuts-warmup", "10", "--nuts-draws", "10", "--samples", "50", "--local-particles", "4"]
    + ["--local-steps", "5", "--elbo-samples", "20", "--latent-points", "50"],
    "quality": ["--samples", "60"],
    "disentangle": [],
    "encode": [],
    "runs": None,
    "report": None,
    "sweep": None,
    "train": None,
    "upgrade": None,
}

#: (command, pair) → what its one-line refusal must say, where the command does not apply.
REFUSALS = {
    ("compare-elbos", "ae"): "point-mass guide",
}
#: Commands that write their results into a folder of their own (``--out``).
WRITES_A_FOLDER = ("compare-elbos", "diagnose", "quality", "disentangle")
#: Commands that need what the digits do not have (ground-truth factors).
NEEDS_FACTORS = ("disentangle",)


def main(argv: list[str]) -> int:
    """``pvae`` on the test device (``PVAE_TEST_DEVICE``)."""
    return cli.main(with_test_device(argv))


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """One tiny trained run per pair of the zoo, under one folder."""
    root = tmp_path_factory.mktemp("zoo")
    for name, flags in ZOO.items():
        assert main(["train", *flags, *TINY, "--out", str(root / name)]) == 0, name
    return root


def _finite_numbers(value) -> list[float]:
    """Every float in a JSON document."""
    if isinstance(value, dict):
        return [v for item in value.values() for v in _finite_numbers(item)]
    if isinstance(value, list):
        return [v for item in value for v in _finite_numbers(item)]
    return [value] if isinstance(value, float) else []


def test_every_command_is_run_with_its_defaults():
    assert set(SMALL) == set(cli.COMMANDS), "a new command needs its row in SMALL (and a run in this file)"


@pytest.mark.parametrize("pair", list(ZOO))
@pytest.mark.parametrize("command", [c for c, small in SMALL.items() if small is not None])
def test_command_with_its_defaults_runs_or_refuses_in_one_line(zoo, pair, command, capsys, tmp_path):
    out = tmp_path / "out"
    argv = [command, str(zoo / pair), *SMALL[command]]
    argv += ["--out", str(out)] if command in WRITES_A_FOLDER else []
    code = main(argv)
    err = capsys.readouterr().err
    refusal = REFUSALS.get((command, pair)) or ("ground-truth factors" if command in NEEDS_FACTORS else None)
    if refusal is not None:
        assert code == 2, err
        assert refusal in err and "Traceback" not in err, err
        assert not out.exists()  # refused before anything was written
        return
    assert code == 0, err
    if command in ("compare-elbos", "diagnose", "quality"):
        name = {"compare-elbos": "results.json", "diagnose": "diagnostics.json", "quality": "quality.json"}[command]
        results = json.loads((out / name).read_text())
        numbers = _finite_numbers(results)
        assert numbers and any(math.isfinite(v) and v != 0 for v in numbers)
    if command == "compare-elbos":
        # every estimator the pair can use was compared: the default list, not a chosen one
        from pvae.engine.compatibility import applicable_estimators
        from pvae.engine.config import restore
        from pvae.engine.pair import traits

        _, config, dataset, model, guide = restore(zoo / pair)
        reasons = applicable_estimators(traits(model, guide), dataset, config.train)
        usable = [name for name, why in reasons.items() if why is True]
        compared = {r["estimator"] for r in results["values"]}
        left_out = {note.split()[0] for note in results["notes"] if "is left out" in note}  # each with its reason
        assert compared | left_out == set(usable) and not compared & left_out
        assert len(left_out) <= 1  # tcvae on a guide that is not a diagonal Normal, nothing else
        assert all(math.isfinite(r["mean"]) and r["mean"] < 0 for r in results["values"])


def test_runs_and_report_read_the_whole_zoo_with_their_defaults(zoo, capsys):
    assert cli.main(["runs", str(zoo)]) == 0  # readers compute nothing: no --device
    table = capsys.readouterr().out
    assert all(name in table for name in ZOO)
    assert cli.main(["report", str(zoo)]) == 0
    assert (zoo / "report.html").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize("pair", list(ZOO))
@pytest.mark.parametrize("command", ["evaluate", "plot", "sample", "compare-elbos", "diagnose", "quality"])
def test_command_with_no_option_at_all(zoo, pair, command, capsys):
    code = main([command, str(zoo / pair)])
    err = capsys.readouterr().err
    if (command, pair) in REFUSALS:
        assert code == 2 and REFUSALS[(command, pair)] in err, err
    else:
        assert code == 0, err


@pytest.mark.parametrize("script", ["zoo", "ae_vs_vae"])
def test_the_experiments_train_for_the_epochs_the_data_declare(script, capsys):
    """The scripts' ``--epochs`` default is each dataset's own (:func:`pvae.data.default_epochs`), said in their
    help as :func:`pvae.data.default_in_words` says it."""
    import importlib
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    module = importlib.import_module(script)
    with pytest.raises(SystemExit):
        module.main(["--help"])
    assert "default: 100 for digits, 10 otherwise" in " ".join(capsys.readouterr().out.split())
