"""A VAE written by hand in plain PyTorch: the yardstick pvae's speed and quality are measured against.

The same networks as ``pvae.models.vae.VAE`` with ``pvae.guides.gaussian.GaussianGuide`` (MLP encoder to
mean and log-scale, MLP decoder to Bernoulli logits; or copies of a pair's convolutional networks), the
reparameterized sample, and the negative ELBO with the analytic KL of two Gaussians — no Pyro anywhere.
"""

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from pvae.engine.nets import MLP, MLPEncoder


class ReferenceVAE(nn.Module):
    """Encoder and decoder of a VAE; ``forward(x)`` is the negative ELBO summed over the batch.

    :param x_dim: pixels per datapoint.
    :param z_dim: latent dimension.
    :param hidden: hidden widths of both networks.
    """

    def __init__(self, x_dim: int, z_dim: int = 20, hidden: tuple[int, ...] = (400,)):
        super().__init__()
        self.encoder = MLP(x_dim, hidden, 2 * z_dim)
        self.decoder = MLP(z_dim, hidden, x_dim)
        self.flat_input = True  # the encoder reads (batch, x_dim); a convolutional one reads images

    @classmethod
    def like(cls, model: nn.Module, guide: nn.Module) -> "ReferenceVAE":
        """A reference with the same sizes and the same initial weights as a pvae pair: its MLPs
        rebuilt by hand, or, for the convolutional families, copies of the pair's two networks."""
        if not isinstance(guide.encoder, MLPEncoder):
            ref = cls(1, model.z_dim, ())
            ref.encoder, ref.decoder = copy.deepcopy(guide.encoder), copy.deepcopy(model.decoder)
            ref.flat_input = False
            return ref
        hidden = tuple(layer.out_features for layer in model.decoder if isinstance(layer, nn.Linear))[:-1]
        ref = cls(guide.encoder.net[0].in_features, model.z_dim, hidden)
        ref.encoder.load_state_dict(guide.encoder.net.state_dict())
        ref.decoder.load_state_dict(model.decoder.state_dict())
        return ref

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        images, x = x, x.reshape(x.shape[0], -1)  # (batch, x_dim)
        loc, log_scale = self.encoder(x if self.flat_input else images).chunk(2, dim=-1)  # (batch, z_dim) each
        z = loc + log_scale.exp() * torch.randn_like(loc)
        nll = F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="sum")
        kl = 0.5 * (loc.pow(2) + (2 * log_scale).exp() - 2 * log_scale - 1).sum()
        return nll + kl

    @torch.no_grad()
    def bounds(self, x: torch.Tensor, num_samples: int, chunk: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-datapoint ELBO and importance-sampled log p(x) with K = ``num_samples``, by hand.

        log w = log p(x|z) + log N(z; 0, I) − log N(z; mu, sigma²), z ~ q(z|x); the ELBO is the
        mean of log w over the K draws, log p(x) ≈ logsumexp(log w) − log K.

        :returns: ``(elbo, log_px)``, each ``(batch,)``.
        """
        images, x = x, x.reshape(x.shape[0], -1)  # (batch, x_dim)
        loc, log_scale = self.encoder(x if self.flat_input else images).chunk(2, dim=-1)  # (batch, z_dim)
        log_w = []
        for start in range(0, num_samples, chunk):
            eps = torch.randn(min(chunk, num_samples - start), *loc.shape)  # (k, batch, z_dim)
            z = loc + log_scale.exp() * eps
            logits = self.decoder(z)  # (k, batch, x_dim)
            log_px_z = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
            log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)
            log_qz = -0.5 * (eps.pow(2) + math.log(2 * math.pi)).sum(-1) - log_scale.sum(-1)
            log_w.append(log_px_z + log_pz - log_qz)
        log_w = torch.cat(log_w)  # (K, batch)
        return log_w.mean(0), torch.logsumexp(log_w, 0) - math.log(num_samples)
