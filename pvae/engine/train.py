"""Stochastic variational inference with Pyro's torch-native interface.

``loss_fn = ELBO(...)(model, guide)`` is an ordinary ``nn.Module`` (an ``ELBOModule``); one
``torch.optim`` optimizer steps all of its parameters. Losses are nats per datapoint.
"""

import functools
import math
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Protocol

import pyro
import torch
from tqdm.auto import tqdm

from pvae import data as pdata
from pvae.base.device import module_device, to_device
from pvae.base.rng import rng_state, set_rng_state
from pvae.base.runs import Run
from pvae.engine.bounds import evaluate, pair_args
from pvae.engine.compatibility import check_compatible
from pvae.engine.estimators import make_elbo
from pvae.engine.objectives import Loss, TracedLoss, backward, describe_execution, loss_module
from pvae.engine.pair import Traits, check_pair
from pvae.engine.ranks import Ranks, current
from pvae.engine.trainconfig import TrainConfig as TrainConfig
from pvae.engine.trainconfig import check_alpha as check_alpha


class EpochLog(Protocol):
    """What :func:`fit` tells a logger: the loss after every gradient step (a tensor on the device: reading it
    waits for the device), the metrics after every epoch, and whether it was the last (``--epochs`` reached or
    ``--max-seconds`` spent). Steps count from the run's first (1), across resumes."""

    def step(self, step: int, loss: torch.Tensor) -> None: ...

    def epoch(self, step: int, row: dict, model: torch.nn.Module, guide: torch.nn.Module, last: bool) -> None: ...


def make_loss(
    model: torch.nn.Module,
    guide: torch.nn.Module,
    config: TrainConfig,
    dataset_size: int | None = None,
) -> torch.nn.Module:
    """The loss module ``fit`` trains: the negative (beta-)ELBO summed over a batch; a
    :class:`pvae.engine.objectives.TracedLoss` unless ``config.jit`` is ``off`` or (``auto``) the
    estimator cannot be traced (:func:`pvae.engine.objectives.describe_execution` says which).

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
    config: TrainConfig = TrainConfig(),  # noqa: B008 (frozen: one default shared by every call is safe)
    run: Run | None = None,
    resume: bool = False,
    progress: bool = True,
    say: Callable[[str], None] | None = None,
    log: EpochLog | None = None,
) -> list[dict]:
    """Maximise the (beta-)ELBO of ``model`` and ``guide`` on ``dataset.train``.

    After each epoch: the validation ELBO (one sample of z per datapoint, nats per datapoint),
    and, with a ``run``, an atomic checkpoint and ``metrics.jsonl``.

    Under torchrun the ranks (:func:`pvae.engine.ranks.current`) train together: ``config.batch_size`` is the
    global batch, of which every rank takes its part, with its own draws; their gradients are averaged
    after every backward (:meth:`pvae.engine.ranks.Ranks.step`); they share the validation datapoints
    (:func:`pvae.engine.bounds.evaluate`); rank 0 alone writes the run and speaks, and every rank returns the
    metrics.

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
    :param log: told of every step and epoch (:class:`EpochLog`; e.g. :class:`pvae.studies.tensorboard.TensorBoardLog`),
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
    config = config.for_data(dataset)  # epochs unset: the data's own
    pair = check_pair(model, guide)  # the traits, read once here rather than in every step
    check_compatible(pair, dataset, config)
    pyro.set_rng_seed(config.seed)
    loss_fn = make_loss(model, guide, config, len(dataset.train))
    ranks, schedule, device = current(), config.schedule(), module_device(model)
    say = say if ranks.writes else None

    # parameters: Pyro creates some lazily, on a first (validated) pass, and the optimizer must see them
    _first_pass(loss_fn.loss_fn if isinstance(loss_fn, TracedLoss) else loss_fn, model, dataset)
    ranks.join(loss_fn, config.batch_size)
    if isinstance(loss_fn, TracedLoss):
        _compile_first(loss_fn, pair, dataset, ranks.part(config.batch_size))
        loss_fn.say = say  # after the first verdict, which is said below: for a later shape's that falls back
    if say is not None:
        say(describe_execution(loss_fn))
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=config.lr)
    start, history = _resume(run, model, guide, optimizer) if resume and run is not None else (0, [])

    steps = _plan(pair, dataset.train, config.batch_size)[1]
    trained = sum(m["seconds"] for m in history)  # seconds of training steps so far
    budget = math.inf if config.max_seconds is None else config.max_seconds
    # the bar closes however training ends (Ctrl-C included), so nothing is left on the terminal
    bar = tqdm(
        total=steps * (config.epochs - start), disable=not (progress and ranks.writes), unit="step", dynamic_ncols=True
    )
    with bar:
        for epoch in range(start, config.epochs):
            bar.set_description(f"epoch {epoch + 1}/{config.epochs}")
            tic = time.perf_counter()
            before = sum(m["steps"] for m in history)  # the run's steps before this epoch, for the log
            order, alike = ranks.epoch(config.seed, epoch)  # the batch order, and the seed of the ranks' validation
            total, seen, taken, out_of_time = _train_epoch(
                loss_fn, optimizer, ranks, pair, dataset, config, epoch, order, tic + budget - trained, bar, log, before
            )
            if device.type == "cuda":  # the epoch's steps are queued, not done, until the GPU catches up
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - tic
            trained += seconds
            if not torch.isfinite(total):  # before anything is evaluated or saved
                raise FloatingPointError(f"the loss became {float(total)} in epoch {epoch + 1}; try a lower --lr")

            # validate (one process: its stream goes on; ranks: each its part, drawn from (alike, rank)) and log
            beta = schedule(epoch + (taken - 1) / steps)  # at the epoch's last step
            val = evaluate(model, guide, dataset.val.datapoints(), dataset.val.y, 1, 1000, ranks=ranks, seed=alike)
            row = functools.partial(_epoch_metrics, epoch + 1, taken, float(total) / seen, val, beta, seconds)
            history.append(ranks.from_first(row))  # rank 0 holds the validation's summary
            if log is not None:
                log.epoch(before + taken, history[-1], model, guide, out_of_time or epoch + 1 == config.epochs)
            val_objective = history[-1]["val_objective"]
            bar.set_postfix(
                loss=f"{history[-1]['train_loss']:.2f}", val="—" if val_objective is None else f"{val_objective:.2f}"
            )

            # checkpoint: metrics first, so a checkpoint never gets ahead of its metrics
            if run is not None and ranks.writes:
                run.write_metrics(history)
                run.save_checkpoint(_checkpoint(model, guide, optimizer, epoch + 1))
            if out_of_time:
                break
    return history


