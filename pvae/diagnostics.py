"""How good is q(z|x)? Diagnostics of an amortized guide against the posterior of its model.

An amortized guide is an approximation twice over: a limited family, and one encoder shared by
every datapoint. Four questions, one public function each; :func:`diagnose` runs them all and
says which do not apply to a pair.

1. :func:`importance_diagnostics` — can q(z|x) serve as an importance proposal for p(z|x)? The
   log-weights log w = log p(x, z) − log q(z|x), z ~ q(z|x), *per datapoint*, Pareto-smoothed
   (ArviZ's ``psislw``): k̂ < 0.5 good, 0.5–0.7 usable, > 0.7 unreliable (Yao et al., 2018).
2. :func:`nuts_reference` and :func:`compare_to_reference` — the posterior itself, by NUTS
   (Hoffman & Gelman, 2014) on z | x with the decoder held fixed, several chains, checked with
   R̂ and bulk/tail ESS (Vehtari et al., 2021) before it is compared with the guide dimension by
   dimension.
3. :func:`gap_decomposition` — the inference gap log p(x) − ELBO(q_φ(z|x)) split into the
   approximation gap log p(x) − ELBO(q*) and the amortization gap ELBO(q*) − ELBO(q_φ), where q*
   is the best member of the guide's family for that datapoint alone (Cremer, Li & Duvenaud, 2018).
4. :func:`latent_usage` — posterior collapse and the aggregate posterior: KL per dimension,
   active units (Burda et al., 2016), I(x; z) and how far q(z) = E_x q(z|x) is from p(z)
   (Hoffman & Johnson, 2016).

Everything is in nats per datapoint. Functions return tensors and dicts; nothing here writes
files or draws figures.
"""

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.infer import MCMC, NUTS
from pyro.poutine.util import site_is_subsample

from pvae import az, distributed, options
from pvae.data import SPLITS
from pvae.device import module_device, to_device
from pvae.evaluate import log_weights, pair_args, posterior_mean, sample_chunks
from pvae.objectives import log_mean_exp
from pvae.pair import traits
from pvae.sites import DATA, PARTICLES, Z


@dataclass(frozen=True)
class DiagnoseConfig:
    """Settings of :func:`diagnose` and of ``pvae diagnose``, whose defaults they are.

    :param points: N, datapoints of the importance diagnostics and of the gap decomposition.
    :param khat_samples: draws from q(z|x) per datapoint for the Pareto k̂.
    :param nuts_points: M, datapoints whose posterior NUTS samples (0 skips NUTS).
    :param chains: NUTS chains, each from its own draw from the prior.
    :param nuts_warmup: NUTS adaptation steps per chain.
    :param nuts_draws: NUTS draws kept per chain.
    :param max_r_hat: largest rank-normalized split-R̂ accepted (above 1: R̂ is 1 at best).
    :param min_ess: smallest bulk and tail ESS accepted, over all chains (Vehtari et al.: 100 per chain).
    :param max_divergences: divergent transitions accepted (a divergence means NUTS missed a region).
    :param coverage: mass of the guide's central interval whose coverage of the NUTS draws is reported.
    :param samples: K, importance samples per datapoint of the log p(x) of the gap decomposition.
    :param local_particles: the fixed draws of the sample-average ELBO whose maximum over the
        local variational parameters is sought (:func:`optimize_local`).
    :param local_steps: most L-BFGS iterations of that optimization.
    :param local_tol: it stops when an iteration changes the summed ELBO by less than this many
        nats (or the gradient vanishes).
    :param elbo_samples: draws per datapoint of the reported ELBOs (amortized and local).
    :param latent_points: datapoints of the latent-space statistics (active units, I(x; z)).
    :param active_threshold: Cov_x E_q[z_j | x] above which dimension j is active (Burda et al.: 0.01).
    :param split: the split diagnosed: ``train``, ``val`` or ``test``.
    :param seed: seed of every draw.
    :param out: folder of the results (None: RUN/diagnostics).
    """

    points: int = 100
    khat_samples: int = 1000
    nuts_points: int = 5
    chains: int = 4
    nuts_warmup: int = 500
    nuts_draws: int = 500
    max_r_hat: float = 1.01
    min_ess: float = 400.0
    max_divergences: int = 0
    coverage: float = 0.9
    samples: int = 5000
    local_particles: int = 128
    local_steps: int = 500
    local_tol: float = 1e-6
    elbo_samples: int = 1000
    latent_points: int = 1000
    active_threshold: float = 0.01
    split: str = field(default="test", metadata=options.choices(SPLITS))
    seed: int = 0
    out: str | None = None

    def __post_init__(self):
        options.seed(self, "seed")
        options.check_choices(self)
        positive = ("points", "chains", "nuts_warmup", "nuts_draws", "samples", "local_particles", "local_steps")
        options.positive(self, *positive, "elbo_samples", "latent_points", "max_r_hat", "min_ess", "local_tol")
        options.positive(self, "nuts_points", "max_divergences", "active_threshold", zero=True)
        options.require(
            self,
            "khat_samples",
            self.khat_samples >= 100,
            "at least 100: k̂ fits the largest 3√K weights, and ArviZ reports +inf below 5 of them",
        )
        options.require(self, "latent_points", self.latent_points >= 2, "at least 2 (a variance over datapoints)")
        options.require(self, "chains", self.chains >= 2, "at least 2: R-hat compares chains")
        options.require(self, "coverage", 0 < self.coverage < 1, "a mass in (0, 1)")
        options.require(
            self,
            "max_r_hat",
            self.max_r_hat > 1,
            "above 1 (R-hat is 1 at best, for chains that mix perfectly: a threshold of 1 or less fails converged "
            "chains too; Vehtari et al. suggest 1.01)",
        )


