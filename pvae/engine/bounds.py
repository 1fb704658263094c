"""Per-datapoint bounds and estimates of log p(x) for any model/guide pair, in nats, and their averages
over a dataset (:func:`evaluate`, which the trainer validates with).

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

from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from pvae.base.device import module_device, to_device
from pvae.base.sites import PARTICLES, Y
from pvae.engine.objectives import log_mean_exp
from pvae.engine.pair import Traits, traits
from pvae.engine.ranks import ONE, Ranks


def pair_args(
    model: torch.nn.Module | Traits, x: torch.Tensor, y: torch.Tensor | None, training: bool = False
) -> tuple:
    """The arguments a pair is called with.

    Labels go to models that declare ``labels = "observed"`` (they observe every label), and, in
    training only, to those that declare ``labels = "semi-supervised"`` (``y=None`` marks an
    unlabelled batch); evaluation scores those on x alone, the guide proposing the label
    (:meth:`pvae.engine.pair.Traits.takes_labels`).

    :param model: the model, or its :class:`~pvae.engine.pair.Traits` where the caller has read them once
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
    ranks: Ranks = ONE,
    seed: int | None = None,
) -> dict | None:
    """Averages over a dataset of :func:`bounds`, with standard errors, in nats per datapoint.

    Under torchrun (``ranks`` a :class:`pvae.engine.ranks.Torchrun`) the ranks share the datapoints: each scores its
    contiguous part of ``x`` (:meth:`pvae.engine.ranks.Ranks.part`), and rank 0 gathers the per-datapoint bounds in
    order and returns the summary of all of ``x``; the other ranks return None. With fewer datapoints than
    ranks, rank 0 scores them all.

    :param x: datapoints ``(N, ...)``, the same on every rank; binary for Bernoulli likelihoods. They may stay
        on the host: each batch moves to the device of ``model``, and the results come back to the host.
    :param y: labels ``(N,)``, used by conditional models only.
    :param num_samples: K, the importance samples per datapoint.
    :param batch_size: datapoints per pass.
    :param progress: called with the number of datapoints this rank has done after each batch.
    :param per_datapoint: also return ``per_datapoint``: the tensors ``(N,)`` of :func:`bounds`
        the means are taken over (for paired comparisons of two pairs on the same datapoints).
    :param ranks: the processes that share the datapoints (:func:`pvae.engine.ranks.current`); by default this one
        alone.
    :param seed: seed the draws of z first, each rank's from (``seed``, rank) (:meth:`pvae.engine.ranks.Ranks.seed`;
        one process: ``seed`` itself); None: they go on from the current random state.
    :returns: ``elbo``, ``reconstruction``, ``kl``, ``log_px`` (means), ``log_py`` (models that
        observe a label: the label's term, so that elbo = reconstruction + log_py − kl), ``elbo_se`` and
        ``log_px_se`` (standard errors of the means over datapoints), ``n`` and ``iwae_samples``;
        ``accuracy`` for guides with a ``classify(x)`` method (logits of q(y|x)). For a guide
        that declares ``point_estimate = True`` (the autoencoder's Delta), ``elbo``, ``kl`` and
        ``log_px`` and their errors are ``None``: a point mass has no density to bound with. None on a rank
        other than 0.
    """
    ranks = ranks.scoring(x.shape[0])
    if seed is not None:
        ranks.seed(seed)
    if traits(model, guide).point_estimate:
        num_samples = 1  # every draw from a point mass is the same
    values = ranks.gather(_bounds_over(model, guide, x, y, ranks.part(x.shape[0]), num_samples, batch_size, progress))
    if values is None:
        return None
    return summarize(values, model, guide, x, y, num_samples, batch_size, per_datapoint)


def _bounds_over(
    model: torch.nn.Module,
    guide: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None,
    part: slice,
    num_samples: int,
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> dict[str, torch.Tensor]:
    """:func:`bounds` of the datapoints ``x[part]``, a batch at a time, in eval mode: name → tensor
    ``(part's length,)`` on the host (empty where the part is)."""
    was_training = (model.training, guide.training)
    model.eval()
    guide.eval()
    device = module_device(model)
    try:
        # one (n,) host tensor per bound, filled a batch at a time: small tensors kept per batch would sit
        # between each batch's large temporaries and keep the allocator from reusing them (measured: the
        # resident memory grew by about 4 MiB a batch over a 135,000-row split, never given back)
        values: dict[str, torch.Tensor] = {}
        for start in range(part.start, part.stop, batch_size):
            # x may stay on the host (or be read a batch at a time): each batch moves to the pair's device
            stop = min(start + batch_size, part.stop)
            xb = to_device(x[start:stop], device)
            yb = None if y is None else to_device(y[start:stop], device)
            for key, value in bounds(model, guide, xb, yb, num_samples).items():
                if key not in values:
                    values[key] = torch.empty(part.stop - part.start, dtype=value.dtype)  # results live on the host
                values[key][start - part.start : stop - part.start] = value.detach().cpu()
            if progress is not None:
                progress(xb.shape[0])
    finally:
        model.train(was_training[0])
        guide.train(was_training[1])
    return values


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
