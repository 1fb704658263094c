"""The importance-weighted bound with doubly-reparameterized gradients (DReG), an estimator Pyro
does not ship."""

import math

import torch
from pyro import poutine
from pyro.infer.util import get_dependent_plate_dims, is_validation_enabled
from pyro.poutine.util import prune_subsample_sites, site_is_subsample
from pyro.util import check_model_guide_match, check_site_shape, warn_if_nan
from torch.func import functional_call

from pvae.engine.surrogate import SurrogateELBO


class DReG_ELBO(SurrogateELBO):
    r"""The IWAE bound of Burda et al. (2015), with the doubly-reparameterized gradient estimator
    of Tucker et al. (2018) for the guide.

    With K particles :math:`z_k = g_\phi(\epsilon_k, x)` drawn from a reparameterized guide and
    :math:`\log w_k = \log p_\theta(x, z_k) - \log q_\phi(z_k \mid x)`, the bound is

    .. math:: \mathcal{L}_K = \mathbb{E}\Big[\log \frac{1}{K} \sum_k w_k\Big],
        \qquad \tilde w_k = w_k \big/ \textstyle\sum_j w_j .

    The model's gradient is IWAE's, :math:`\sum_k \tilde w_k \nabla_\theta \log w_k`. The usual
    guide gradient :math:`\sum_k \tilde w_k \nabla_\phi \log w_k` contains a score term
    :math:`\partial_\phi \log q_\phi(z_k)` whose noise does not average out as K grows, so the
    guide's signal-to-noise ratio falls like :math:`1/\sqrt{K}` (Rainforth et al., 2018).
    Applying the reparameterization a second time removes it without bias:

    .. math:: \nabla_\phi \mathcal{L}_K = \mathbb{E}\Big[\sum_k \tilde w_k^2\,
        \frac{\partial \log w_k}{\partial z_k} \frac{\partial z_k}{\partial \phi}\Big],

    with :math:`\log q` evaluated at parameters held constant. The surrogate here evaluates
    :math:`\log w_k` at a copy of each draw, with the guide's parameters detached (so the guide
    reaches them only through :math:`z_k`), weights it by :math:`\tilde w_k`, and multiplies the
    gradient arriving at each copy by :math:`\tilde w_k` once more: :math:`\tilde w_k` for the
    model, :math:`\tilde w_k^2` for the guide, one backward pass. With K = 1 this is the
    "sticking the landing" ELBO gradient of Roeder et al. (2017).

    Under a scale s on a guide site (beta, from :class:`pvae.engine.objectives.BetaScale`), log wₖ
    holds s·log q, the score term is s times smaller, and the same identity gives the weight
    :math:`\tilde w_k((1 - s) + s\,\tilde w_k)` instead of :math:`\tilde w_k^2`: the hook
    multiplies by :math:`(1 - s) + s\,\tilde w_k` (s = 1: DReG; s = 0: no score term to remove).

    Requirements: every guide site is reparameterized (no discrete or enumerated latents), the
    guide is a ``torch.nn.Module`` (its parameters are detached by
    :func:`torch.func.functional_call`), and the loss is not traced by ``torch.jit`` (the second
    weighting is a gradient hook, which a trace does not record).

    References: Burda, Grosse & Salakhutdinov, *Importance Weighted Autoencoders*, ICLR 2016;
    Tucker, Lawson, Gu & Maddison, *Doubly Reparameterized Gradient Estimators for Monte Carlo
    Objectives*, ICLR 2019 (arXiv 2018); Rainforth et al., *Tighter Variational Bounds are Not
    Necessarily Better*, ICML 2018; Roeder, Wu & Duvenaud, *Sticking the Landing*, NeurIPS 2017.

    :param num_particles: K, the importance samples per datapoint.
    :param max_plate_nesting: bound on nested plates (the batch plate: 1).
    :param vectorize_particles: draw the K particles in one vectorized pass.
    :param strict_enumeration_warning: unused (no enumeration); kept for Pyro's signature.
    """

    #: The surrogate relies on a gradient hook, which ``torch.jit.trace`` does not record.
    traceable = False

    def __init__(
        self,
        num_particles: int = 2,
        max_plate_nesting: float = float("inf"),
        vectorize_particles: bool = False,
        strict_enumeration_warning: bool = True,
    ):
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=vectorize_particles,
            strict_enumeration_warning=strict_enumeration_warning,
        )

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError("DReG_ELBO draws its particles in _particle_traces")

    def _particle_traces(self, model, guide, stopped, args, kwargs):
        """One draw (or one vectorized batch of draws) of the guide, and the model and the
        parameter-detached guide ``stopped`` evaluated at a copy of it.

        :returns: ``(model_trace, stopped_guide_trace, copies)``; ``copies`` are the draws the
            bound is evaluated at, whose gradients the caller reweights, each with its site's
            scale: ``[(value, scale), ...]``.
        """
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        copies = []
        for name, site in guide_trace.nodes.items():
            if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
                continue
            if not getattr(site["fn"], "has_rsample", False) or site["infer"].get("enumerate"):
                raise ValueError(
                    f"DReG needs a reparameterized guide, but site {name!r} is not reparameterized "
                    "(a discrete or enumerated latent): use --elbo iwae, or trace/enum"
                )
            # the guide's own later sites keep using the original draw; the bound sees the copy
            site["value"] = site["value"].clone()
            copies.append((site["value"], site["scale"]))
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        stopped_trace = poutine.trace(poutine.replay(stopped, trace=guide_trace)).get_trace(*args, **kwargs)
        if is_validation_enabled():
            check_model_guide_match(model_trace, stopped_trace, self.max_plate_nesting)
        model_trace, stopped_trace = prune_subsample_sites(model_trace), prune_subsample_sites(stopped_trace)
        model_trace.compute_log_prob()
        stopped_trace.compute_log_prob()
        if is_validation_enabled():
            for trace in (model_trace, stopped_trace):
                for site in trace.nodes.values():
                    if site["type"] == "sample":
                        check_site_shape(site, self.max_plate_nesting)
        return model_trace, stopped_trace, copies

    def _log_weights(self, model, guide, args, kwargs) -> tuple[torch.Tensor, list[list[tuple]], int]:
        """log w with the particles along one dimension, the draws of each particle pass, and
        that dimension."""
        if self.max_plate_nesting == float("inf"):
            self._guess_max_plate_nesting(model, guide, args, kwargs)
        vectorized = self.vectorize_particles and self.num_particles > 1
        stopped = _detached(guide)
        if vectorized:
            # the particle plate wraps each program, inside the handlers: a replayed site is
            # then broadcast over the particles like a sampled one
            wrap = self._vectorized_num_particles
            passes = [self._particle_traces(wrap(model), wrap(guide), wrap(stopped), args, kwargs)]
        else:
            passes = [self._particle_traces(model, guide, stopped, args, kwargs) for _ in range(self.num_particles)]
        log_w = []
        for model_trace, stopped_trace, _ in passes:
            sum_dims = get_dependent_plate_dims(model_trace.nodes.values())
            particle = 0.0
            for trace, sign in ((model_trace, 1.0), (stopped_trace, -1.0)):
                for site in trace.nodes.values():
                    if site["type"] == "sample":
                        # keep the plate dims shared by every site: one weight per datapoint
                        lp = site["log_prob"]
                        dims = [d for d in sum_dims if -d <= lp.dim()]
                        particle = particle + sign * (lp.sum(dims, keepdim=True) if dims else lp)
            log_w.append(particle)
        if vectorized:
            dim = -self.max_plate_nesting
            return log_w[0], [passes[0][2]], dim
        return torch.stack(log_w), [p[2] for p in passes], 0

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The negative IWAE bound, summed over the batch, whose backward pass gives the DReG
        gradient (model: IWAE's; guide: doubly reparameterized)."""
        log_w, copies, dim = self._log_weights(model, guide, args, kwargs)
        k = self.num_particles
        bound = torch.logsumexp(log_w.detach(), dim=dim, keepdim=True) - math.log(k)
        weights = (log_w.detach() - bound).exp() / k  # normalised weights w̃, summing to 1 over dim
        surrogate = (weights * log_w).sum()
        if torch.is_grad_enabled() and surrogate.requires_grad:
            for i, draws in enumerate(copies):
                w = weights if dim != 0 else weights[i]  # this pass's weights
                for value, scale in draws:
                    if value.requires_grad:
                        value.register_hook(_scale_by((1 - scale) + scale * w))
        loss = -(bound.sum() + (surrogate - surrogate.detach()))
        warn_if_nan(loss, "loss")
        return loss


def _scale_by(weights: torch.Tensor):
    """A gradient hook multiplying the gradient of a draw by its particle's factor."""

    def hook(grad: torch.Tensor) -> torch.Tensor:
        w = weights
        while w.dim() < grad.dim():  # the draw's event dims sit right of its batch dims
            w = w.unsqueeze(-1)
        return grad * w

    return hook


def _detached(guide):
    """``guide`` with its parameters detached: its sites' densities then reach the parameters
    only through the values they are evaluated at."""
    if not isinstance(guide, torch.nn.Module):
        raise TypeError(f"DReG detaches the guide's parameters, so the guide must be a torch.nn.Module, got {guide!r}")

    def stopped(*args, **kwargs):
        params = {name: p.detach() for name, p in guide.named_parameters()}
        return functional_call(guide, params, args, kwargs)

    return stopped
