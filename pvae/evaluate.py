"""Per-datapoint bounds and estimates of log p(x) for any model/guide pair, in nats.

Everything here runs the pair under Pyro's handlers (trace the guide, replay the model) with a
``"particles"`` plate left of the data plate, so K samples of z per datapoint are drawn in one
vectorized pass. For each datapoint n and sample k the log-weight is

    log w_nk = log p(x_n, z_nk) − log q(z_nk | x_n),   z_nk ~ q(z | x_n),

from which:

* ELBO_n      = mean_k log w_nk                         (an unbiased estimate of the ELBO),
* log p(x_n) ≈ log mean_k exp(log w_nk)                 (importance sampling; the IWAE-K bound of
  Burda et al., 2015, a lower bound in expectation that tightens as K grows),
* reconstruction_n = mean_k log p(x_n | z_nk),  KL_n = mean_k [log q(z_nk|x_n) − log p(z_nk)].

Contract: every sample site sits inside the ``"data"`` plate at ``dim=-1``, so each site's
log-density has one entry per datapoint.
"""

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from pvae import distributed, options
from pvae.data import SPLITS
from pvae.device import module_device, to_device
from pvae.objectives import log_mean_exp
from pvae.pair import Traits, traits
from pvae.sites import PARTICLES, Y, Z


@dataclass(frozen=True)
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
        options.check_choices(self)
        options.positive(self, "samples", "points", "batch_size")
        options.require(
            self,
            "points",
            self.points is None or self.points >= 2,
            "at least 2 (the ± is a standard error over the datapoints; leave --points out to score the whole split)",
        )


@dataclass(frozen=True)
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


def pair_args(
    model: torch.nn.Module | Traits, x: torch.Tensor, y: torch.Tensor | None, training: bool = False
) -> tuple:
    """The arguments a pair is called with.

    Labels go to models that declare ``labels = "observed"`` (they observe every label), and, in
    training only, to those that declare ``labels = "semi-supervised"`` (``y=None`` marks an
    unlabelled batch); evaluation scores those on x alone, the guide proposing the label
    (:meth:`pvae.pair.Traits.takes_labels`).

    :param model: the model, or its :class:`~pvae.pair.Traits` where the caller has read them once
        (a training step need not read them again).
    """
    pair = model if isinstance(model, Traits) else traits(model)
    return (x, y) if y is not None and pair.takes_labels(training) else (x,)


def _bernoulli_log_prob(bernoulli: dist.Bernoulli, value: torch.Tensor, event_dims: int) -> torch.Tensor | None:
    """``Bernoulli(logits=l).to_event(event_dims).log_prob(x)``, as the sum over the event of

        log p(x | l) = x·l − softplus(l)   (= −BCE-with-logits(l, x) = x log σ(l) + (1 − x) log σ(−l)),

    written into the one buffer softplus fills: torch's ``log_prob`` broadcasts x to the logits'
    shape, K copies of the data, and makes three such buffers (1 − x, log σ(l), the negation) before
    the sum. None where the value does not fit in the logits' buffer (another dtype, or a shape the
    logits broadcast to): the caller falls back to ``log_prob``.
    """
    logits = bernoulli.logits  # (particles, batch, *x_shape); torch's log_prob reads them, also when made from probs
    try:
        fits = value.dtype == logits.dtype and torch.broadcast_shapes(logits.shape, value.shape) == logits.shape
    except RuntimeError:
        fits = False
    if not fits:
        return None
    if bernoulli._validate_args:  # the checks log_prob makes: shape and support of the value
        bernoulli._validate_sample(value)
    nll = torch.nn.functional.softplus(logits).addcmul_(logits, value, value=-1)  # softplus(l) − x·l, per pixel
    return nll.sum(tuple(range(-event_dims, 0))).neg_()


#: Distribution type → ``f(distribution, value, event_dims)``: its ``to_event(event_dims).log_prob(value)``
#: without the temporaries of torch's, or None where it cannot (then ``log_prob`` runs). Exact types: a
#: subclass may define its own ``log_prob``.
_LOG_PROBS: dict[type, Callable[[torch.distributions.Distribution, torch.Tensor, int], torch.Tensor | None]] = {
    dist.Bernoulli: _bernoulli_log_prob,
    torch.distributions.Bernoulli: _bernoulli_log_prob,
}
#: Wrappers that sum the rightmost batch dimensions of their base (``.to_event(n)``).
_INDEPENDENT = (dist.Independent, torch.distributions.Independent)


