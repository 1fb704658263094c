"""The gap decomposition of Cremer, Li & Duvenaud (2018): the inference gap log p(x) − ELBO(q_φ(z|x))
split into the approximation gap log p(x) − ELBO(q*) and the amortization gap ELBO(q*) − ELBO(q_φ), where
q* is the best member of the guide's family for that datapoint alone.
"""

import math

import pyro
import pyro.distributions as dist
import torch

from pvae.base import az
from pvae.base.sites import DATA, Z
from pvae.engine.objectives import log_mean_exp
from pvae.measures.diagnostics.config import DiagnoseConfig
from pvae.measures.diagnostics.joint import chunked_log_weights, frozen, local_family, log_joint
from pvae.measures.evaluate import sample_chunks


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
    with frozen(model):
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
    model,
    guide,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    config: DiagnoseConfig = DiagnoseConfig(),  # noqa: B008 (frozen: one shared default is safe)
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
    :raises NotApplicable: see :func:`pvae.measures.diagnostics.joint.local_family`.
    """
    q = local_family(guide, model, x, y)
    with torch.enable_grad():
        local, optimization = optimize_local(model, q, x, y, config)
    elbos = {}
    for name, proposal in (("local", local), ("amortized", guide)):
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            log_w = chunked_log_weights(model, proposal, x, y, config.elbo_samples).double()
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
