"""Comparing ELBO estimators on one model/guide pair: value, gradient signal-to-noise, cost, result.

Every measurement runs an estimator through the same loss module the trainer uses
(:func:`pvae.objectives.loss_module`, :func:`pvae.objectives.backward`), so what is compared is
what ``fit`` trains. Values are in nats per datapoint.

* :func:`bound_values` — each bound's mean and standard error over repeated estimates on one
  batch (the ordering ELBO ≤ IWAE-K ≤ IWAE-K' ≤ log p(x) is checked by :func:`ordering`);
* :func:`gradient_stats` — per-parameter mean and variance of the gradient over repeated
  estimates on one batch, and the signal-to-noise ratio |mean| / std of Rainforth et al. (2018),
  for the guide's (encoder) and the model's (decoder) parameters separately;
* :func:`step_cost` — median seconds per training step and peak memory of one step;
* :func:`train_each` — the test log p(x) after training with each estimator for the same number
  of epochs, and for the same wall-clock time.
"""

import copy
import math
import statistics
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyro
import torch
from pyro.infer import ELBO
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from pvae import data as pdata
from pvae import options
from pvae.device import module_device, to_device
from pvae.estimators import ESTIMATORS, is_traceable, make_elbo
from pvae.evaluate import evaluate, pair_args
from pvae.objectives import TracedLoss, backward, loss_module
from pvae.pair import traits
from pvae.train import fit, step


@dataclass(frozen=True)
class Estimator:
    """One estimator setting: a registry name, K, and alpha for the Rényi bound.

    :param name: a key of :data:`pvae.estimators.ESTIMATORS`.
    :param particles: K, samples of z per datapoint.
    :param alpha: order of the Rényi bound (``renyi`` only).
    :param vectorize: draw the K particles in one vectorized pass.
    :param jit: compile the loss with ``torch.jit.trace`` (timed by :func:`step_cost`; the other
        measurements are those of the eager estimator, which the trace replays).
    :param dataset_size: N, the training split's size, for estimators that read it (``tcvae``'s
        aggregate posterior); the others ignore it.
    """

    name: str
    particles: int = 1
    alpha: float | None = None
    vectorize: bool = True
    jit: bool = False
    dataset_size: int | None = None

    @property
    def setting(self) -> str:
        """The estimator without K: ``"iwae"``, ``"renyi α=0.5"``, ``"trace --jit"`` (one row
        of a table, one line of a figure)."""
        alpha = f" α={self.alpha:g}" if self.alpha is not None else ""
        return f"{self.name}{alpha}{' --jit' if self.jit else ''}"

    @property
    def label(self) -> str:
        """``"iwae K=5"``, ``"renyi α=0.5 K=5"``, ``"trace --jit K=5"``."""
        return f"{self.setting} K={self.particles}"

    def elbo(self) -> ELBO:
        """The Pyro estimator."""
        return make_elbo(
            self.name, self.particles, self.vectorize and self.particles > 1, self.alpha, self.dataset_size
        )

    def as_dict(self) -> dict:
        """JSON-ready fields, the setting and the label."""
        return {
            "estimator": self.name,
            "particles": self.particles,
            "alpha": self.alpha,
            "jit": self.jit,
            "setting": self.setting,
            "label": self.label,
        }


def estimator_grid(
    names: Sequence[str], particles: Sequence[int], alpha: float = 0.5, dataset_size: int | None = None
) -> list[Estimator]:
    """Every estimator at every K; ``renyi`` gets ``alpha``, the others none.

    :param dataset_size: the training split's size, for the estimators that read it (``tcvae``).
    """
    return [
        Estimator(n, k, alpha if n == "renyi" else None, dataset_size=dataset_size) for n in names for k in particles
    ]


# --------------------------------------------------------------------------------------------
# 0. Each estimator runs at all


