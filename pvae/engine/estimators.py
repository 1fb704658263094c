"""ELBO estimators by name: the registry ``--elbo`` chooses from, and the estimators pvae adds.

Every estimator is a Pyro ``ELBO``: ``make_elbo(name, num_particles, ...)`` builds one, and
``elbo(model, guide)`` gives the loss module that training calls (see :mod:`pvae.engine.objectives`,
which wraps it with beta). Estimators with a ``differentiable_loss`` train through it; the others
(``graph``, ``iwae``, ``renyi``) through their ``loss_and_grads``. Importing this module also
registers the closed-form KL of a full-rank Gaussian against a diagonal one
(:func:`kl_mvn_diagonal`), which ``meanfield`` needs for the full-rank guide.
"""

import inspect
from collections.abc import Callable

import torch
from pyro.infer import ELBO, RenyiELBO, Trace_ELBO, TraceEnum_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO
from pyro.util import warn_if_nan
from torch.distributions import Independent, MultivariateNormal, Normal, register_kl

from pvae.base.registry import lookup
from pvae.engine.dreg import DReG_ELBO
from pvae.engine.tcvae import TCVAE_ELBO


class MeanFieldELBO(TraceMeanField_ELBO):
    """``TraceMeanField_ELBO`` whose loss keeps its value under ``torch.jit.trace``.

    Pyro's version returns ``loss + (surrogate − float(surrogate))``; a trace records the float as
    a constant, so every later call of the traced loss returned 2·loss − (the loss at tracing
    time): right gradients, wrong values. With a reparameterized guide, which this estimator
    requires, the surrogate *is* the loss, so it is returned as it is.
    """

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        loss = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            _, surrogate = self._differentiable_loss_particle(model_trace, guide_trace)
            loss = loss + surrogate / self.num_particles
        warn_if_nan(loss, "loss")
        return loss


class IWAE_ELBO(RenyiELBO):
    """The importance-weighted bound of Burda et al. (2015): ``RenyiELBO`` at alpha = 0,

    IWAE_K = E[log (1/K) Σₖ p(x, zₖ) / q(zₖ|x)],  zₖ ~ q(z|x),

    a lower bound on log p(x) for every K that tightens as K grows; K = 1 is the ELBO. Its
    gradient weights each particle's by its normalised importance weight.

    :param num_particles: K.
    :param max_plate_nesting: bound on nested plates (the batch plate: 1).
    :param vectorize_particles: draw the K particles in one vectorized pass.
    :param strict_enumeration_warning: as for every Pyro ELBO.
    """

    def __init__(
        self,
        num_particles: int = 2,
        max_plate_nesting: float = float("inf"),
        vectorize_particles: bool = False,
        strict_enumeration_warning: bool = True,
    ):
        super().__init__(
            alpha=0.0,
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=vectorize_particles,
            strict_enumeration_warning=strict_enumeration_warning,
        )


#: Estimator name → ELBO class; ``--elbo`` chooses from these.
#:
#: * ``trace``: Trace_ELBO, Monte Carlo estimate of every term;
#: * ``meanfield``: TraceMeanField_ELBO, the KL term in closed form where one is known;
#: * ``graph``: TraceGraph_ELBO, score-function terms restricted to their downstream costs (the
#:   same estimator as ``trace`` for a reparameterized guide);
#: * ``iwae``: the importance-weighted bound with K = ``num_particles``;
#: * ``renyi``: the Rényi bound of order alpha (Li & Turner, 2016); alpha = 0 is ``iwae``;
#: * ``dreg``: the IWAE bound with doubly-reparameterized guide gradients (:class:`DReG_ELBO`);
#: * ``enum``: TraceEnum_ELBO, which sums discrete latent sites marked
#:   ``infer={"enumerate": "parallel"}`` exactly (the semi-supervised M2 needs it);
#: * ``tcvae``: the beta-TCVAE objective, beta on the total correlation alone
#:   (:class:`pvae.engine.tcvae.TCVAE_ELBO`; it takes ``dataset_size``).
#:
#: ``graph``, ``iwae`` and ``renyi`` have no ``differentiable_loss``: they train through
#: ``loss_and_grads`` (see :meth:`Loss.loss_and_grads`).
ESTIMATORS: dict[str, Callable[..., ELBO]] = {
    "trace": Trace_ELBO,
    "meanfield": MeanFieldELBO,
    "graph": TraceGraph_ELBO,
    "iwae": IWAE_ELBO,
    "renyi": RenyiELBO,
    "dreg": DReG_ELBO,
    "enum": TraceEnum_ELBO,
    "tcvae": TCVAE_ELBO,
}

