"""``pvae sweep``: the cells a grid makes, what is refused before any cell starts, and a study that finishes
whatever stopped it (a failing cell, Ctrl-C, kill -9), with nothing trained twice."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import types
from dataclasses import replace
from pathlib import Path

import pytest

import pvae.studies.sweep
from pvae import cli
from pvae.app.train import TrainSettings
from pvae.app.train import run_config as train_config
from pvae.base.runs import RunError
from pvae.studies.sweep import Sweep, SweepConfig, cell_name, cell_status
from pvae.studies.sweep.records import running_elsewhere
from tests.conftest import TEST_DEVICE, derived_seed, with_test_device

#: A cell trains in about a second: 200 digits, a tiny pair.
SMALL = ["--hidden", "16", "--z-dim", "2", "--samples", "5", "--train-size", "200", "--no-progress"]


def main(argv: list[str]) -> int:
    """``pvae`` with the cells on the test device (``PVAE_TEST_DEVICE``)."""
    if "--" in argv:
        cut = argv.index("--")
        argv = [*argv[: cut + 1], *with_test_device(argv[cut + 1 :])]
    return cli.main(argv)


def _sweep(out, grid=(), cells=(), train=(), device="auto") -> Sweep:
    """The sweep ``pvae sweep OUT --grid GRID --cells CELLS --device DEVICE -- TRAIN`` makes."""
    base = cli.from_args(TrainSettings, cli.build_parser(only="train").parse_args(["train", *train]))
    config = SweepConfig(grid=tuple(grid), cells=tuple(cells))
    given = cli.given_options(list(train))
    return Sweep(out, config, base, given, device, check=train_config, train_options=train)


def _epochs(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _without_seconds(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def _metrics(run: Path) -> list[dict]:
    return _without_seconds([json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()])


def test_a_grid_crosses_its_options_in_order_and_names_each_cell_by_its_settings(tmp_path):
    sweep = _sweep(tmp_path / "s", ["beta=1,2", "z-dim=2,3", "--vectorize=off,on"], train=["--epochs", "1"])
    assert [c.name for c in sweep.cells] == [
        f"beta={b},z_dim={z},vectorize={v}" for b in (1, 2) for z in (2, 3) for v in ("off", "on")
    ]
    first = sweep.cells[0]
    assert first.index == 0 and first.settings == (("beta", "1"), ("z_dim", "2"), ("vectorize", "off"))
    assert first.argv == ("--no-progress", "--epochs", "1", "--beta=1", "--z-dim=2", "--no-vectorize")
    assert sweep.cells[1].argv[-1] == "--vectorize"
    # what pvae train makes of a cell's options is what the cell says
    config = train_config(sweep.settings(first))
    assert (config.train.beta, config.pair.z_dim, config.train.vectorize, config.train.epochs) == (1.0, 2, False, 1)
    config = train_config(sweep.settings(sweep.cells[-1]))
    assert (config.train.beta, config.pair.z_dim, config.train.vectorize) == (2.0, 3, True)
    assert _sweep(tmp_path / "v", ["validate=on,off"]).cells[1].argv == ("--no-progress",)  # a flag's off: no flag

    # explicit cells (a value may hold commas) crossed with a grid; --device goes to every cell
    sweep = _sweep(tmp_path / "t", ["seed=0,1"], ["elbo=iwae particles=3", "hidden=32,16"], device="cpu")
    assert [c.name for c in sweep.cells] == [
        "elbo=iwae,particles=3,seed=0",
        "elbo=iwae,particles=3,seed=1",
        "hidden=32,16,seed=0",
        "hidden=32,16,seed=1",
    ]
    assert train_config(sweep.settings(sweep.cells[2])).pair.hidden == (32, 16)
    assert sweep.cells[0].argv[:2] == ("--device", "cpu")

    # a value a file name should not hold is made safe, and two such cells stay apart
    a, b = cell_name([("model", "my/models.py:A")]), cell_name([("model", "my_models.py:A")])
    assert "/" not in a and a != b and a == cell_name([("model", "my/models.py:A")])


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--grid", "bta=1,2"], "--grid 'bta=1,2': pvae train has no option 'bta'; did you mean beta? Its options: "),
        (["--grid", "beta=1,-1", "seed=0,1"], "cell beta=-1,seed=0: --beta must be a non-negative number, not -1.0"),
        (["--grid", "lr=1e-3,x"], "cell lr=x: argument --lr: expected a number, not 'x'"),
        (["--grid", "beta"], "--grid 'beta': give NAME=V1,V2,..., e.g. beta=1,2,4"),
        (["--grid", "out=a,b"], "the sweep sets --out of every cell itself"),
        (["--grid", "seed=0,1", "--cell", "2"], "--cell 2: the sweep has 2 cells, 0 to 1"),
        (["--grid", "hidden=16,32"], "--hidden is given after -- and varied by the sweep: give it in one place"),
        (["--cells", "validate=maybe"], "validate is on or off: give true or false, not 'maybe'"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(tmp_path, capsys, argv, words):
    out = tmp_path / "s"
    assert main(["sweep", str(out), *argv, "--", "--epochs", "1", *SMALL]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pvae sweep: error: ") and words in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    if "bta" in argv[1]:
        assert "z_dim" in err and "out," not in err  # the options listed are those a grid can vary


def test_a_sweep_runs_every_cell_records_a_failure_and_the_same_command_finishes_it(tmp_path, capsys):
    """One cell diverges (an absurd learning rate): it is recorded as failed with its error and the others
    finish; --list and cell_status say so; a rerun skips the finished cells (their files untouched) and
    tries the failed one again. A cell is exactly the run `pvae train` makes of its options."""
    out, seed = tmp_path / "s", str(derived_seed(0))
    command = ["sweep", str(out), "--grid", "lr=1e30,1e-3", "beta=1,2", "--", "--epochs", "1", "--seed", seed, *SMALL]
    assert main(command) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-1].startswith(
        "pvae sweep: error: 2 of 4 cells failed (lr=1e30,beta=1: FloatingPointError: the loss became nan in epoch 1"
    )
    assert "sweep" in captured.out and "2 done, 2 failed of 4 cells" in captured.out
    assert sum("done in" in line for line in captured.err.splitlines()) == 2

    status = {row["name"]: row for row in cell_status(out)}
    assert [row["state"] for row in cell_status(out)] == ["failed", "failed", "done", "done"]
    failed = status["lr=1e30,beta=2"]
    assert failed["error"] == "FloatingPointError: the loss became nan in epoch 1; try a lower --lr"
    record = json.loads((out / ".sweep" / "lr=1e30,beta=2.error.json").read_text())
    assert record["error"] == failed["error"] and any("training vae/gaussian" in line for line in record["log_tail"])
    good = out / "lr=1e-3,beta=2"
    assert Path(status["lr=1e-3,beta=2"]["path"]) == good and status["lr=1e-3,beta=2"]["settings"]["beta"] == "2"
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["train_options"] == ["--epochs", "1", "--seed", seed, *with_test_device(SMALL)]
    assert [c["name"] for c in saved["cells"]] == list(status)

    # the cell is the run pvae train makes of its argv, number for number
    direct = tmp_path / "direct"
    argv = next(c["argv"] for c in saved["cells"] if c["name"] == good.name)
    assert main(["train", *argv, "--out", str(direct)]) == 0
    assert _metrics(good) == _metrics(direct)
    cell_test = json.loads((good / "summary.json").read_text())["test"]
    direct_test = json.loads((direct / "summary.json").read_text())["test"]
    assert cell_test["elbo"] == direct_test["elbo"] and cell_test["log_px"] == direct_test["log_px"]
    assert json.loads((good / "config.json").read_text())["train"]["beta"] == 2.0
    capsys.readouterr()

    assert main([*command[:5], "--list", *command[5:]]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split()[:3] == ["0", "failed", "lr=1e30,beta=1"] and listed[3].split() == ["3", "done", good.name]
    assert main(["sweep", str(out), "--list"]) == 0  # alone: the sweep in the folder, as its sweep.json lists it
    assert capsys.readouterr().out.splitlines() == listed
    assert main(["sweep", str(tmp_path / "none"), "--list"]) == 2
    assert "holds no sweep (no sweep.json); start one with pvae sweep" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()

    stamps = {p: p.stat().st_mtime_ns for p in out.glob("lr=1e-3,*/*") if p.is_file()}
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "2 of 4 cells done already" in err and "lr=1e-3" not in err.replace("(lr=1e30", "")
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("lr=1e-3,*/*") if p.is_file()}

    # another grid into the same folder is refused with the fix
    assert main(["sweep", str(out), "--grid", "beta=1,4", "--", "--epochs", "1", *SMALL]) == 2
    assert "holds another sweep (pvae sweep " in capsys.readouterr().err


def test_cell_runs_that_cell_alone_and_ctrl_c_leaves_it_to_be_resumed(tmp_path, monkeypatch, capsys):
    """--cell I trains cell I and no other; Ctrl-C in its second epoch leaves it partial; the same command
    resumes it from its checkpoint, and it ends as the uninterrupted run would have."""
    import pvae.engine.train

    out, seed = tmp_path / "s", str(derived_seed(1))
    command = ["sweep", str(out), "--grid", "seed=" + seed + ",7", "--cell", "1", "--", "--epochs", "2", *SMALL]
    real_step, steps = pvae.engine.train.step, []

    def step(*args):
        steps.append(1)
        if len(steps) == 3:  # two steps of 128 make an epoch of 200 digits: this is in the second
            raise KeyboardInterrupt
        return real_step(*args)

    monkeypatch.setattr(pvae.engine.train, "step", step)
    assert main(command) == 130
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("pvae sweep: interrupted; the same command goes on where it stopped: ")
    assert [row["state"] for row in cell_status(out)] == ["pending", "partial"]
    assert _epochs(out / "seed=7") == [1] and not (out / f"seed={seed}").exists()
    assert not (out / ".sweep" / "seed=7.error.json").exists()  # stopped, not failed

    monkeypatch.setattr(pvae.engine.train, "step", real_step)
    assert main(command) == 0
    assert "cell 1/2 seed=7: resuming after epoch 1" in capsys.readouterr().err
    assert _epochs(out / "seed=7") == [1, 2] and not (out / f"seed={seed}").exists()
    direct = tmp_path / "direct"
    assert main(["train", "--epochs", "2", "--seed", "7", *SMALL, "--out", str(direct)]) == 0
    assert _metrics(out / "seed=7") == _metrics(direct)
    capsys.readouterr()
    assert main(command) == 0
    assert "cell 1/2 seed=7: done already" in capsys.readouterr().err


def _wait_for(condition, seconds: float) -> None:
    stop = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < stop, "timed out"
        time.sleep(0.01)


def test_workers_killed_with_sigkill_then_the_same_command_finishes_with_nothing_trained_twice(tmp_path, capsys):
    """Two worker processes; the whole sweep is killed with SIGKILL while a cell trains (after its first
    checkpoint); the same sweep (here in one process) finishes every cell, resuming the interrupted ones:
    every metrics.jsonl holds each epoch once, and a cell finished before the kill is not trained again."""
    out, epochs = tmp_path / "s", 30
    seeds = [str(derived_seed(i)) for i in (2, 3, 4)]
    argv = [sys.executable, "-m", "pvae", "sweep", str(out), "--workers", "2", "--grid", "seed=" + ",".join(seeds)]
    argv += ["--", "--epochs", str(epochs), "--jit", "off", *with_test_device(SMALL)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(argv, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def mid_cell() -> bool:
        assert first.poll() is None, first.communicate()
        return any(2 <= len(_lines(p / "metrics.jsonl")) < epochs for p in out.glob("seed=*"))

    try:
        _wait_for(mid_cell, 120)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the sweep and its workers, as a scheduler's kill does
        first.communicate()
    # the workers (not this test's children) may still be on their way out, holding their cells' locks
    _wait_for(lambda: not any(running_elsewhere(out, f"seed={s}") for s in seeds), 30)
    states = {row["name"]: row["state"] for row in cell_status(out)}
    assert "partial" in states.values(), states
    finished = {p: p.stat().st_mtime_ns for name, s in states.items() if s == "done" for p in (out / name).iterdir()}

    assert main([*argv[3:5], *argv[7:]]) == 0  # without --workers 2: the same cells in this process
    err = capsys.readouterr().err
    assert [row["state"] for row in cell_status(out)] == ["done"] * 3
    for name, state in states.items():
        assert _epochs(out / name) == list(range(1, epochs + 1)), name
        if state == "partial":
            assert f"{name}: resuming after epoch" in err
    assert finished == {p: p.stat().st_mtime_ns for p in finished}
    log = (out / ".sweep" / "logs" / f"seed={seeds[0]}.log").read_text()
    assert log.startswith(f"sweep: cell 0/3 seed={seeds[0]}: starting")  # a worker's output went to its log


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


def _hold_lock(out: Path, name: str) -> int:
    """Take the cell's lock as another sweep process would; closing the descriptor lets it go."""
    import fcntl

    from pvae.studies.sweep import lock_path

    lock_path(out, name).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(out, name), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_a_cell_another_process_runs_is_skipped_not_trained_twice_and_not_failed(tmp_path, capsys, monkeypatch):
    """Cell 0's lock is held (another sweep process trains it): --cell 0 and the whole sweep skip it with one
    line, writing nothing into it; the other cell trains; --list says running; the exit is 0."""
    out, seeds = tmp_path / "s", [str(derived_seed(5)), str(derived_seed(6))]
    command = ["sweep", str(out), "--grid", "seed=" + ",".join(seeds), "--", "--epochs", "1", *SMALL]
    busy, other = f"seed={seeds[0]}", f"seed={seeds[1]}"
    fd = _hold_lock(out, busy)
    try:
        assert main([*command[:4], "--cell", "0", *command[4:]]) == 0
        line = f"sweep: cell 0/2 {busy}: running elsewhere (another process holds its lock); skipped"
        assert capsys.readouterr().err.splitlines() == [line]
        assert main(command) == 0
        captured = capsys.readouterr()
        assert line in captured.err.splitlines() and f"cell 1/2 {other}: done in" in captured.err
        assert f"sweep {out}: 1 done, 1 running elsewhere of 2 cells" in captured.out
        assert not (out / busy).exists() and not (out / ".sweep" / f"{busy}.error.json").exists()
        assert [row["state"] for row in cell_status(out)] == ["running", "done"]
        assert main([*command[:4], "--list", *command[4:]]) == 0
        assert capsys.readouterr().out.splitlines()[0].split() == ["0", "running", busy]
        # under torchrun rank 0 cannot skip it (the other ranks would wait for it): it stops, saying why
        with monkeypatch.context() as patch:
            patch.setattr(pvae.studies.sweep.run, "under_torchrun", lambda: True)
            assert main([*command[:4], "--cell", "0", *command[4:]]) == 2
        assert "is running elsewhere (another process holds its lock): under torchrun" in capsys.readouterr().err
    finally:
        os.close(fd)
    assert [row["state"] for row in cell_status(out)] == ["pending", "done"]  # the lock went with its holder