def check_estimators(
    model: torch.nn.Module,
    guide: torch.nn.Module,
    x: torch.Tensor,
    estimators: Sequence[Estimator],
    y: torch.Tensor | None = None,
) -> dict[str, str]:
    """Run each estimator once on the small batch ``x`` (a value and a gradient) on copies of the
    pair, with every random generator left as it was: what cannot run fails here, in seconds.

    Some requirements show only when an estimator meets the pair's distributions (``tcvae`` needs a
    diagonal Normal q(z|x), which a flow guide is not): this is where they are found.

    :param y: the batch's labels, for pairs that observe them.
    :returns: the setting (:attr:`Estimator.setting`) of each estimator that cannot run → why (empty
        when all can).
    """
    failures = {}
    args = pair_args(traits(model, guide), x, y)
    with torch.random.fork_rng(sorted({a.device for a in args if a.device.type == "cuda"}, key=str)):
        for est in estimators:
            model_copy, guide_copy = copy.deepcopy(model), copy.deepcopy(guide)
            try:
                loss_fn = loss_module(model_copy, guide_copy, est.elbo())
                loss_fn.estimate(*args)
                backward(loss_fn, *args)
            except (ValueError, RuntimeError, NotImplementedError, TypeError) as error:
                failures.setdefault(est.setting, (str(error).strip().splitlines() or [type(error).__name__])[0])
    return failures


# --------------------------------------------------------------------------------------------
# 1. Values at fixed parameters


@torch.no_grad()
def bound_values(
    model: torch.nn.Module,
    guide: torch.nn.Module,
    x: torch.Tensor,
    estimators: Sequence[Estimator],
    repeats: int = 20,
    y: torch.Tensor | None = None,
) -> list[dict]:
    """Each estimator's bound on the batch ``x``, estimated ``repeats`` times.

    :param y: the batch's labels, passed to pairs that observe them (:func:`pvae.evaluate.pair_args`);
        a semi-supervised pair's bound is on x alone, as evaluation scores it.

    :returns: one dict per estimator: its fields, ``mean`` (the bound, nats per datapoint),
        ``se`` (standard error of that mean over the repeats), ``sd`` (standard deviation of one
        estimate of the batch average: the estimator's noise), ``repeats``.
    """
    if repeats < 2:
        raise ValueError(f"a standard error needs at least 2 repeats, got {repeats}")
    rows, args = [], pair_args(traits(model, guide), x, y)
    for est in estimators:
        loss_fn = loss_module(model, guide, est.elbo())
        values = torch.tensor([-loss_fn.estimate(*args) / len(x) for _ in range(repeats)], dtype=torch.float64)
        sd = float(values.std())
        rows.append(
            {**est.as_dict(), "mean": float(values.mean()), "se": sd / repeats**0.5, "sd": sd, "repeats": repeats}
        )
    return rows


#: Estimators whose value at beta = 1 is the ELBO (``tcvae``'s total-correlation weight β − 1 is 0 there).
ELBO_ESTIMATORS = ("trace", "meanfield", "graph", "enum", "tcvae")


