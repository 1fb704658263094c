"""Frozen configurations, one per concern, and how a run's model and guide are built from them."""

import inspect
from dataclasses import asdict, dataclass, field, fields

import torch

from pvae import options
from pvae.data import DataConfig
from pvae.train import TrainConfig


@dataclass(frozen=True)
class PairConfig:
    """Which model and guide, and their sizes.

    :param model: a name from ``pvae.models.MODELS`` or ``"module:ClassName"``.
    :param guide: a name from ``pvae.guides.GUIDES`` or ``"module:ClassName"``.
    :param z_dim: latent dimension.
    :param hidden: hidden widths of the decoder and the encoder.
    :param likelihood: a name from :data:`pvae.likelihoods.LIKELIHOODS`.
    :param net: network family of encoder and decoder, a name from :data:`pvae.nets.NETS`.
    :param flows: transforms in a flow guide (``pvae.guides.iaf``).
    :param aux_weight: weight of the semi-supervised guide's classification loss (``pvae.guides.m2``).
    """

    model: str = "vae"
    guide: str = "gaussian"
    z_dim: int = 20
    hidden: tuple[int, ...] = (400,)
    likelihood: str = "bernoulli"
    net: str = "mlp"
    flows: int | None = None
    aux_weight: float | None = None

    def __post_init__(self):
        options.positive(self, "z_dim")
        options.positive(self, "flows", "aux_weight", zero=True)
        options.require(
            self,
            "hidden",
            self.hidden is None or all(width > 0 for width in self.hidden),
            'positive widths such as 400 or 512,256 (or "" for none)',
        )


#: Keys of ``config.json`` that runs written by earlier versions spell differently: section → old → new.
RENAMED = {"data": {"name": "data", "seed": "data_seed"}, "train": {"num_particles": "particles"}}


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
        """The inverse of :meth:`to_dict`; unknown keys are refused, the names of older runs'
        keys (:data:`RENAMED`) are read as today's."""
        parts = {}
        for f in fields(cls):
            sub = dict(d.get(f.name, {}))
            for old, new in RENAMED.get(f.name, {}).items():
                if old in sub and new not in sub:
                    sub[new] = sub.pop(old)
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


#: Options :func:`build_pair` offers each constructor; a class takes those its signature names.
MODEL_OPTIONS = ("z_dim", "hidden", "likelihood", "net")
GUIDE_OPTIONS = ("z_dim", "hidden", "net", "flows", "aux_weight")


def build_pair(
    config: PairConfig, x_shape: tuple[int, ...], num_classes: int = 10
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Instantiate the model and guide ``config`` names for data of shape ``x_shape``.

    Each constructor gets ``x_shape``, then the options of :data:`MODEL_OPTIONS` or
    :data:`GUIDE_OPTIONS` its signature accepts (``None`` means "the class's default"), and
    ``num_classes`` if it asks for it.

    :raises ValueError: when an option was set that the class does not take (e.g. ``--flows``
        for a guide without flows).
    """
    from pvae.guides import get_guide
    from pvae.models import get_model

    model = _construct(get_model(config.model), config, MODEL_OPTIONS, x_shape, num_classes, "model")
    guide = _construct(get_guide(config.guide), config, GUIDE_OPTIONS, x_shape, num_classes, "guide")
    return model, guide


def _construct(cls: type, config: PairConfig, names: tuple[str, ...], x_shape, num_classes: int, what: str):
    parameters = inspect.signature(cls).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    defaults = PairConfig()
    kwargs = {}
    for name in names:
        value = getattr(config, name)
        if name in parameters or takes_all:
            if value is not None:
                kwargs[name] = value
        elif value != getattr(defaults, name):
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"the {what} {cls.__name__} takes no {name!r} option: drop {flag}")
    if "num_classes" in parameters:
        kwargs["num_classes"] = num_classes
    return cls(x_shape, **kwargs)
