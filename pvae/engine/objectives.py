"""The training loss: an estimator (:mod:`pvae.engine.estimators`) of a pair's ELBO, with beta as a handler
on the latent sites.

Beta is not part of any model. :class:`BetaScale` multiplies the log-density of the named latent
sites by beta, and :func:`loss_module` applies it to *both* model and guide, so that

* ``Trace_ELBO`` estimates  E_q[log p(x|z)] + beta · E_q[log p(z) − log q(z|x)], and
* ``TraceMeanField_ELBO`` computes  E_q[log p(x|z)] − beta · KL(q(z|x) ‖ p(z))  (its analytic KL
  is scaled by the guide site's scale),

* ``TraceEnum_ELBO`` sums enumerated discrete sites exactly and scales the latent sites' terms as
  ``Trace_ELBO`` does,

that is reconstruction − beta·KL with each estimator (Higgins et al., 2017). beta=1 is the
VAE's ELBO; beta>1 the beta-VAE; beta=0 with a Delta guide leaves reconstruction alone.
Scaling the model side only would give log p(x|z) + beta·log p(z) − log q(z|x): not beta·KL.
For estimators that average *weights* rather than log-weights (IWAE, Rényi), a scale on the
latent sites lands inside the log-mean-exp, log mean_k exp(log p(x|z_k) + beta·(log p(z_k) −
log q(z_k|x))): that is a different objective, not reconstruction − beta·KL.

A schedule of beta over training (KL annealing) is a :class:`BetaSchedule`; the trainer writes
the current value into the loss module's beta tensor before every step.
"""

import math
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass

import pyro
import torch
from pyro.infer import ELBO
from pyro.poutine.messenger import Messenger