def ordering(rows: list[dict], log_px: float | None = None, z: float = 3.0) -> dict:
    """Check ELBO ≤ IWAE-K ≤ IWAE-K' (K < K') ≤ log p(x) within ``z`` standard errors.

    The ELBO is every row of :data:`ELBO_ESTIMATORS` (any K: they estimate the same bound at
    beta = 1, which the comparison uses); IWAE-K the ``iwae`` and ``dreg`` rows (the same bound
    too). IWAE-1 *is* the ELBO, so
    their estimates fall either way round: a link whose means are in the wrong order but within
    the tolerance is reported as equal within noise (``≈``), not as ``≤``.

    :param rows: the rows of :func:`bound_values`.
    :param log_px: the exact log p(x), the chain's last link (None: left out).
    :param z: the tolerance, in standard errors of the difference.
    :returns: ``{"holds": bool, "violations": [text, ...], "chain": [(label, mean, se), ...],
        "links": [{"lower", "upper", "difference", "tolerance", "relation"}, ...], "z": z}``, one link
        per consecutive pair of the chain: ``difference`` = lower mean − upper mean, ``tolerance`` =
        ``z`` standard errors of it, ``relation`` ``"≤"`` (the means are in order), ``"≈"`` (out of
        order within the tolerance) or ``">"`` (a violation).
    """
    elbo = [r for r in rows if r["estimator"] in ELBO_ESTIMATORS]
    iwae = [r for r in rows if r["estimator"] in ("iwae", "dreg")]
    chain: list[tuple[str, float, float]] = []
    if elbo:
        best = min(elbo, key=lambda r: r["se"])  # the most precise estimate of the same ELBO
        chain.append(("ELBO (" + best["label"] + ")", best["mean"], best["se"]))
    for k in sorted({r["particles"] for r in iwae}):
        best = min((r for r in iwae if r["particles"] == k), key=lambda r: r["se"])
        chain.append((f"IWAE-{k} ({best['label']})", best["mean"], best["se"]))
    if log_px is not None:
        chain.append(("log p(x)", log_px, 0.0))
    links, violations = [], []
    for (a, ma, sa), (b, mb, sb) in zip(chain, chain[1:], strict=False):
        difference, tolerance = ma - mb, z * math.hypot(sa, sb)
        relation = "≤" if difference <= 0 else ("≈" if difference <= tolerance else ">")
        links.append({"lower": a, "upper": b, "difference": difference, "tolerance": tolerance, "relation": relation})
        if relation == ">":
            violations.append(f"{a} = {ma:.3f} ± {sa:.3f} exceeds {b} = {mb:.3f} ± {sb:.3f}")
    return {"holds": not violations, "violations": violations, "chain": chain, "links": links, "z": z}


def ordering_markdown(order: dict) -> str:
    """The chain of :func:`ordering` as one honest sentence: ``≤`` only where the means are in order,
    ``≈`` with the difference and the tolerance where they are not but agree within it.

    :param order: what :func:`ordering` returned.
    """
    if not order["chain"]:
        return "Ordering: no bound to order."
    z = order.get("z", 3.0)
    name, mean, _ = order["chain"][0]
    text = f"{name} {mean:.3f}"
    for link, (name, mean, _) in zip(order["links"], order["chain"][1:], strict=True):
        text += f" {link['relation']} {name} {mean:.3f}"
        if link["relation"] == "≈":
            text += f" (lower by {link['difference']:.3f}, within {z:g} SE = {link['tolerance']:.3f})"
    if not order["holds"]:
        return f"Ordering ELBO ≤ IWAE-K ≤ log p(x) is violated: {'; '.join(order['violations'])}. Chain: {text}."
    within = any(link["relation"] == "≈" for link in order["links"])
    verdict = f"holds within {z:g} standard errors" if within else "holds"
    return f"Ordering ELBO ≤ IWAE-K ≤ log p(x) {verdict}: {text}."


# --------------------------------------------------------------------------------------------
# 2. Gradient variance and signal-to-noise


def gradient_stats(
    model: torch.nn.Module,
    guide: torch.nn.Module,
    x: torch.Tensor,
    estimator: Estimator,
    repeats: int = 100,
    y: torch.Tensor | None = None,
) -> dict:
    """Statistics of ``repeats`` independent estimates of the gradient of the loss (nats per
    datapoint) on the fixed batch ``x``, for the guide's and the model's parameters apart.

    For parameter j with mean gradient m_j and standard deviation s_j over the repeats, the
    signal-to-noise ratio is SNR_j = |m_j| / s_j (Rainforth et al., 2018). With R repeats an SNR
    estimate cannot fall much below 1/√R: |m_j| carries noise of size s_j/√R.

    :param y: the batch's labels, for pairs that observe them (as :func:`bound_values`).

    :returns: ``{"encoder": {...}, "decoder": {...}}``, each with ``snr_mean`` and
        ``snr_median`` over parameters, ``variance`` (mean over parameters of s_j²),
        ``mean_norm`` (‖m‖), ``parameters`` (how many), ``repeats``.
    """
    if repeats < 2:
        raise ValueError(f"a variance needs at least 2 repeats, got {repeats}")
    loss_fn = loss_module(model, guide, estimator.elbo())
    args = pair_args(traits(model, guide), x, y)
    loss_fn.estimate(*(a[:2] for a in args))  # lazily created parameters
    groups = {"encoder": list(guide.parameters()), "decoder": list(model.parameters())}
    device = module_device(model)
    sums = {g: torch.zeros(sum(p.numel() for p in ps), dtype=torch.float64, device=device) for g, ps in groups.items()}
    squares = {g: torch.zeros_like(s) for g, s in sums.items()}
    shifts: dict[str, torch.Tensor] = {}  # the first draw: sums of g − shift do not cancel catastrophically
    for _ in range(repeats):
        for p in loss_fn.parameters():
            p.grad = None
        backward(loss_fn, *args, scale=1.0 / len(x))
        for g, ps in groups.items():
            flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in ps])
            flat = flat.double()
            shift = shifts.setdefault(g, flat)
            sums[g] += flat - shift
            squares[g] += (flat - shift) ** 2
    for p in loss_fn.parameters():
        p.grad = None
    return {g: _snr_summary(sums[g], squares[g], repeats, shifts[g]) for g in groups}