@pytest.mark.parametrize("text", ['{"error": "Value', "[1, 2]", "\xff\xfe"])
def test_a_corrupt_error_record_reads_as_failed_everywhere(tmp_path, capsys, text):
    """A cut-short, non-object or undecodable error record: cell_status, recorded_error and a worker's end all
    read it as a failure that says its record is unreadable, and none of them stops the sweep."""
    from pvae.studies.sweep import recorded_error
    from pvae.studies.sweep.workers import finished

    out = tmp_path / "s"
    sweep = _sweep(out, ["seed=0,1"], train=["--epochs", "1", *SMALL])
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps(sweep.record()))
    record = out / ".sweep" / "seed=0.error.json"
    record.parent.mkdir()
    record.write_bytes(text.encode("latin-1"))
    unreadable = f"failed (its error record {record} is unreadable)"
    assert [(row["state"], row["error"]) for row in cell_status(out)] == [("failed", unreadable), ("pending", None)]
    assert recorded_error(out / "seed=0") == unreadable and recorded_error(out / "seed=1") is None
    finished(sweep, sweep.cells[0], 1, 0.5)  # its worker exited 1 after writing this record
    assert f"cell 0/2 seed=0: failed in 0.5 s: {unreadable}" in capsys.readouterr().err
    assert json.loads(record.read_text())["error"] == unreadable