from pvae.base.device import module_device
from pvae.base.registry import lookup
from pvae.base.sites import Z
from pvae.engine.estimators import is_differentiable, is_traceable, untraceable_reason
from pvae.engine.pair import traits


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
    :param beta: the scale of the latent sites: a 0-dim tensor, held (not copied) as a buffer, so
        that writing into it changes beta for eager and traced losses alike.
    :param sites: names of the latent sites to scale.
    """

    def __init__(self, fn: torch.nn.Module, beta: torch.Tensor, sites: Collection[str] = (Z,)):
        super().__init__()
        self.fn = fn
        self.register_buffer("beta", beta, persistent=False)
        self.sites = tuple(sites)

    def forward(self, *args, **kwargs):
        with BetaScale(self.beta, self.sites):
            return self.fn(*args, **kwargs)


class Loss(torch.nn.Module):
    """The negative (beta-)ELBO of a pair as a module, plus the guide's auxiliary loss if it has one.

    ``loss(x)`` or ``loss(x, y)`` returns a differentiable sum over the batch. A guide may define
    ``auxiliary_loss(x, y)`` (a summed loss of labelled datapoints, such as the semi-supervised
    M2's classification term); it is added whenever labels are passed.

    :param model: the generative model.
    :param guide: the amortized guide.
    :param elbo: an estimator, e.g. from :func:`make_elbo`.
    :param beta: scale of the latent sites in model and guide; ``None`` leaves the pair unwrapped
        (the ELBO, and no handler on the hot path).
    :param sites: names of the latent sites beta applies to.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        guide: torch.nn.Module,
        elbo: ELBO,
        beta: float | None = None,
        sites: Collection[str] = (Z,),
    ):
        super().__init__()
        if beta is not None and beta < 0:
            raise ValueError(f"beta must be non-negative, got {beta}")
        # the guide's own loss on labelled batches (M2's classifier), kept as a bound method: the
        # guide itself is registered once, inside the ELBO module
        self.auxiliary_loss = guide.auxiliary_loss if traits(model, guide).auxiliary_loss else None
        if beta is not None:
            # one tensor behind both wrappers, made on the pair's device (moving the loss module later
            # would give each wrapper its own copy)
            shared = torch.tensor(float(beta), device=module_device(model))
            model, guide = BetaScaled(model, shared, sites), BetaScaled(guide, shared, sites)
        self.elbo_loss = elbo(model, guide)
        self.beta = None if beta is None else shared

    def set_beta(self, value: float) -> None:
        """Change beta in place (for a schedule); the loss must have been built with a beta."""
        if self.beta is None:
            raise ValueError("this loss was built without beta; pass beta= to scale the latent sites")
        self.beta.fill_(value)

    @property
    def elbo(self) -> ELBO:
        """The estimator."""
        return self.elbo_loss.elbo

    @property
    def differentiable(self) -> bool:
        """Whether calling the module gives a differentiable loss; else use :meth:`loss_and_grads`."""
        return is_differentiable(self.elbo)

    @property
    def traceable(self) -> bool:
        """Whether :class:`TracedLoss` can compile this loss (see :func:`is_traceable`)."""
        return is_traceable(self.elbo)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if not self.differentiable:
            raise TypeError(
                f"{type(self.elbo).__name__} has no differentiable loss; train it with "
                "pvae.engine.objectives.backward(loss_fn, x), which calls its loss_and_grads"
            )
        args = (x,) if y is None else (x, y)
        loss = self.elbo_loss(*args)
        if y is not None and self.auxiliary_loss is not None:
            loss = loss + self.auxiliary_loss(x, y)
        return loss

    @torch.no_grad()
    def estimate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
        """The estimator's value of the loss, summed over the batch, without gradients (its
        ``loss``; every estimator has one). Excludes the guide's auxiliary loss."""
        args = (x,) if y is None else (x, y)
        return float(self.elbo.loss(self.elbo_loss.model, self.elbo_loss.guide, *args))

    def loss_and_grads(self, x: torch.Tensor, y: torch.Tensor | None = None, scale: float = 1.0) -> torch.Tensor:
        """Add ``scale`` times the gradient of the loss to each parameter's ``.grad``, through the
        estimator's ``loss_and_grads`` (which calls ``backward`` itself), and return the loss,
        summed over the batch and detached. Works for every estimator.

        :raises ValueError: if the estimator left every gradient empty (Pyro's ``RenyiELBO``
            backpropagates only when its traces hold ``param`` sites: the pair must be ``PyroModule`` s).
        """
        if self.differentiable:
            loss = self(x, y)
            (loss * scale).backward()
            return loss.detach()
        params = list(self.parameters())
        kept = [p.grad for p in params]  # set aside, so that only this call's gradient is scaled
        for p in params:
            p.grad = None
        args = (x,) if y is None else (x, y)
        loss = torch.as_tensor(self.elbo.loss_and_grads(self.elbo_loss.model, self.elbo_loss.guide, *args))
        if all(p.grad is None for p in params):
            for p, grad in zip(params, kept, strict=True):
                p.grad = grad
            raise ValueError(
                f"{type(self.elbo).__name__}.loss_and_grads computed no gradient: the model and guide must be "
                "PyroModules, whose parameters appear as param sites in Pyro's traces"
            )
        if y is not None and self.auxiliary_loss is not None:
            auxiliary = self.auxiliary_loss(x, y)
            auxiliary.backward()
            loss = loss + auxiliary.detach()
        for p, grad in zip(params, kept, strict=True):
            if p.grad is not None and scale != 1.0:
                p.grad.mul_(scale)
            if grad is not None:
                p.grad = grad if p.grad is None else p.grad + grad
        return loss


