"""More than one process (torchrun): two CPU processes over gloo.

The gradient test starts its two ranks with ``torch.multiprocessing``; the command-line tests start
``python -m torch.distributed.run`` (torchrun) as a subprocess, as a user would.
"""

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyro
import pytest
import torch
import torch.multiprocessing as mp

from pvae import data
from pvae.base import distributed
from pvae.base.runs import Run
from pvae.engine import ranks
from pvae.engine.config import PairConfig, build_pair
from pvae.engine.objectives import backward
from pvae.engine.train import TrainConfig, make_loss, step
from pvae.measures.evaluate import evaluate, summarize
from tests.conftest import derived_seed

#: Estimators whose gradient the two ranks must average: differentiable losses (meanfield, trace)
#: and those that train through ``loss_and_grads`` (iwae), or a surrogate of their own (dreg).
ESTIMATORS = ("meanfield", "trace", "iwae", "dreg")
#: The global batch the gradient test splits across two ranks: 5 + 4 datapoints (uneven on purpose).
BATCH = 9
#: The seed of the shared evaluation's draws.
EVAL_SEED = 5
REPO = Path(__file__).resolve().parent.parent


def _batch() -> torch.Tensor:
    """(BATCH, 1, 8, 8) binary digits, the same in every process (static binarization)."""
    digits = data.load(data.DataConfig("digits", binarize="static"))
    return digits.train.images(slice(BATCH))


def _pair():
    """The same small pair in every process (seeded)."""
    torch.manual_seed(derived_seed(11))
    return build_pair(PairConfig(z_dim=3, hidden=(16,)), (1, 8, 8))


def _loss(estimator: str) -> torch.nn.Module:
    """The same small pair and loss in every process, K=3 particles for the bounds that take them."""
    model, guide = _pair()
    particles = 3 if estimator in ("iwae", "dreg") else 1
    return make_loss(model, guide, TrainConfig(elbo=estimator, particles=particles))


def _noise_seed(rank: int) -> int:
    return derived_seed(100 + rank)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gradient_worker(rank: int, world: int, port: int, out: str) -> None:
    """One rank: join the group as torchrun would have it, take one step of the ranks per estimator on
    its shard (the contiguous part ``tensor_split`` gives it) with its own noise, save the result."""
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    distributed.setup(torch.device("cpu"))
    together = ranks.current()
    assert isinstance(together, ranks.Torchrun) and (together.rank, together.world) == (rank, world)
    (shard,) = together.share(_batch())
    assert torch.equal(shard, _batch().tensor_split(world)[rank])
    results = {}
    for estimator in ESTIMATORS:
        loss_fn = _loss(estimator)
        torch.manual_seed(_noise_seed(rank))
        params = list(loss_fn.parameters())
        optimizer = torch.optim.SGD(params, lr=0.0)
        loss, stop = together.step(step, loss_fn, optimizer, (shard,), BATCH, lambda: rank == 1)
        results[estimator] = {"loss": float(loss), "stop": stop, "grads": [p.grad.clone() for p in params]}
    model, guide = _pair()
    x = _batch()
    results["evaluation"] = evaluate(
        model, guide, x, torch.arange(BATCH), num_samples=4, ranks=together, seed=EVAL_SEED
    )
    # fewer datapoints than ranks: rank 0 scores them alone, with the draws of one process
    results["alone"] = evaluate(model, guide, x[:1], num_samples=4, ranks=together, seed=EVAL_SEED)
    torch.save(results, Path(out) / f"rank{rank}.pt")
    distributed.shutdown()