@pytest.mark.parametrize("status", [130, -signal.SIGINT])
def test_a_worker_that_was_interrupted_is_not_recorded_as_failed(tmp_path, capsys, status):
    from pvae.studies.sweep.workers import finished

    out = tmp_path / "s"
    sweep = _sweep(out, ["seed=0,1"], train=["--epochs", "1", *SMALL])
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps(sweep.record()))
    finished(sweep, sweep.cells[1], status, 2.0)
    assert "cell 1/2 seed=1: interrupted after 2.0 s; it is pending" in capsys.readouterr().err
    assert not (out / ".sweep" / "seed=1.error.json").exists()
    assert [row["state"] for row in cell_status(out)] == ["pending", "pending"]
    finished(sweep, sweep.cells[1], -signal.SIGKILL, 2.0)  # killed outright (out of memory): that is a failure
    assert cell_status(out)[1]["error"] == "the process killed by SIGKILL"


def test_grid_and_cells_given_again_add_up(tmp_path, capsys):
    """``--grid beta=0.5,1,2 --grid seed=0,1`` is six cells, as ``--grid beta=0.5,1,2 seed=0,1`` (a second --grid
    does not replace the first); a second --cells adds its cells. --list writes nothing."""
    args = cli.build_parser(only="sweep").parse_args(
        ["sweep", str(tmp_path / "s"), "--grid", "beta=0.5,1,2", "--grid", "seed=0,1", "--cells", "lr=0.01", "--cells",
         "lr=0.001"]
    )  # fmt: skip
    config = cli.from_args(SweepConfig, args)
    assert config.grid == ("beta=0.5,1,2", "seed=0,1") and config.cells == ("lr=0.01", "lr=0.001")
    sweep = _sweep(tmp_path / "s", config.grid, train=["--epochs", "1"])
    assert [c.name for c in sweep.cells] == [f"beta={b},seed={s}" for b in ("0.5", "1", "2") for s in (0, 1)]
    assert len(_sweep(tmp_path / "s", config.grid, config.cells).cells) == 12
    assert main(["sweep", str(tmp_path / "s"), "--grid", "beta=0.5,1,2", "--grid", "seed=0,1", "--list"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 6 and not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "grid, words",
    [
        (("beta=1,2", "beta=3"), "--grid names beta twice (beta=1,2 and beta=3): every cell would take the last value"),
        (("z-dim=2", "--z_dim=3"), "--grid names z_dim twice (z-dim=2 and --z_dim=3)"),
        (("beta=1,2", "seed=0", "beta=2,4"), "give its values once, e.g. --grid beta=1,2,4"),
    ],
)
def test_an_option_the_grid_names_twice_is_refused_by_the_config_too(grid, words):
    with pytest.raises(ValueError) as refused:
        SweepConfig(grid=grid)
    assert words in str(refused.value)


def test_a_cell_is_the_base_settings_replaced_and_its_values_are_read_as_pvae_train_reads_them(tmp_path, capsys):
    """A cell's settings are ``dataclasses.replace(base, **its own)``, its progress bar off unless given and the
    sweep's device; a value is read with pvae train's types and messages; where no options are typed they are
    written from ``base``; a setting the sweep sets itself is refused, in ``base`` or after --."""
    base = TrainSettings(epochs=1, hidden=(32, 16), lr=0.01)
    config = SweepConfig(grid=("beta=0.5,2", "vectorize=off,on"))
    sweep = Sweep(tmp_path / "s", config, base, device="cpu", check=train_config)
    assert sweep.train_options == ("--hidden", "32,16", "--epochs", "1", "--lr", "0.01")
    last = sweep.cells[-1]
    assert sweep.settings(last) == replace(base, beta=2.0, vectorize=True, progress=False, device="cpu")
    assert sweep.settings(last, out="o").out == "o"
    assert sweep.chosen(last, "out") == {"hidden", "epochs", "lr", "beta", "vectorize", "progress", "device", "out"}
    assert last.argv == (
        "--device", "cpu", "--no-progress", "--hidden", "32,16", "--epochs", "1", "--lr", "0.01", "--beta=2",
        "--vectorize",
    )  # fmt: skip
    shown = Sweep(tmp_path / "s", SweepConfig(grid=("seed=0,1",)), base, {"progress"})
    assert shown.settings(shown.cells[1]) == replace(base, seed=1) and shown.train_options == ("--progress",)
    with pytest.raises(ValueError, match=r"^cell lr=x: argument --lr: expected a number, not 'x'$"):
        Sweep(tmp_path / "s", SweepConfig(grid=("lr=1e-3,x",)), TrainSettings(), check=train_config)
    with pytest.raises(ValueError, match="^the sweep sets --out of every cell itself; leave it out$"):
        Sweep(tmp_path / "s", SweepConfig(grid=("seed=0,1",)), TrainSettings(out="elsewhere"))
    # the options after -- are pvae train's, refused as it refuses them, a --help among them too
    for after, words in [
        (["--epochs", "x"], "after --: argument --epochs: expected an integer, not 'x'"),
        (["--bta", "1"], "after --: no option --bta; did you mean --beta?"),
        (["--help"], "the sweep sets --help of every cell itself; leave it out"),
        (["-h"], "the sweep sets -h of every cell itself; leave it out"),
        (["--out=x"], "the sweep sets --out of every cell itself; leave it out"),
    ]:
        assert cli.main(["sweep", str(tmp_path / "s"), "--grid", "seed=0,1", "--", *after]) == 2
        captured = capsys.readouterr()
        assert captured.err == f"pvae sweep: error: {words}\n" and not captured.out
    assert not (tmp_path / "s").exists()


def test_the_python_api_runs_the_cells_the_command_line_runs(tmp_path, monkeypatch):
    """``sweep(OUT, SweepConfig(grid=...), DeviceConfig(), base=TrainSettings(...))`` is ``pvae sweep OUT --grid ...
    -- OPTIONS``: the same sweep.json, the same settings in every cell, the same run number for number."""
    from pvae.app.studies import sweep
    from pvae.base.device import DeviceConfig

    seed = derived_seed(12)
    base = TrainSettings(
        train_size=200, z_dim=2, hidden=(16,), epochs=1, seed=seed, samples=5, progress=False, device=TEST_DEVICE
    )
    argv = ["--train-size", "200", "--z-dim", "2", "--hidden", "16", "--epochs", "1", "--seed", str(seed)]
    argv += ["--samples", "5", "--no-progress", *(["--device", TEST_DEVICE] if TEST_DEVICE != "auto" else [])]
    grid = ("beta=1,2", "lr=1e-3,0.01")
    typed, made = _sweep("out", grid, train=argv), Sweep("out", SweepConfig(grid=grid), base, check=train_config)
    assert made.record() == typed.record()
    assert [made.settings(c) for c in made.cells] == [typed.settings(c) for c in typed.cells]
    assert [made.chosen(c) for c in made.cells] == [typed.chosen(c) - {"no_progress"} for c in typed.cells]

    for folder in ("api", "cli"):
        (tmp_path / folder).mkdir()
    monkeypatch.chdir(tmp_path / "api")
    rows = sweep("out", SweepConfig(grid=grid, cell=3), DeviceConfig(), base=base)
    assert [row["state"] for row in rows] == ["pending"] * 3 + ["done"]
    monkeypatch.chdir(tmp_path / "cli")
    assert cli.main(["sweep", "out", "--grid", *grid, "--cell", "3", "--", *argv]) == 0
    api, typed_out = tmp_path / "api" / "out", tmp_path / "cli" / "out"
    assert (api / "sweep.json").read_text() == (typed_out / "sweep.json").read_text()
    cell = api / "beta=2,lr=0.01"
    configs = [json.loads((run / "config.json").read_text()) for run in (cell, typed_out / cell.name)]
    assert configs[0] == configs[1] and (configs[0]["train"]["beta"], configs[0]["train"]["lr"]) == (2.0, 0.01)
    assert _metrics(cell) == _metrics(typed_out / cell.name)
    tests = [json.loads((run / "summary.json").read_text())["test"] for run in (cell, typed_out / cell.name)]
    assert tests[0]["elbo"] == tests[1]["elbo"] and tests[0]["log_px"] == tests[1]["log_px"]


#: A sweep.json as pvae wrote it before a cell's settings were a record: ``pvae sweep OUT --grid --vectorize=off,on
#: --cells 'hidden=32,16 beta=2' --device cpu -- --epochs=1 --z-dim 2 --train-size 200 --samples 5 --progress``.
# fmt: off
EARLIER_SWEEP_JSON = {
    "grid": [{"option": "vectorize", "values": ["off", "on"]}],
    "explicit": [[["hidden", "32,16"], ["beta", "2"]]],
    "train_options": ["--epochs=1", "--z-dim", "2", "--train-size", "200", "--samples", "5", "--progress"],
    "device": "cpu",
    "command": "pvae sweep OUT --grid --vectorize=off,on --cells 'hidden=32,16 beta=2' --device cpu -- --epochs=1 "
    "--z-dim 2 --train-size 200 --samples 5 --progress",
    "cells": [
        {
            "index": 0,
            "name": "hidden=32,16,beta=2,vectorize=off",
            "settings": [["hidden", "32,16"], ["beta", "2"], ["vectorize", "off"]],
            "argv": [
                "--device", "cpu", "--no-progress", "--epochs=1", "--z-dim", "2", "--train-size", "200", "--samples",
                "5", "--progress", "--hidden=32,16", "--beta=2", "--no-vectorize",
            ],
        },
        {
            "index": 1,
            "name": "hidden=32,16,beta=2,vectorize=on",
            "settings": [["hidden", "32,16"], ["beta", "2"], ["vectorize", "on"]],
            "argv": [
                "--device", "cpu", "--no-progress", "--epochs=1", "--z-dim", "2", "--train-size", "200", "--samples",
                "5", "--progress", "--hidden=32,16", "--beta=2", "--vectorize",
            ],
        },
    ],
}
# fmt: on


def test_a_sweep_an_earlier_pvae_began_goes_on(tmp_path, capsys):
    """The same command in a folder whose sweep.json an earlier pvae wrote: it is this sweep's (not "another
    sweep"), left as it is, and its cells run with their settings."""
    out = tmp_path / "s"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps(EARLIER_SWEEP_JSON))
    before = (out / "sweep.json").read_text()
    command = ["sweep", str(out), "--grid", "--vectorize=off,on", "--cells", "hidden=32,16 beta=2", "--device", "cpu"]
    assert cli.main([*command, "--cell", "1", "--", *EARLIER_SWEEP_JSON["train_options"]]) == 0
    assert "cell 1/2 hidden=32,16,beta=2,vectorize=on: done in" in capsys.readouterr().err
    assert (out / "sweep.json").read_text() == before
    assert [row["state"] for row in cell_status(out)] == ["pending", "done"]
    config = json.loads((out / "hidden=32,16,beta=2,vectorize=on" / "config.json").read_text())
    assert (config["pair"]["hidden"], config["pair"]["z_dim"], config["train"]["beta"]) == ([32, 16], 2, 2.0)
    assert (config["train"]["vectorize"], config["train"]["epochs"], config["data"]["train_size"]) == (True, 1, 200)


