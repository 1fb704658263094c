"""The guide of the semi-supervised M2: a classifier q(y | x) and q(z | x, y) (Kingma et al., 2014)."""

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule

from pvae.base.sites import DATA, Y, Z
from pvae.engine.nets import encoder
from pvae.guides.conditional_gaussian import ConditionalGaussianGuide


class M2Guide(PyroModule):
    """q(y, z | x) = q(y | x) q(z | x, y), with q(y | x) a softmax classifier.

    Where the label is unknown, ``"y"`` is drawn from the classifier and marked for parallel
    enumeration, so ``TraceEnum_ELBO`` computes the unlabelled bound exactly over y,

        U(x) = Σ_y q(y|x) [log p(x|y,z) + log p(y) + log p(z) − log q(z|x,y)] + H[q(y|x)]  (z ~ q(z|x,y)),

    and where it is known the classifier would get no signal from the ELBO at all; hence Kingma et
    al.'s auxiliary term, ``aux_weight · Σ −log q(y|x)`` over labelled datapoints
    (:meth:`auxiliary_loss`, which :class:`pvae.engine.objectives.Loss` adds).

    :param x_shape: shape of one datapoint.
    :param z_dim: latent dimension.
    :param hidden: hidden widths of the classifier and of the encoder of z.
    :param net: encoder family, a name from :data:`pvae.engine.nets.NETS`.
    :param num_classes: number of labels.
    :param aux_weight: weight of the classification loss, per labelled datapoint (the ELBO is
        summed over a batch as well). Kingma et al. set it to 0.1·N; it should be comparable
        to the per-datapoint ELBO's size.
    """

    def __init__(
        self,
        x_shape: Sequence[int],
        z_dim: int = 20,
        hidden: Sequence[int] = (400,),
        net: str = "mlp",
        num_classes: int = 10,
        aux_weight: float = 50.0,
    ):
        super().__init__()
        if aux_weight < 0:
            raise ValueError(f"aux_weight must be non-negative, got {aux_weight}")
        self.x_shape = tuple(x_shape)
        self.z_dim = z_dim
        self.num_classes = num_classes
        self.aux_weight = aux_weight
        self.classifier = encoder(net, self.x_shape, hidden, num_classes)
        self.z_guide = ConditionalGaussianGuide(x_shape, z_dim, hidden, net, num_classes)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of q(y | x), ``(batch, num_classes)``."""
        return self.classifier(x)

    def auxiliary_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``aux_weight`` times the classifier's cross-entropy, summed over the labelled batch."""
        return self.aux_weight * F.cross_entropy(self.classify(x), y, reduction="sum")

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Sample ``"z"`` given ``y``; without labels, first ``"y"`` from q(y|x), marked for enumeration."""
        with pyro.plate(DATA, x.shape[0]):
            if y is None:
                y = pyro.sample(Y, dist.Categorical(logits=self.classify(x)), infer={"enumerate": "parallel"})
            loc, scale = self.z_guide.encode(x, y)
            return pyro.sample(Z, dist.Normal(loc, scale).to_event(1))