def _snr_summary(total: torch.Tensor, squares: torch.Tensor, n: int, shift: torch.Tensor | float = 0.0) -> dict:
    """SNR, variance and mean from the sums of n draws minus ``shift`` and of their squares."""
    offset = total / n
    mean = offset + shift
    var = ((squares - n * offset**2) / (n - 1)).clamp_min(0)
    noisy = var > 0  # parameters the estimator moves at random (others have no SNR)
    snr = mean[noisy].abs() / var[noisy].sqrt()
    return {
        "snr_mean": float(snr.mean()) if len(snr) else float("nan"),
        "snr_median": float(snr.median()) if len(snr) else float("nan"),
        "variance": float(var.mean()),
        "mean_norm": float(mean.norm()),
        "parameters": int(mean.numel()),
        "repeats": n,
    }


# --------------------------------------------------------------------------------------------
# 3. Cost


class PeakMemory(TorchDispatchMode):
    """Bytes of tensor storage allocated while active: the current total and its peak.

    Counts storages created by operations inside the context (activations, saved tensors,
    gradients, an optimizer's temporaries), each once, and frees them when they are garbage. An
    output that shares its storage with an input (an in-place update, a view, ``detach``) is not
    new memory, so tensors that existed before (parameters, optimizer state) are not counted.
    On CUDA, ``torch.cuda.max_memory_allocated`` measures the same thing without this bookkeeping.
    """

    def __init__(self):
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: set[int] = set()

    def _free(self, key: int, nbytes: int) -> None:
        self.current -= nbytes
        self._live.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {
            t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)
        }
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                storage = t.untyped_storage()
                key, nbytes = storage.data_ptr(), storage.nbytes()
                if nbytes and key not in self._live and key not in inputs:
                    self._live.add(key)
                    self.current += nbytes
                    weakref.finalize(storage, self._free, key, nbytes)
        self.peak = max(self.peak, self.current)
        return out


def step_cost(
    model: torch.nn.Module,
    guide: torch.nn.Module,
    x: torch.Tensor,
    estimator: Estimator,
    steps: int = 20,
    warmup: int = 3,
    lr: float = 1e-3,
    y: torch.Tensor | None = None,
) -> dict:
    """Median seconds of a training step (loss, gradient, Adam) on the batch ``x``, and the
    peak memory one step allocates, on copies of the pair (the originals are not changed).

    A compiled estimator (``estimator.jit``) is traced and checked against the eager loss as
    ``--jit auto`` does (:class:`pvae.objectives.TracedLoss`); where the check fails, the steps run
    eagerly and ``eager_reason`` says why.

    :param y: the batch's labels, for pairs that observe them (as :func:`bound_values`).
    :returns: ``{"seconds": median, "seconds_iqr": (q1, q3), "peak_mib": MiB, "steps": steps,
        "eager_reason": None or why a compiled estimator ran eagerly}``.
    """
    model, guide = copy.deepcopy(model), copy.deepcopy(guide)
    loss_fn = loss_module(model, guide, estimator.elbo())
    args = pair_args(traits(model, guide), x, y)
    loss_fn.estimate(*(a[:2] for a in args))
    if estimator.jit:
        loss_fn = TracedLoss(loss_fn, fallback=True)  # compiled and checked at the first warm-up step
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=lr)
    for _ in range(warmup):
        step(loss_fn, optimizer, *args)
    times = []
    for _ in range(steps):
        tic = time.perf_counter()
        step(loss_fn, optimizer, *args)
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - tic)
    if x.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(loss_fn, optimizer, *args)
        peak = torch.cuda.max_memory_allocated() - base
    else:
        with PeakMemory() as meter:
            step(loss_fn, optimizer, *args)
        peak = meter.peak
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return {
        "seconds": statistics.median(times),
        "seconds_iqr": (q[0], q[2]),
        "peak_mib": peak / 2**20,
        "steps": steps,
        "eager_reason": loss_fn.eager_reason if isinstance(loss_fn, TracedLoss) else None,
    }