def test_sigterm_to_the_sweep_stops_its_workers_and_leaves_their_cells_to_be_resumed(tmp_path):
    """SIGTERM to the sweep process alone (timeout, kill PID): it stops its workers before it exits (status
    130), so no trainer outlives it and no cell's lock is still held; their cells are not failed."""
    out = tmp_path / "s"
    seeds = [str(derived_seed(i)) for i in (7, 8, 9)]
    argv = [sys.executable, "-m", "pvae", "sweep", str(out), "--workers", "2", "--grid", "seed=" + ",".join(seeds)]
    argv += ["--", "--epochs", "30", "--jit", "off", *with_test_device(SMALL)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sweep = subprocess.Popen(argv, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def both_running() -> bool:
        assert sweep.poll() is None, sweep.communicate()
        return sum(running_elsewhere(out, f"seed={s}") for s in seeds) == 2

    try:
        _wait_for(both_running, 120)
        sweep.send_signal(signal.SIGTERM)
        _, err = sweep.communicate(timeout=60)
        assert sweep.returncode == 130, err
        assert b"the same command goes on where it stopped: pvae sweep" in err and b"--workers 2" in err
        assert not any(running_elsewhere(out, f"seed={s}") for s in seeds)  # its workers are gone
        assert {row["state"] for row in cell_status(out)} <= {"partial", "pending"}
        assert not list((out / ".sweep").glob("*.error.json"))
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever of this sweep's session is left
            os.killpg(sweep.pid, signal.SIGKILL)
        sweep.communicate()


def test_workers_die_with_a_sweep_killed_by_sigkill(tmp_path):
    """SIGKILL to the sweep process alone (no handler sees it): the kernel ends its workers with SIGTERM
    (PR_SET_PDEATHSIG), so none trains on as an orphan; their cells stay partial, to be resumed."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    out = tmp_path / "s"
    seeds = [str(derived_seed(i)) for i in (10, 11)]
    argv = [sys.executable, "-m", "pvae", "sweep", str(out), "--workers", "2", "--grid", "seed=" + ",".join(seeds)]
    argv += ["--", "--epochs", "30", "--jit", "off", *with_test_device(SMALL)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sweep = subprocess.Popen(argv, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def both_running() -> bool:
        assert sweep.poll() is None, sweep.communicate()
        return sum(running_elsewhere(out, f"seed={s}") for s in seeds) == 2

    try:
        _wait_for(both_running, 120)
        sweep.kill()  # the sweep's own process only: its workers are not signalled by anyone else
        sweep.communicate(timeout=60)
        _wait_for(lambda: not any(running_elsewhere(out, f"seed={s}") for s in seeds), 60)
        assert {row["state"] for row in cell_status(out)} <= {"partial", "pending"}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sweep.pid, signal.SIGKILL)


def test_a_sweep_none_of_whose_cells_ran_is_replaced_by_the_corrected_command(tmp_path, capsys, monkeypatch):
    """Every cell fails before its run directory exists (here: MNIST cannot be downloaded, which no check before
    the cells start can tell): the corrected command replaces that sweep — its record, error records and logs —
    instead of refusing it as "another sweep"; a sweep one of whose cells made its run directory is still refused,
    and so is one beside a file of the user's."""
    import pvae.data.idx
    from pvae.data.idx import DataError

    def offline(*args, **kwargs):
        raise DataError("no mirror served train-images-idx3-ubyte.gz: <urlopen error no network>")

    monkeypatch.setenv("PVAE_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(pvae.data.idx, "_download_any", offline)
    out = tmp_path / "s"
    assert main(["sweep", str(out), "--grid", "seed=0,1", "--", "--data", "mnist", "--epochs", "1", *SMALL]) == 2
    assert "2 of 2 cells failed" in capsys.readouterr().err
    assert sorted(p.name for p in (out / ".sweep").glob("*.error.json")) == ["seed=0.error.json", "seed=1.error.json"]

    fixed = ["sweep", str(out), "--grid", "seed=0,1", "--", "--epochs", "1", *SMALL]
    assert main(fixed) == 0
    err = capsys.readouterr().err
    assert f"{out} held a sweep none of whose cells ran (pvae sweep {out} --grid seed=0,1 -- --data mnist" in err
    assert "replaced by this one" in err
    assert [row["state"] for row in cell_status(out)] == ["done", "done"]
    assert json.loads((out / "sweep.json").read_text())["train_options"][0] == "--epochs"
    assert not list((out / ".sweep").glob("*.error.json"))
    assert all("--data mnist" not in p.read_text() for p in (out / ".sweep" / "logs").glob("*.log"))

    # a sweep some cell of which ran is another sweep: refused, nothing of it touched
    before = (out / "sweep.json").read_text()
    assert main(["sweep", str(out), "--grid", "seed=2,3", "--", "--epochs", "1", *SMALL]) == 2
    assert "some of whose cells ran; choose another OUT" in capsys.readouterr().err
    assert (out / "sweep.json").read_text() == before


def test_a_sweep_that_never_ran_is_kept_beside_a_file_of_the_users(tmp_path):
    out = tmp_path / "s"
    old = _sweep(out, ["seed=0,1"], train=["--data", "mnist"])
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps(old.record()))
    new = _sweep(out, ["seed=0,1"], train=["--epochs", "1"])
    assert new.check_out() is False and new.replaces is not None  # never ran: to be replaced
    (out / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="holds another sweep .* some of whose cells ran"):
        new.check_out()


def test_what_this_machine_lacks_is_refused_before_sweep_json_is_written(tmp_path, capsys, monkeypatch):
    """A --device the machine lacks (every cell) or a --data-dir missing for one cell: refused with pvae train's
    message before anything is written, so the corrected command runs."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "s"
    assert cli.main(["sweep", str(out), "--grid", "seed=0,1", "--device", "cuda", "--", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pvae sweep: error: --device cuda: no CUDA device here") and "cell" not in err
    assert not out.exists()
    sweep = _sweep(out, [], [f"data-dir={tmp_path / 'nowhere'}", f"data-dir={tmp_path}"], ["--data", "kmnist"])
    with pytest.raises(ValueError, match=r"^cell data_dir=.*: --data-dir .*nowhere does not exist"):
        sweep.check_here(sweep.cells)
    sweep.check_here(sweep.cells[1:])  # the folder exists: kmnist is downloaded into it


def test_the_sweeps_folder_is_called_out_as_its_usage_calls_it(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert cli.main(["sweep", str(tmp_path / "file"), "--grid", "seed=0,1", "--", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert f"OUT {tmp_path / 'file'} is a file, not a folder" in err and "--out" not in err


@pytest.mark.parametrize(
    "argv, grid, cells",
    [
        (["--grid", "--beta=1,2", "seed=0,1"], ["beta=1,2", "seed=0,1"], []),
        (["--grid", "--z-dim=2,3", "--workers", "2"], ["z-dim=2,3"], []),
        (["--cells", "--elbo=iwae", "--grid", "--beta=1,2", "--list"], ["beta=1,2"], ["elbo=iwae"]),
        (["--grid", "beta=1,2", "--device=cpu"], ["beta=1,2"], []),  # the sweep's own option stays its own
    ],
)
def test_a_grid_item_spelt_as_a_flag_is_read_as_the_grid_spells_it(tmp_path, argv, grid, cells):
    """``--grid --beta=1,2``: argparse would take ``--beta=1,2`` for an option of the sweep; :func:`item_words`
    (for `pvae sweep` to parse) writes it ``beta=1,2``, which the sweep reads as it reads ``--beta=1,2`` quoted."""
    words = pvae.studies.sweep.item_words(["sweep", str(tmp_path / "s"), *argv])
    args = cli.build_parser(only="sweep").parse_args(words)
    assert list(args.grid) == grid and list(args.cells or ()) == cells
    assert args.device == ("cpu" if "--device=cpu" in argv else "auto")
    assert _sweep(tmp_path / "s", ["--beta=1,2"]).cells[1].settings == (("beta", "2"),)  # the sweep takes both


def test_a_long_error_shared_by_cells_issaid_once(tmp_path):
    from pvae.studies.sweep import Cell
    from pvae.studies.sweep.records import said_once

    sweep = types.SimpleNamespace(errors_said={})
    cells = [Cell(i, f"seed={i}", (("seed", str(i)),), ()) for i in range(3)]
    long = "DataError: " + "the file has changed since the run was trained " * 3
    assert said_once(sweep, cells[0], long) == long
    assert said_once(sweep, cells[1], long) == f"the same error as cell 0 seed=0 ({long[:60]}…)"
    assert said_once(sweep, cells[2], "ValueError: short") == "ValueError: short"  # a short one is said again