def _log_prob(fn: torch.distributions.Distribution, value: torch.Tensor) -> torch.Tensor:
    """``fn.log_prob(value)``, by :data:`_LOG_PROBS` where ``fn`` is one of its types made an event."""
    base, event_dims = fn, 0
    while type(base) in _INDEPENDENT:
        event_dims += base.reinterpreted_batch_ndims
        base = base.base_dist
    fast = _LOG_PROBS.get(type(base)) if event_dims else None
    log_prob = None if fast is None else fast(base, value, event_dims)
    return fn.log_prob(value) if log_prob is None else log_prob


def _per_datapoint(site: dict, shape: torch.Size) -> torch.Tensor:
    log_prob = _log_prob(site["fn"], site["value"])
    if log_prob.shape != shape:
        raise ValueError(
            f"site {site['name']!r} has log-density of shape {tuple(log_prob.shape)}, expected "
            f"{tuple(shape)} (particles, batch): declare the dimensions of one datapoint with "
            "`.to_event(...)` and put every sample site inside the 'data' plate"
        )
    return log_prob


def site_log_probs(
    model: torch.nn.Module, guide: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, num_samples: int = 1
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], set[str]]:
    """Log-densities of every sample site for ``num_samples`` draws from the guide.

    :returns: ``(model_terms, guide_terms, observed)``: site name → tensor ``(num_samples, batch)``
        for model and guide (model terms include the observed sites), and the names of the
        model's observed sites.
    """
    args = pair_args(model, x, y)
    shape = torch.Size((num_samples, x.shape[0]))
    with pyro.plate(PARTICLES, num_samples, dim=-2):
        guide_trace = poutine.trace(guide).get_trace(*args)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args)
    terms = []
    for trace in (model_trace, guide_trace):
        sites = {n: s for n, s in trace.nodes.items() if s["type"] == "sample" and not site_is_subsample(s)}
        terms.append({n: _per_datapoint(s, shape) for n, s in sites.items()})
    observed = {n for n, s in model_trace.nodes.items() if s["type"] == "sample" and s["is_observed"]}
    return terms[0], terms[1], observed


def log_weights(
    model: torch.nn.Module, guide: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, num_samples: int = 1
) -> dict[str, torch.Tensor]:
    """log p(x, z) − log q(z|x) and its parts, each ``(num_samples, batch)``.

    :returns: ``{"log_w", "log_px_given_z", "log_py", "log_pz", "log_qz"}``; ``log_px_given_z``
        sums the observed sites but the label, ``log_py`` the observed label ``"y"`` (zero when
        there is none), ``log_pz`` the model's latent sites, ``log_qz`` the guide's sites.
    """
    model_terms, guide_terms, observed = site_log_probs(model, guide, x, y, num_samples)
    zero = x.new_zeros(num_samples, x.shape[0])
    log_px_given_z = sum((t for n, t in model_terms.items() if n in observed and n != Y), zero)
    log_py = sum((t for n, t in model_terms.items() if n in observed and n == Y), zero)
    log_pz = sum((t for n, t in model_terms.items() if n not in observed), zero)
    log_qz = sum(guide_terms.values(), zero)
    return {
        "log_w": log_px_given_z + log_py + log_pz - log_qz,
        "log_px_given_z": log_px_given_z,
        "log_py": log_py,
        "log_pz": log_pz,
        "log_qz": log_qz,
    }


