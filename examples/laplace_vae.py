"""A VAE with a Laplace prior and a Laplace guide: a model/guide pair in one short file."""

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from pvae.engine.likelihoods import Bernoulli
from pvae.engine.nets import decoder, encoder


class LaplaceVAE(PyroModule):
    """p(z) = Laplace(0, 1) in every dimension; x | z ~ Bernoulli(logits = MLP(z))."""

    def __init__(self, x_shape, z_dim=20, hidden=(400,)):
        super().__init__()
        self.x_shape, self.z_dim = tuple(x_shape), z_dim
        self.likelihood = Bernoulli(x_shape)
        self.decoder = decoder("mlp", z_dim, hidden, x_shape)
        self.register_buffer("loc", torch.zeros(z_dim))  # moves with .to(device)

    def prior(self, batch_shape=()):
        return dist.Laplace(self.loc, 1.0).to_event(1).expand(batch_shape)

    def decode(self, z, y=None):
        return self.likelihood(self.decoder(z))

    def forward(self, x, y=None):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior())
            pyro.sample("x", self.decode(z), obs=x)


class LaplaceGuide(PyroModule):
    """q(z | x) = Laplace(mu(x), b(x)) in every dimension."""

    def __init__(self, x_shape, z_dim=20, hidden=(400,)):
        super().__init__()
        self.encoder = encoder("mlp", x_shape, hidden, 2 * z_dim)

    def forward(self, x, y=None):
        loc, log_scale = self.encoder(x).chunk(2, dim=-1)
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("z", dist.Laplace(loc, log_scale.exp()).to_event(1))
