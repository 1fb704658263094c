"""Observation models p(x | decoder output), one small ``nn.Module`` each, and their registry.

A likelihood turns the decoder's flat output ``(..., prod(x_shape) * params_per_pixel)`` into a
distribution whose event shape is ``x_shape``, so ``log_prob`` sums over pixels (or the features of a
vector, ``x_shape = (D,)``) and returns one number per datapoint. With several parameters per pixel the
flat output is parameter-major: it reshapes to ``(..., params_per_pixel, *x_shape)`` (see :mod:`pvae.engine.nets`).

Each likelihood declares the data *kinds* it can hold (:data:`KINDS`) as its ``support``;
:func:`check_support` refuses a likelihood that cannot hold the data's kind. Real-valued data that pvae
standardizes are scored in nats of the data as given: :meth:`Likelihood.set_data_scale` makes every
distribution a :class:`Rescaled` one, which adds the Jacobian −Σ log s of the standardization.
"""

import math
import operator
from collections.abc import Sequence

import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import TorchDistribution
from torch import nn

from pvae.base.registry import lookup
from pvae.data.userdata import KIND_VALUES as KINDS  # data kind → what its values are; a ``support`` names them

#: Kind → the data it names, for messages ("holds binary data or counts").
_NOUNS = {"binary": "binary data", "levels": "levels in [0, 1]", "counts": "counts", "real": "real numbers"}

#: The empty sample shape: one draw.
_SCALAR = torch.Size()