def sample_chunks(x: torch.Tensor, num_samples: int, max_elements: int = 1 << 24) -> list[int]:
    """Sizes of the chunks that draw ``num_samples`` samples of z for the batch ``x``, each chunk's
    decoder output (samples × batch × pixels) holding at most ``max_elements`` numbers."""
    chunk = max(1, min(num_samples, max_elements // max(1, x[0].numel() * x.shape[0])))
    return [min(chunk, num_samples - start) for start in range(0, num_samples, chunk)]


#: On the host a chunk of draws is smaller still: at most this many numbers in its decoder output (16 MiB
#: of float32) and :data:`HOST_CHUNK_ROWS` rows (draws × datapoints), so that each of its tensors stays
#: under glibc's mmap threshold (32 MiB at most). Above it every tensor is a fresh mapping whose pages
#: the kernel zeroes on first touch, chunk after chunk; below it malloc reuses the previous chunk's
#: memory. Measured (``experiments/bench_speed.py --eval-rounds``: K = 1000, 100 datapoints, one thread)
#: against the hand-written estimator's time: 1.07-1.22 on 28×28 images without these limits (chunks of
#: 213 draws, 67 MB outputs), 0.91-0.98 with them; 1.9-2.2 and 0.91-1.17 on 8×8 digits (one chunk of
#: 1000 draws, 160 MB hidden layers).
HOST_CHUNK_ELEMENTS = 1 << 22
#: Rows of a chunk on the host: a hidden layer 512 wide holds :data:`HOST_CHUNK_ELEMENTS` numbers.
HOST_CHUNK_ROWS = 1 << 13


@torch.no_grad()
def bounds(
    model: torch.nn.Module,
    guide: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    num_samples: int = 1000,
    max_elements: int = 1 << 24,
) -> dict[str, torch.Tensor]:
    """Per-datapoint ELBO, its two terms and the importance-sampled log p(x), with K = ``num_samples``.

    The K samples are drawn in chunks so that a chunk's decoder output holds at most
    ``max_elements`` numbers: memory stays bounded for any K. On the host the chunks are also kept
    within :data:`HOST_CHUNK_ELEMENTS` and :data:`HOST_CHUNK_ROWS`, for speed. Chunking changes the
    estimator in nothing, and not even the draws of z where every chunk draws a multiple of 16 numbers
    (torch's block of normal draws on the CPU: 100 datapoints with a z dimension divisible by 4 always do;
    otherwise the draws are other draws from the same q).

    :returns: ``{"elbo", "reconstruction", "log_py", "kl", "log_px"}``, each a tensor ``(batch,)``
        in nats. For a model that observes a label (the CVAE), ``log_py`` is its log p(y), and
        ``elbo`` and ``log_px`` bound and estimate the joint log p(x, y); else ``log_py`` is 0.
    """
    log_w, recon, label, kl = [], x.new_zeros(x.shape[0]), x.new_zeros(x.shape[0]), x.new_zeros(x.shape[0])
    if x.device.type == "cpu":
        max_elements = min(max_elements, HOST_CHUNK_ELEMENTS, HOST_CHUNK_ROWS * x[0].numel())
    for k in sample_chunks(x, num_samples, max_elements):
        parts = log_weights(model, guide, x, y, k)
        log_w.append(parts["log_w"])
        recon += parts["log_px_given_z"].sum(0)
        label += parts["log_py"].sum(0)
        kl += (parts["log_qz"] - parts["log_pz"]).sum(0)
    recon, label, kl = recon / num_samples, label / num_samples, kl / num_samples
    return {
        "elbo": recon + label - kl,
        "reconstruction": recon,
        "log_py": label,
        "kl": kl,
        "log_px": log_mean_exp(torch.cat(log_w), dim=0),
    }


def evaluate(
    model: torch.nn.Module,
    guide: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    num_samples: int = 1000,
    batch_size: int = 100,
    progress: Callable[[int], None] | None = None,
    per_datapoint: bool = False,
) -> dict[str, float]:
    """Averages over a dataset of :func:`bounds`, with standard errors, in nats per datapoint.

    :param x: datapoints ``(N, ...)``; binary for Bernoulli likelihoods. They may stay on the host: each
        batch moves to the device of ``model``, and the results come back to the host.
    :param y: labels ``(N,)``, used by conditional models only.
    :param num_samples: K, the importance samples per datapoint.
    :param batch_size: datapoints per pass.
    :param progress: called with the number of datapoints done after each batch.
    :param per_datapoint: also return ``per_datapoint``: the tensors ``(N,)`` of :func:`bounds`
        the means are taken over (for paired comparisons of two pairs on the same datapoints).
    :returns: ``elbo``, ``reconstruction``, ``kl``, ``log_px`` (means), ``log_py`` (models that
        observe a label: the label's term, so that elbo = reconstruction + log_py − kl), ``elbo_se`` and
        ``log_px_se`` (standard errors of the means over datapoints), ``n`` and ``iwae_samples``;
        ``accuracy`` for guides with a ``classify(x)`` method (logits of q(y|x)). For a guide
        that declares ``point_estimate = True`` (the autoencoder's Delta), ``elbo``, ``kl`` and
        ``log_px`` and their errors are ``None``: a point mass has no density to bound with.
    """
    pair = traits(model, guide)
    point_mass = pair.point_estimate
    if point_mass:
        num_samples = 1  # every draw from a point mass is the same
    was_training = (model.training, guide.training)
    model.eval()
    guide.eval()
    device = module_device(model)
    try:
        # one (N,) host tensor per bound, filled a batch at a time: small tensors kept per batch would sit
        # between each batch's large temporaries and keep the allocator from reusing them (measured: the
        # resident memory grew by about 4 MiB a batch over a 135,000-row split, never given back)
        values: dict[str, torch.Tensor] = {}
        for start in range(0, x.shape[0], batch_size):
            # x may stay on the host: each batch moves to the pair's device
            xb = to_device(x[start : start + batch_size], device)
            yb = None if y is None else to_device(y[start : start + batch_size], device)
            for key, value in bounds(model, guide, xb, yb, num_samples).items():
                if key not in values:
                    values[key] = torch.empty(x.shape[0], dtype=value.dtype)  # results live on the host
                values[key][start : start + len(value)] = value.detach().cpu()
            if progress is not None:
                progress(xb.shape[0])
    finally:
        model.train(was_training[0])
        guide.train(was_training[1])
    return summarize(values, model, guide, x, y, num_samples, batch_size, per_datapoint)


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


def summarize(
    values: dict[str, torch.Tensor],
    model: torch.nn.Module,
    guide: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None,
    num_samples: int,
    batch_size: int = 100,
    per_datapoint: bool = False,
) -> dict:
    """What :func:`evaluate` returns, from the per-datapoint bounds of every datapoint of ``x``.

    :param values: the tensors ``(N,)`` of :func:`bounds`, concatenated over ``x``'s datapoints in order.
    :param model: the model (its traits).
    :param guide: the guide (its traits, and ``classify`` for the accuracy).
    :param x: the datapoints scored ``(N, ...)``.
    :param y: their labels ``(N,)``, or None.
    :param num_samples: K, the importance samples each datapoint had.
    :param batch_size: datapoints per pass of the accuracy.
    :param per_datapoint: keep ``values`` in the result.
    """
    pair = traits(model, guide)
    point_mass = pair.point_estimate
    if point_mass:
        num_samples = 1  # every draw from a point mass is the same
    n = x.shape[0]
    result = {key: float(v.mean()) for key, v in values.items()}
    for key in ("elbo", "log_px"):
        result[f"{key}_se"] = float(values[key].std() / n**0.5) if n > 1 else float("nan")
    if point_mass:
        # q(z|x) is a point mass: KL(q ‖ p) is infinite, so the ELBO is −∞, and a point proposes
        # no importance samples. Only the reconstruction term means something.
        result.update(elbo=None, kl=None, log_px=None, elbo_se=None, log_px_se=None)
    if not bool(values["log_py"].any()):
        del result["log_py"]  # no label observed: keep the summary to what applies
    if pair.classifies and y is not None:
        result["accuracy"] = accuracy(guide, x, y, batch_size)
    result.update(n=n, iwae_samples=num_samples)
    if per_datapoint:
        result["per_datapoint"] = values
    return result


def evaluate_shared(
    model: torch.nn.Module,
    guide: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    num_samples: int = 1000,
    batch_size: int = 100,
    seed: int = 0,
) -> dict | None:
    """:func:`evaluate` with its datapoints shared among torchrun's ranks: each rank scores its
    contiguous share of ``x`` with its own stream of draws, seeded from (``seed``, rank), and rank 0
    gathers the per-datapoint bounds in order and returns the summary of all of ``x``; the other ranks
    return None. Without a process group: :func:`evaluate` after seeding with ``seed``.

    :param model: the model, on this rank's device.
    :param guide: the guide.
    :param x: every datapoint to score ``(N, ...)``, the same on every rank.
    :param y: their labels ``(N,)``, or None.
    :param num_samples: K, the importance samples per datapoint.
    :param batch_size: datapoints per pass.
    :param seed: the seed the draws derive from.
    """
    world, rank = distributed.world_size(), distributed.rank()
    if world == 1 or x.shape[0] < world:  # too few datapoints to give each rank one: rank 0 alone
        pyro.set_rng_seed(seed)
        if rank != 0:
            return None
        return evaluate(model, guide, x, y, num_samples=num_samples, batch_size=batch_size)
    index = torch.arange(x.shape[0]).tensor_split(world)[rank]
    pyro.set_rng_seed(distributed.rank_seed(seed, rank) % 2**32)
    mine = evaluate(
        model, guide, x[index], None if y is None else y[index], num_samples, batch_size, per_datapoint=True
    )
    shares = distributed.gather_object(mine["per_datapoint"])
    if rank != 0:
        return None
    values = {key: torch.cat([share[key] for share in shares]) for key in shares[0]}
    return summarize(values, model, guide, x, y, num_samples, batch_size)


@torch.no_grad()
def accuracy(guide: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of the labelled datapoints of ``x`` whose most probable class under
    ``guide.classify`` (logits) is ``y``; datapoints whose label was dropped (``-1``) are skipped."""
    keep = y >= 0
    x, y = x[keep], y[keep]
    device = module_device(guide)
    hits = sum(
        int((guide.classify(to_device(x[i : i + batch_size], device)).argmax(-1).cpu() == y[i : i + batch_size]).sum())
        for i in range(0, len(x), batch_size)
    )
    return hits / len(x) if len(x) else float("nan")


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
    :func:`pvae.diagnostics.latent_usage`, largest KL(q(z_j|x) ‖ p(z_j)) first; where the pair has no
    per-dimension KL (a point-mass or non-Gaussian guide, a non-Gaussian prior), largest activity
    Cov_x E_q[z_j|x] first. With no active dimension, the single largest is shown.

    :param usage: what :func:`pvae.diagnostics.latent_usage` returned.
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