#: alpha of ``renyi`` when none is given (alpha = 0 is ``iwae``, alpha → 1 the ELBO).
DEFAULT_ALPHA = 0.5


def make_elbo(
    name: str,
    num_particles: int = 1,
    vectorize_particles: bool = False,
    alpha: float | None = None,
    dataset_size: int | None = None,
) -> ELBO:
    """Build the estimator registered as ``name``.

    :param name: a key of :data:`ESTIMATORS`.
    :param num_particles: samples of z per datapoint and step (K of the importance-weighted bounds).
    :param vectorize_particles: draw the particles in one vectorized pass instead of a loop.
    :param alpha: order of the Rényi bound, for estimators that take one (``renyi``; default
        :data:`DEFAULT_ALPHA`).
    :param dataset_size: the number of training datapoints, for estimators that take it
        (``tcvae``'s aggregate posterior); ignored by the others.
    :raises ValueError: naming the valid choices when ``name`` is unknown, or when ``alpha`` is
        given to an estimator without one, or is 1.
    """
    if num_particles < 1:
        raise ValueError(f"num_particles must be at least 1, got {num_particles}")
    factory = lookup(ESTIMATORS, name, "estimator")
    options = {}
    if "alpha" in inspect.signature(factory).parameters:
        options["alpha"] = DEFAULT_ALPHA if alpha is None else alpha
        if options["alpha"] == 1:
            raise ValueError("the Rényi bound of order alpha=1 is the ELBO: use --elbo trace, or another alpha")
    elif alpha is not None:
        with_alpha = sorted(n for n, f in ESTIMATORS.items() if "alpha" in inspect.signature(f).parameters)
        raise ValueError(f"--alpha is the order of the Rényi bound: only {', '.join(with_alpha)} take it, not {name}")
    if issubclass(factory, TraceEnum_ELBO):
        # labelled batches of M2 have nothing to enumerate: expected, not worth a warning
        options["strict_enumeration_warning"] = False
    if "dataset_size" in inspect.signature(factory).parameters:
        options["dataset_size"] = dataset_size
    return factory(num_particles=num_particles, vectorize_particles=vectorize_particles, max_plate_nesting=1, **options)


def is_differentiable(elbo: ELBO) -> bool:
    """Whether ``elbo`` has a ``differentiable_loss`` (else it trains through ``loss_and_grads``)."""
    return hasattr(elbo, "differentiable_loss")


def is_traceable(elbo: ELBO) -> bool:
    """Whether ``torch.jit.trace`` can compile the estimator's loss: it needs a differentiable
    loss whose gradient the recorded operations give (not :class:`DReG_ELBO`'s gradient hook)."""
    return untraceable_reason(elbo) is None


def untraceable_reason(elbo: ELBO) -> str | None:
    """Why ``torch.jit.trace`` cannot compile the estimator's loss, or ``None`` if it can."""
    if not is_differentiable(elbo):
        return f"{type(elbo).__name__} has no differentiable loss (it trains through loss_and_grads)"
    if not getattr(elbo, "traceable", True):
        return f"{type(elbo).__name__} weights its gradient with a hook that a trace does not record"
    return None


@register_kl(MultivariateNormal, Independent)
def kl_mvn_diagonal(q: MultivariateNormal, p: Independent) -> torch.Tensor:
    """KL(N(m, S) ‖ N(mu, diag s²)) in closed form, for a full-rank guide against a diagonal prior.

    KL = ½ [Σᵢ Sᵢᵢ/sᵢ² + Σᵢ (mᵢ − muᵢ)²/sᵢ² − d + Σᵢ log sᵢ² − log det S], with log det S from the
    Cholesky factor. Registered with ``torch.distributions``, so ``TraceMeanField_ELBO`` uses it
    instead of a Monte Carlo estimate (Pyro registers only the reverse direction).

    :raises NotImplementedError: unless ``p`` is a ``Normal`` with one reinterpreted dimension
        (the estimator then falls back to sampling).
    """
    if not (isinstance(p.base_dist, Normal) and p.reinterpreted_batch_ndims == 1):
        raise NotImplementedError
    var = p.base_dist.scale**2  # (..., d)
    tril = q.scale_tril  # (..., d, d)
    trace = (tril.pow(2).sum(-1) / var).sum(-1)  # diag(L Lᵀ)ᵢ = Σⱼ Lᵢⱼ²
    mahalanobis = ((q.loc - p.base_dist.loc).pow(2) / var).sum(-1)
    log_det_ratio = var.log().sum(-1) - 2 * tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (trace + mahalanobis - q.event_shape[0] + log_det_ratio)