class Rescaled(TorchDistribution):
    """A distribution over standardized data, scored in the units of the data as given.

    pvae feeds a model x_std = (x − m) / s, with the training split's mean m and standard deviation s
    per feature. By the change of variables x = m + s · x_std,

        log p(x) = log p(x_std) − Σ_i log s_i,

    the sum running over the event's features: one shift per datapoint, the same for all. Only
    :meth:`log_prob` (and :meth:`entropy`) shift; samples, ``mean`` and ``variance`` stay in
    standardized units (pvae un-standardizes them where it shows them).

    :param base: the distribution of the standardized data; its event shape is a datapoint's.
    :param log_scale: log s, of the event shape or broadcastable to it.
    :param validate_args: as for any torch distribution (the base validates the values).
    :raises ValueError: when ``log_scale`` does not broadcast to the event shape.
    """

    arg_constraints = {}

    def __init__(self, base: dist.Distribution, log_scale: torch.Tensor, validate_args: bool | None = None):
        log_scale = torch.as_tensor(log_scale)
        event_shape = base.event_shape
        try:
            fits = torch.broadcast_shapes(log_scale.shape, event_shape) == event_shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"log_scale of shape {tuple(log_scale.shape)} does not broadcast to the event shape "
                f"{tuple(event_shape)}"
            )
        self.base_dist = base
        self.log_scale = log_scale
        # Σ log s over the event, a scalar: the broadcast counts a shared scale once per feature.
        self.log_abs_det = log_scale.expand(event_shape).sum()
        super().__init__(base.batch_shape, event_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        """The same rescaling of the base expanded to ``batch_shape`` (what ``pyro.plate`` asks for)."""
        new = self._get_checked_instance(Rescaled, _instance)
        new.base_dist = self.base_dist.expand(batch_shape)
        new.log_scale = self.log_scale
        new.log_abs_det = self.log_abs_det
        super(Rescaled, new).__init__(new.base_dist.batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def support(self):
        """The base's support: the values stay standardized."""
        return self.base_dist.support

    @property
    def has_rsample(self) -> bool:
        """Whether the base draws reparametrized samples."""
        return self.base_dist.has_rsample

    @property
    def has_enumerate_support(self) -> bool:
        """Whether the base enumerates its support."""
        return self.base_dist.has_enumerate_support

    @property
    def mean(self) -> torch.Tensor:
        """The base's mean, in standardized units."""
        return self.base_dist.mean

    @property
    def variance(self) -> torch.Tensor:
        """The base's variance, in standardized units."""
        return self.base_dist.variance

    def sample(self, sample_shape=_SCALAR) -> torch.Tensor:
        """Draws of the base, in standardized units."""
        return self.base_dist.sample(sample_shape)

    def rsample(self, sample_shape=_SCALAR) -> torch.Tensor:
        """Reparametrized draws of the base, in standardized units."""
        return self.base_dist.rsample(sample_shape)

    def enumerate_support(self, expand: bool = True) -> torch.Tensor:
        """The base's support, enumerated."""
        return self.base_dist.enumerate_support(expand)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log p(x) = log p(x_std) − Σ log s, one per batch element.

        :param value: standardized data x_std, ``batch_shape + event_shape`` or broadcastable to it.
        """
        return self.base_dist.log_prob(value) - self.log_abs_det

    def entropy(self) -> torch.Tensor:
        """H(x) = H(x_std) + Σ log s, in nats of the data as given."""
        return self.base_dist.entropy() + self.log_abs_det


class Likelihood(nn.Module):
    """The common part of every likelihood: the datapoint's shape, the data kinds it holds, and the
    Jacobian of a standardization.

    A subclass declares ``support`` (and ``params_per_pixel``, ``requires_binary``, ``requires_grey`` where
    they differ) and writes :meth:`distribution`; :meth:`forward` wraps that distribution in
    :class:`Rescaled` once :meth:`set_data_scale` has been given a scale.

    :param x_shape: shape of one datapoint: ``(C, H, W)`` for images, ``(D,)`` for vectors.
    """

    #: Data kinds (keys of :data:`KINDS`) the likelihood can hold; ``None``, undeclared, reads them off
    #: ``requires_binary`` and ``requires_grey`` (see :func:`check_support`).
    support: tuple[str, ...] | None = None
    #: Parameters the decoder gives per pixel (or feature).
    params_per_pixel = 1
    #: Data must be exactly 0 or 1.
    requires_binary = False
    #: Data must be grey levels, not exactly 0 or 1 everywhere.
    requires_grey = False
    #: Its first parameter is a log mean that :meth:`use_library` can make proportions × the library size.
    takes_library = False

    def __init__(self, x_shape: Sequence[int]):
        super().__init__()
        self.x_shape = tuple(x_shape)
        # Not persistent: the state_dict, and so every checkpoint, stays as it was without it.
        self.register_buffer("data_log_scale", None, persistent=False)
        self.register_buffer("mean_library", None, persistent=False)
        self.library_mode = False
        #: the observed library sizes of the batch being scored ``(batch, 1)``, set by the model's forward
        self.library: torch.Tensor | None = None

    def use_library(self, mean_library: float | None = None) -> None:
        """Condition the counts on each row's observed total, the library size l, as scVI does (Lopez et al.,
        2018): the decoder's first parameter block becomes logits of proportions ρ = softmax(·) over the
        features, and the mean is μ = ρ · l. The model sets :attr:`library` from the data it observes; a draw
        without data (a sample from the prior) uses ``mean_library``, the training rows' mean total.

        :raises ValueError: for a likelihood without a mean parameter, or data that are not vectors.
        """
        if not self.takes_library:
            raise ValueError(
                f"{type(self).__name__} has no mean to scale by a library size: use poisson, negative-binomial or zinb"
            )
        if len(self.x_shape) != 1:
            raise ValueError(
                f"a library size is the total of a row of counts; these datapoints have shape {self.x_shape}"
            )
        self.library_mode = True
        if mean_library is not None:
            self.mean_library = torch.tensor(float(mean_library))

    def start_at(self, mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor | None:
        """Start at the training data's moments: returns the decoder's output bias of the first parameter
        block at which the likelihood's mean is ``mean`` (so that counts in the thousands are not met by a
        mean of about 1), and sets the likelihood's own parameters from them where it has some. ``None``:
        the likelihood does not ask (data near 0 and 1, or standardized).

        :param mean: per-feature mean of the training data, shape ``x_shape``.
        :param variance: per-feature variance of the training data.
        """
        return None

    def _log_mean(self, log_mu: torch.Tensor) -> torch.Tensor:
        """log μ from the decoder's block: itself, or log ρ + log l in library mode."""
        if not self.library_mode:
            return log_mu
        library = self.library if self.library is not None else self.mean_library
        if library is None:
            raise ValueError("the library size is observed: score data, or give the training rows' mean total")
        # a row of no counts at all is given library 1, so that its log-mean stays finite
        return torch.log_softmax(log_mu, dim=-1) + library.clamp_min(1.0).log()

    def set_data_scale(self, log_scale: torch.Tensor | None) -> None:
        """Score the data in the units they were given in, before standardization.

        After it, :meth:`forward` returns ``Rescaled(distribution, log_scale)``, whose log-density is
        log p(x_std) − Σ log s.

        :param log_scale: log s, the log standard deviation the data were divided by, of shape
            ``x_shape`` or broadcastable to it; ``None`` scores the data as the model sees them.
        :raises ValueError: for a scale of another shape, or one that is not finite.
        """
        if log_scale is None:
            self.data_log_scale = None
            return
        log_scale = torch.as_tensor(log_scale).detach()
        if not log_scale.is_floating_point():
            log_scale = log_scale.to(torch.get_default_dtype())
        try:
            fits = torch.broadcast_shapes(log_scale.shape, self.x_shape) == self.x_shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"the data's log scale has shape {tuple(log_scale.shape)}; it must broadcast to the datapoint's "
                f"shape {self.x_shape}"
            )
        if not torch.isfinite(log_scale).all():
            raise ValueError("the data's log scale must be finite (a feature with zero spread has no log scale)")
        self.data_log_scale = log_scale

    def distribution(self, out: torch.Tensor) -> dist.Distribution:
        """p(x | out) on the data as the model sees them; event shape ``x_shape``.

        :param out: the decoder's flat output ``(..., prod(x_shape) * params_per_pixel)``.
        """
        raise NotImplementedError(f"{type(self).__name__} must define distribution(out)")

    def forward(self, out: torch.Tensor) -> dist.Distribution:
        """:meth:`distribution`, rescaled to the data as given when :meth:`set_data_scale` set a scale.

        :param out: the decoder's flat output ``(..., prod(x_shape) * params_per_pixel)``.
        """
        d = self.distribution(out)
        if self.data_log_scale is None:
            return d
        return Rescaled(d, self.data_log_scale.to(device=out.device, dtype=out.dtype))

    def _split(self, out: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The ``params_per_pixel`` parameters of ``out``, each ``(..., *x_shape)`` (parameter-major)."""
        per_pixel = out.reshape(out.shape[:-1] + (self.params_per_pixel,) + self.x_shape)
        return per_pixel.unbind(-len(self.x_shape) - 1)


class Bernoulli(Likelihood):
    """Bernoulli pixels with logits from the decoder: for binary data only.

    :param x_shape: shape of one datapoint, e.g. ``(1, 28, 28)``.
    """

    support = ("binary",)
    #: Data must be exactly 0 or 1 (binarize grey levels first).
    requires_binary = True
    #: The per-pixel distribution, parametrised by ``logits``.
    pixel = dist.Bernoulli

    def distribution(self, out: torch.Tensor) -> dist.Distribution:
        logits = out.reshape(out.shape[:-1] + self.x_shape)
        return self.pixel(logits=logits).to_event(len(self.x_shape))


class Gaussian(Likelihood):
    """Gaussian pixels with the decoder's output as mean and a learned scale.

    :param x_shape: shape of one datapoint.
    :param per_pixel: one learned scale per pixel instead of a single global one.
    :param init_scale: initial standard deviation.
    """

    support = ("binary", "levels", "counts", "real")

    def __init__(self, x_shape: Sequence[int], per_pixel: bool = False, init_scale: float = 1.0):
        super().__init__(x_shape)
        shape = self.x_shape if per_pixel else ()
        self.log_scale = nn.Parameter(torch.full(shape, math.log(init_scale)))

    def distribution(self, out: torch.Tensor) -> dist.Distribution:
        loc = out.reshape(out.shape[:-1] + self.x_shape)
        return dist.Normal(loc, self.log_scale.exp().expand(loc.shape)).to_event(len(self.x_shape))


class GaussianPerPixel(Gaussian):
    """A :class:`Gaussian` with one learned scale per pixel, so ``log_scale`` has shape ``x_shape``.

    Registered as ``"gaussian-per-pixel"``; ``"gaussian"`` keeps one global scale.

    :param x_shape: shape of one datapoint.
    :param init_scale: initial standard deviation of every pixel.
    """

    def __init__(self, x_shape: Sequence[int], init_scale: float = 1.0):
        super().__init__(x_shape, per_pixel=True, init_scale=init_scale)


class ContinuousBernoulli(Bernoulli):
    """Continuous Bernoulli pixels (Loaiza-Ganem & Cunningham, 2019) with logits from the decoder.

    The density on [0, 1] is p(x | λ) = C(λ) λ^x (1 − λ)^(1 − x), with the normalising constant
    C(λ) = 2 artanh(1 − 2λ) / (1 − 2λ) (and C(1/2) = 2). It is the likelihood for grey levels in
    [0, 1] kept as they are (``binarize="none"``): the popular examples that feed grey levels to a
    :class:`Bernoulli` drop C(λ), so their "ELBO" bounds the likelihood of no distribution. Its
    densities may exceed one, so the ELBO can be positive; its mean is not λ but
    λ / (2λ − 1) + 1 / (2 artanh(1 − 2λ)), which is what ``decode(z).mean`` returns.

    :param x_shape: shape of one datapoint, e.g. ``(1, 28, 28)``.
    """

    support = ("levels",)
    requires_binary = False
    #: On pixels of exactly 0 or 1, C(λ) → ∞ as λ → 0 or 1: the density has no maximum.
    requires_grey = True
    pixel = dist.ContinuousBernoulli


class Poisson(Likelihood):
    """Poisson counts with the decoder's output as the log rate.

    p(x | λ) = λ^x e^(−λ) / x!, with log λ the decoder's output per feature; mean and variance λ.

    :param x_shape: shape of one datapoint.
    """

    support = ("binary", "counts")
    takes_library = True

    def start_at(self, mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
        """log of the mean (of the mean proportion, with an observed library size)."""
        return _log_mean_bias(mean, self.library_mode)

    def distribution(self, out: torch.Tensor) -> dist.Distribution:
        log_rate = self._log_mean(out.reshape(out.shape[:-1] + self.x_shape))
        return dist.Poisson(log_rate.exp()).to_event(len(self.x_shape))


class NegativeBinomial(Likelihood):
    """Negative binomial counts: the decoder gives the log mean, and each feature learns an inverse dispersion.

    With mean μ (``log μ`` from the decoder) and inverse dispersion θ > 0 (``exp(log_theta)``, one per feature),

        p(x | μ, θ) = Γ(x + θ) / (Γ(θ) x!) · (θ / (θ + μ))^θ · (μ / (θ + μ))^x,

    with mean μ and variance μ + μ²/θ: θ → ∞ is the Poisson, small θ lets the variance grow with μ².
    In torch's parametrization, ``NegativeBinomial(total_count=θ, logits=log μ − log θ)``, ``probs`` =
    μ / (θ + μ) is the probability of the event *counted* by x; scipy's ``nbinom(n, p)`` counts the
    failures before ``n`` successes of probability ``p``, so the same distribution is
    ``scipy.stats.nbinom(n=θ, p=θ / (θ + μ))``, with p = 1 − ``probs``.

    :param x_shape: shape of one datapoint.
    """

    support = ("binary", "counts")
    takes_library = True

    def __init__(self, x_shape: Sequence[int]):
        super().__init__(x_shape)
        # log θ per feature; 0 starts every feature at θ = 1, variance μ + μ².
        self.log_theta = nn.Parameter(torch.zeros(self.x_shape))

    def start_at(self, mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
        """log of the mean (of the mean proportion, with an observed library size); θ by the method of
        moments, μ² / (variance − μ), within [0.01, 10⁴] (10⁴, nearly Poisson, where the data are not
        overdispersed)."""
        excess = (variance - mean).reshape(self.x_shape)
        theta = torch.where(excess > 0, mean.reshape(self.x_shape) ** 2 / excess.clamp_min(1e-12), 1e4)
        with torch.no_grad():
            self.log_theta.copy_(theta.clamp(1e-2, 1e4).log())
        return _log_mean_bias(mean, self.library_mode)

    def distribution(self, out: torch.Tensor) -> dist.Distribution:
        log_mu = self._log_mean(out.reshape(out.shape[:-1] + self.x_shape))
        nb = dist.NegativeBinomial(total_count=self.log_theta.exp(), logits=_count_logits(log_mu, self.log_theta))
        return nb.to_event(len(self.x_shape))


class ZeroInflatedNegativeBinomial(NegativeBinomial):
    """Zero-inflated negative binomial counts, the observation model of scVI (Lopez et al., 2018).

    A gate of probability π emits a zero, otherwise the :class:`NegativeBinomial` of mean μ and learned
    inverse dispersion θ per feature draws the count:

        p(x | μ, θ, π) = π · 1[x = 0] + (1 − π) · NB(x; μ, θ),

    with mean (1 − π) μ. The decoder gives two parameters per feature, parameter-major: log μ, then the
    gate's logit log(π / (1 − π)).

    Lopez, Regier, Cole, Jordan & Yosef, "Deep generative modeling for single-cell transcriptomics",
    Nature Methods 15, 2018.

    :param x_shape: shape of one datapoint.
    """

    params_per_pixel = 2

    def distribution(self, out: torch.Tensor) -> dist.Distribution:
        log_mu, gate_logits = self._split(out)  # each (..., *x_shape)
        log_mu = self._log_mean(log_mu)
        return dist.ZeroInflatedNegativeBinomial(
            total_count=self.log_theta.exp(), logits=_count_logits(log_mu, self.log_theta), gate_logits=gate_logits
        ).to_event(len(self.x_shape))


#: The largest logit log(μ/θ) of a negative binomial: in float32, sigmoid(17) rounds to 1, a probability
#: Pyro's validation refuses (and that has no finite log-density); μ/θ = e^15 ≈ 3·10⁶ is far past any data.
MAX_COUNT_LOGIT = 15.0


def _count_logits(log_mu: torch.Tensor, log_theta: torch.Tensor) -> torch.Tensor:
    return (log_mu - log_theta).clamp(max=MAX_COUNT_LOGIT)


def _log_mean_bias(mean: torch.Tensor, proportions: bool) -> torch.Tensor:
    mean = mean.reshape(-1).clamp_min(1e-3)
    return (mean / mean.sum()).log() if proportions else mean.log()


class Binomial(Likelihood):
    """Binomial counts out of a known number of trials n, with logits from the decoder.

    p(x | n, p) = C(n, x) p^x (1 − p)^(n − x) for x in 0 … n, with mean n p. sklearn's digits, for
    one, are counts out of 16. Values above n are refused when Pyro validates.

    :param x_shape: shape of one datapoint.
    :param trials: the number of trials n; :meth:`set_trials` changes it after construction (pvae reads it
        from the data once the model is built).
    :raises ValueError: for trials that are not a whole number of at least 1.
    """

    support = ("binary", "counts")

    def __init__(self, x_shape: Sequence[int], trials: int = 1):
        super().__init__(x_shape)
        self.set_trials(trials)

    def set_trials(self, n: int) -> None:
        """Set the number of trials.

        A plain attribute, not in the state_dict: the data determine it, not training.

        :param n: the number of trials, a whole number ≥ 1.
        :raises ValueError: for anything else.
        """
        try:
            trials = operator.index(n)
        except TypeError:
            raise ValueError(f"the number of binomial trials must be a whole number, got {n!r}") from None
        if isinstance(n, bool) or trials < 1:
            raise ValueError(f"the number of binomial trials must be at least 1, got {n!r}")
        self.trials = trials

    def start_at(self, mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
        """The logit of mean / trials."""
        p = (mean.reshape(-1) / self.trials).clamp(1e-3, 1 - 1e-3)
        return p.log() - (-p).log1p()

    def distribution(self, out: torch.Tensor) -> dist.Distribution:
        logits = out.reshape(out.shape[:-1] + self.x_shape)
        return dist.Binomial(total_count=self.trials, logits=logits).to_event(len(self.x_shape))


#: Name → likelihood class; ``--likelihood`` chooses from these.
LIKELIHOODS: dict[str, type[Likelihood]] = {
    "bernoulli": Bernoulli,
    "continuous-bernoulli": ContinuousBernoulli,
    "gaussian": Gaussian,
    "gaussian-per-pixel": GaussianPerPixel,
    "negative-binomial": NegativeBinomial,
    "poisson": Poisson,
    "zinb": ZeroInflatedNegativeBinomial,
    "binomial": Binomial,
}


def get_likelihood(name: str) -> type[nn.Module]:
    """Look a likelihood up by name.

    :param name: a key of :data:`LIKELIHOODS`, or ``"module:ClassName"``.
    :raises ValueError: naming the valid choices when ``name`` is unknown.
    """
    return lookup(LIKELIHOODS, name, "likelihood")


def _support(cls: type) -> tuple[str, ...]:
    """The kinds ``cls`` holds; a class that declares none holds what its ``requires_*`` allow."""
    support = getattr(cls, "support", None)
    if support is None:
        if getattr(cls, "requires_binary", False):
            return ("binary",)
        if getattr(cls, "requires_grey", False):
            return ("levels",)
        return tuple(KINDS)
    if isinstance(support, str) or not support or not all(kind in KINDS for kind in support):
        raise ValueError(
            f"{cls.__name__}.support must be a non-empty tuple of kinds among {', '.join(KINDS)}, got {support!r}"
        )
    return tuple(support)


def _either(names: Sequence[str]) -> str:
    """``"a, b or c"``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def check_support(likelihood: type[nn.Module] | nn.Module, kind: str, name: str) -> None:
    """Refuse a likelihood that cannot hold data of this kind.

    :param likelihood: a likelihood class or instance.
    :param kind: the data's kind, a key of :data:`KINDS`.
    :param name: the likelihood's name as the user gave it (``--likelihood NAME``).
    :raises ValueError: in one line naming the likelihood, the data's kind and the registered
        likelihoods that hold it (those of the narrowest support first); also for an unknown kind.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown data kind {kind!r}; the kinds are {', '.join(KINDS)}")
    support = _support(likelihood if isinstance(likelihood, type) else type(likelihood))
    if kind in support:
        return
    holders = [n for n, c in LIKELIHOODS.items() if kind in _support(c)]
    holders.sort(key=lambda n: len(_support(LIKELIHOODS[n])))  # stable: registry order within a width
    holds = _either([_NOUNS[k] for k in support])
    advice = f"use {_either(holders)}" if holders else "no registered likelihood holds them"
    raise ValueError(f"--likelihood {name} holds {holds}, but these data are {kind} ({KINDS[kind]}): {advice}")
