"""What an estimator does at fixed parameters: whether it runs, its bound's value, the noise of its
gradient, and the cost of a training step. Values are in nats per datapoint.

Every measurement runs an estimator through the same loss module the trainer uses
(:func:`pvae.engine.objectives.loss_module`, :func:`pvae.engine.objectives.backward`, :func:`pvae.engine.train.step`),
so
what is measured is what ``fit`` trains.
"""

import copy
import math
import statistics
import time
from collections.abc import Sequence

import torch

from pvae.base.device import module_device
from pvae.engine.objectives import TracedLoss, backward, loss_module
from pvae.engine.pair import traits
from pvae.engine.train import step
from pvae.measures.compare.estimator import Estimator
from pvae.measures.evaluate import pair_args
from pvae.measures.memory import peak_bytes

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
    :returns: the setting (:attr:`pvae.measures.compare.estimator.Estimator.setting`) of each estimator that cannot
        run → why (empty when all can).
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

    :param y: the batch's labels, passed to pairs that observe them (:func:`pvae.measures.evaluate.pair_args`);
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
    signal-to-noise ratio is ``SNR_j = |m_j| / s_j`` (Rainforth et al., 2018). With R repeats an SNR
    estimate cannot fall much below 1/√R: ``|m_j|`` carries noise of size s_j/√R.

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
    peak memory one step allocates (:func:`pvae.measures.memory.peak_bytes`), on copies of the pair (the
    originals are not changed).

    A compiled estimator (``estimator.jit``) is traced and checked against the eager loss as
    ``--jit auto`` does (:class:`pvae.engine.objectives.TracedLoss`); where the check fails, the steps run
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
    peak = peak_bytes(lambda: step(loss_fn, optimizer, *args), x.device)
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return {
        "seconds": statistics.median(times),
        "seconds_iqr": (q[0], q[2]),
        "peak_mib": peak / 2**20,
        "steps": steps,
        "eager_reason": loss_fn.eager_reason if isinstance(loss_fn, TracedLoss) else None,
    }