def test_two_ranks_average_to_the_gradient_of_the_union_of_their_shards_and_share_an_evaluation(tmp_path):
    mp.spawn(_gradient_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    done = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    x = _batch()
    for estimator in ESTIMATORS:
        # one process on the union of the shards, each shard's z drawn from the rank's stream:
        # the gradient of the summed loss over all BATCH datapoints, per datapoint
        loss_fn = _loss(estimator)
        total, alone = 0.0, None
        for rank, shard in enumerate(x.tensor_split(2)):
            torch.manual_seed(_noise_seed(rank))
            total += float(backward(loss_fn, shard, scale=1.0 / BATCH))
            if rank == 0:
                alone = [p.grad.clone() for p in loss_fn.parameters()]
        union = [p.grad for p in loss_fn.parameters()]
        for result in (r[estimator] for r in done):  # both ranks hold the same averaged gradient, the union's
            assert result["loss"] == pytest.approx(total / BATCH, rel=1e-5), estimator
            assert result["stop"] is True  # rank 1 asked to stop: both hear it
            for got, want in zip(result["grads"], union, strict=True):
                torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6, msg=estimator)
        # and the union's gradient is not what rank 0's shard gives alone: the averaging did something
        gap = max(float((a - u).abs().max()) for a, u in zip(alone, union, strict=True))
        assert gap > 1e-3, (estimator, gap)

    # the same ranks shared an evaluation of the batch: rank 0's summary is that of the two shares
    # scored in one process with the ranks' seeds, to the last float; rank 1 returned nothing
    assert done[1]["evaluation"] is None and done[1]["alone"] is None
    model, guide = _pair()
    shares = []
    for rank, index in enumerate(torch.arange(BATCH).tensor_split(2)):
        pyro.set_rng_seed(distributed.rank_seed(EVAL_SEED, rank) % 2**32)
        shares.append(evaluate(model, guide, x[index], index, num_samples=4, per_datapoint=True)["per_datapoint"])
    values = {key: torch.cat([share[key] for share in shares]) for key in shares[0]}
    want = summarize(values, model, guide, x, torch.arange(BATCH), num_samples=4)
    assert done[0]["evaluation"] == want
    assert want["n"] == BATCH and math.isfinite(want["log_px"])
    pyro.set_rng_seed(EVAL_SEED)
    alone = evaluate(model, guide, x[:1], num_samples=4)  # one datapoint: its standard errors are NaN
    assert done[0]["alone"] == pytest.approx(alone, rel=0, abs=0, nan_ok=True)


def test_a_batch_smaller_than_the_ranks_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"--batch-size 3 is the global batch.*4 processes.*--batch-size 4 or more"):
        distributed.check_batch_size(3, ranks=4)
    distributed.check_batch_size(4, ranks=4)  # one datapoint each is enough


def test_without_torchrun_everything_is_a_single_process():
    assert not distributed.active()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    grad = torch.tensor([1.0, 2.0])
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = grad
    assert distributed.average_gradients([p], 3.5, 1.0) == [3.5, 1.0]
    assert p.grad is grad  # untouched
    assert distributed.leave(2) == 2
    assert ranks.current() is ranks.ONE and ranks.ONE.writes
    x = torch.arange(5.0)
    assert ranks.ONE.share(x, None) == (x, None) and ranks.ONE.part(5) == slice(0, 5)
    assert ranks.ONE.epoch(3, 1) == (None, None)
    assert ranks.ONE.from_first(lambda: 7) == 7


