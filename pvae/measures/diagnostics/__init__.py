"""How good is q(z|x)? Diagnostics of an amortized guide against the posterior of its model.

An amortized guide is an approximation twice over: a limited family, and one encoder shared by
every datapoint. Four questions, one public function each, one module each; :func:`diagnose` runs
them all and says which do not apply to a pair.

1. :func:`importance_diagnostics` (:mod:`pvae.measures.diagnostics.importance`) — can q(z|x) serve as an
   importance proposal for p(z|x)? The log-weights log w = log p(x, z) − log q(z|x), z ~ q(z|x),
   *per datapoint*, Pareto-smoothed (ArviZ's ``psislw``): k̂ < 0.5 good, 0.5–0.7 usable, > 0.7
   unreliable (Yao et al., 2018).
2. :func:`nuts_reference` and :func:`compare_to_reference` (:mod:`pvae.measures.diagnostics.nuts`) — the
   posterior itself, by NUTS (Hoffman & Gelman, 2014) on z | x with the decoder held fixed, several
   chains, checked with R̂ and bulk/tail ESS (Vehtari et al., 2021) before it is compared with the
   guide dimension by dimension.
3. :func:`gap_decomposition` (:mod:`pvae.measures.diagnostics.gaps`) — the inference gap
   log p(x) − ELBO(q_φ(z|x)) split into the approximation gap log p(x) − ELBO(q*) and the
   amortization gap ELBO(q*) − ELBO(q_φ), where q* is the best member of the guide's family for
   that datapoint alone (Cremer, Li & Duvenaud, 2018).
4. :func:`latent_usage` (:mod:`pvae.measures.diagnostics.latent`) — posterior collapse and the aggregate
   posterior: KL per dimension, active units (Burda et al., 2016), I(x; z) and how far
   q(z) = E_x q(z|x) is from p(z) (Hoffman & Johnson, 2016).

:mod:`pvae.measures.diagnostics.joint` holds what they share (latent sites, log p(x, z), the guide's draws),
:mod:`pvae.measures.diagnostics.diagnosis` runs them all, :mod:`pvae.measures.diagnostics.describe` says the result in
words. Everything is in nats per datapoint. Functions return tensors and dicts; nothing here writes
files or draws figures.
"""

from pvae.measures.diagnostics.config import DiagnoseConfig
from pvae.measures.diagnostics.describe import describe_diagnostics
from pvae.measures.diagnostics.diagnosis import diagnose
from pvae.measures.diagnostics.gaps import gap_decomposition, mixture_log_px, optimize_local
from pvae.measures.diagnostics.importance import importance_diagnostics
from pvae.measures.diagnostics.joint import NotApplicable, latent_sites, local_family, log_joint
from pvae.measures.diagnostics.latent import diagonal_prior, latent_usage
from pvae.measures.diagnostics.nuts import compare_to_reference, nuts_reference, reference_check

__all__ = [
    "DiagnoseConfig",
    "NotApplicable",
    "compare_to_reference",
    "describe_diagnostics",
    "diagnose",
    "diagonal_prior",
    "gap_decomposition",
    "importance_diagnostics",
    "latent_sites",
    "latent_usage",
    "local_family",
    "log_joint",
    "mixture_log_px",
    "nuts_reference",
    "optimize_local",
    "reference_check",
]
