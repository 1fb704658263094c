"""Measuring a trained pair: what ``pvae evaluate`` and ``pvae sample`` score and draw, the time an
evaluation will take, points in latent space for pictures, and the line that reports the numbers.

The bounds themselves (per datapoint, and their averages over a dataset, shared among torchrun's ranks) are
:mod:`pvae.engine.bounds`, below the trainer, which validates with them; their names are also found here.
"""

import math
import re
import time
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from pvae.base import options
from pvae.base.device import module_device, to_device
from pvae.base.sites import PARTICLES, Z
from pvae.data import SPLITS
from pvae.engine.bounds import HOST_CHUNK_ELEMENTS as HOST_CHUNK_ELEMENTS
from pvae.engine.bounds import HOST_CHUNK_ROWS as HOST_CHUNK_ROWS
from pvae.engine.bounds import accuracy as accuracy
from pvae.engine.bounds import bounds, sample_chunks
from pvae.engine.bounds import evaluate as evaluate
from pvae.engine.bounds import log_weights as log_weights
from pvae.engine.bounds import pair_args as pair_args
from pvae.engine.bounds import site_log_probs as site_log_probs
from pvae.engine.bounds import summarize as summarize
from pvae.engine.pair import traits


@options.config
class EvaluateConfig:
    """What ``pvae evaluate`` scores, and how.

    :param samples: K, importance samples from q(z|x) per datapoint for log p(x).
    :param split: the split scored: ``train``, ``val`` or ``test``.
    :param points: only the first N datapoints of the split (summary key SPLIT_firstN; at least 2, for the
        standard errors); None: all.
    :param batch_size: datapoints per pass.
    :param seed: seed of the draws of z.
    """

    samples: int = 1000
    split: str = field(default="test", metadata=options.choices(SPLITS))
    points: int | None = None
    batch_size: int = 100
    seed: int = 0

    def __post_init__(self):
        options.seed(self, "seed")
        options.positive(self, "samples", "points", "batch_size")
        options.require(
            self,
            "points",
            self.points is None or self.points >= 2,
            "at least 2 (the ± is a standard error over the datapoints; leave --points out to score the whole split)",
        )


@options.config
class SampleConfig:
    """What ``pvae sample`` draws, and where it writes them.

    :param label: the class to draw, for models whose decoder reads a label: its index, or its name for
        data whose classes have names (a table's label column, an image folder's subfolders); None: classes
        drawn from p(y).
    :param n: how many images.
    :param seed: seed of the draws of z.
    :param out: PNG to write (None: a new file RUN/figures/samples-seedS-nN.png, or
        samples-labelL-seedS-nN.png, beside training's samples.png, which it never replaces).
    """

    label: str | None = None
    n: int = 100
    seed: int = 0
    out: str | None = None

    def __post_init__(self):
        options.seed(self, "seed")
        options.positive(self, "n")
        if isinstance(self.label, int) and not isinstance(self.label, bool):  # an index, from Python
            object.__setattr__(self, "label", str(self.label))
        options.require(
            self,
            "label",
            self.label is None or not self.label.lstrip("-").isdigit() or int(self.label) >= 0,
            "a class: its index (a non-negative number) or its name",
        )
        options.require(
            self,
            "out",
            self.out is None or Path(self.out).is_dir() or Path(self.out).suffix.lower() == ".png",  # a folder: below
            "a .png file",
        )

    def path(self, figures: Path) -> Path:
        """The PNG this draw goes to: ``out``, else a file of ``figures`` named by the settings."""
        if self.out is not None:
            return Path(self.out)
        label = "" if self.label is None else "-label" + re.sub(r"[^\w.-]+", "_", self.label)  # a name, as a file's
        return figures / f"samples{label}-seed{self.seed}-n{self.n}.png"


#: Datapoints × samples below which :func:`estimate_seconds` is not worth its own pass (a few seconds at most).
ESTIMATE_ABOVE = 2_000_000


@torch.no_grad()
def estimate_seconds(
    model: torch.nn.Module,
    guide: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    num_samples: int = 1000,
    batch_size: int = 100,
) -> float | None:
    """The seconds :func:`evaluate` will take on ``x`` with K = ``num_samples``, from the work it is made of:
    one batch's first chunk of samples (:func:`sample_chunks`), timed as evaluate runs it (after a small pass
    that warms up), times the chunks of every batch: about 1% of a long evaluation's work. The random streams
    are left as they were.

    :param batch_size: datapoints of a batch (evaluate's).
    :returns: the estimate, or None where the evaluation is too small to be worth one (a few seconds).
    """
    n, k = x.shape[0], 1 if traits(model, guide).point_estimate else num_samples
    if n * k < ESTIMATE_ABOVE:
        return None
    b = min(batch_size, n)
    device = module_device(model)
    xb, yb = to_device(x[:b], device), None if y is None else to_device(y[:b], device)
    chunks = sample_chunks(xb, k)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # the draws that count stay
        bounds(model, guide, xb, yb, min(8, k))  # warms up (first calls, allocations)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        tic = time.perf_counter()
        bounds(model, guide, xb, yb, chunks[0])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - tic
    return seconds * (k / chunks[0]) * (n / b)


