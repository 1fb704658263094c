"""The beta-TCVAE objective (Chen et al., 2018): beta on the total correlation of q(z) alone, an
estimator Pyro does not ship."""

import math

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.infer import Trace_ELBO
from pyro.poutine.util import site_is_subsample
from pyro.util import warn_if_nan
from torch.distributions import Independent, Normal

from pvae.base.sites import DATA, Z
from pvae.engine.surrogate import SurrogateELBO


class TCVAE_ELBO(SurrogateELBO, Trace_ELBO):
    r"""The ELBO with its KL term split in three (Chen et al., 2018, eq. 2), and a weight on the
    total correlation alone.

    With q(z) = E_{p(n)}[q(z|n)] the aggregate posterior over the N training datapoints and
    :math:`q(z_j)` its marginals,

    .. math:: \mathbb{E}[\log q(z|x) - \log p(z)] =
        \underbrace{\mathbb{E}[\log q(z|x) - \log q(z)]}_{I(x; z)}
        + \underbrace{\mathbb{E}[\log q(z) - \textstyle\sum_j \log q(z_j)]}_{\mathrm{TC}}
        + \underbrace{\mathbb{E}[\textstyle\sum_j \log q(z_j) - \log p(z_j)]}_{\text{dimension-wise KL}},

    and the objective, with α = γ = 1 and β on the TC (Sec. 4.1), is

    .. math:: \mathbb{E}[\log p(x|z)] - I - \beta\,\mathrm{TC} - \text{dim-KL}
        = \mathrm{ELBO} - (\beta - 1)\,\mathrm{TC}.

    The identity holds term by term whatever the estimates of log q(z) and log q(z_j): they cancel
    in the sum, so the loss is Trace_ELBO's at the same draws plus :math:`(\beta - 1)\widehat{TC}`,
    and at β = 1 exactly Trace_ELBO's. The TC is estimated on the batch of M datapoints by
    minibatch-weighted sampling (Sec. 3): with :math:`z_i` the draw for datapoint i,

    .. math:: \log q(z_i) \approx \log \textstyle\sum_{k=1}^M q(z_i \mid x_k) - \log(NM),
        \qquad \log q(z_{ij}) \approx \log \textstyle\sum_{k=1}^M q(z_{ij} \mid x_k) - \log(NM),

    so :math:`\widehat{TC}_i = \log q(z_i) - \sum_j \log q(z_{ij})`. N enters only as the constant
    (d − 1) log(NM) per datapoint: it moves the loss's value, not its gradient. The weights 1/(NM)
    sum to 1/N over the batch, not to 1, so each estimated log-density sits about log N below the
    aggregate posterior's and :math:`\widehat{TC}` about (d − 1) log N above the TC: the value of the
    loss is not the ELBO plus a small TC, its gradient is the paper's.

    **Beta.** pvae's beta handler (:class:`pvae.engine.objectives.BetaScale`) puts the scale β on the
    latent site ``"z"`` of model and guide; this estimator reads it from the guide's traced site,
    evaluates log p(z) and log q(z|x) *unscaled* (the ELBO), and uses β as the TC's weight only:
    ``--beta 6 --elbo tcvae`` is beta-TCVAE with β = 6. Under ``--beta-schedule`` the schedule
    moves the TC's weight.

    Requirements: the guide's q(z|x) is a diagonal Normal, ``Normal(loc, scale).to_event(1)``,
    batched over the plate ``"data"`` at ``dim=-1`` (the cross densities q(z_i | x_k) need its
    location and scale); ``"z"`` is the pair's only latent site. Others are refused with a
    ``ValueError``.

    Reference: Chen, Li, Grosse & Duvenaud, *Isolating Sources of Disentanglement in Variational
    Autoencoders*, NeurIPS 2018.

    :param num_particles: samples of z per datapoint; each particle's TC is estimated on its own
        batch of draws.
    :param max_plate_nesting: bound on nested plates (the batch plate: 1).
    :param vectorize_particles: draw the particles in one vectorized pass.
    :param strict_enumeration_warning: unused (no enumeration); kept for Pyro's signature.
    :param dataset_size: N, the number of training datapoints q(z) averages over. ``None`` is
        accepted only while beta is the constant 1 (the TC's weight β − 1 is then 0, the loss is the
        ELBO and N is never read); any other beta refuses it. ``pvae.engine.train.fit`` passes the size of
        the training split.
    :raises ValueError: for ``dataset_size`` < 1.
    """

    def __init__(
        self,
        num_particles: int = 1,
        max_plate_nesting: float = float("inf"),
        vectorize_particles: bool = False,
        strict_enumeration_warning: bool = True,
        dataset_size: int | None = None,
    ):
        if dataset_size is not None and dataset_size < 1:
            raise ValueError(
                f"tcvae's dataset_size is the number of training datapoints, at least 1, not {dataset_size}"
            )
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=vectorize_particles,
            strict_enumeration_warning=strict_enumeration_warning,
        )
        self.dataset_size = dataset_size

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The negative beta-TCVAE objective, summed over the batch and averaged over particles;
        differentiable through the reparameterized draws of z."""
        loss = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            loss = loss + self._differentiable_loss_particle(model_trace, guide_trace) / self.num_particles
        warn_if_nan(loss, "loss")
        return loss

    def check_pair(self, model, guide, *args, **kwargs) -> None:
        """Refuse, before any training, a guide this estimator cannot score (see
        :func:`check_guide_trace`): one trace of the guide on ``args``, with the RNG state restored.

        :param model: the generative model (unused: the guide's trace decides).
        :param guide: the guide.
        :param args: a batch, as the loss takes it.
        :raises ValueError: naming the fix.
        """
        state = pyro.util.get_rng_state()
        try:
            with torch.no_grad():
                check_guide_trace(poutine.trace(guide).get_trace(*args, **kwargs))
        finally:
            pyro.util.set_rng_state(state)

    def _differentiable_loss_particle(self, model_trace, guide_trace) -> torch.Tensor:
        """−ELBO + (β − 1)·TĈ of one particle (or one vectorized batch of particles)."""
        elbo = 0.0
        for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
            for name, site in trace.nodes.items():
                if site["type"] != "sample":
                    continue
                if name == Z:  # the ELBO's own KL term: without beta's scale
                    elbo = elbo + sign * scale_and_mask(site["unscaled_log_prob"], mask=site["mask"]).sum()
                else:
                    elbo = elbo + sign * site["log_prob_sum"]
        weight = _tc_weight(model_trace, guide_trace)
        if isinstance(weight, float) and weight == 0.0:  # beta = 1 without a handler: the ELBO
            return -elbo
        if self.dataset_size is None:
            raise ValueError(
                "tcvae estimates log q(z) over the training set and needs its size N when beta is not 1: "
                "build it with make_elbo('tcvae', dataset_size=len(dataset.train)) (fit does)"
            )
        site = guide_trace.nodes[Z]
        return -elbo + weight * total_correlation(site["fn"], site["value"], self.dataset_size).sum()


def _tc_weight(model_trace, guide_trace) -> float | torch.Tensor:
    """β − 1 from the scale on ``"z"``, after checking the pair is one TC-VAE can score."""
    check_guide_trace(guide_trace)
    site, prior = guide_trace.nodes[Z], model_trace.nodes[Z]
    scale = site["scale"]
    if torch.is_tensor(scale) or torch.is_tensor(prior["scale"]):
        return scale - 1.0
    if scale != prior["scale"]:
        raise ValueError(
            f"the scale on {Z!r} is {scale} in the guide but {prior['scale']} in the model: tcvae reads beta "
            "from it, so scale both alike (pvae.engine.objectives.BetaScale does)"
        )
    return float(scale) - 1.0


def check_guide_trace(guide_trace) -> None:
    """Refuse a guide whose trace TC-VAE cannot score: a latent site besides ``"z"``, a q(z|x) other
    than a diagonal Normal, or z outside the batch plate at ``dim=-1``.

    :param guide_trace: a trace of the guide on a batch.
    :raises ValueError: naming the fix.
    """
    latent = [
        n
        for n, s in guide_trace.nodes.items()
        if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s) and n != Z
    ]
    if Z not in guide_trace.nodes or latent:
        raise ValueError(
            f"tcvae splits the KL of the one latent site {Z!r}, but the guide samples {latent or 'no ' + repr(Z)}: "
            "use --elbo trace (the beta-VAE) for this pair"
        )
    site = guide_trace.nodes[Z]
    fn = site["fn"]
    if not (isinstance(fn, Independent) and isinstance(fn.base_dist, Normal) and fn.reinterpreted_batch_ndims == 1):
        raise ValueError(
            f"tcvae needs the guide's q(z|x) as a diagonal Normal, Normal(loc, scale).to_event(1), but it is "
            f"{type(fn).__name__}: use the diagonal Gaussian guide (--guide gaussian), or --elbo trace"
        )
    frames = {f.name: f.dim for f in site["cond_indep_stack"]}
    if frames.get(DATA) != -1:
        raise ValueError(
            f"tcvae compares each draw of z with every datapoint's q(z|x), so z must sit in the batch plate "
            f"{DATA!r} at dim=-1; the guide's plates are {frames}: sample z inside pyro.plate({DATA!r}, dim=-1)"
        )


def total_correlation(q: Independent, z: torch.Tensor, dataset_size: int) -> torch.Tensor:
    r"""The minibatch-weighted-sampling estimate of the total correlation at each draw,
    :math:`\log q(z_i) - \sum_j \log q(z_{ij})` (see :class:`TCVAE_ELBO`).

    :param q: the guide's diagonal Normal over a batch of M datapoints, batch shape ``(..., M)``,
        event shape ``(d,)``.
    :param z: draws from it, ``(..., M, d)``; ``z[..., i, :]`` is datapoint i's.
    :param dataset_size: N, the datapoints the aggregate posterior q(z) averages over.
    :returns: ``(..., M)``, one estimate per draw.
    """
    log_qz, log_qzj = mws_log_densities(q, z, dataset_size)
    return log_qz - log_qzj.sum(-1)


def mws_log_densities(q: Independent, z: torch.Tensor, dataset_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Minibatch-weighted-sampling estimates of the aggregate posterior's log-density at each draw,
    :math:`\log q(z_i) \approx \log \sum_k q(z_i \mid x_k) - \log(NM)`, and of its marginals',
    :math:`\log q(z_{ij}) \approx \log \sum_k q(z_{ij} \mid x_k) - \log(NM)` (Chen et al., 2018, Sec. 3).

    :param q: the guide's diagonal Normal over a batch of M datapoints, batch shape ``(..., M)``,
        event shape ``(d,)``.
    :param z: draws, ``(..., M, d)``.
    :param dataset_size: N.
    :returns: ``log_qz`` ``(..., M)`` and ``log_qzj`` ``(..., M, d)``.
    """
    log_nm = math.log(dataset_size * z.shape[-2])
    base = q.base_dist
    # log q(z_ij | x_k): draw i against datapoint k's q, dimension by dimension; (..., M_i, M_k, d)
    cross = Normal(base.loc.unsqueeze(-3), base.scale.unsqueeze(-3)).log_prob(z.unsqueeze(-2))
    log_qz = torch.logsumexp(cross.sum(-1), dim=-1) - log_nm
    log_qzj = torch.logsumexp(cross, dim=-2) - log_nm
    return log_qz, log_qzj
