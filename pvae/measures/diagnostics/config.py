"""The settings of a diagnosis (:func:`pvae.measures.diagnostics.diagnose`, ``pvae diagnose``)."""

from dataclasses import field

from pvae.base import options
from pvae.data import SPLITS


@options.config
class DiagnoseConfig:
    """Settings of :func:`pvae.measures.diagnostics.diagnose` and of ``pvae diagnose``, whose defaults they are.

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
        local variational parameters is sought (:func:`pvae.measures.diagnostics.gaps.optimize_local`).
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