def _train_epoch(
    loss_fn: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    ranks: Ranks,
    pair: Traits,
    dataset: pdata.Dataset,
    config: TrainConfig,
    epoch: int,
    order: torch.Generator | None,
    deadline: float,
    bar: tqdm,
    log: EpochLog | None,
    before: int,
) -> tuple[torch.Tensor, int, int, bool]:
    """The gradient steps of :func:`fit`'s epoch ``epoch``, over batches drawn in the order ``order`` gives, each
    rank taking its part of every global batch; beta follows fractional epochs. The epoch ends early once
    :func:`time.perf_counter` reaches ``deadline``, or where the loss is not finite. ``bar`` and ``log`` hear
    of every step, counted after the run's ``before`` steps.

    :returns: the loss summed over the epoch's datapoints (nats, a tensor on the pair's device: reading it waits
        for the device), the datapoints seen, the steps taken, and whether the time is spent.
    """
    eager: Loss = loss_fn.loss_fn if isinstance(loss_fn, TracedLoss) else loss_fn
    schedule, device = config.schedule(), module_device(loss_fn)
    batches, steps = _plan(pair, dataset.train, config.batch_size)
    total, seen, taken, out_of_time = torch.zeros((), device=device), 0, 0, False
    with pyro.validation_enabled(config.validate), warnings.catch_warnings():
        # a non-finite loss is refused by fit, once, with the fix; Pyro's warning on every step would bury it
        warnings.filterwarnings("ignore", message="Encountered NaN", category=UserWarning)
        for x, y in batches(dataset.train, config.batch_size, order):
            if not schedule.is_constant:
                eager.set_beta(schedule(epoch + taken / steps))
            n = x.shape[0]  # the global batch
            x, y = ranks.share(x, y)  # this rank's part: a contiguous slice, the first n % world ranks one more
            x, y = to_device(x, device), to_device(y, device)  # stored compactly on the host
            args = pair_args(pair, dataset.training_batch(x), y, training=True) if len(x) else ()
            loss, out_of_time = ranks.step(step, loss_fn, optimizer, args, n, lambda: time.perf_counter() >= deadline)
            total += loss * n  # nats summed over the epoch's datapoints
            seen += n
            taken += 1
            bar.update()
            if log is not None:
                log.step(before + taken, loss)
            if taken % 20 == 1:  # every 20 steps, so that the loss is not synchronised on every step
                value = float(loss)
                if not math.isfinite(value):  # stop now: a diverged step only spreads to the rest
                    return torch.tensor(value), seen, taken, out_of_time
                bar.set_postfix(loss=f"{value:.2f}")
            if out_of_time:
                break
    return total, seen, taken, out_of_time


def _plan(
    pair: Traits, train: pdata.Split, batch_size: int
) -> tuple[Callable[..., Iterator[tuple[torch.Tensor, torch.Tensor | None]]], int]:
    """How an epoch batches the training split, and its gradient steps: an unlabelled then a labelled batch
    per pair of steps when semi-supervised (twice over the unlabelled datapoints), else every datapoint once."""
    if pair.labels == "semi-supervised" and not train.fully_labelled:
        return pdata.semi_supervised_batches, 2 * math.ceil(int((~train.labelled).sum()) / batch_size)
    return pdata.batches, math.ceil(len(train) / batch_size)


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


def _compile_first(loss_fn: TracedLoss, pair: Traits, dataset: pdata.Dataset, share: slice) -> None:
    """Compile the loss for this rank's ``share`` of a full batch, traced on the first such slice of the
    training split and checked on the next slice labelled alike (a batch other than the traced one, as well
    as a fresh draw; the traced one again only where the split has no other), every random generator left
    as it was."""
    train, device = dataset.train, module_device(loss_fn)
    n = min(share.stop - share.start, len(train))
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