@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("n", [1, 4, 9, 10, 11])
def test_each_rank_takes_the_part_tensor_split_gives_it_and_the_parts_cover_the_items_once(n, world):
    x, y = torch.arange(n) * 10.0, torch.arange(n)
    covered = []
    for rank in range(world):
        together = ranks.Torchrun(rank, world)
        part = together.part(n)
        assert torch.equal(x[part], x.tensor_split(world)[rank])
        shared_x, shared_y = together.share(x, y)
        assert torch.equal(shared_x, x.tensor_split(world)[rank]) and torch.equal(shared_y, y[part])
        assert together.share(x, None)[1] is None
        covered += y[part].tolist()
        assert together.writes == (rank == 0)
        # fewer items than ranks: rank 0 scores them all, the others none
        scoring = together.scoring(n)
        assert scoring.part(n) == (part if n >= world else slice(0, n if rank == 0 else 0))
    assert covered == list(range(n))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--data", "digits", "--batch-size", "1"], "--batch-size 1 is the global batch, split across the 2"),
        (
            ["plot", "no-run"],
            "under torchrun only `pvae train`, `pvae evaluate`, `pvae diagnose` and `pvae sweep --cell I` run",
        ),
    ],
)
def test_torchrun_refuses_what_it_cannot_do_before_joining_the_other_ranks(tmp_path, argv, message):
    # rank 1 of 2 as torchrun would start it, with no rank 0 to join: a refusal must come before joining
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "pvae", *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"[rank 1] pvae {argv[0]}: error: "), done.stderr
    assert message in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def _torchrun(tmp_path: Path, script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node 2 SCRIPT ARGS`` in ``tmp_path``, one thread per rank; a rank that
    dies of a signal prints where it was (Python's fault handler)."""
    path = tmp_path / "launch.py"
    path.write_text(textwrap.dedent(script))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "PYTHONFAULTHANDLER": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(path)]
    return subprocess.run(
        [*command, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _one_process(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m pvae ARGS`` in ``tmp_path``, one thread: what a rank of :func:`_torchrun` is compared with."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "pvae", *args]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout, check=False)


#: A launcher that runs ``pvae`` with its arguments; with FAIL_AFTER set, rank 1 raises on that step.
LAUNCH = """
    import os, sys
    import torch
    from pvae import cli
    from pvae.engine import ranks

    torch.set_num_threads(1)
    fail_after = int(os.environ.get("FAIL_AFTER", "0"))
    if fail_after and os.environ["RANK"] == "1":
        real, taken = ranks.Torchrun.step, []

        def failing(*args, **kwargs):
            taken.append(1)
            if len(taken) == fail_after:
                raise RuntimeError("rank 1 broke on purpose")
            return real(*args, **kwargs)

        ranks.Torchrun.step = failing
    sys.exit(cli.main(sys.argv[1:]))
"""

TRAIN = ["train", "--data", "digits", "--hidden", "32", "--z-dim", "4", "--samples", "5", "--no-progress"]


def test_a_rank_that_raises_stops_the_other_with_its_message(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIL_AFTER", "15")  # in the second epoch, after a checkpoint
    done = _torchrun(tmp_path, LAUNCH, *TRAIN, "--epochs", "3", "--out", "run", timeout=90)
    assert done.returncode != 0
    assert "[rank 1] pvae train: RuntimeError: rank 1 broke on purpose" in done.stderr
    run = Run(tmp_path / "run")
    # rank 0 wrote the first epoch and nothing after: the failure stopped it in the second
    assert [row["epoch"] for row in run.metrics()] == [1]
    assert run.load_checkpoint()["epoch"] == 1
    assert not (tmp_path / "run" / "summary.json").exists()

    # the first epoch's validation was shared: each rank scored its half of the validation split with
    # draws seeded from (the epoch's seed, rank), and rank 0 summarized both halves; one process with
    # the checkpoint's weights and the same seeds gives the same numbers
    from pvae.engine.config import restore

    _, config, dataset, model, guide = restore(tmp_path / "run")
    val, shares = dataset.val, []
    for rank, index in enumerate(torch.arange(len(val)).tensor_split(2)):
        pyro.set_rng_seed(distributed.rank_seed(distributed.rank_seed(config.train.seed, 0), rank) % 2**32)
        scores = evaluate(model, guide, val.images(index), val.y[index], 1, 1000, per_datapoint=True)
        shares.append(scores["per_datapoint"])
    values = {key: torch.cat([share[key] for share in shares]) for key in shares[0]}
    want = summarize(values, model, guide, val.images(), val.y, 1)
    assert run.metrics()[0]["val_elbo"] == pytest.approx(want["elbo"], rel=1e-5)
    assert run.metrics()[0]["val_kl"] == pytest.approx(want["kl"], rel=1e-5)


@pytest.mark.slow
def test_a_two_process_run_matches_a_one_process_run_and_resumes(tmp_path):
    """Two processes at global batch 64 give the test ELBO of one process at batch 64, within
    run-to-run noise (two seeds of the single process give the spread); a run stopped after 3 epochs
    and resumed under torchrun repeats the uninterrupted 2-process run."""
    settings = [*TRAIN, "--epochs", "6", "--batch-size", "64"]
    two = _torchrun(tmp_path, LAUNCH, *settings, "--out", "two", timeout=300)
    assert two.returncode == 0, two.stderr
    assert "× 2 processes (global batch 64)" in two.stderr
    assert two.stderr.count("training vae/gaussian") == 1  # rank 0 alone speaks
    elbos = {}
    for seed in (0, 1):
        one = _one_process(tmp_path, *settings, "--seed", str(seed), "--out", f"one{seed}", timeout=300)
        assert one.returncode == 0, one.stderr
        elbos[seed] = Run(tmp_path / f"one{seed}").summary()["test"]["elbo"]
    two_elbo = Run(tmp_path / "two").summary()["test"]["elbo"]
    spread = abs(elbos[0] - elbos[1])
    assert abs(two_elbo - (elbos[0] + elbos[1]) / 2) < max(3 * spread, 1.0), (two_elbo, elbos)

    # resume: 3 epochs, then on to 6 under torchrun
    short = _torchrun(tmp_path, LAUNCH, *TRAIN, "--epochs", "3", "--batch-size", "64", "--out", "resumed")
    assert short.returncode == 0, short.stderr
    again = _torchrun(tmp_path, LAUNCH, *settings, "--out", "resumed", "--resume", timeout=300)
    assert again.returncode == 0, again.stderr
    straight, resumed = Run(tmp_path / "two").metrics(), Run(tmp_path / "resumed").metrics()
    assert len(resumed) == 6
    for a, b in zip(straight, resumed, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_elbo"] == pytest.approx(b["val_elbo"], rel=1e-5)
    summary = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert summary["test"]["elbo"] == pytest.approx(Run(tmp_path / "two").summary()["test"]["elbo"], rel=1e-4)


def test_diagnose_under_torchrun_shares_the_nuts_chains_and_writes_what_one_process_writes(tmp_path):
    """Chain c runs on rank c mod 2 with the seed it has in one process: the same draws, the same files."""
    from pvae.cli import main

    assert main([*TRAIN, "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    settings = ["--points", "8", "--khat-samples", "100", "--nuts-points", "2", "--chains", "4"]
    settings += ["--nuts-warmup", "40", "--nuts-draws", "40", "--samples", "50", "--local-steps", "5"]
    settings += ["--max-r-hat", "100", "--min-ess", "1", "--max-divergences", "1000"]  # so the comparison is made
    settings += ["--elbo-samples", "20", "--latent-points", "50"]
    two = _torchrun(tmp_path, LAUNCH, "diagnose", "run", *settings, "--out", "two")
    assert two.returncode == 0, two.stderr
    assert two.stderr.count("diagnose: nuts ...") == 1  # rank 0 alone speaks
    one = _one_process(tmp_path, "diagnose", "run", *settings, "--out", "one")
    assert one.returncode == 0, one.stderr

    def numbers(folder: str) -> dict:
        results = json.loads((tmp_path / folder / "diagnostics.json").read_text())
        for part in results.values():
            if isinstance(part, dict):
                part.pop("seconds", None)
        results.pop("seconds")
        results["settings"].pop("out")
        return results

    want, got = numbers("one"), numbers("two")
    assert want["nuts"]["comparison"] is not None  # q's draws against NUTS's: what a diagnosis reports
    _assert_close(got, want)
    # and the draws themselves, of NUTS and of q, in posterior.nc
    from pvae.base import az

    one, two = (az.load_netcdf(tmp_path / folder / "posterior.nc") for folder in ("one", "two"))
    for group in ("posterior", az.GUIDE_GROUP):
        for name in one[group].data_vars:
            np.testing.assert_allclose(two[group][name].values, one[group][name].values, rtol=1e-6)
    assert sorted(p.name for p in (tmp_path / "two").rglob("*")) == sorted(
        p.name for p in (tmp_path / "one").rglob("*")
    )


def _assert_close(got, want, where: str = "") -> None:
    """Nested JSON values equal, floats to 1e-6 relative (the same draws; the ranks may sum in another order)."""
    if isinstance(want, dict):
        assert sorted(got) == sorted(want), where
        for key in want:
            _assert_close(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            _assert_close(a, b, f"{where}[{i}]")
    elif isinstance(want, float) and not math.isnan(want):
        assert got == pytest.approx(want, rel=1e-6, abs=1e-9), where
    elif isinstance(want, float):
        assert math.isnan(got), where
    else:
        assert got == want, where


def test_a_rank_that_lost_another_says_so_and_how_to_go_on(monkeypatch, capsys):
    import torch.distributed as dist

    from pvae import cli
    from pvae.base import distributed

    assert distributed.lost_a_rank(RuntimeError("[gloo/transport/tcp/pair.cc:598] Connection closed by peer [::1]"))
    assert distributed.lost_a_rank(dist.DistBackendError("NCCL communicator was aborted"))
    assert not distributed.lost_a_rank(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not distributed.lost_a_rank(ValueError("connection closed by peer"))  # not a collective's error

    def lost(args):
        raise RuntimeError("[gloo/transport/tcp/pair.cc:598] Connection closed by peer [127.0.0.1]:29500")

    left = []
    monkeypatch.setattr(distributed, "under_torchrun", lambda: True)
    monkeypatch.setattr(distributed, "leave", lambda status: left.append(status) or status)
    monkeypatch.setattr(cli, "_dispatch", lost)  # the command itself fails as a lost rank makes it fail
    assert cli.main(["train", "--epochs", "1"]) == 2 and left == [2]
    err = capsys.readouterr().err
    assert "another process of this torchrun ended without a word" in err and "Traceback" not in err
    assert "the same torchrun command with --resume goes on from it" in err


def test_a_rank_that_is_done_ends_through_os_exit_and_a_single_process_returns(monkeypatch, tmp_path):
    """A finished rank skips the interpreter's teardown (where torch's process-group objects can abort it after
    its work, and torchrun would then stop rank 0 mid-plot): the command's end goes through ``leave(0)``, which
    ends the process under torchrun and returns 0 without it."""
    from pvae import cli
    from pvae.base import distributed

    left = []
    monkeypatch.setattr(distributed, "under_torchrun", lambda: True)
    monkeypatch.setattr(distributed, "leave", lambda status: left.append(status) or status)
    monkeypatch.setattr(cli, "_dispatch", lambda args: None)  # the command succeeds
    assert cli.main(["train", "--epochs", "1"]) == 0 and left == [0]
    # in a child "under torchrun" that is done, nothing after leave runs: no atexit handler, no teardown
    script = tmp_path / "done.py"
    script.write_text(
        "import atexit, sys\n"
        "from pvae.base import distributed\n"
        "atexit.register(lambda: print('teardown ran'))\n"
        "print('done', flush=False)\n"
        "distributed.leave(0)\n"
        "print('after leave')\n"
    )
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "PYTHONPATH": str(REPO)}
    child = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert (child.returncode, child.stdout) == (0, "done\n")  # its output flushed, then gone
    env = {k: v for k, v in env.items() if k not in distributed.TORCHRUN_VARIABLES}
    child = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert (child.returncode, child.stdout) == (0, "done\nafter leave\nteardown ran\n")  # one process: returns
