"""Stochastic variational inference with Pyro's torch-native interface.

``loss_fn = ELBO(...)(model, guide)`` is an ordinary ``nn.Module`` (an ``ELBOModule``); one
``torch.optim`` optimizer steps all of its parameters. Losses are nats per datapoint.
"""

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import pyro
import torch
from tqdm.auto import tqdm

from pvae import data as pdata
from pvae import distributed, options
from pvae.device import module_device, to_device
from pvae.estimators import ESTIMATORS, make_elbo
from pvae.evaluate import evaluate, evaluate_shared, pair_args
from pvae.objectives import (
    BETA_SCHEDULES,
    JIT_MODES,
    BetaSchedule,
    Loss,
    TracedLoss,
    backward,
    describe_execution,
    loss_module,
)
from pvae.pair import Traits, check_compatible, check_pair
from pvae.runs import Run, rng_state, set_rng_state


class EpochLog(Protocol):
    """What :func:`fit` tells a logger: the loss after every gradient step (a tensor on the device: reading it
    waits for the device), the metrics after every epoch, and whether it was the last (``--epochs`` reached or
    ``--max-seconds`` spent). Steps count from the run's first (1), across resumes."""

    def step(self, step: int, loss: torch.Tensor) -> None: ...

    def epoch(self, step: int, row: dict, model: torch.nn.Module, guide: torch.nn.Module, last: bool) -> None: ...


@dataclass(frozen=True)
class TrainConfig:
    """How to fit a pair.

    :param elbo: the estimator, a name from :data:`pvae.estimators.ESTIMATORS`.
    :param beta: scale of the latent sites' log-densities in model and guide (1: the ELBO); under
        a schedule, the value it reaches. With ``--elbo tcvae``, the weight of the total correlation
        alone (beta-TCVAE).
    :param beta_schedule: how beta moves over training: ``constant``, ``linear-warmup`` or
        ``cyclical`` (see :class:`pvae.objectives.BetaSchedule`).
    :param beta_warmup: epochs of the linear warm-up.
    :param beta_cycles: cycles of the cyclical schedule over training.
    :param beta_ramp: fraction of each cycle in which beta rises.
    :param epochs: passes over the training split.
    :param batch_size: datapoints per step.
    :param lr: Adam's learning rate.
    :param particles: samples of z per datapoint and step (K of ``iwae``, ``renyi``, ``dreg``).
    :param vectorize: draw the particles in one vectorized pass (else a Python loop over them).
    :param alpha: order of the Rényi bound, ``--elbo renyi`` only (when unset,
        :data:`pvae.estimators.DEFAULT_ALPHA`).
    :param max_seconds: stop once the training steps have taken this long (for comparisons at
        equal wall-clock time); the last epoch is then partial.
    :param seed: seeds torch, numpy and Python's RNGs (initialisation, batches, binarization, z).
    :param jit: compile the loss with ``torch.jit.trace`` (faster steps; see
        :class:`pvae.objectives.TracedLoss`): ``auto`` compiles where the estimator allows it and
        the compiled loss matches the eager one (value and gradient, on a fresh draw), and runs
        eagerly otherwise; ``on`` compiles or refuses; ``off`` never compiles.
    :param validate: keep Pyro's argument and support checks on for every step; by default they
        check the first batch only, since they cost about as much as the rest of Pyro's bookkeeping.
    """

    elbo: str = field(default="meanfield", metadata=options.choices(lambda: sorted(ESTIMATORS)))
    beta: float = 1.0
    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    particles: int = 1
    vectorize: bool = True
    alpha: float | None = None
    max_seconds: float | None = None
    seed: int = 0
    jit: str = field(default="auto", metadata=options.choices(JIT_MODES))
    validate: bool = False
    beta_schedule: str = field(default="constant", metadata=options.choices(lambda: sorted(BETA_SCHEDULES)))
    beta_warmup: float = 10.0
    beta_cycles: int = 4
    beta_ramp: float = 0.5

    def __post_init__(self):
        if isinstance(self.jit, bool):  # config.json of runs written before --jit had modes
            object.__setattr__(self, "jit", "on" if self.jit else "off")
        options.seed(self, "seed")
        options.check_choices(self)
        options.positive(self, "epochs", "batch_size", "lr", "particles", "beta_warmup", "beta_cycles")
        options.positive(self, "beta", "max_seconds", zero=True)
        check_alpha(self)
        options.require(self, "beta_ramp", 0 < self.beta_ramp <= 1, "a fraction of a cycle, 0 < ramp ≤ 1")

    def schedule(self) -> BetaSchedule:
        """beta over training."""
        return BetaSchedule(
            self.beta_schedule, self.beta, self.epochs, self.beta_warmup, self.beta_cycles, self.beta_ramp
        )


