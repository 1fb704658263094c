"""The base of pvae's own estimators: an ELBO given by one differentiable surrogate loss."""

import torch
from pyro.infer import ELBO


class SurrogateELBO(ELBO):
    """A Pyro ``ELBO`` whose :meth:`differentiable_loss` is the whole estimator: its value is the loss, its
    backward pass the gradient. :meth:`loss` and :meth:`loss_and_grads` follow from it, so a subclass
    writes only :meth:`differentiable_loss` (:class:`pvae.engine.dreg.DReG_ELBO`,
    :class:`pvae.engine.tcvae.TCVAE_ELBO`).

    Put it first among the bases, before the Pyro estimator whose traces a subclass reuses
    (``class TCVAE_ELBO(SurrogateELBO, Trace_ELBO)``), so that these two methods are the ones called.
    """

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The loss, summed over the batch, whose backward pass gives the estimator's gradient.

        :param model: the model.
        :param guide: the guide.
        """
        raise NotImplementedError

    def loss(self, model, guide, *args, **kwargs) -> float:
        """:meth:`differentiable_loss` as a float, computed without gradients.

        :param model: the model.
        :param guide: the guide.
        """
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """Backward on :meth:`differentiable_loss`; returns the loss as a float.

        :param model: the model.
        :param guide: the guide.
        """
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward(retain_graph=self.retain_graph)
        return float(loss.detach())  # the same number; torch warns on float() of a tensor that requires grad