# --------------------------------------------------------------------------------------------
# 4. Result of training


def train_each(
    build,
    dataset: pdata.Dataset,
    test_x: torch.Tensor,
    estimators: Sequence[Estimator],
    train,
    epochs: int,
    seconds: float | None = None,
    iwae_samples: int = 1000,
    progress: bool = False,
    test_y: torch.Tensor | None = None,
) -> list[dict]:
    """Train a fresh pair with each estimator, for ``epochs`` epochs or, when ``seconds`` is
    given, for that many seconds of training steps (up to ``epochs`` epochs), and score each on
    ``test_x``.

    :param build: called with no arguments, returns a freshly initialised ``(model, guide)``;
        the seed is set before each call, so every estimator starts from the same parameters.
    :param train: the :class:`pvae.train.TrainConfig` whose estimator settings are replaced.
    :param test_y: the test points' labels, for pairs that observe them.
    :returns: one dict per estimator: its fields, ``budget`` (``"epochs"`` or ``"seconds"``),
        ``epochs`` (fractional: steps / steps per epoch), ``train_seconds``, ``elbo``, ``log_px``
        and ``log_px_se`` on the test points, ``iwae_samples``, and ``log_px_diff`` with
        ``log_px_diff_se``: the mean over test points of log p(x) minus the first estimator's,
        and its paired standard error (much smaller than either ``log_px_se``, since the
        points' own spread cancels).
    """
    rows, first = [], None
    for est in estimators:
        config = replace(
            train,
            elbo=est.name,
            particles=est.particles,
            alpha=est.alpha,
            vectorize=est.vectorize,
            epochs=epochs,
            max_seconds=seconds,
            jit="off",  # at equal wall-clock time, every estimator runs the same way
        )
        pyro.set_rng_seed(train.seed)
        model, guide = build()
        history = fit(model, guide, dataset, config, progress=progress)
        per_epoch = math.ceil(len(dataset.train) / config.batch_size)
        pyro.set_rng_seed(train.seed)
        scores = evaluate(model, guide, test_x, test_y, num_samples=iwae_samples, per_datapoint=True)
        log_px = scores["per_datapoint"]["log_px"]
        first = log_px if first is None else first
        diff = log_px - first
        rows.append(
            {
                **est.as_dict(),
                "budget": "epochs" if seconds is None else "seconds",
                "epochs": sum(m["steps"] for m in history) / per_epoch,
                "train_seconds": sum(m["seconds"] for m in history),
                "elbo": scores["elbo"],
                "log_px": scores["log_px"],
                "log_px_se": scores["log_px_se"],
                "log_px_diff": float(diff.mean()),
                "log_px_diff_se": float(diff.std() / len(diff) ** 0.5) if len(diff) > 1 else float("nan"),
                "iwae_samples": iwae_samples,
            }
        )
    return rows


# --------------------------------------------------------------------------------------------
# All four, as one table


