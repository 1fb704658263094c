"""The linear-Gaussian VAE: probabilistic PCA (Tipping & Bishop, 1999), with exact answers.

z ~ N(0, I_d), x | z ~ N(W z + b, sigma² I_D). Its marginal and posterior are Gaussian in
closed form, which makes it the ground truth for testing estimators and guides:

    p(x)     = N(b, W Wᵀ + sigma² I)
    p(z | x) = N(M⁻¹ Wᵀ (x − b), sigma² M⁻¹),   M = Wᵀ W + sigma² I.
"""

from collections.abc import Sequence

import pyro.distributions as dist
import torch

from pvae.models.vae import VAE


class LinearGaussian(VAE):
    """The VAE with an affine decoder and a Gaussian likelihood of one learned scale.

    :param x_shape: shape of one datapoint.
    :param z_dim: latent dimension.
    :param hidden: must be empty: the decoder is affine.
    :param likelihood: must be ``"gaussian"``.
    """

    #: The only options it takes, so ``pvae train --model linear`` needs no other flag (the guide
    #: gets ``hidden=()`` too: an affine encoder, the family of the exact posterior's mean).
    defaults = {"hidden": (), "likelihood": "gaussian"}

    def __init__(
        self, x_shape: Sequence[int], z_dim: int = 2, hidden: Sequence[int] = (), likelihood: str = "gaussian"
    ):
        if tuple(hidden) or likelihood != "gaussian":
            raise ValueError(
                "LinearGaussian has an affine decoder and a Gaussian likelihood: use hidden=() and "
                "likelihood='gaussian' (on the command line: drop --hidden and --likelihood, it brings its own)"
            )
        super().__init__(x_shape, z_dim, (), "gaussian", net="mlp")

    def _affine(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        layer = self.decoder[0]
        return layer.weight, layer.bias, self.likelihood.log_scale.exp()  # (D, d), (D,), ()

    def marginal(self) -> dist.MultivariateNormal:
        """The exact p(x) over flattened datapoints, ``(D,)``."""
        weight, bias, sigma = self._affine()
        cov = weight @ weight.T + sigma**2 * torch.eye(len(bias), dtype=bias.dtype, device=bias.device)
        return dist.MultivariateNormal(bias, covariance_matrix=cov)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) per datapoint, ``(batch,)``; for standardized data, in nats of the data as given
        (the likelihood's Jacobian −Σ log s added, as it adds it to log p(x | z))."""
        log_px = self.marginal().log_prob(x.reshape(x.shape[0], -1))
        log_scale = getattr(self.likelihood, "data_log_scale", None)
        return log_px if log_scale is None else log_px - log_scale.expand(self.x_shape).sum()

    def posterior(self, x: torch.Tensor) -> dist.MultivariateNormal:
        """The exact p(z | x), batch shape ``(batch,)``, event shape ``(z_dim,)``."""
        weight, bias, sigma = self._affine()
        m = weight.T @ weight + sigma**2 * torch.eye(self.z_dim, dtype=bias.dtype, device=bias.device)
        m_inv = torch.linalg.inv(m)
        loc = (x.reshape(x.shape[0], -1) - bias) @ weight @ m_inv.T  # (batch, d)
        return dist.MultivariateNormal(loc, covariance_matrix=(sigma**2 * m_inv).expand(x.shape[0], -1, -1))