def check_alpha(config) -> None:
    """Refuse a Rényi order ``config.alpha`` that is NaN, infinite, negative or 1 (the ELBO itself)."""
    options.positive(config, "alpha", zero=True)
    options.require(config, "alpha", config.alpha != 1, "other than 1 (alpha=1 is the ELBO: use --elbo trace)")


def make_loss(
    model: torch.nn.Module,
    guide: torch.nn.Module,
    config: TrainConfig,
    dataset_size: int | None = None,
) -> torch.nn.Module:
    """The loss module ``fit`` trains: the negative (beta-)ELBO summed over a batch; a
    :class:`pvae.objectives.TracedLoss` unless ``config.jit`` is ``off`` or (``auto``) the
    estimator cannot be traced (:func:`pvae.objectives.describe_execution` says which).

    :param model: the generative model.
    :param guide: the amortized guide.
    :param config: estimator, beta and its schedule, particles.
    :param dataset_size: the number of training datapoints, for estimators that need it
        (``tcvae`` at a beta other than 1); ``fit`` passes ``len(dataset.train)``.
    """
    elbo = make_elbo(
        config.elbo,
        num_particles=config.particles,
        vectorize_particles=config.vectorize and config.particles > 1,
        alpha=config.alpha,
        dataset_size=dataset_size,
    )
    schedule = config.schedule()
    loss_fn = loss_module(model, guide, elbo, beta=schedule(0.0), scheduled=not schedule.is_constant)
    if config.jit == "off" or (config.jit == "auto" and not loss_fn.traceable):
        return loss_fn
    return TracedLoss(loss_fn, fallback=config.jit == "auto")


def check_estimator(
    model: torch.nn.Module, guide: torch.nn.Module, dataset: pdata.Dataset, config: TrainConfig
) -> None:
    """Let the estimator refuse the pair before any file is written: an estimator with needs that a
    pair's traits do not show (``tcvae``: a diagonal Gaussian q(z|x)) has a
    ``check_pair(model, guide, *args)``, called here on two training datapoints, with every RNG's
    state restored afterwards (``fit`` would refuse the same pair on its first pass).

    :param model: the generative model.
    :param guide: the amortized guide.
    :param dataset: the data it would train on.
    :param config: the training settings (their estimator is checked).
    :raises ValueError: naming the fix.
    """
    check = getattr(make_elbo(config.elbo, alpha=config.alpha), "check_pair", None)
    if check is None:
        return
    state = pyro.util.get_rng_state()
    try:
        check(model, guide, *_training_args(model, dataset, slice(2), module_device(model)))
    finally:
        pyro.util.set_rng_state(state)


def step(loss_fn: torch.nn.Module, optimizer: torch.optim.Optimizer, *args: torch.Tensor) -> torch.Tensor:
    """One gradient step on a batch, for every estimator (those without a differentiable loss
    through their ``loss_and_grads``); returns the loss in nats per datapoint (detached)."""
    n = args[0].shape[0]
    optimizer.zero_grad(set_to_none=True)
    loss = backward(loss_fn, *args, scale=1.0 / n) / n
    optimizer.step()
    return loss


def shared_step(
    loss_fn: torch.nn.Module, optimizer: torch.optim.Optimizer, *args: torch.Tensor, batch_size: int, stop: bool = False
) -> tuple[torch.Tensor, bool]:
    """One gradient step taken by every rank together (under torchrun) on a global batch of
    ``batch_size`` datapoints, of which ``args`` are this rank's shard (``()`` for an empty one).

    Each rank scales its summed gradient by world/``batch_size``; the average across ranks
    (:func:`pvae.distributed.average_gradients`, for every estimator, those that train through
    ``loss_and_grads`` included) is then the gradient of the loss per datapoint of the whole
    batch, as one process would compute it on the union of the shards with the same draws.

    :param loss_fn: the loss module.
    :param optimizer: steps every parameter of ``loss_fn``.
    :param args: this rank's shard: ``x``, or ``x, y``.
    :param batch_size: datapoints in the global batch, summed over the ranks.
    :param stop: this rank wants training to stop after this step (its time is spent).
    :returns: the loss of the global batch in nats per datapoint, and whether any rank asked to stop;
        the same on every rank.
    """
    world = distributed.world_size()
    optimizer.zero_grad(set_to_none=True)
    local = float(backward(loss_fn, *args, scale=world / batch_size)) * world / batch_size if args else 0.0
    params = [p for group in optimizer.param_groups for p in group["params"]]
    loss, stops = distributed.average_gradients(params, local, float(stop))
    optimizer.step()
    return torch.tensor(loss), stops > 0