@dataclass(frozen=True)
class CompareConfig:
    """What :func:`compare_estimators` measures, on how much data, and where ``pvae compare-elbos``
    writes it.

    :param estimators: registry names to compare, comma-separated on the command line.
    :param particles: the values of K, the particles of each estimator.
    :param alpha: order of the Rényi bound for ``renyi``.
    :param points: test datapoints the bounds are estimated on.
    :param repeats: estimates of each bound (its standard error comes from their spread).
    :param grad_points: test datapoints in the fixed batch of the gradient estimates.
    :param grad_repeats: gradient estimates per estimator and K.
    :param cost_batch: training datapoints per timed step.
    :param cost_steps: timed steps per estimator and K.
    :param jit: also time the losses ``torch.jit.trace`` can compile (trace, meanfield, enum).
    :param train_epochs: train a fresh pair with each estimator for N epochs (0: skip the
        training comparison).
    :param train_particles: K of every training run.
    :param train_seconds: wall-clock budget of the equal-time runs; None: what the first
        estimator took for ``train_epochs``; 0: no equal-time runs.
    :param test_points: test datapoints the trained pairs are scored on.
    :param samples: K, importance samples per datapoint of the trained pairs' test log p(x).
    :param seed: seeds every draw.
    :param out: folder of results.json, results.md and figures/ (None: RUN/elbos).
    """

    estimators: tuple[str, ...] = field(
        default=("trace", "meanfield", "graph", "enum", "iwae", "renyi", "dreg"),
        metadata=options.choices(lambda: ESTIMATORS),
    )
    particles: tuple[int, ...] = (1, 5, 10, 50)
    alpha: float = 0.5
    points: int = 100
    repeats: int = 20
    grad_points: int = 16
    grad_repeats: int = 200
    cost_batch: int = 128
    cost_steps: int = 20
    jit: bool = True
    train_epochs: int = 0
    train_particles: int = 5
    train_seconds: float | None = None
    test_points: int = 1000
    samples: int = 1000
    seed: int = 0
    out: str | None = None

    def __post_init__(self):
        options.seed(self, "seed")
        options.check_choices(self)
        options.require(self, "estimators", self.estimators is None or len(self.estimators) > 0, "at least one name")
        options.require(
            self, "particles", len(self.particles) > 0 and min(self.particles) >= 1, "positive numbers such as 1,5,10"
        )
        options.positive(self, "points", "repeats", "grad_points", "grad_repeats", "cost_batch", "cost_steps")
        options.positive(self, "train_particles", "test_points", "samples")
        options.positive(self, "train_epochs", "train_seconds", zero=True)
        options.positive(self, "alpha", zero=True)
        # the Rényi bound of order 1 is the ELBO, which this command compares under its own name
        options.require(
            self, "alpha", self.alpha != 1, "other than 1 (alpha=1 is the ELBO: compare it with --estimators trace)"
        )