# --------------------------------------------------------------------------------------------
# Points in latent space, for pictures. Inputs may sit on any device: the work is done on the pair's
# and the results come back to the host, where figures and metrics read them.


@torch.no_grad()
def posterior_moments(
    guide: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, num_samples: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """E_q[z | x] and the sd of q(z | x), each ``(batch, z_dim)``: those of the guide's distribution of ``"z"``
    when that is q(z | x) itself, else Monte Carlo estimates from ``num_samples`` draws (flows, which have no
    closed-form moments, and guides where z depends on another latent, such as the two-layer one); on the host."""
    device = module_device(guide)
    args = (to_device(x, device),) if y is None else (to_device(x, device), to_device(y, device))
    trace = poutine.trace(guide).get_trace(*args)
    others = [n for n, s in trace.nodes.items() if s["type"] == "sample" and n != Z and not site_is_subsample(s)]
    if not others:
        fn = trace.nodes[Z]["fn"]
        try:
            return fn.mean.cpu(), fn.variance.sqrt().cpu()
        except NotImplementedError:
            pass
    with pyro.plate(PARTICLES, num_samples, dim=-2):
        value = poutine.trace(guide).get_trace(*args).nodes[Z]["value"]  # (num_samples, batch, z_dim)
    return value.mean(0).cpu(), value.std(0).cpu()


def posterior_mean(
    guide: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, num_samples: int = 64
) -> torch.Tensor:
    """E_q[z | x] ``(batch, z_dim)``, as :func:`posterior_moments`; on the host."""
    return posterior_moments(guide, x, y, num_samples)[0]


@torch.no_grad()
def decode_mean(model: torch.nn.Module, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """E[x | z] under the model's likelihood, ``(batch, *x_shape)``, on the host."""
    device = module_device(model)
    return model.decode(to_device(z, device), to_device(y, device)).mean.cpu()


def decodes_labels(model: torch.nn.Module) -> bool:
    """Whether the model's decoder reads a label (it has ``num_classes``: the CVAE, M2)."""
    return traits(model).decodes_labels


@torch.no_grad()
def reconstruct(model, guide, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """E[x | z = E_q[z|x]]: the decoder's mean at the guide's mean (given the labels, for models
    whose decoder reads one)."""
    cond_y = y if decodes_labels(model) else None
    return decode_mean(model, posterior_mean(guide, x, cond_y), cond_y)


@torch.no_grad()
def sample_prior(model, n: int, y: torch.Tensor | None = None) -> torch.Tensor:
    """Decoder means at ``n`` draws from the prior, ``(n, *x_shape)``; ``y`` ``(n,)`` chooses the
    classes for a model whose decoder reads a label (drawn from its p(y) when not given).

    :raises ValueError: if ``y`` is given to a model that has no labels, or lies outside its classes.
    """
    pair = traits(model)
    if pair.decodes_labels and y is None:
        if not pair.label_prior:
            raise ValueError(f"{pair.model} has no label_prior() to draw classes from: pass y (--label)")
        y = model.label_prior().sample((n,))  # classes drawn from p(y): samples of the marginal p(x)
    if y is not None and not pair.decodes_labels:
        raise ValueError(f"{pair.model} does not condition on labels: drop y (--label)")
    if y is not None and not 0 <= int(y.min()) <= int(y.max()) < pair.num_classes:
        raise ValueError(f"labels must lie in 0..{pair.num_classes - 1}, got {y.unique().tolist()}")
    return decode_mean(model, model.prior((n,)).sample(), y)


@torch.no_grad()
def interpolate(model, guide, x0: torch.Tensor, x1: torch.Tensor, steps: int = 10) -> torch.Tensor:
    """Decoder means along the straight line between the posterior means of ``x0`` and ``x1``.

    :returns: ``(steps, *x_shape)``, from x0's end to x1's.
    """
    z = posterior_mean(guide, torch.stack([x0, x1]))  # (2, z_dim)
    t = torch.linspace(0, 1, steps, dtype=z.dtype, device=z.device).unsqueeze(-1)  # (steps, 1)
    return decode_mean(model, (1 - t) * z[0] + t * z[1])


@torch.no_grad()
def traverse(
    model,
    z: torch.Tensor,
    dims: Sequence[int],
    loc: torch.Tensor,
    scale: torch.Tensor,
    steps: int = 9,
    span: float = 3.0,
    y: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent traversals: decoder means at the code ``z`` with one dimension at a time swept.

    Row i keeps every coordinate of ``z`` but ``d = dims[i]``, which takes the ``steps`` values
    ``loc[d] + t * scale[d]`` for t evenly spaced from −``span`` to +``span`` (with the prior's loc and
    scale: −3 to +3 prior standard deviations, as in Higgins et al., 2017, and Locatello et al., 2019).

    :param model: a model with ``decode(z, y)``.
    :param z: the seed code ``(z_dim,)``, typically the posterior mean of one datapoint.
    :param dims: the dimensions to sweep, one row each, in the order given.
    :param loc: centre of each dimension's sweep ``(z_dim,)``.
    :param scale: unit of each dimension's sweep ``(z_dim,)``.
    :param steps: values per dimension (columns).
    :param span: the sweep runs from −span to +span units.
    :param y: the seed's label ``()`` for a model whose decoder reads one.
    :returns: ``(images (len(dims), steps, *x_shape), values (len(dims), steps))``: the decoder
        means and the values the swept dimension took.
    :raises ValueError: for fewer than 2 steps, a negative span or a dimension outside ``z``.
    """
    if steps < 2 or span < 0:
        raise ValueError(f"a traversal needs at least 2 steps and a span >= 0, got steps={steps}, span={span}")
    dims = list(dims)
    if any(not 0 <= d < z.shape[-1] for d in dims):
        raise ValueError(f"traversed dimensions must lie in 0..{z.shape[-1] - 1}, got {dims}")
    t = torch.linspace(-span, span, steps, dtype=z.dtype, device=z.device)  # (steps,)
    index = torch.tensor(dims, dtype=torch.long, device=z.device)
    loc, scale = loc.to(z.device), scale.to(z.device)  # a prior's buffers may sit on the pair's device
    values = loc[index].unsqueeze(-1) + t * scale[index].unsqueeze(-1)  # (len(dims), steps)
    codes = z.expand(len(dims), steps, z.shape[-1]).clone()  # (len(dims), steps, z_dim)
    codes[torch.arange(len(dims), device=z.device), :, index] = values
    labels = None if y is None else y.expand(len(dims), steps)
    return decode_mean(model, codes, labels), values


def traversal_order(usage: dict) -> tuple[list[int], list[float], str]:
    """Which latent dimensions a traversal shows, and in which order: the active ones of
    :func:`pvae.measures.diagnostics.latent_usage`, largest KL(q(z_j|x) ‖ p(z_j)) first; where the pair has no
    per-dimension KL (a point-mass or non-Gaussian guide, a non-Gaussian prior), largest activity
    Cov_x E_q[z_j|x] first. With no active dimension, the single largest is shown.

    :param usage: what :func:`pvae.measures.diagnostics.latent_usage` returned.
    :returns: ``(dims, scores, what)``: the dimensions, their KL in nats (or activity), and the name of
        the score (``"KL"`` or ``"activity"``).
    """
    what, score = ("KL", usage["kl_per_dim"]) if "kl_per_dim" in usage else ("activity", usage["activity"])
    score = torch.as_tensor(score, dtype=torch.float64)
    ranked = torch.argsort(score, descending=True, stable=True).tolist()
    active = set(usage["active"])
    dims = [d for d in ranked if d in active] or ranked[:1]
    return dims, [float(score[d]) for d in dims], what


def project_2d(z: torch.Tensor) -> tuple[torch.Tensor, str]:
    """The latent points themselves when 2-D, else their first two principal components.

    :returns: ``(points (N, 2), description)``.
    """
    if z.shape[-1] <= 2:
        return z if z.shape[-1] == 2 else torch.cat([z, torch.zeros_like(z)], -1), "latent mean"
    centred = z - z.mean(0)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    explained = float((s[:2] ** 2).sum() / (s**2).sum())
    return centred @ v[:2].T, f"PCA of latent means ({explained:.0%} of variance)"


def check_finite(result: dict, split: str) -> None:
    """Refuse an evaluation whose bounds are NaN or infinite (a diverged or damaged run).

    :param result: what :func:`evaluate` returned.
    :param split: the split it scored, for the message.
    :raises FloatingPointError: naming the values and the fix.
    """
    bad = {k: result[k] for k in ("elbo", "reconstruction", "kl", "log_px") if _not_finite(result.get(k))}
    if bad:
        shown = ", ".join(f"{k} {v}" for k, v in bad.items())
        raise FloatingPointError(
            f"the {split} split scores {shown}: the run's parameters give non-finite densities (training diverged, "
            "or the checkpoint was damaged); retrain the run, e.g. with a lower --lr"
        )


def _not_finite(value) -> bool:
    return value is not None and not math.isfinite(value)


def describe(result: dict) -> str:
    """One line of an evaluation's numbers, in nats per datapoint; its terms add up:
    ELBO = reconstruction (+ log p(y) for a model that observes the label) − KL.

    :param result: what :func:`evaluate` returned.
    """
    if result["elbo"] is None:
        text = (
            f"reconstruction {result['reconstruction']:.2f} nats per datapoint (the guide is a point mass: "
            "no ELBO or log p(x))"
        )
    else:
        label = f", log p(y) {result['log_py']:.2f}" if "log_py" in result else ""
        text = (
            f"ELBO {result['elbo']:.2f} (reconstruction {result['reconstruction']:.2f}{label}, KL {result['kl']:.2f}), "
            f"log p(x) ≈ {result['log_px']:.2f} ± {result['log_px_se']:.2f} with K={result['iwae_samples']}, "
            "nats per datapoint"
        )
    if "accuracy" in result:
        text += f"; classifier accuracy {result['accuracy']:.2%}"
    return text
