"""Posterior collapse and the aggregate posterior: KL per dimension, active units (Burda et al., 2016),
I(x; z) and how far q(z) = E_x q(z|x) is from p(z) (Hoffman & Johnson, 2016).
"""

import math

import pyro.distributions as dist
import torch

from pvae.base.device import module_device, to_device
from pvae.base.sites import Z
from pvae.engine.pair import traits
from pvae.measures.diagnostics.joint import NotApplicable, latent_sites, local_family, rows_of
from pvae.measures.evaluate import posterior_mean


def diagonal_prior(model, x: torch.Tensor, y: torch.Tensor | None = None) -> dist.Normal:
    """p(z) as ``Normal`` of shape ``(z_dim,)``, if it is a diagonal Gaussian.

    :param model: the model.
    :param x: datapoints to run it on (one is used).
    :param y: their labels, for models that observe them.
    :raises NotApplicable: if p(z) is not a diagonal Gaussian.
    """
    device = module_device(model)  # x may come from the host
    prior = latent_sites(model, to_device(x[:1], device), to_device(rows_of(y, 0, 1), device))[Z]["fn"]
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
            posterior_mean(guide, x[i : i + batch_size], rows_of(guide_y, i, batch_size))
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