def compare_estimators(
    model: torch.nn.Module,
    guide: torch.nn.Module,
    dataset: pdata.Dataset,
    test_x: torch.Tensor,
    config: CompareConfig = CompareConfig(),
    build=None,
    train=None,
    progress=print,
    test_y: torch.Tensor | None = None,
    only_usable: bool = False,
) -> dict:
    """Every measurement of this module for the trained pair ``(model, guide)``, at beta = 1 (the
    bounds on log p(x), whatever beta the pair was trained with).

    Before anything is measured, every estimator is run once on two test points (a value, a
    gradient, a training step), so that one that cannot run stops the comparison in seconds, not
    after the others have been measured.

    :param test_x: test datapoints (binarized as the pair expects); the bounds use the first
        ``config.points``, the gradients the first ``config.grad_points``.
    :param test_y: their labels, passed to pairs that observe them (a conditional pair scores
        p(x | y)); ``None`` for unlabelled data.
    :param only_usable: leave out, with a note, the estimators that cannot run on this pair (for a
        default list); otherwise one that cannot run is refused.
    :raises ValueError: for an estimator that cannot run (unless ``only_usable``), or when none can.
    :param build: returns a fresh ``(model, guide)``, for the training comparison.
    :param train: the :class:`pvae.train.TrainConfig` of the training comparison.
    :param progress: called with a line of text as each part finishes (``None``: silent).
    :returns: ``{"settings", "values", "exact_log_px", "ordering", "gradients", "cost",
        "training"}``; ``exact_log_px`` only for models with an exact ``log_marginal``.
    """
    say = progress or (lambda text: None)
    grid = estimator_grid(config.estimators, config.particles, config.alpha, len(dataset.train))
    model.eval()
    guide.eval()
    device = module_device(model)
    rows = lambda t, n: None if t is None else t[:n]  # noqa: E731
    unusable, notes = check_estimators(model, guide, test_x[:2], grid, rows(test_y, 2)), []
    if unusable and not only_usable:
        setting, why = next(iter(unusable.items()))
        raise ValueError(f"--estimators {setting.split()[0]} cannot run on this pair: {why}")
    for setting, why in unusable.items():
        notes.append(f"{setting} is left out: it cannot run on this pair ({why})")
        say(notes[-1])
    grid = [e for e in grid if e.setting not in unusable]
    if not grid:
        raise ValueError(f"no estimator can run on this pair: {'; '.join(notes)}")
    config = replace(config, estimators=tuple(dict.fromkeys(e.name for e in grid)))
    n = len(test_x)  # the settings record the points there were, where the test split has fewer
    config = replace(
        config,
        points=min(config.points, n),
        grad_points=min(config.grad_points, n),
        test_points=min(config.test_points, n),
    )
    pyro.set_rng_seed(config.seed)
    x, y = test_x[: config.points], rows(test_y, config.points)
    values = bound_values(model, guide, x, grid, config.repeats, y)
    with torch.no_grad():
        exact = None
        if traits(model, guide).exact_marginal:
            exact = float(model.log_marginal(*pair_args(model, x, y)).mean())
    say(f"values: {len(values)} bounds on {len(x)} test points")
    gradients = []
    for est in grid:
        pyro.set_rng_seed(config.seed)
        grad_x, grad_y = test_x[: config.grad_points], rows(test_y, config.grad_points)
        stats = gradient_stats(model, guide, grad_x, est, config.grad_repeats, grad_y)
        gradients.append({**est.as_dict(), **stats})
    say(f"gradients: {len(gradients)} estimators × {config.grad_repeats} repeats")
    head = slice(config.cost_batch)
    cost_x = dataset.training_batch(to_device(dataset.train.images(head), device))
    cost_y = None if dataset.train.y is None else to_device(dataset.train.y[head], device)
    cost = []
    compiled = [replace(e, jit=True) for e in grid if config.jit and is_traceable(e.elbo())]
    for est in grid + compiled:
        pyro.set_rng_seed(config.seed)
        row = {**est.as_dict(), **step_cost(model, guide, cost_x, est, config.cost_steps, y=cost_y)}
        if row["eager_reason"] is not None:  # its compiled loss failed the check: no compiled row
            notes.append(f"{est.label} is not timed compiled: {row['eager_reason']}")
            say(notes[-1])
            continue
        cost.append(row)
    say(f"cost: {len(cost)} estimators, {config.cost_steps} steps of {len(cost_x)} datapoints")
    training = []
    if config.train_epochs > 0:
        if build is None or train is None:
            raise ValueError("the training comparison needs build (a fresh pair) and train (a TrainConfig)")
        trained = [
            Estimator(n, config.train_particles, config.alpha if n == "renyi" else None) for n in config.estimators
        ]
        test = test_x[: config.test_points]
        test_labels = rows(test_y, config.test_points)
        training = train_each(
            build, dataset, test, trained, train, config.train_epochs, None, config.samples, test_y=test_labels
        )
        say(f"training: {len(trained)} estimators, {config.train_epochs} epochs each")
        seconds = training[0]["train_seconds"] if config.train_seconds is None else config.train_seconds
        if seconds:  # as long as the first estimator took, up to 100 times the epochs
            limit = 100 * config.train_epochs
            training += train_each(
                build, dataset, test, trained, train, limit, seconds, config.samples, test_y=test_labels
            )
            say(f"training: {len(trained)} estimators, {seconds:.1f} s each")
    return {
        "settings": {k: getattr(config, k) for k in config.__dataclass_fields__},
        "values": values,
        "exact_log_px": exact,
        "ordering": ordering(values, exact),
        "gradients": gradients,
        "cost": cost,
        "training": training,
        "notes": notes,
    }


