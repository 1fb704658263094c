"""Stochastic variational inference with Pyro's torch-native interface.

``loss_fn = ELBO(...)(model, guide)`` is an ordinary ``nn.Module`` (an ``ELBOModule``); one
``torch.optim`` optimizer steps all of its parameters. Losses are nats per datapoint.
"""

import math
import time
from dataclasses import dataclass

import pyro
import torch
from tqdm.auto import tqdm

from pvae import data as pdata
from pvae.evaluate import evaluate, pair_args
from pvae.objectives import TracedLoss, loss_module, make_elbo
from pvae.runs import Run, rng_state, set_rng_state


@dataclass(frozen=True)
class TrainConfig:
    """How to fit a pair.

    :param elbo: estimator name from :data:`pvae.objectives.ESTIMATORS`.
    :param beta: scale of the latent site in model and guide (1: the ELBO).
    :param epochs: passes over the training split.
    :param batch_size: datapoints per step.
    :param lr: Adam's learning rate.
    :param num_particles: samples of z per datapoint and step.
    :param seed: seeds torch, numpy and Python's RNGs (initialisation, batches, binarization, z).
    :param jit: compile the loss with ``torch.jit.trace`` (see :class:`pvae.objectives.TracedLoss`).
    :param validate: keep Pyro's argument and support checks on for every step; by default they
        check the first batch only, since they cost about as much as the rest of Pyro's bookkeeping.
    """

    elbo: str = "meanfield"
    beta: float = 1.0
    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    num_particles: int = 1
    seed: int = 0
    jit: bool = False
    validate: bool = False


def make_loss(model: torch.nn.Module, guide: torch.nn.Module, config: TrainConfig) -> torch.nn.Module:
    """The loss module ``fit`` trains: the negative (beta-)ELBO summed over a batch."""
    elbo = make_elbo(config.elbo, num_particles=config.num_particles, vectorize_particles=config.num_particles > 1)
    loss_fn = loss_module(model, guide, elbo, beta=config.beta)
    return TracedLoss(loss_fn) if config.jit else loss_fn


def step(loss_fn: torch.nn.Module, optimizer: torch.optim.Optimizer, *args: torch.Tensor) -> torch.Tensor:
    """One gradient step on a batch; returns the loss in nats per datapoint (detached)."""
    loss = loss_fn(*args) / args[0].shape[0]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def check_compatible(model: torch.nn.Module, dataset: pdata.Dataset) -> None:
    """Refuse grey-level data for a likelihood that only makes sense for binary pixels.

    :raises ValueError: naming the fix.
    """
    likelihood = getattr(model, "likelihood", None)
    if getattr(likelihood, "requires_binary", False) and not dataset.is_binary:
        raise ValueError(
            f"the {type(likelihood).__name__} likelihood needs binary pixels but binarize='none' keeps "
            "grey levels; use --binarize dynamic (or static), or a likelihood for grey levels "
            "(--likelihood gaussian)"
        )
    if tuple(getattr(model, "x_shape", dataset.x_shape)) != dataset.x_shape:
        raise ValueError(f"the model expects datapoints of shape {model.x_shape}, the data has {dataset.x_shape}")


def fit(
    model: torch.nn.Module,
    guide: torch.nn.Module,
    dataset: pdata.Dataset,
    config: TrainConfig = TrainConfig(),
    run: Run | None = None,
    resume: bool = False,
    progress: bool = True,
) -> list[dict]:
    """Maximise the (beta-)ELBO of ``model`` and ``guide`` on ``dataset.train``.

    After each epoch: the validation ELBO (one sample of z per datapoint, nats per datapoint),
    and, with a ``run``, an atomic checkpoint and ``metrics.jsonl``.

    :param resume: continue from the run's checkpoint (parameters, optimizer, RNG, epoch).
    :param progress: show a tqdm bar with epoch, step and loss.
    :returns: the metrics, one dict per epoch: ``epoch``, ``train_loss`` (the negative
        objective, averaged over the epoch), ``val_elbo``, ``seconds`` (training only).
    """
    check_compatible(model, dataset)
    pyro.set_rng_seed(config.seed)
    loss_fn = make_loss(model, guide, config)
    train = dataset.train
    # One validated pass first: it checks data and pair, and Pyro creates some parameters
    # lazily, which the optimizer must see.
    eager = loss_fn.loss_fn if isinstance(loss_fn, TracedLoss) else loss_fn
    with pyro.validation_enabled(True):
        eager(*pair_args(model, dataset.training_batch(train.x[:2]), train.y[:2]))
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=config.lr)
    history: list[dict] = []
    start = 0
    if resume and run is not None:
        state = run.load_checkpoint()
        model.load_state_dict(state["model"])
        guide.load_state_dict(state["guide"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        start, history = state["epoch"], run.metrics()[: state["epoch"]]

    steps = math.ceil(len(train) / config.batch_size)
    bar = tqdm(total=steps * (config.epochs - start), disable=not progress, unit="step", dynamic_ncols=True)
    for epoch in range(start, config.epochs):
        bar.set_description(f"epoch {epoch + 1}/{config.epochs}")
        tic, total = time.perf_counter(), torch.zeros(())
        with pyro.validation_enabled(config.validate):
            for i, (x, y) in enumerate(pdata.batches(train, config.batch_size)):
                loss = step(loss_fn, optimizer, *pair_args(model, dataset.training_batch(x), y))
                total += loss * x.shape[0]
                bar.update()
                if i % 20 == 0:
                    bar.set_postfix(loss=f"{float(loss):.2f}")
        seconds = time.perf_counter() - tic
        if not torch.isfinite(total):  # before anything is evaluated or saved
            raise FloatingPointError(f"the loss became {float(total)} in epoch {epoch + 1}; try a lower --lr")
        val = evaluate(model, guide, dataset.val.x, dataset.val.y, num_samples=1, batch_size=1000)
        history.append(
            {"epoch": epoch + 1, "train_loss": float(total) / len(train), "val_elbo": val["elbo"], "seconds": seconds}
        )
        bar.set_postfix(loss=f"{history[-1]['train_loss']:.2f}", val_elbo=f"{val['elbo']:.2f}")
        if run is not None:
            state = {
                "model": model.state_dict(),
                "guide": guide.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": rng_state(),
                "epoch": epoch + 1,
            }
            run.write_metrics(history)  # first: a checkpoint never gets ahead of its metrics
            run.save_checkpoint(state)
    bar.close()
    return history
