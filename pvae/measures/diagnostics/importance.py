"""Can q(z|x) serve as an importance proposal for p(z|x)? Pareto k̂ and effective sample size per datapoint.

The log-weights log w = log p(x, z) − log q(z|x), z ~ q(z|x), are kept *per datapoint* and Pareto-smoothed
(ArviZ's ``psislw``): k̂ < 0.5 good, 0.5–0.7 usable, > 0.7 unreliable (Yao et al., 2018).
"""

import torch

from pvae.base import az
from pvae.engine.objectives import log_mean_exp
from pvae.measures.diagnostics.joint import chunked_log_weights, rows_of


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
            chunked_log_weights(model, guide, x[i : i + batch_size], rows_of(y, i, batch_size), num_samples).T
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