def results_markdown(results: dict, title: str = "ELBO estimators") -> str:
    """The tables of :func:`compare_estimators` as Markdown: one row per estimator, one column per K."""
    s = results["settings"]
    lines = [f"# {title}", ""]

    def table(rows: list[dict], cell, header: str) -> None:
        ks = sorted({r["particles"] for r in rows})
        names = list(dict.fromkeys(r["setting"] for r in rows))
        lines.extend([f"| {header} | " + " | ".join(f"K={k}" for k in ks) + " |", "|---" * (len(ks) + 1) + "|"])
        for name in names:
            by_k = {r["particles"]: r for r in rows if r["setting"] == name}
            lines.append(f"| {name} | " + " | ".join(cell(by_k[k]) if k in by_k else "" for k in ks) + " |")
        lines.append("")

    lines += [
        f"## Bounds at fixed parameters ({s['points']} test points, {s['repeats']} estimates each)",
        "",
        "Mean ± standard error of the bound, nats per datapoint; sd: spread of one estimate of the batch average.",
        "",
    ]
    table(results["values"], lambda r: f"{r['mean']:.3f} ± {r['se']:.3f} (sd {r['sd']:.3f})", "estimator")
    if results.get("exact_log_px") is not None:
        lines += [f"Exact log p(x) of the same points: {results['exact_log_px']:.3f}.", ""]
    lines += [ordering_markdown(results["ordering"]), ""]

    lines += [
        f"## Gradient signal-to-noise ({s['grad_points']} test points, {s['grad_repeats']} estimates each)",
        "",
        "Mean over parameters of |mean| / std of each parameter's gradient: encoder (guide) / decoder (model).",
        "",
    ]
    table(
        results["gradients"], lambda r: f"{r['encoder']['snr_mean']:.3f} / {r['decoder']['snr_mean']:.2f}", "estimator"
    )
    lines += ["Mean gradient variance per parameter: encoder / decoder.", ""]
    table(
        results["gradients"], lambda r: f"{r['encoder']['variance']:.2e} / {r['decoder']['variance']:.2e}", "estimator"
    )

    lines += [
        f"## Cost ({s['cost_batch']} datapoints per step, median of {s['cost_steps']} steps)",
        "",
        "Milliseconds per training step (loss, gradient, Adam) · peak memory one step allocates.",
        "",
    ]
    table(results["cost"], lambda r: f"{1000 * r['seconds']:.1f} ms · {r['peak_mib']:.1f} MiB", "estimator")
    lines += [f"Note: {note}." for note in results.get("notes", [])] + ([""] if results.get("notes") else [])

    if results["training"]:
        lines += [
            f"## Result of training (K={s['train_particles']}, test log p(x) with K={s['samples']} "
            f"on {s['test_points']} test points)",
            "",
            "Δ: test log p(x) minus the first row's of the same budget, ± its paired standard error.",
            "",
            "| estimator | budget | epochs | seconds | test ELBO | test log p(x) | Δ log p(x) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in results["training"]:
            budget = "same epochs" if r["budget"] == "epochs" else "same time"
            lines.append(
                f"| {r['label']} | {budget} | {r['epochs']:.1f} | {r['train_seconds']:.1f} | {r['elbo']:.2f} | "
                f"{r['log_px']:.2f} ± {r['log_px_se']:.2f} | {r['log_px_diff']:+.2f} ± {r['log_px_diff_se']:.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


def write_comparison(results: dict, out: Path, title: str) -> None:
    """Write ``results.json``, ``results.md`` and the figures of a comparison, each atomically.

    :param results: what :func:`pvae.compare.compare_estimators` returned.
    :param out: the folder (created if missing).
    :param title: the heading of ``results.md``.
    """
    from pvae.files import atomic_write, save_figure, write_json
    from pvae.plots.comparison import comparison_figures

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results)
    text = results_markdown(results, title)
    atomic_write(out / "results.md", lambda handle: handle.write(text.encode()))
    for name, fig in comparison_figures(results).items():
        save_figure(fig, out / "figures" / f"{name}.png")
