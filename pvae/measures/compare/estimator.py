"""One estimator setting of a comparison: a registry name, K and the Rényi order, as a Pyro ELBO."""

from collections.abc import Sequence
from dataclasses import dataclass

from pyro.infer import ELBO

from pvae.engine.estimators import make_elbo


@dataclass(frozen=True)
class Estimator:
    """One estimator setting: a registry name, K, and alpha for the Rényi bound.

    :param name: a key of :data:`pvae.engine.estimators.ESTIMATORS`.
    :param particles: K, samples of z per datapoint.
    :param alpha: order of the Rényi bound (``renyi`` only).
    :param vectorize: draw the K particles in one vectorized pass.
    :param jit: compile the loss with ``torch.jit.trace`` (timed by :func:`pvae.measures.compare.measure.step_cost`;
        the other measurements are those of the eager estimator, which the trace replays).
    :param dataset_size: N, the training split's size, for estimators that read it (``tcvae``'s
        aggregate posterior); the others ignore it.
    """

    name: str
    particles: int = 1
    alpha: float | None = None
    vectorize: bool = True
    jit: bool = False
    dataset_size: int | None = None

    @property
    def setting(self) -> str:
        """The estimator without K: ``"iwae"``, ``"renyi α=0.5"``, ``"trace --jit"`` (one row
        of a table, one line of a figure)."""
        alpha = f" α={self.alpha:g}" if self.alpha is not None else ""
        return f"{self.name}{alpha}{' --jit' if self.jit else ''}"

    @property
    def label(self) -> str:
        """``"iwae K=5"``, ``"renyi α=0.5 K=5"``, ``"trace --jit K=5"``."""
        return f"{self.setting} K={self.particles}"

    def elbo(self) -> ELBO:
        """The Pyro estimator."""
        return make_elbo(
            self.name, self.particles, self.vectorize and self.particles > 1, self.alpha, self.dataset_size
        )

    def as_dict(self) -> dict:
        """JSON-ready fields, the setting and the label."""
        return {
            "estimator": self.name,
            "particles": self.particles,
            "alpha": self.alpha,
            "jit": self.jit,
            "setting": self.setting,
            "label": self.label,
        }


def estimator_grid(
    names: Sequence[str], particles: Sequence[int], alpha: float = 0.5, dataset_size: int | None = None
) -> list[Estimator]:
    """Every estimator at every K; ``renyi`` gets ``alpha``, the others none.

    :param dataset_size: the training split's size, for the estimators that read it (``tcvae``).
    """
    return [
        Estimator(n, k, alpha if n == "renyi" else None, dataset_size=dataset_size) for n in names for k in particles
    ]
