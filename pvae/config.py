"""Frozen configurations, one per concern, and how a run's model and guide are built from them."""

from dataclasses import asdict, dataclass, field, fields

import torch

from pvae.data import DataConfig
from pvae.train import TrainConfig


@dataclass(frozen=True)
class PairConfig:
    """Which model and guide, and their sizes.

    :param model: a name from ``models.MODELS`` or ``"module:ClassName"``.
    :param guide: a name from ``guides.GUIDES`` or ``"module:ClassName"``.
    :param z_dim: latent dimension.
    :param hidden: hidden widths of the decoder and the encoder.
    :param likelihood: a name from :data:`pvae.likelihoods.LIKELIHOODS`.
    """

    model: str = "vae"
    guide: str = "gaussian"
    z_dim: int = 20
    hidden: tuple[int, ...] = (400,)
    likelihood: str = "bernoulli"


@dataclass(frozen=True)
class RunConfig:
    """Everything a run is made from; ``config.json`` is its :meth:`to_dict`."""

    data: DataConfig = field(default_factory=DataConfig)
    pair: PairConfig = field(default_factory=PairConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        """The inverse of :meth:`to_dict`; unknown keys are refused."""
        parts = {}
        for f in fields(cls):
            sub = dict(d.get(f.name, {}))
            kind = f.default_factory  # type: ignore[misc]
            known = {g.name for g in fields(kind)}
            unknown = set(sub) - known
            if unknown:
                raise ValueError(f"config section {f.name!r} has unknown keys {sorted(unknown)}")
            for key, value in sub.items():
                if isinstance(value, list):
                    sub[key] = tuple(value)
            parts[f.name] = kind(**sub)
        return cls(**parts)


def build_pair(config: PairConfig, x_shape: tuple[int, ...]) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Instantiate the model and guide ``config`` names for data of shape ``x_shape``."""
    from guides import get_guide
    from models import get_model

    model = get_model(config.model)(x_shape, z_dim=config.z_dim, hidden=config.hidden, likelihood=config.likelihood)
    guide = get_guide(config.guide)(x_shape, z_dim=config.z_dim, hidden=config.hidden)
    return model, guide