class NotApplicable(ValueError):
    """A diagnostic does not apply to this pair; the message says why."""


# --------------------------------------------------------------------------------------------
# The pieces every diagnostic shares.


def _sample_sites(trace) -> dict[str, dict]:
    return {n: s for n, s in trace.nodes.items() if s["type"] == "sample" and not site_is_subsample(s)}


def latent_sites(model, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, dict]:
    """The model's unobserved sample sites for the datapoints ``x``, drawn from the prior: name → site."""
    trace = poutine.trace(model).get_trace(*pair_args(model, x, y))
    return {n: s for n, s in _sample_sites(trace).items() if not s["is_observed"]}


def _require_continuous(model, x, y) -> dict[str, dict]:
    sites = latent_sites(model, x, y)
    for name, site in sites.items():
        support = site["fn"].support
        if support.is_discrete:
            raise NotApplicable(
                f"the model's latent {name!r} is discrete; NUTS moves continuous latents only "
                "(condition on it, or sum it out in the model)"
            )
        base = support.base_constraint if isinstance(support, constraints.independent) else support
        if base is not constraints.real:
            raise NotApplicable(f"the model's latent {name!r} is not real-valued (support {support})")
    return sites


def log_joint(
    model, x: torch.Tensor, y: torch.Tensor | None, values: dict[str, torch.Tensor], particles: int | None = None
) -> torch.Tensor:
    """log p(x, z) per datapoint (observed label included), at given values of the latents.

    :param values: site → ``(batch, *event)``, or ``(particles, batch, *event)`` with ``particles``.
    :returns: ``(batch,)``, or ``(particles, batch)``.
    """
    conditioned = poutine.trace(poutine.condition(model, data=values))
    args = pair_args(model, x, y)
    if particles is None:
        trace = conditioned.get_trace(*args)
    else:
        with pyro.plate(PARTICLES, particles, dim=-2):
            trace = conditioned.get_trace(*args)
    return sum(s["fn"].log_prob(s["value"]) for s in _sample_sites(trace).values())


@contextmanager
def _frozen(module: torch.nn.Module) -> Iterator[None]:
    """Hold ``module``'s parameters fixed (no gradients) inside the block."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)


@torch.no_grad()
def _guide_draws(guide, model, x, y, num_samples: int, sites) -> dict[str, torch.Tensor]:
    """Draws of the model's latent ``sites`` from the guide, ``(num_samples, batch, *event)`` each."""
    with pyro.plate(PARTICLES, num_samples, dim=-2):
        trace = poutine.trace(guide).get_trace(*pair_args(model, x, y))
    return {n: trace.nodes[n]["value"] for n in sites}


# --------------------------------------------------------------------------------------------
# 1. Importance-sampling diagnostics, per datapoint.


@torch.no_grad()
def importance_diagnostics(
    model, guide, x: torch.Tensor, y: torch.Tensor | None = None, num_samples: int = 1000, batch_size: int = 100
) -> dict[str, torch.Tensor]:
    """Pareto k̂ and effective sample size of the importance weights of q(z|x), per datapoint.

    Pyro's ``psis_diagnostic`` sums the log-weights of a whole batch into one: here each
    datapoint keeps its own K weights w_k = p(x, z_k) / q(z_k | x), and ArviZ fits the
    generalized Pareto tail of each row.

    :returns: ``(N,)`` tensors: ``k_hat``; ``ess`` and ``ess_raw``, the effective sample sizes
        1 / Σ w̃_k² of the smoothed and of the raw normalized weights, as fractions of K;
        ``log_px`` (the importance-sampled estimate) and ``elbo`` (the mean log-weight).
    """
    log_w = torch.cat(
        [
            _chunked_log_weights(model, guide, x[i : i + batch_size], _rows(y, i, batch_size), num_samples).T
            for i in range(0, len(x), batch_size)
        ]
    ).cpu()  # (N, K), on the host, where ArviZ reads it
    k_hat, smoothed = az.pareto_k(log_w.double().numpy())
    raw = torch.log_softmax(log_w.double(), dim=1)
    return {
        "k_hat": torch.from_numpy(k_hat),
        "ess": 1 / torch.from_numpy(smoothed).exp().pow(2).sum(1) / num_samples,
        "ess_raw": 1 / raw.exp().pow(2).sum(1) / num_samples,
        "log_px": log_mean_exp(log_w.double(), dim=1),
        "elbo": log_w.double().mean(1),
    }


def _rows(y, start, size):
    return None if y is None else y[start : start + size]


def _chunked_log_weights(model, guide, x, y, num_samples: int, max_elements: int = 1 << 24) -> torch.Tensor:
    """``(num_samples, batch)`` log-weights, drawn in chunks that bound the decoder's output."""
    return torch.cat([log_weights(model, guide, x, y, k)["log_w"] for k in sample_chunks(x, num_samples, max_elements)])


# --------------------------------------------------------------------------------------------
# 2. The reference posterior, by NUTS with the decoder fixed.


