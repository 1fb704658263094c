"""Stochastic variational inference with Pyro's torch-native interface.

``loss_fn = ELBO(...)(model, guide)`` is an ordinary ``nn.Module`` (an ``ELBOModule``); one
``torch.optim`` optimizer steps all of its parameters. Losses are nats per datapoint.
"""

import math
import time
from dataclasses import dataclass, field

import pyro
import torch
from tqdm.auto import tqdm

from pvae import data as pdata
from pvae import options
from pvae.evaluate import evaluate, pair_args
from pvae.objectives import (
    BETA_SCHEDULES,
    ESTIMATORS,
    BetaSchedule,
    Loss,
    TracedLoss,
    backward,
    loss_module,
    make_elbo,
    untraceable_reason,
)
from pvae.runs import Run, rng_state, set_rng_state


@dataclass(frozen=True)
class TrainConfig:
    """How to fit a pair.

    :param elbo: the estimator, a name from :data:`pvae.objectives.ESTIMATORS`.
    :param beta: scale of the latent sites' log-densities in model and guide (1: the ELBO); under
        a schedule, the value it reaches.
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
    :param alpha: order of the Rényi bound, ``--elbo renyi`` only (None:
        :data:`pvae.objectives.DEFAULT_ALPHA`).
    :param max_seconds: stop once the training steps have taken this long (for comparisons at
        equal wall-clock time); the last epoch is then partial.
    :param seed: seeds torch, numpy and Python's RNGs (initialisation, batches, binarization, z).
    :param jit: compile the loss with ``torch.jit.trace`` (faster steps; see
        :class:`pvae.objectives.TracedLoss`).
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
    jit: bool = False
    validate: bool = False
    beta_schedule: str = field(default="constant", metadata=options.choices(lambda: sorted(BETA_SCHEDULES)))
    beta_warmup: float = 10.0
    beta_cycles: int = 4
    beta_ramp: float = 0.5

    def __post_init__(self):
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


def make_loss(model: torch.nn.Module, guide: torch.nn.Module, config: TrainConfig) -> torch.nn.Module:
    """The loss module ``fit`` trains: the negative (beta-)ELBO summed over a batch."""
    elbo = make_elbo(
        config.elbo,
        num_particles=config.particles,
        vectorize_particles=config.vectorize and config.particles > 1,
        alpha=config.alpha,
    )
    schedule = config.schedule()
    loss_fn = loss_module(model, guide, elbo, beta=schedule(0.0), scheduled=not schedule.is_constant)
    return TracedLoss(loss_fn) if config.jit else loss_fn


def step(loss_fn: torch.nn.Module, optimizer: torch.optim.Optimizer, *args: torch.Tensor) -> torch.Tensor:
    """One gradient step on a batch, for every estimator (those without a differentiable loss
    through their ``loss_and_grads``); returns the loss in nats per datapoint (detached)."""
    n = args[0].shape[0]
    optimizer.zero_grad(set_to_none=True)
    loss = backward(loss_fn, *args, scale=1.0 / n) / n
    optimizer.step()
    return loss


def check_compatible(
    model: torch.nn.Module,
    dataset: pdata.Dataset,
    config: TrainConfig | None = None,
    guide: torch.nn.Module | None = None,
) -> None:
    """Refuse data or settings a pair cannot train on: grey levels for a likelihood of binary
    pixels, the wrong datapoint shape, missing labels for a conditional model, a semi-supervised
    model without the enumerating estimator, the mean-field estimator for a guide that declares
    ``mean_field = False``, an unknown estimator or a bad alpha, ``--jit`` with an estimator it
    cannot compile.

    :raises ValueError: naming the fix.
    """
    likelihood = getattr(model, "likelihood", None)
    if getattr(likelihood, "requires_binary", False) and not dataset.is_binary:
        raise ValueError(
            f"the {type(likelihood).__name__} likelihood needs binary pixels but binarize='none' keeps "
            "grey levels; use --binarize dynamic (or static), or a likelihood for grey levels "
            "(--likelihood continuous-bernoulli, or --likelihood gaussian)"
        )
    if tuple(getattr(model, "x_shape", dataset.x_shape)) != dataset.x_shape:
        raise ValueError(f"the model expects datapoints of shape {model.x_shape}, the data has {dataset.x_shape}")
    semi = getattr(model, "semi_supervised", False)
    if not semi and not dataset.train.fully_labelled:  # only the semi-supervised model takes --labels
        if getattr(model, "conditional", False):
            raise ValueError(
                f"{type(model).__name__} observes the label of every datapoint, but some training labels were "
                "dropped (--labels); train it on all labels, or use the semi-supervised model (--model m2)"
            )
        raise ValueError(
            f"--labels drops training labels, which only a semi-supervised model uses; {type(model).__name__} "
            "ignores labels: drop --labels, or use --model m2"
        )
    num_classes = getattr(model, "num_classes", None)
    if num_classes is not None and num_classes < dataset.num_classes:
        raise ValueError(f"the model has {num_classes} classes, the data {dataset.num_classes}")
    if config is not None and config.elbo == "meanfield" and not getattr(guide, "mean_field", True):
        raise ValueError(
            f"{type(guide).__name__} makes one latent depend on another, which the mean-field estimator "
            "ignores: use --elbo trace"
        )
    if semi and guide is not None and not hasattr(guide, "classify"):
        raise ValueError(
            f"{type(model).__name__} leaves unknown labels to the guide, but {type(guide).__name__} proposes none "
            "(it has no classify(x)): use --guide m2"
        )
    if getattr(likelihood, "requires_grey", False) and dataset.is_binary:
        raise ValueError(
            f"the {type(likelihood).__name__} likelihood is for grey levels: on binary pixels its density grows "
            "without bound as the decoder saturates; use --binarize none, or --likelihood bernoulli"
        )
    if semi and config is not None and config.elbo != "enum":
        raise ValueError(
            f"{type(model).__name__} sums over the unknown labels by enumeration: use --elbo enum, not {config.elbo!r}"
        )
    if config is not None:
        elbo = make_elbo(config.elbo, alpha=config.alpha)  # refuses an unknown name or a bad alpha
        why = untraceable_reason(elbo)
        if config.jit and why is not None:
            raise ValueError(f"--jit compiles the loss with torch.jit.trace, but {why}: drop --jit")


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
) -> list[dict]:
    """Maximise the (beta-)ELBO of ``model`` and ``guide`` on ``dataset.train``.

    After each epoch: the validation ELBO (one sample of z per datapoint, nats per datapoint),
    and, with a ``run``, an atomic checkpoint and ``metrics.jsonl``.

    :param resume: continue from the run's checkpoint (parameters, optimizer, RNG, epoch).
    :param progress: show a tqdm bar with epoch, step and loss.
    :returns: the metrics, one dict per epoch: ``epoch``, ``steps`` (fewer than an epoch's
        when ``config.max_seconds`` ends training), ``train_loss`` (the negative
        objective, averaged over the epoch's datapoints), ``val_elbo`` (``None`` for a guide
        without a density), ``val_reconstruction`` and ``val_kl``, ``val_objective``
        (reconstruction − beta·KL on validation, beta at the epoch's last step: the quantity
        ``train_loss`` estimates, except for M2, whose training loss adds the classifier's term
        and scales only z's KL where this scales the label's too, and for ``iwae``, ``renyi``
        and ``dreg`` with K > 1, whose training loss is a tighter bound; ``None`` for a point-mass guide
        with beta > 0), ``beta``, ``val_accuracy`` (for guides that classify) and ``seconds``
        (training only).
    """
    check_compatible(model, dataset, config, guide)
    pyro.set_rng_seed(config.seed)
    loss_fn = make_loss(model, guide, config)
    schedule = config.schedule()
    train = dataset.train
    semi_supervised = getattr(model, "semi_supervised", False) and not train.fully_labelled
    # One validated pass first: it checks data and pair, and Pyro creates some parameters
    # lazily, which the optimizer must see.
    eager: Loss = loss_fn.loss_fn if isinstance(loss_fn, TracedLoss) else loss_fn
    y0 = train.y[:2] if bool(train.labelled[:2].all()) else None
    with pyro.validation_enabled(True):
        eager.estimate(*pair_args(model, dataset.training_batch(train.x[:2]), y0, training=True))
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

    batches = pdata.semi_supervised_batches if semi_supervised else pdata.batches
    if semi_supervised:  # an unlabelled batch, then a labelled one
        steps = 2 * math.ceil(int((~train.labelled).sum()) / config.batch_size)
    else:
        steps = math.ceil(len(train) / config.batch_size)
    bar = tqdm(total=steps * (config.epochs - start), disable=not progress, unit="step", dynamic_ncols=True)
    trained = sum(m["seconds"] for m in history)  # seconds of training steps so far
    for epoch in range(start, config.epochs):
        bar.set_description(f"epoch {epoch + 1}/{config.epochs}")
        tic, total, seen, taken = time.perf_counter(), torch.zeros(()), 0, 0
        out_of_time = False
        with pyro.validation_enabled(config.validate):
            for i, (x, y) in enumerate(batches(train, config.batch_size)):
                if not schedule.is_constant:
                    eager.set_beta(schedule(epoch + i / steps))
                loss = step(loss_fn, optimizer, *pair_args(model, dataset.training_batch(x), y, training=True))
                total += loss * x.shape[0]
                seen += x.shape[0]
                taken += 1
                bar.update()
                if i % 20 == 0:
                    bar.set_postfix(loss=f"{float(loss):.2f}")
                if config.max_seconds is not None and trained + time.perf_counter() - tic >= config.max_seconds:
                    out_of_time = True
                    break
        seconds = time.perf_counter() - tic
        trained += seconds
        if not torch.isfinite(total):  # before anything is evaluated or saved
            raise FloatingPointError(f"the loss became {float(total)} in epoch {epoch + 1}; try a lower --lr")
        beta = schedule(epoch + (taken - 1) / steps)  # at the epoch's last step
        val = evaluate(model, guide, dataset.val.x, dataset.val.y, num_samples=1, batch_size=1000)
        metrics = {
            "epoch": epoch + 1,
            "steps": taken,
            "train_loss": float(total) / seen,
            "val_elbo": val["elbo"],
            "val_reconstruction": val["reconstruction"],
            "val_kl": val["kl"],
            "val_objective": _objective(val, beta),
            "beta": beta,
            "seconds": seconds,
        }
        if "accuracy" in val:
            metrics["val_accuracy"] = val["accuracy"]
        history.append(metrics)
        val_objective = metrics["val_objective"]
        bar.set_postfix(
            loss=f"{metrics['train_loss']:.2f}", val="—" if val_objective is None else f"{val_objective:.2f}"
        )
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
        if out_of_time:
            break
    bar.close()
    return history