def backward(loss_fn: torch.nn.Module, *args: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Add ``scale`` times the gradient of ``loss_fn(*args)`` to the parameters' ``.grad``, for
    any loss module (:class:`Loss`, :class:`TracedLoss`, or any module returning a loss), and
    return the loss, detached. Estimators without a differentiable loss go through their
    ``loss_and_grads``."""
    if isinstance(loss_fn, Loss):
        return loss_fn.loss_and_grads(*args, scale=scale)
    loss = loss_fn(*args)
    (loss * scale).backward()
    return loss.detach()


def loss_module(
    model: torch.nn.Module,
    guide: torch.nn.Module,
    elbo: ELBO,
    beta: float = 1.0,
    sites: Collection[str] | None = None,
    scheduled: bool = False,
) -> Loss:
    """The negative (beta-)ELBO as a module: ``loss_fn(x)`` returns a differentiable sum over the batch.

    :param model: the generative model.
    :param guide: the amortized guide.
    :param elbo: an estimator, e.g. from :func:`make_elbo`.
    :param beta: scale of the latent sites in model and guide; 1 leaves the ELBO unchanged.
    :param sites: names of the latent sites beta applies to; default: the model's
        ``latent_sites``, else ``("z",)``.
    :param scheduled: keep the beta handler even at beta=1, so :meth:`Loss.set_beta` can move it.
    """
    sites = tuple(sites) if sites is not None else traits(model).latent_sites
    return Loss(model, guide, elbo, beta if (beta != 1.0 or scheduled) else None, sites)


@dataclass(frozen=True)
class BetaSchedule:
    """beta as a function of training progress, in epochs (fractional: step / steps per epoch).

    * ``constant``: ``beta`` throughout;
    * ``linear-warmup``: from 0 up to ``beta`` linearly over the first ``warmup`` epochs, then
      ``beta`` (KL annealing, Bowman et al., 2016);
    * ``cyclical``: ``cycles`` equal cycles over ``epochs``; in each, 0 up to ``beta`` linearly
      over the first ``ramp`` fraction, then ``beta`` (Fu et al., 2019).

    :param name: a key of :data:`BETA_SCHEDULES`.
    :param beta: the final (or constant) value.
    :param epochs: length of training, for ``cyclical``.
    :param warmup: epochs of the linear warm-up.
    :param cycles: number of cycles.
    :param ramp: fraction of each cycle spent rising.
    """

    name: str = "constant"
    beta: float = 1.0
    epochs: int = 1
    warmup: float = 10.0
    cycles: int = 4
    ramp: float = 0.5

    def __post_init__(self):
        lookup(BETA_SCHEDULES, self.name, "beta schedule")
        if self.beta < 0:
            raise ValueError(f"beta must be non-negative, got {self.beta}")
        if self.warmup <= 0 or self.cycles < 1 or not 0 < self.ramp <= 1:
            raise ValueError(
                f"beta schedule needs warmup > 0, cycles ≥ 1 and 0 < ramp ≤ 1; got warmup={self.warmup}, "
                f"cycles={self.cycles}, ramp={self.ramp}"
            )

    @property
    def is_constant(self) -> bool:
        """Whether beta never moves."""
        return self.name == "constant"

    def __call__(self, epoch: float) -> float:
        """beta after ``epoch`` epochs of training."""
        return self.beta * BETA_SCHEDULES[self.name](self, epoch)


def _cycle_fraction(s: BetaSchedule, epoch: float) -> float:
    length = s.epochs / s.cycles
    return min(1.0, (epoch % length) / length / s.ramp)


#: Schedule name → fraction of beta reached after a (fractional) number of epochs.
BETA_SCHEDULES: dict[str, Callable[[BetaSchedule, float], float]] = {
    "constant": lambda s, epoch: 1.0,
    "linear-warmup": lambda s, epoch: min(1.0, epoch / s.warmup),
    "cyclical": _cycle_fraction,
}


def log_mean_exp(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log(mean(exp(x))) along ``dim``, computed stably."""
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


class TraceMismatch(ValueError):
    """The compiled loss disagreed with the eager one, or ``torch.jit.trace`` could not record it."""


class _NothingToCompare(TraceMismatch):
    """The eager loss is not finite at the check's draw: the check cannot judge the trace (and training
    is diverging, which ``fit`` says in its own words)."""


#: Relative tolerance of the check of a compiled loss against the eager one: the trace replays the
#: same kernels, so a sound trace agrees to rounding; a frozen value or branch misses by far more.
TRACE_RTOL = 1e-4

#: ``--jit`` modes: compile where it is checked sound (else eager), compile or refuse, never compile.
JIT_MODES = ("auto", "on", "off")


class TracedLoss(torch.nn.Module):
    """A loss module compiled with ``torch.jit.trace``, once per shape of its tensor inputs, each
    compilation checked against the eager loss before it is used.

    Tracing records the tensor operations of one call of the model, the guide and the
    estimator, including the draws of z (the noise is redrawn at every call), and replays them
    without Pyro's Python-level bookkeeping. Valid for pairs with static structure: the same
    sites, in the same order, for every batch. A Python number computed from a tensor, or a
    Python branch on one, is frozen into the trace; beta is a tensor buffer, so changing it
    (:meth:`Loss.set_beta`) reaches the trace.

    The check: on a draw of z other than the tracing one (and, through :meth:`compile`, on a
    batch other than the tracing one), the compiled loss's value and gradient must equal the
    eager loss's at the same draw within :data:`TRACE_RTOL` (Pyro's own ``TraceMeanField_ELBO``
    fails it: its value is frozen, its gradient right). Every random generator is left as it was,
    so a compiled run draws the same noise as an eager one. (``torch.jit`` is deprecated upstream
    in favour of ``torch.compile``, which still breaks its graph on Pyro's handlers.)

    :param loss_fn: a loss module, e.g. from :func:`loss_module`.
    :param fallback: when a check fails, run the eager loss from then on and say why (``--jit
        auto``); otherwise raise :class:`TraceMismatch` (``--jit on``).
    :param say: called with one line when the loss falls back to eager execution.
    :raises ValueError: for an estimator a trace cannot hold (:func:`untraceable_reason`).
    """

    def __init__(self, loss_fn: torch.nn.Module, fallback: bool = False, say: Callable[[str], None] | None = None):
        super().__init__()
        why = untraceable_reason(loss_fn.elbo) if isinstance(loss_fn, Loss) else None
        if why is not None:
            raise ValueError(f"torch.jit.trace cannot compile the loss: {why}; use --jit auto or --jit off")
        self.loss_fn = loss_fn
        self.fallback = fallback
        self.say = say
        #: why the loss runs eagerly after a failed check (``None`` while it runs compiled)
        self.eager_reason: str | None = None
        #: one record per checked compilation: ``shapes``, ``value_error``, ``gradient_error`` (relative)
        self.checks: list[dict] = []
        self._compiled: dict[tuple, torch.jit.ScriptModule] = {}

    @property
    def beta(self) -> torch.Tensor | None:
        """The eager loss's beta (see :meth:`Loss.set_beta`), which the trace reads."""
        return self.loss_fn.beta

    def set_beta(self, value: float) -> None:
        """Change beta in place: the compiled loss follows (see :meth:`Loss.set_beta`)."""
        self.loss_fn.set_beta(value)

    @property
    def compilations(self) -> int:
        """How many times a trace was recorded (one per distinct input shape)."""
        return len(self._compiled)

    def compile(self, args: tuple[torch.Tensor, ...], check_args: tuple[torch.Tensor, ...] | None = None) -> bool:
        """Record the trace for the shapes of ``args`` and check it on ``check_args`` (same shapes;
        default ``args``) at a fresh draw. Leaves every random generator as it was.

        :returns: whether the loss runs compiled for these shapes (``False`` after a fallback).
        :raises TraceMismatch: when the check fails and ``fallback`` is off.
        """
        key = _shapes(args)
        if self.eager_reason is not None:
            return False
        if key in self._compiled:
            return True
        check_args = args if check_args is None else check_args
        if _shapes(check_args) != key:
            raise ValueError(f"the check batch has shapes {_shapes(check_args)}, the traced one {key}")
        devices = sorted({a.device for a in args if a.device.type == "cuda"}, key=str)
        try:
            # fork_rng: the tracing and checking draws are undone, so the next call draws the same
            # noise as the eager loss would, compiled or not
            # enable_grad: the check compares gradients, even when the first call comes under no_grad
            with (
                warnings.catch_warnings(),
                pyro.validation_enabled(False),
                torch.random.fork_rng(devices),
                torch.enable_grad(),
            ):
                # The tracer warns about every Python-level branch on a tensor: Pyro's NaN checks
                # and zero tests, which are constant for a static pair.
                warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
                warnings.filterwarnings(
                    "ignore", message=r".*torch\.jit\.trace.*deprecated", category=DeprecationWarning
                )
                try:
                    compiled = torch.jit.trace(self.loss_fn, args, check_trace=False)
                except Exception as error:  # whatever the tracer cannot record
                    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
                    raise TraceMismatch(f"torch.jit.trace could not record the loss ({first})") from error
                # the tracing run moved the generators on: this draw is a fresh one
                check = {"shapes": [list(s) for s, _ in key], "other_batch": check_args is not args}
                self.checks.append({**check, **self._check(compiled, check_args)})
        except _NothingToCompare:
            return False  # this call runs eagerly; a later call of these shapes tries again
        except TraceMismatch as error:
            if not self.fallback:
                raise TraceMismatch(f"{error}; --jit auto runs such a loss eagerly, --jit off always") from None
            self.eager_reason = str(error)
            if self.say is not None:
                self.say(describe_execution(self))
            return False
        self._compiled[key] = compiled
        return True

    def _check(self, compiled: torch.jit.ScriptModule, args: tuple[torch.Tensor, ...]) -> dict:
        """Value and gradient of the compiled and the eager loss at the same draw; raises
        :class:`TraceMismatch` unless they agree within :data:`TRACE_RTOL`."""
        params = [p for p in self.loss_fn.parameters() if p.requires_grad]
        devices = [a.device for a in args if a.device.type == "cuda"]
        state = torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in devices]
        eager = self.loss_fn(*args)
        eager_grads = torch.autograd.grad(eager, params, allow_unused=True) if params else ()
        torch.set_rng_state(state[0])
        for d, s in zip(devices, state[1], strict=True):
            torch.cuda.set_rng_state(s, d)
        try:
            with torch.jit.optimized_execution(False):
                traced = compiled(*args)
            traced_grads = torch.autograd.grad(traced, params, allow_unused=True) if params else ()
        except Exception as error:  # a recording that cannot be replayed
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise TraceMismatch(f"the compiled loss failed where the eager one ran ({first})") from error
        eager, traced = float(eager.detach()), float(traced.detach())
        if not math.isfinite(eager):
            raise _NothingToCompare(f"the eager loss is {eager} on the check's draw, so nothing could be compared")
        value_error = abs(traced - eager) / max(1.0, abs(eager))
        if not value_error <= TRACE_RTOL:  # NaN included
            raise TraceMismatch(
                f"the compiled loss gave {traced:.6g} where the eager one gave {eager:.6g} at the same draw: the "
                "trace froze a value or a branch"
            )
        if [g is None for g in eager_grads] != [g is None for g in traced_grads]:
            raise TraceMismatch("the compiled loss's gradient reaches other parameters than the eager one's")
        pairs = [(e, t) for e, t in zip(eager_grads, traced_grads, strict=True) if e is not None]
        size = max((float(e.abs().max()) for e, _ in pairs), default=0.0)
        gap = max((float((e - t).abs().max()) for e, t in pairs), default=0.0)
        gradient_error = gap / size if size > 0 else gap
        if not gradient_error <= TRACE_RTOL:
            raise TraceMismatch(
                f"the compiled loss's gradient is off by {gradient_error:.2g} (relative) from the eager one's at the "
                "same draw: the trace froze a value or a branch"
            )
        return {"value_error": value_error, "gradient_error": gradient_error}

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        if self.eager_reason is None:
            key = _shapes(args)
            if key in self._compiled or self.compile(args):
                # Plain autograd through the recorded graph: on CPU, the profiling executor's
                # differentiable subgraphs are slower (its ReLU gradient is a compare and a multiply).
                with torch.jit.optimized_execution(False):
                    return self._compiled[key](*args)
        return self.loss_fn(*args)


def _shapes(args: tuple[torch.Tensor, ...]) -> tuple:
    return tuple((a.shape, a.dtype) for a in args)


def describe_execution(loss_fn: torch.nn.Module) -> str:
    """One line saying how a loss module runs: compiled (and how closely its check agreed) or
    eager, and why."""
    if isinstance(loss_fn, TracedLoss):
        if loss_fn.eager_reason is not None:
            return f"loss: eager, because {loss_fn.eager_reason} (--jit off skips the trace)"
        if not loss_fn.checks:
            return "loss: compiled with torch.jit.trace at its first batch, after a check against the eager loss"
        worst = max(max(c["value_error"], c["gradient_error"]) for c in loss_fn.checks)
        agree = "equal to the eager loss's" if worst == 0 else f"within {worst:.0e} (relative) of the eager loss's"
        where = "a fresh draw" if loss_fn.checks[0]["other_batch"] else "a fresh draw of the traced batch (no other)"
        return (
            f"loss: compiled with torch.jit.trace, its value and gradient on {where} {agree} "
            "(--jit off runs it eagerly)"
        )
    why = untraceable_reason(loss_fn.elbo) if isinstance(loss_fn, Loss) else None
    return f"loss: eager, because {why}" if why else "loss: eager (--jit off)"