def nuts_reference(
    model,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    chains: int = 4,
    warmup: int = 500,
    draws: int = 500,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Draws from p(z | x) by NUTS, the model's parameters held fixed.

    The datapoints' posteriors are independent given the decoder, so one NUTS run samples them
    jointly (diagonal mass matrix, adapted in warm-up). Each chain starts from its own draw from
    the prior, which is overdispersed with respect to any posterior, as R̂ needs; chains run one
    after another, each with seed ``seed + chain``. Under torchrun the ranks share the chains
    (chain c on rank c mod world, with the same seed) and rank 0 gathers them.

    :returns: ``(draws, stats)``: site → ``(chains, draws, batch, *event)``, and
        ``{"diverging": (chains, draws) bool, "step_size": (chains,)}``; under torchrun, ``None``
        on every rank but 0.
    :raises NotApplicable: if a latent is discrete or not real-valued.
    """
    sites = _require_continuous(model, x, y)

    def potential(values):
        return -log_joint(model, x, y, values).sum()

    # under torchrun, chain c runs on rank c mod world with the seed it has in one process: the ranks
    # share the chains, and rank 0 gathers the same draws one process would have made
    world, rank = distributed.world_size(), distributed.rank()
    mine = {}
    with _frozen(model):  # the decoder is fixed: only z gets gradients
        for chain in range(rank, chains, world):
            pyro.set_rng_seed(seed + chain)
            init = {n: site["value"] for n, site in latent_sites(model, x, y).items()}
            kernel = NUTS(potential_fn=potential, adapt_step_size=True, adapt_mass_matrix=True)
            mcmc = MCMC(kernel, num_samples=draws, warmup_steps=warmup, initial_params=init, disable_progbar=True)
            mcmc.run()
            flags = np.zeros(draws, dtype=bool)
            flags[mcmc.diagnostics()["divergences"]["chain 0"]] = True
            samples = {name: value.cpu().numpy() for name, value in mcmc.get_samples().items()}
            mine[chain] = (samples, flags, kernel.step_size)
    shares = distributed.gather_object(mine)
    if shares is None:  # another rank than 0: its chains went to rank 0
        return None
    by_chain = {chain: result for share in shares for chain, result in share.items()}
    ordered = [by_chain[chain] for chain in range(chains)]
    return {n: np.stack([samples[n] for samples, _, _ in ordered]) for n in sites}, {
        "diverging": np.stack([flags for _, flags, _ in ordered]),
        "step_size": np.asarray([step_size for _, _, step_size in ordered]),
    }


def compare_to_reference(
    reference: dict[str, np.ndarray], guide_draws: dict[str, np.ndarray], coverage: float = 0.9
) -> dict[str, dict[str, np.ndarray]]:
    """The guide's marginals against the reference draws, per latent site, datapoint and dimension.

    :param reference: site → ``(chains, draws, batch, *event)`` (NUTS).
    :param guide_draws: site → ``(draws, batch, *event)`` from q(z|x).
    :param coverage: mass of the guide's central interval.
    :returns: site → ``{"mean_error", "sd_ratio", "coverage"}``, each ``(batch, *event)``:
        (E_q − E_p) / sd_p, sd_q / sd_p, and the fraction of reference draws inside the guide's
        central ``coverage`` interval (``coverage`` itself when q matches p).
    """
    out = {}
    for name, ref in reference.items():
        ref = ref.reshape(-1, *ref.shape[2:])  # chains pooled: (S, batch, *event)
        q = guide_draws[name]
        sd = ref.std(0, ddof=1)
        lo, hi = np.quantile(q, [(1 - coverage) / 2, (1 + coverage) / 2], axis=0)
        out[name] = {
            "mean_error": (q.mean(0) - ref.mean(0)) / sd,
            "sd_ratio": q.std(0, ddof=1) / sd,
            "coverage": ((ref >= lo) & (ref <= hi)).mean(0),
        }
    return out


def reference_check(
    reference: dict[str, np.ndarray], stats: dict[str, np.ndarray], config: DiagnoseConfig
) -> tuple[bool, dict]:
    """Whether NUTS converged: R̂, bulk and tail ESS of every scalar, and divergences.

    :returns: ``(converged, summary)``; ``summary`` holds the worst R̂, the smallest ESS, the
        number of divergences and, when not converged, ``reasons``.
    """
    worst = {"max_r_hat": 0.0, "min_ess_bulk": math.inf, "min_ess_tail": math.inf}
    for draws in reference.values():
        diag = az.convergence(draws)
        worst["max_r_hat"] = max(worst["max_r_hat"], float(np.nanmax(diag["r_hat"])))
        worst["min_ess_bulk"] = min(worst["min_ess_bulk"], float(np.nanmin(diag["ess_bulk"])))
        worst["min_ess_tail"] = min(worst["min_ess_tail"], float(np.nanmin(diag["ess_tail"])))
    worst["divergences"] = int(stats["diverging"].sum())
    reasons = []
    if not worst["max_r_hat"] <= config.max_r_hat:
        reasons.append(f"R-hat {worst['max_r_hat']:.3f} > {config.max_r_hat}")
    for kind in ("bulk", "tail"):
        if not worst[f"min_ess_{kind}"] >= config.min_ess:
            reasons.append(f"{kind} ESS {worst[f'min_ess_{kind}']:.0f} < {config.min_ess:.0f}")
    if worst["divergences"] > config.max_divergences:
        reasons.append(f"{worst['divergences']} divergent transitions")
    if reasons:
        worst["reasons"] = reasons
    return not reasons, worst


# --------------------------------------------------------------------------------------------
# 3. The gap decomposition.


class _LocalGaussian(torch.nn.Module):
    """Free variational parameters, one Gaussian per datapoint: the guide's family without the encoder.

    Diagonal: a mean and a log-scale per dimension. Full-rank: a mean and a Cholesky factor whose
    diagonal is kept as its logarithm.
    """

    def __init__(self, q: dist.Distribution):
        super().__init__()
        self.full_rank = isinstance(q, dist.MultivariateNormal)
        if self.full_rank:
            tril = q.scale_tril.detach()
            self.loc = torch.nn.Parameter(q.loc.detach().clone())
            self.log_diag = torch.nn.Parameter(tril.diagonal(dim1=-2, dim2=-1).log().clone())
            self.lower = torch.nn.Parameter(tril.tril(-1).clone())
        else:
            base = q.base_dist
            self.loc = torch.nn.Parameter(base.loc.detach().clone())
            self.log_scale = torch.nn.Parameter(base.scale.detach().log().clone())

    def distribution(self, widen: float = 1.0) -> dist.Distribution:
        """q(z) for every datapoint, batch shape ``(batch,)``, its scale multiplied by ``widen``."""
        if self.full_rank:
            tril = self.lower.tril(-1) + torch.diag_embed(self.log_diag.exp())
            return dist.MultivariateNormal(self.loc, scale_tril=widen * tril)
        return dist.Normal(self.loc, widen * self.log_scale.exp()).to_event(1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """A guide: sample ``"z"`` in the data plate."""
        with pyro.plate(DATA, x.shape[0]):
            return pyro.sample(Z, self.distribution())


def local_family(guide, model, x: torch.Tensor, y: torch.Tensor | None = None) -> dist.Distribution:
    """The guide's q(z|x), if the gap decomposition can optimize it per datapoint.

    :raises NotApplicable: unless the guide's only latent is ``"z"`` with a diagonal or
        full-rank Gaussian q(z|x).
    """
    with torch.no_grad():
        trace = poutine.trace(guide).get_trace(*pair_args(model, x, y))
    sites = _sample_sites(trace)
    if set(sites) != {Z}:
        raise NotApplicable(
            f"the guide samples {sorted(sites)}: the local optimum is defined here for a guide whose only "
            "latent is 'z' (a hierarchical or discrete guide has no per-datapoint parameters apart from "
            "shared networks)"
        )
    q = sites[Z]["fn"]
    diagonal = isinstance(q, dist.Independent) and isinstance(q.base_dist, dist.Normal)
    if not (diagonal or isinstance(q, dist.MultivariateNormal)):
        raise NotApplicable(
            f"q(z|x) is a {type(q).__name__}: the local optimum is defined here for diagonal and full-rank "
            "Gaussians (a flow's per-datapoint family would need its own networks for each datapoint)"
        )
    return q


def optimize_local(
    model, q: dist.Distribution, x: torch.Tensor, y: torch.Tensor | None, config: DiagnoseConfig
) -> tuple[_LocalGaussian, dict]:
    """The best Gaussian of q's family for each datapoint alone, started from the encoder's output.

    Maximizes Σ_n ELBO_n = Σ_n E_q[log p(x_n, z)] + H[q_n] by L-BFGS on a sample average: the
    same S = ``config.local_particles`` standard-normal draws ε at every evaluation, z = μ + L ε,
    which makes the objective deterministic and smooth. The draws of each datapoint are centred
    and whitened (mean 0, covariance I exactly when S > z_dim), so the average is exact for a
    Gaussian posterior and has little error otherwise. The reported ELBO is then measured on
    fresh draws.

    :returns: ``(local, trace)``: the optimized parameters (a guide) and ``{"evaluations",
        "elbo_start", "elbo_end"}``, the mean sample-average ELBO before and after.
    """
    local = _LocalGaussian(q)
    eps = _whitened_normal(config.local_particles, *local.loc.shape, device=local.loc.device)  # (S, N, d)
    values = []

    def closure():
        optimizer.zero_grad()
        q = local.distribution()
        if local.full_rank:
            z = q.loc + torch.einsum("nij,snj->sni", q.scale_tril, eps)  # (S, N, d)
        else:
            z = q.base_dist.loc + q.base_dist.scale * eps
        elbo = log_joint(model, x, y, {Z: z}, len(z)).mean(0) + q.entropy()  # (N,)
        loss = -elbo.sum()
        loss.backward()
        values.append(float(elbo.detach().mean()))
        return loss

    optimizer = torch.optim.LBFGS(
        local.parameters(),
        max_iter=config.local_steps,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-9,
        tolerance_change=config.local_tol,
        history_size=50,
    )
    with _frozen(model):
        optimizer.step(closure)
    return local, {"evaluations": len(values), "elbo_start": values[0], "elbo_end": values[-1]}


def _whitened_normal(num: int, batch: int, dim: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(num, batch, dim)`` standard-normal draws on ``device``, centred and, when ``num > dim``, whitened
    per datapoint."""
    eps = torch.randn(num, batch, dim, device=device)
    eps = eps - eps.mean(0)
    if num > dim:
        cov = torch.einsum("sbi,sbj->bij", eps, eps) / num  # (batch, dim, dim)
        chol = torch.linalg.cholesky(cov)
        eps = torch.linalg.solve_triangular(chol, eps.permute(1, 2, 0), upper=False).permute(2, 0, 1)
    return eps


@torch.no_grad()
def gap_decomposition(
    model, guide, x: torch.Tensor, y: torch.Tensor | None = None, config: DiagnoseConfig = DiagnoseConfig()
) -> dict:
    """Cremer et al.'s decomposition of the inference gap, per datapoint, in nats.

    * ``log_px``: importance sampling with K = ``config.samples`` draws from the even
      mixture of the local optimum, the local optimum twice as wide and the amortized q
      (:func:`mixture_log_px`), with the Pareto k̂ of its weights;
    * ``local_elbo``: the ELBO of the best Gaussian of the guide's family for that datapoint
      (:func:`optimize_local`);
    * ``amortized_elbo``: the ELBO of q_φ(z|x).

    Both ELBOs use the same ``config.elbo_samples`` standard-normal draws (common random
    numbers), so their difference carries little Monte Carlo noise.

    :returns: ``(N,)`` tensors ``log_px``, ``local_elbo`` and ``amortized_elbo`` with their
        Monte Carlo standard errors (``log_px_se`` ...), ``log_px_k_hat``,
        ``approximation_gap`` (log p(x) − local ELBO), ``amortization_gap`` (local − amortized
        ELBO), and ``optimization`` (what :func:`optimize_local` reports).
    :raises NotApplicable: see :func:`local_family`.
    """
    q = local_family(guide, model, x, y)
    with torch.enable_grad():
        local, optimization = optimize_local(model, q, x, y, config)
    elbos = {}
    for name, proposal in (("local", local), ("amortized", guide)):
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            log_w = _chunked_log_weights(model, proposal, x, y, config.elbo_samples).double()
            elbos[name], elbos[f"{name}_se"] = log_w.mean(0), log_w.std(0) / len(log_w) ** 0.5
    # the local optimum, twice as wide (a reverse-KL optimum is narrower than the posterior), and q_φ
    proposals = [local.distribution(), local.distribution(widen=2.0), q]
    log_px, log_px_se, log_px_k = mixture_log_px(model, x, y, proposals, config.samples)
    return {
        "log_px": log_px,
        "log_px_se": log_px_se,
        "log_px_k_hat": log_px_k,
        "local_elbo": elbos["local"],
        "local_elbo_se": elbos["local_se"],
        "amortized_elbo": elbos["amortized"],
        "amortized_elbo_se": elbos["amortized_se"],
        "approximation_gap": log_px - elbos["local"],
        "amortization_gap": elbos["local"] - elbos["amortized"],
        "optimization": optimization,
    }


@torch.no_grad()
def mixture_log_px(
    model, x: torch.Tensor, y: torch.Tensor | None, proposals: list, num_samples: int, max_elements: int = 1 << 24
) -> torch.Tensor:
    """log p(x) by importance sampling from the even mixture of ``proposals`` (each batch ``(N,)``).

    A defensive mixture (Hesterberg, 1995): each weight p(x, z) / mean_j q_j(z) is at most J times
    the weight under the best proposal, so one poor proposal (a too-narrow amortized q) cannot
    make the estimate's tail heavy, as averaging two separate estimates would.

    :returns: ``(log_px, se, k_hat)``, each ``(N,)`` in float64, from ``num_samples`` draws split
        evenly between the proposals; ``se`` is the delta-method standard error
        sd(w) / (√K · mean(w)), which is only to be trusted where the weights' Pareto ``k_hat``
        is below 0.7 (above it the estimate is likely too low by more than ``se``).
    """
    per_proposal = max(1, num_samples // len(proposals))
    log_w = []
    for proposal in proposals:
        for k in sample_chunks(x, per_proposal, max_elements):
            z = proposal.sample((k,))  # (S, N, d)
            log_q = torch.logsumexp(torch.stack([q.log_prob(z) for q in proposals]), 0) - math.log(len(proposals))
            log_w.append(log_joint(model, x, y, {Z: z}, len(z)).double() - log_q.double())
    log_w = torch.cat(log_w)  # (K, N)
    w = (log_w - log_w.max(0).values).exp()  # scaled weights: the ratio sd / mean is unchanged
    k_hat, _ = az.pareto_k(log_w.T.cpu().numpy())
    return log_mean_exp(log_w, 0), w.std(0) / (w.mean(0) * len(w) ** 0.5), torch.from_numpy(k_hat).to(log_w.device)


# --------------------------------------------------------------------------------------------
# 4. Posterior collapse and the aggregate posterior.


def diagonal_prior(model, x: torch.Tensor, y: torch.Tensor | None = None) -> dist.Normal:
    """p(z) as ``Normal`` of shape ``(z_dim,)``, if it is a diagonal Gaussian.

    :param model: the model.
    :param x: datapoints to run it on (one is used).
    :param y: their labels, for models that observe them.
    :raises NotApplicable: if p(z) is not a diagonal Gaussian.
    """
    device = module_device(model)  # x may come from the host
    prior = latent_sites(model, to_device(x[:1], device), to_device(_rows(y, 0, 1), device))[Z]["fn"]
    if not (isinstance(prior, dist.Independent) and isinstance(prior.base_dist, dist.Normal)):
        raise NotApplicable(f"p(z) is a {type(prior).__name__}: the closed forms need a diagonal Gaussian prior")
    return dist.Normal(prior.base_dist.loc[0], prior.base_dist.scale[0])


@torch.no_grad()
def latent_usage(
    model,
    guide,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    threshold: float = 0.01,
    prior_draws: int = 10000,
    batch_size: int = 500,
) -> dict:
    """Which latent dimensions carry information about x, and where the prior's mass goes unused.

    Always: ``activity`` (z_dim,), Cov_x E_q[z_j | x], and ``active`` (its entries above
    ``threshold``, Burda et al., 2016). For a Gaussian q(z|x) and the model's diagonal Gaussian
    prior, also:

    * ``kl_per_dim`` (z_dim,): E_x KL(q(z_j|x) ‖ p(z_j)), the KL of each marginal;
    * ``kl``: E_x KL(q(z|x) ‖ p(z));
    * ``mutual_information``: I(x; z) under q(x, z) = p_data(x) q(z|x), estimated as
      E[log q(z|x) − log q(z)] with q(z) the mixture of the N datapoints' q(z|x) (at most log N);
    * ``marginal_kl``: KL(q(z) ‖ p(z)) = E_q(z)[log q(z) − log p(z)]; E_x KL(q(z|x) ‖ p(z)) =
      I(x; z) + KL(q(z) ‖ p(z)) (Hoffman & Johnson, 2016);
    * ``reverse_marginal_kl``: KL(p(z) ‖ q(z)), large when the prior puts mass where no
      datapoint encodes;
    * ``prior_holes``: the fraction of prior draws where q(z) is lower than at 99% of q(z)'s
      own draws (0.01 when q(z) = p(z); each draw of q(z) is scored without its own datapoint).
    """
    if len(x) < 2:
        raise ValueError(f"latent usage needs at least 2 datapoints (a variance over x), got {len(x)}")
    device = module_device(guide)
    x, y = to_device(x, device), to_device(y, device)
    pair = traits(model, guide)
    guide_y = y if pair.takes_labels() else None  # as evaluation calls the guide
    means = torch.cat(
        [
            posterior_mean(guide, x[i : i + batch_size], _rows(guide_y, i, batch_size))
            for i in range(0, len(x), batch_size)
        ]
    )  # (N, z_dim)
    activity = means.var(0)
    out: dict = {"activity": activity, "active": (activity > threshold).nonzero().flatten().tolist()}
    if pair.point_estimate:
        out["not_applicable"] = "KL per dimension, I(x; z) and q(z) against p(z): the guide is a point mass"
        return out
    try:
        q = local_family(guide, model, x, y)
        prior = diagonal_prior(model, x, y)
    except NotApplicable as reason:
        out["not_applicable"] = f"KL per dimension, I(x; z) and q(z) against p(z): {reason}"
        return out
    loc, var = q.mean, q.variance  # marginals of q(z_j | x), (N, z_dim)
    kl_dims = torch.distributions.kl_divergence(dist.Normal(loc, var.sqrt()), prior)
    z = q.sample()  # one draw per datapoint, (N, z_dim)
    log_q_own = q.log_prob(z)  # (N,)
    cross = _mixture_log_density(q, z, batch_size)  # (N, N): log q(z_i | x_n)
    n = len(x)
    log_agg = torch.logsumexp(cross, 1) - math.log(n)
    eye = torch.eye(n, dtype=torch.bool, device=cross.device)
    log_agg_loo = torch.logsumexp(cross.masked_fill(eye, -math.inf), 1) - math.log(n - 1)
    log_prior = prior.log_prob(z).sum(-1)
    z_prior = prior.sample((prior_draws,))
    log_agg_at_prior = torch.logsumexp(_mixture_log_density(q, z_prior, batch_size), 1) - math.log(n)
    floor = torch.quantile(log_agg_loo.double(), 0.01)
    out.update(
        kl_per_dim=kl_dims.mean(0),
        kl=float(_kl_to_prior(q, prior).mean()),
        mutual_information=float((log_q_own - log_agg).mean()),
        marginal_kl=float((log_agg - log_prior).mean()),
        reverse_marginal_kl=float((prior.log_prob(z_prior).sum(-1) - log_agg_at_prior).mean()),
        prior_holes=float((log_agg_at_prior.double() < floor).double().mean()),
        log_n=math.log(n),
    )
    return out


def _mixture_log_density(q: dist.Distribution, z: torch.Tensor, batch_size: int) -> torch.Tensor:
    """log q(z_i | x_n) for every draw i and datapoint n: ``(len(z), N)``, in chunks of draws."""
    return torch.cat([q.log_prob(z[i : i + batch_size].unsqueeze(1)) for i in range(0, len(z), batch_size)])


def _kl_to_prior(q: dist.Distribution, prior: dist.Normal) -> torch.Tensor:
    """KL(q(z|x) ‖ p(z)) per datapoint, for a diagonal or full-rank Gaussian q."""
    if isinstance(q, dist.MultivariateNormal):
        p = dist.MultivariateNormal(prior.loc, scale_tril=torch.diag(prior.scale))
        return torch.distributions.kl_divergence(q, p)
    return torch.distributions.kl_divergence(q.base_dist, prior).sum(-1)


# --------------------------------------------------------------------------------------------
# Everything at once.


def diagnose(
    model,
    guide,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    config: DiagnoseConfig = DiagnoseConfig(),
    progress: Callable[[str], None] | None = None,
) -> tuple[dict, object | None]:
    """Run the four diagnostics on the first datapoints of ``x``.

    :param x: datapoints ``(N, ...)``; the first ``config.points`` go to the importance
        diagnostics and the gaps, the first ``config.nuts_points`` to NUTS, the first
        ``config.latent_points`` to the latent-space statistics.
    :param y: labels, for pairs that observe them.
    :param progress: called with the name of each part as it starts.
    :returns: ``(results, idata)``: a JSON-ready dict (settings, one entry per part, and
        ``not_applicable``: part → reason), and the ``InferenceData`` of the NUTS and guide
        draws (``None`` when NUTS did not run). Under torchrun the ranks share the NUTS chains
        (:func:`nuts_reference`) and rank 0 runs the rest; the other ranks return ``(None, None)``.
    """
    say = progress or (lambda _: None)
    device = module_device(model)
    x, y = to_device(x, device), to_device(y, device)  # datapoints may come from the host
    was_training = (model.training, guide.training)
    model.eval()
    guide.eval()
    try:
        if distributed.rank() != 0:  # under torchrun: this rank's NUTS chains, gathered by rank 0
            if config.nuts_points and not traits(model, guide).point_estimate:
                try:
                    _configured_nuts(model, x, y, config)
                except NotApplicable:  # rank 0 finds the same and says so
                    pass
            return None, None
        return _diagnose(model, guide, x, y, config, say)
    finally:
        model.train(was_training[0])
        guide.train(was_training[1])


def _diagnose(model, guide, x, y, config: DiagnoseConfig, say: Callable[[str], None]) -> tuple[dict, object | None]:
    results: dict = {"settings": asdict(config), "not_applicable": {}}
    point_mass = traits(model, guide).point_estimate
    xs, ys = x[: config.points], _rows(y, 0, config.points)

    def part(name: str, run: Callable[[], dict]) -> None:
        if point_mass and name != "latent":
            results["not_applicable"][name] = "the guide is a point mass: q(z|x) has no density to compare"
            return
        say(name)
        pyro.set_rng_seed(config.seed)
        tic = time.perf_counter()
        try:
            results[name] = run()
            results[name]["seconds"] = time.perf_counter() - tic
            if "not_applicable" in results[name]:
                results["not_applicable"][name] = results[name].pop("not_applicable")
        except NotApplicable as reason:
            results["not_applicable"][name] = str(reason)

    part("importance", lambda: _importance_summary(importance_diagnostics(model, guide, xs, ys, config.khat_samples)))
    idata = None

    def reference() -> dict:
        nonlocal idata
        summary, idata = _reference_summary(model, guide, x, y, config)
        return summary

    if config.nuts_points:
        part("nuts", reference)
    part("gaps", lambda: _gaps_summary(gap_decomposition(model, guide, xs, ys, config)))
    part(
        "latent",
        lambda: _latent_summary(
            latent_usage(
                model, guide, x[: config.latent_points], _rows(y, 0, config.latent_points), config.active_threshold
            )
        ),
    )
    return results, idata


def _stats(values: torch.Tensor) -> dict:
    values = values.double()
    return {
        "mean": float(values.mean()),
        "se": float(values.std() / len(values) ** 0.5) if len(values) > 1 else math.nan,
        "median": float(values.median()),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def _importance_summary(d: dict) -> dict:
    k = d["k_hat"]
    return {
        "k_hat": _stats(k),
        "fraction_k_above_0.5": float((k > 0.5).double().mean()),
        "fraction_k_above_0.7": float((k > 0.7).double().mean()),
        "ess_fraction": _stats(d["ess"]),
        "ess_raw_fraction": _stats(d["ess_raw"]),
        "worst": [int(i) for i in torch.argsort(k, descending=True)],
        "per_datapoint": {key: value.tolist() for key, value in d.items()},
    }


def _configured_nuts(model, x, y, config: DiagnoseConfig):
    """:func:`nuts_reference` on the first ``config.nuts_points`` datapoints, with the config's chains, warm-up,
    draws and seed (each chain seeds itself: no generator state leaks in)."""
    n = config.nuts_points
    return nuts_reference(
        model, x[:n], _rows(y, 0, n), config.chains, config.nuts_warmup, config.nuts_draws, config.seed
    )


def _reference_summary(model, guide, x, y, config: DiagnoseConfig) -> tuple[dict, object]:
    xm, ym = x[: config.nuts_points], _rows(y, 0, config.nuts_points)
    draws, stats = _configured_nuts(model, x, y, config)
    # seeded apart from the chains (seed + chain each): the same draws of q whichever ranks ran which chains
    pyro.set_rng_seed(config.seed + config.chains)
    q = _guide_draws(guide, model, xm, ym, config.chains * config.nuts_draws, draws)
    q = {n: v.cpu().numpy() for n, v in q.items()}
    dims = {n: ["datapoint", *_event_dims(n, v.ndim - 3)] for n, v in draws.items()}
    idata = az.inference_data(
        nuts=draws,
        guide={n: v[None] for n, v in q.items()},
        sample_stats={"diverging": stats["diverging"]},
        observed={"x": xm.reshape(len(xm), -1).cpu().numpy()},
        dims=dims,
    )
    converged, check = reference_check(draws, stats, config)
    summary = {
        "datapoints": len(xm),
        "converged": converged,
        "convergence": check,
        "step_size": stats["step_size"].tolist(),
    }
    if not converged:
        summary["comparison"] = None
        summary["refused"] = (
            "NUTS did not converge (" + "; ".join(check["reasons"]) + "): no comparison is reported; "
            "run more --nuts-draws or --nuts-warmup, or fewer --nuts-points"
        )
        return summary, idata
    comparison = compare_to_reference(draws, q, config.coverage)
    summary["comparison"] = {
        name: {
            "median_abs_mean_error": float(np.median(np.abs(c["mean_error"]))),
            "max_abs_mean_error": float(np.max(np.abs(c["mean_error"]))),
            "median_sd_ratio": float(np.median(c["sd_ratio"])),
            "min_sd_ratio": float(np.min(c["sd_ratio"])),
            "max_sd_ratio": float(np.max(c["sd_ratio"])),
            "mean_coverage": float(np.mean(c["coverage"])),
            "per_dimension": {key: value.tolist() for key, value in c.items()},
        }
        for name, c in comparison.items()
    }
    return summary, idata


def _event_dims(name: str, count: int) -> list[str]:
    return [f"{name}_dim"] if count == 1 else [f"{name}_dim_{i}" for i in range(count)]


def _gaps_summary(d: dict) -> dict:
    keys = (
        "log_px",
        "log_px_se",
        "log_px_k_hat",
        "local_elbo",
        "local_elbo_se",
        "amortized_elbo",
        "amortized_elbo_se",
        "approximation_gap",
        "amortization_gap",
    )
    return {
        **{key: _stats(d[key]) for key in keys},
        "optimization": d["optimization"],
        "per_datapoint": {key: d[key].tolist() for key in keys},
    }


def _latent_summary(d: dict) -> dict:
    return {key: value.tolist() if isinstance(value, torch.Tensor) else value for key, value in d.items()}


def describe_diagnostics(results: dict) -> str:
    """The numbers of a diagnosis, one line per part, and what did not apply.

    :param results: what :func:`diagnose` returned.
    """
    lines = []
    if "importance" in results:
        r, k = results["importance"], results["importance"]["k_hat"]
        khat_samples = results["settings"]["khat_samples"]
        lines.append(
            f"importance (N={len(r['worst'])}, K={khat_samples}): Pareto k̂ median {k['median']:.2f}, "
            f"max {k['max']:.2f}; {r['fraction_k_above_0.7']:.0%} of datapoints above 0.7, "
            f"{r['fraction_k_above_0.5']:.0%} above 0.5; ESS {r['ess_fraction']['median']:.1%} of K (median)"
        )
    if "nuts" in results:
        r, c = results["nuts"], results["nuts"]["convergence"]
        head = (
            f"NUTS ({r['datapoints']} datapoints): max R-hat {c['max_r_hat']:.3f}, min ESS bulk "
            f"{c['min_ess_bulk']:.0f} / tail {c['min_ess_tail']:.0f}, {c['divergences']} divergences"
        )
        if not r["converged"]:
            lines.append(f"{head}; {r['refused']}")
        for site, m in (r["comparison"] or {}).items():
            lines.append(
                f"{head}; guide vs NUTS on {site!r}: median |mean error| {m['median_abs_mean_error']:.2f} sd "
                f"(max {m['max_abs_mean_error']:.2f}), median sd ratio {m['median_sd_ratio']:.2f} "
                f"({m['min_sd_ratio']:.2f}–{m['max_sd_ratio']:.2f}), {results['settings']['coverage']:.0%} intervals "
                f"cover {m['mean_coverage']:.1%} of NUTS draws"
            )
    if "gaps" in results:
        g = results["gaps"]
        lines.append(
            f"gaps (N={len(g['per_datapoint']['log_px'])}): log p(x) {g['log_px']['mean']:.2f}, best local ELBO "
            f"{g['local_elbo']['mean']:.2f}, amortized ELBO {g['amortized_elbo']['mean']:.2f}; approximation gap "
            f"{g['approximation_gap']['mean']:.2f} ± {g['approximation_gap']['se']:.2f}, amortization gap "
            f"{g['amortization_gap']['mean']:.2f} ± {g['amortization_gap']['se']:.2f} nats"
        )
    if "latent" in results:
        r = results["latent"]
        text = f"latent: {len(r['active'])} of {len(r['activity'])} dimensions active"
        if "mutual_information" in r:
            saturated = (
                " (at its ceiling log N: more points would raise it)"
                if r["mutual_information"] > r["log_n"] - 0.05
                else ""
            )
            text += (
                f"; KL {r['kl']:.2f}; I(x;z) ≈ {r['mutual_information']:.2f} of at most log N = {r['log_n']:.2f}"
                f"{saturated}; KL(q(z) ‖ p(z)) {r['marginal_kl']:.2f}; {r['prior_holes']:.1%} of prior draws "
                "fall where q(z) is below its own 1% quantile (1% if q(z) = p(z))"
            )
        lines.append(text)
    for name, reason in results["not_applicable"].items():
        lines.append(f"not applicable, {name}: {reason}")
    return "\n".join(lines)