def _objective(scores: dict, beta: float) -> float | None:
    """reconstruction (+ the label's term) − beta·KL: what the training loss estimates, per datapoint."""
    value = scores["reconstruction"] + scores.get("log_py", 0.0)
    if beta == 0:
        return value
    return None if scores["kl"] is None else value - beta * scores["kl"]


def fit(
    model: torch.nn.Module,
    guide: torch.nn.Module,
    dataset: pdata.Dataset,
    config: TrainConfig = TrainConfig(),
    run: Run | None = None,
    resume: bool = False,
    progress: bool = True,
    say: Callable[[str], None] | None = None,
    log: EpochLog | None = None,
) -> list[dict]:
    """Maximise the (beta-)ELBO of ``model`` and ``guide`` on ``dataset.train``.

    After each epoch: the validation ELBO (one sample of z per datapoint, nats per datapoint),
    and, with a ``run``, an atomic checkpoint and ``metrics.jsonl``.

    Under torchrun (:mod:`pvae.distributed`), every rank draws the same permutation of each epoch
    (seeded with the run's seed and the epoch) and takes its share of every batch
    (``config.batch_size`` is the global batch); z and dynamic binarization draw from the rank's own
    stream, reseeded at every epoch from (seed, rank, epoch), so that a resumed run repeats the
    uninterrupted one without the other ranks' RNG states in the checkpoint. Gradients are averaged
    across ranks after every backward (:func:`shared_step`). The ranks share the validation
    datapoints (:func:`pvae.evaluate.evaluate_shared`); rank 0 alone writes the run, and every rank
    returns its metrics.

    :param model: the generative model, on the device to train on (the guide on the same one);
        each batch moves there from the host when it is used.
    :param guide: the amortized guide.
    :param dataset: the data; ``dataset.val`` is scored after every epoch.
    :param config: estimator, beta, optimizer and budget.
    :param run: the run directory to write metrics and checkpoints to (None: nothing is written).
    :param resume: continue from the run's checkpoint (parameters, optimizer, RNG, epoch).
    :param progress: show a tqdm bar with epoch, step and loss.
    :param say: called with the lines a user should read: which way the loss runs (compiled, checked
        against the eager loss before the first step, or eager and why).
    :param log: told of every step and epoch (:class:`EpochLog`; e.g. :class:`pvae.tensorboard.TensorBoardLog`),
        on the rank that calls it; nothing is logged when None.
    :returns: the metrics, one dict per epoch: ``epoch``, ``steps`` (fewer than an epoch's
        when ``config.max_seconds`` ends training), ``train_loss`` (the negative
        objective, averaged over the epoch's datapoints), ``val_elbo`` (``None`` for a guide
        without a density), ``val_reconstruction`` and ``val_kl``, ``val_objective``
        (reconstruction − beta·KL on validation, beta at the epoch's last step: the quantity
        ``train_loss`` estimates, except for M2, whose training loss adds the classifier's term
        and scales only z's KL where this scales the label's too, for ``iwae``, ``renyi``
        and ``dreg`` with K > 1, whose training loss is a tighter bound, and for ``tcvae``, whose
        beta weights the total correlation alone; ``None`` for a point-mass guide
        with beta > 0), ``beta``, ``val_accuracy`` (for guides that classify) and ``seconds``
        (training only).
    """
    pair = check_pair(model, guide)  # the traits, read once here rather than in every step
    check_compatible(pair, dataset, config)
    pyro.set_rng_seed(config.seed)
    loss_fn = make_loss(model, guide, config, len(dataset.train))
    eager: Loss = loss_fn.loss_fn if isinstance(loss_fn, TracedLoss) else loss_fn
    schedule = config.schedule()
    train = dataset.train
    semi_supervised = pair.labels == "semi-supervised" and not train.fully_labelled
    device = module_device(model)

    # parameters: Pyro creates some lazily, on a first (validated) pass, and the optimizer must see them
    _first_pass(eager, model, dataset)
    world, rank = distributed.world_size(), distributed.rank()
    if world > 1:
        distributed.check_batch_size(config.batch_size)
        distributed.broadcast_parameters(loss_fn)  # the same seed gave the same ones; this makes sure
    if isinstance(loss_fn, TracedLoss):
        _compile_first(loss_fn, pair, dataset, config.batch_size)
        loss_fn.say = say  # after the first verdict, which is said below: for a later shape's that falls back
    if say is not None:
        say(describe_execution(loss_fn))
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=config.lr)
    start, history = _resume(run, model, guide, optimizer) if resume and run is not None else (0, [])

    # the plan: an unlabelled then a labelled batch per step pair when semi-supervised
    batches = pdata.semi_supervised_batches if semi_supervised else pdata.batches
    steps = _steps_per_epoch(train, config.batch_size, semi_supervised)
    # the bar closes however training ends (Ctrl-C included), so nothing is left on the terminal
    bar = tqdm(total=steps * (config.epochs - start), disable=not progress or rank > 0, unit="step", dynamic_ncols=True)
    with bar:
        trained = sum(m["seconds"] for m in history)  # seconds of training steps so far
        budget = math.inf if config.max_seconds is None else config.max_seconds
        for epoch in range(start, config.epochs):
            # train one epoch; `taken` is the step counter, beta follows fractional epochs
            bar.set_description(f"epoch {epoch + 1}/{config.epochs}")
            tic, total, seen, taken = time.perf_counter(), torch.zeros((), device=device), 0, 0
            before = sum(m["steps"] for m in history)  # the run's steps before this epoch, for the log
            out_of_time, generator = False, None
            if world > 1:  # one permutation for all ranks; z and binarization from the rank's own stream
                generator = torch.Generator().manual_seed(distributed.rank_seed(config.seed, epoch))
                pyro.set_rng_seed(distributed.rank_seed(config.seed, rank, epoch) % 2**32)
            with pyro.validation_enabled(config.validate), warnings.catch_warnings():
                # a non-finite loss is refused below, once, with the fix; Pyro's warning on every step would bury it
                warnings.filterwarnings("ignore", message="Encountered NaN", category=UserWarning)
                for x, y in batches(train, config.batch_size, generator):
                    if not schedule.is_constant:
                        eager.set_beta(schedule(epoch + taken / steps))
                    n = x.shape[0]  # the global batch
                    if world == 1:
                        x, y = to_device(x, device), to_device(y, device)  # stored compactly on the host
                        loss = step(loss_fn, optimizer, *pair_args(pair, dataset.training_batch(x), y, training=True))
                    else:  # this rank's share: a contiguous slice, the first n % world ranks one datapoint more
                        x, y = x.tensor_split(world)[rank], None if y is None else y.tensor_split(world)[rank]
                        x, y = to_device(x, device), to_device(y, device)
                        args = pair_args(pair, dataset.training_batch(x), y, training=True) if len(x) else ()
                        spent = trained + time.perf_counter() - tic >= budget
                        loss, out_of_time = shared_step(loss_fn, optimizer, *args, batch_size=n, stop=spent)
                    total += loss * n  # nats summed over the epoch's datapoints
                    seen += n
                    taken += 1
                    bar.update()
                    if log is not None:
                        log.step(before + taken, loss)
                    if taken % 20 == 1:  # every 20 steps, so that the loss is not synchronised on every step
                        value = float(loss)
                        if not math.isfinite(value):  # stop now: a diverged step only spreads to the rest
                            total = torch.tensor(value)
                            break
                        bar.set_postfix(loss=f"{value:.2f}")
                    if out_of_time or (world == 1 and trained + time.perf_counter() - tic >= budget):
                        out_of_time = True
                        break
            if device.type == "cuda":  # the epoch's steps are queued, not done, until the GPU catches up
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - tic
            trained += seconds
            if not torch.isfinite(total):  # before anything is evaluated or saved
                raise FloatingPointError(f"the loss became {float(total)} in epoch {epoch + 1}; try a lower --lr")

            # validate and log
            beta = schedule(epoch + (taken - 1) / steps)  # at the epoch's last step
            # under torchrun the ranks share the validation datapoints (draws seeded per epoch and rank) and
            # rank 0 gathers them; each rank's training stream is reseeded at the next epoch anyway
            row = None
            if world == 1:
                val = evaluate(model, guide, dataset.val.datapoints(), dataset.val.y, num_samples=1, batch_size=1000)
            else:
                val = evaluate_shared(
                    model,
                    guide,
                    dataset.val.datapoints(),
                    dataset.val.y,
                    1,
                    1000,
                    distributed.rank_seed(config.seed, epoch),
                )
            if rank == 0:
                row = _epoch_metrics(epoch + 1, taken, float(total) / seen, val, beta, seconds)
            history.append(distributed.broadcast_object(row))
            if log is not None:
                log.epoch(before + taken, history[-1], model, guide, out_of_time or epoch + 1 == config.epochs)
            val_objective = history[-1]["val_objective"]
            bar.set_postfix(
                loss=f"{history[-1]['train_loss']:.2f}", val="—" if val_objective is None else f"{val_objective:.2f}"
            )

            # checkpoint: metrics first, so a checkpoint never gets ahead of its metrics
            if run is not None and rank == 0:
                run.write_metrics(history)
                run.save_checkpoint(_checkpoint(model, guide, optimizer, epoch + 1))
            if out_of_time:
                break
    return history


