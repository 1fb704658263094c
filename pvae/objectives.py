"""Training objectives: Pyro's ELBO estimators by name, and beta as a handler on the latent sites.

Beta is not part of any model. :class:`BetaScale` multiplies the log-density of the named latent
sites by beta, and :func:`loss_module` applies it to *both* model and guide, so that

* ``Trace_ELBO`` estimates  E_q[log p(x|z)] + beta · E_q[log p(z) − log q(z|x)], and
* ``TraceMeanField_ELBO`` computes  E_q[log p(x|z)] − beta · KL(q(z|x) ‖ p(z))  (its analytic KL
  is scaled by the guide site's scale),

that is reconstruction − beta·KL with either estimator (Higgins et al., 2017). beta=1 is the
VAE's ELBO; beta>1 the beta-VAE; beta=0 with a Delta guide leaves reconstruction alone.
Scaling the model side only would give log p(x|z) + beta·log p(z) − log q(z|x): not beta·KL.
"""

import math
import warnings
from collections.abc import Callable, Collection

import pyro
import torch
from pyro.infer import ELBO, Trace_ELBO, TraceMeanField_ELBO
from pyro.poutine.messenger import Messenger

from pvae.registry import lookup
from pvae.sites import Z

#: Estimator name → ELBO class; ``--elbo`` chooses from these.
ESTIMATORS: dict[str, Callable[..., ELBO]] = {
    "trace": Trace_ELBO,
    "meanfield": TraceMeanField_ELBO,
}


def make_elbo(name: str, num_particles: int = 1, vectorize_particles: bool = False) -> ELBO:
    """Build the estimator registered as ``name``.

    :param name: a key of :data:`ESTIMATORS`.
    :param num_particles: samples of z per datapoint and step.
    :param vectorize_particles: draw the particles in one vectorized pass instead of a loop.
    :raises ValueError: naming the valid choices when ``name`` is unknown.
    """
    if num_particles < 1:
        raise ValueError(f"num_particles must be at least 1, got {num_particles}")
    factory = lookup(ESTIMATORS, name, "estimator")
    return factory(num_particles=num_particles, vectorize_particles=vectorize_particles, max_plate_nesting=1)


class BetaScale(Messenger):
    """Multiply the log-density of the sample sites named in ``sites`` by ``beta``.

    Unlike ``poutine.scale``, which scales every site, this leaves the observation alone.

    :param beta: the scale; a float, or a 0-dim tensor (which a JIT trace can take as input).
    :param sites: names of the latent sites to scale.
    """

    def __init__(self, beta: float | torch.Tensor, sites: Collection[str] = (Z,)):
        super().__init__()
        self.beta = beta
        self.sites = frozenset(sites)

    def _process_message(self, msg) -> None:
        if msg["type"] == "sample" and msg["name"] in self.sites:
            msg["scale"] = self.beta * msg["scale"]


class BetaScaled(torch.nn.Module):
    """A model or guide run under :class:`BetaScale`; its parameters stay those of ``fn``.

    :param fn: the model or guide module.
    :param beta: the scale of the latent sites.
    :param sites: names of the latent sites to scale.
    """

    def __init__(self, fn: torch.nn.Module, beta: float, sites: Collection[str] = (Z,)):
        super().__init__()
        self.fn = fn
        self.beta = beta
        self.sites = tuple(sites)

    def forward(self, *args, **kwargs):
        with BetaScale(self.beta, self.sites):
            return self.fn(*args, **kwargs)


def loss_module(
    model: torch.nn.Module,
    guide: torch.nn.Module,
    elbo: ELBO,
    beta: float = 1.0,
    sites: Collection[str] = (Z,),
) -> torch.nn.Module:
    """The negative (beta-)ELBO as a module: ``loss_fn(x)`` returns a differentiable sum over the batch.

    :param model: the generative model.
    :param guide: the amortized guide.
    :param elbo: an estimator, e.g. from :func:`make_elbo`.
    :param beta: scale of the latent sites in model and guide; 1 leaves the ELBO unchanged.
    :param sites: names of the latent sites beta applies to.
    """
    if beta < 0:
        raise ValueError(f"beta must be non-negative, got {beta}")
    if beta != 1.0:
        model, guide = BetaScaled(model, beta, sites), BetaScaled(guide, beta, sites)
    return elbo(model, guide)


def log_mean_exp(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log(mean(exp(x))) along ``dim``, computed stably."""
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


class TracedLoss(torch.nn.Module):
    """A loss module compiled with ``torch.jit.trace``, once per shape of its tensor inputs.

    Tracing records the tensor operations of one call of the model, the guide and the
    estimator, including the draws of z (the noise is redrawn at every call), and replays them
    without Pyro's Python-level bookkeeping. Valid for pairs with static structure: the same
    sites, in the same order, for every batch. A Python float in the pair, such as beta, is
    frozen into the trace; to change it, build a new loss. (``torch.jit`` is deprecated upstream
    in favour of ``torch.compile``, which still breaks its graph on Pyro's handlers.)

    :param loss_fn: a loss module, e.g. from :func:`loss_module`.
    """

    def __init__(self, loss_fn: torch.nn.Module):
        super().__init__()
        self.loss_fn = loss_fn
        self._compiled: dict[tuple, torch.jit.ScriptModule] = {}

    @property
    def compilations(self) -> int:
        """How many times a trace was recorded (one per distinct input shape)."""
        return len(self._compiled)

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        key = tuple((a.shape, a.dtype) for a in args)
        if key not in self._compiled:
            cuda = sorted({a.device for a in args if a.device.type == "cuda"}, key=str)
            # fork_rng: the tracing run's draws are undone, so a call draws the same noise as
            # the eager loss would, compiled or not.
            with warnings.catch_warnings(), pyro.validation_enabled(False), torch.random.fork_rng(cuda):
                # The tracer warns about every Python-level branch on a tensor: Pyro's NaN checks
                # and zero tests, which are constant for a static pair.
                warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
                warnings.filterwarnings(
                    "ignore", message=r".*torch\.jit\.trace.*deprecated", category=DeprecationWarning
                )
                self._compiled[key] = torch.jit.trace(self.loss_fn, args, check_trace=False)
        # Plain autograd through the recorded graph: on CPU, the profiling executor's
        # differentiable subgraphs are slower (its ReLU gradient is a compare and a multiply).
        with torch.jit.optimized_execution(False):
            return self._compiled[key](*args)
