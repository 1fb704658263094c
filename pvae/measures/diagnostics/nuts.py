"""The reference posterior, by NUTS with the decoder fixed, and the guide against it.

NUTS (Hoffman & Gelman, 2014) samples z | x with the model's parameters held fixed, in several chains
checked with R̂ and bulk/tail ESS (Vehtari et al., 2021) before the guide is compared with it dimension
by dimension.
"""

import math
from collections.abc import Callable

import numpy as np
import pyro
import torch
from pyro.infer import MCMC, NUTS

from pvae.base import az, distributed
from pvae.measures.diagnostics.config import DiagnoseConfig
from pvae.measures.diagnostics.joint import frozen, latent_sites, log_joint, require_continuous


def nuts_reference(
    model,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    chains: int = 4,
    warmup: int = 500,
    draws: int = 500,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Draws from p(z | x) by NUTS, the model's parameters held fixed.

    The datapoints' posteriors are independent given the decoder, so one NUTS run samples them
    jointly (diagonal mass matrix, adapted in warm-up). Each chain starts from its own draw from
    the prior, which is overdispersed with respect to any posterior, as R̂ needs; chains run one
    after another, each with seed ``seed + chain``. Under torchrun the ranks share the chains
    (chain c on rank c mod world, with the same seed) and rank 0 gathers them.

    :param progress: called as each chain of this rank starts (``nuts chain 2 of 4``), for a long run to show it
        goes on.
    :returns: ``(draws, stats)``: site → ``(chains, draws, batch, *event)``, and
        ``{"diverging": (chains, draws) bool, "step_size": (chains,)}``; under torchrun, ``None``
        on every rank but 0.
    :raises NotApplicable: if a latent is discrete or not real-valued.
    """
    sites = require_continuous(model, x, y)

    def potential(values):
        return -log_joint(model, x, y, values).sum()

    # under torchrun, chain c runs on rank c mod world with the seed it has in one process: the ranks
    # share the chains, and rank 0 gathers the same draws one process would have made
    world, rank = distributed.world_size(), distributed.rank()
    mine = {}
    with frozen(model):  # the decoder is fixed: only z gets gradients
        for chain in range(rank, chains, world):
            if progress is not None:
                progress(f"nuts chain {chain + 1} of {chains} ({warmup} warm-up steps, {draws} draws)")
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