def _first_pass(eager: Loss, model: torch.nn.Module, dataset: pdata.Dataset) -> None:
    """One validated estimate on two datapoints: checks data and pair, and creates lazy parameters."""
    with pyro.validation_enabled(True):
        eager.estimate(*_training_args(model, dataset, slice(2), module_device(model)))


def _training_args(pair: torch.nn.Module | Traits, dataset: pdata.Dataset, part: slice, device) -> tuple:
    """The arguments of a training step on the training datapoints ``part``, on ``device``: x as training
    sees it (dynamic binarization draws), with the labels where every one of them has one."""
    train = dataset.train
    y = to_device(train.y[part], device) if bool(train.labelled[part].all()) else None
    return pair_args(pair, dataset.training_batch(to_device(train.images(part), device)), y, training=True)


def _compile_first(loss_fn: TracedLoss, pair: Traits, dataset: pdata.Dataset, batch_size: int) -> None:
    """Compile the loss for this rank's share of a full batch, traced on the first such slice of the
    training split and checked on the next slice labelled alike (a batch other than the traced one, as well
    as a fresh draw; the traced one again only where the split has no other), every random generator left
    as it was."""
    train, device = dataset.train, module_device(loss_fn)
    world, rank = distributed.world_size(), distributed.rank()
    n = min(batch_size // world + (rank < batch_size % world), len(train))
    labelled = bool(train.labelled[:n].all())
    traced, checked = slice(0, n), slice(0, n)
    for start in range(n, len(train) - n + 1, n):  # the first other slice of the same kind (both kinds: M2)
        if bool(train.labelled[start : start + n].all()) == labelled:
            checked = slice(start, start + n)
            break
    state = rng_state()  # dynamic binarization draws too
    try:
        parts = (traced,) if checked == traced else (traced, checked)
        loss_fn.compile(*(_training_args(pair, dataset, part, device) for part in parts))
    finally:
        set_rng_state(state)


def _steps_per_epoch(train: pdata.Split, batch_size: int, semi_supervised: bool) -> int:
    """Gradient steps in one epoch: over the unlabelled datapoints, twice (an unlabelled batch, then a
    labelled one), when semi-supervised; else over every datapoint."""
    if semi_supervised:
        return 2 * math.ceil(int((~train.labelled).sum()) / batch_size)
    return math.ceil(len(train) / batch_size)


def _checkpoint(model: torch.nn.Module, guide: torch.nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> dict:
    """What ``checkpoint.pt`` holds after ``epoch`` epochs: enough to continue bit for bit."""
    return {
        "model": model.state_dict(),
        "guide": guide.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
        "epoch": epoch,
    }


def _resume(
    run: Run, model: torch.nn.Module, guide: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[int, list[dict]]:
    """Load the run's checkpoint into the pair, the optimizer and the RNGs; returns the epochs done and
    their metrics."""
    state = run.load_checkpoint()
    model.load_state_dict(state["model"])
    guide.load_state_dict(state["guide"])
    optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    return state["epoch"], run.metrics()[: state["epoch"]]


def _epoch_metrics(epoch: int, steps: int, train_loss: float, val: dict, beta: float, seconds: float) -> dict:
    """One row of ``metrics.jsonl`` (the keys :func:`fit` documents)."""
    metrics = {
        "epoch": epoch,
        "steps": steps,
        "train_loss": train_loss,
        "val_elbo": val["elbo"],
        "val_reconstruction": val["reconstruction"],
        "val_kl": val["kl"],
        "val_objective": _objective(val, beta),
        "beta": beta,
        "seconds": seconds,
    }
    if "accuracy" in val:
        metrics["val_accuracy"] = val["accuracy"]
    return metrics
