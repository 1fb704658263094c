"""Frozen configurations, one per concern, and how a run's model and guide are built from them."""

import inspect
import json
import os
import re
import typing
from dataclasses import asdict, dataclass, field, fields, replace

import torch

from pvae import data
from pvae.base import options
from pvae.base.runs import CHECKPOINT, CONFIG, CORRUPT_FIX, Run, RunError
from pvae.data import DataConfig
from pvae.engine.train import TrainConfig


@options.config
class PairConfig:
    """Which model and guide, and their sizes.

    Options left at ``None`` take the model's default (its ``defaults``, see :mod:`pvae.engine.pair`), else the
    default of the class that takes the option (the model's constructor first, then the guide's);
    :func:`resolve` fills them in, and ``config.json`` records the resolved values.

    :param model: a name from ``pvae.models.MODELS`` (vae, cvae, m2, two-layer, linear), the preset ae
        (the plain autoencoder), or your own class as ``module:ClassName`` or ``path/file.py:ClassName``.
    :param guide: a name from ``pvae.guides.GUIDES`` (gaussian, fullrank, iaf, delta, conditional-gaussian,
        m2, two-layer) or ``module:ClassName`` / ``path/file.py:ClassName`` (unset: the model's
        ``default_guide``).
    :param z_dim: latent dimension, of model and guide alike.
    :param hidden: hidden widths of the decoder and the encoder.
    :param likelihood: a name from :data:`pvae.engine.likelihoods.LIKELIHOODS` (bernoulli, continuous-bernoulli,
        gaussian, gaussian-per-pixel, poisson, negative-binomial, zinb, binomial). Unset: the model's, or
        for your own data the one its kind calls for where the model's cannot hold it.
    :param net: network family of encoder and decoder, a name from :data:`pvae.engine.nets.NETS`: mlp, conv
        (3×3 strided convolutions) or burgess (the 4×4 convolutions of Burgess et al. 2018 for 64×64
        images such as dSprites, with --hidden 256 for its dense layer).
    :param flows: transforms in a flow guide (``pvae.guides.iaf``).
    :param aux_weight: weight of the semi-supervised guide's classification loss (``pvae.guides.m2``).
    :param library: ``observed`` conditions counts on each row's total, the library size, as scVI does (the
        decoder gives proportions; poisson, negative-binomial and zinb); ``none`` (or unset) does not.
    """

    model: str = "vae"
    guide: str | None = None
    z_dim: int | None = None
    hidden: tuple[int, ...] | None = None
    likelihood: str | None = None
    net: str | None = None
    flows: int | None = None
    aux_weight: float | None = None
    library: str | None = field(default=None, metadata=options.choices(("none", "observed")))

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
#: Values of ``config.json`` that runs written by earlier versions hold in another type than today's, read as
#: today's: ``section.key`` → (that type, its conversion) (``train.jit``: true or false, now on or off).
EARLIER_TYPES = {"train.jit": (bool, lambda compiled: "on" if compiled else "off")}


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
        keys (:data:`RENAMED`) are read as today's.

        :raises ValueError: for a section that is not an object, an unknown key, or a value of another type
            than its field's (naming the field, the value and the type: ``pair.z_dim is "two", not an integer``),
            before the configuration's own checks.
        """
        parts = {}
        for f in fields(cls):
            sub = d.get(f.name, {})
            if not isinstance(sub, dict):
                raise ValueError(f"config section {f.name!r} is {_json(sub)}, not an object of settings")
            sub = dict(sub)
            for old, new in RENAMED.get(f.name, {}).items():
                if old in sub and new not in sub:
                    sub[new] = sub.pop(old)
            kind = f.default_factory  # type: ignore[misc]
            known = {g.name for g in fields(kind)}
            unknown = set(sub) - known
            if unknown:
                raise ValueError(f"config section {f.name!r} has unknown keys {sorted(unknown)}")
            hints = typing.get_type_hints(kind)
            for key, value in sub.items():
                sub[key] = _typed(f"{f.name}.{key}", value, hints[key])
            parts[f.name] = kind(**sub)
        return cls(**parts)


def _json(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _typed(name: str, value, hint):
    """``value`` of the field ``name`` (``section.key``) as its type ``hint`` takes it (a list as a tuple, a
    whole number as an int), refused unless it is of that type.

    :raises ValueError: ``pair.z_dim is "two", not an integer``.
    """
    if name in EARLIER_TYPES and _fits(value, EARLIER_TYPES[name][0]):
        return EARLIER_TYPES[name][1](value)
    kinds = [k for k in typing.get_args(hint) if k is not type(None)] if _is_optional(hint) else [hint]
    if value is None and len(kinds) < len(typing.get_args(hint) or [hint]):
        return None
    for kind in kinds:
        if typing.get_origin(kind) is tuple:
            item = typing.get_args(kind)[0]
            if isinstance(value, list | tuple) and all(_fits(v, item) for v in value):
                return tuple(int(v) if item is int else v for v in value)
        elif _fits(value, kind):
            return int(value) if kind is int else value
    words = " or ".join(_words(k) for k in kinds) + (" (or null)" if _is_optional(hint) else "")
    raise ValueError(f"{name} is {_json(value)}, not {words}")


def _is_optional(hint) -> bool:
    return type(None) in typing.get_args(hint) and typing.get_origin(hint) is not tuple


def _fits(value, kind) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is int:
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if kind is float:
        return isinstance(value, int | float)
    if kind is str:
        return isinstance(value, str)
    return True  # a type this reader does not know: the configuration's own checks decide


def _words(kind) -> str:
    if typing.get_origin(kind) is tuple:
        return "a list of " + options.LIST_WORDS.get(typing.get_args(kind)[0], "values")
    return options.KIND_WORDS.get(kind, getattr(kind, "__name__", str(kind)))


#: Options :func:`build_pair` offers each constructor; a class takes those its signature names.
MODEL_OPTIONS = ("z_dim", "hidden", "likelihood", "net", "library")
GUIDE_OPTIONS = ("z_dim", "hidden", "net", "flows", "aux_weight")


def resolve(config: PairConfig) -> PairConfig:
    """``config`` with its guide and every option left at ``None`` filled in: the model's
    ``default_guide`` and ``defaults`` (:func:`pvae.engine.pair.model_defaults`), else the default of the
    model's constructor, else the guide's. An option no class of the pair takes stays ``None``.

    :raises ValueError: for an unknown model or guide, a misspelt declaration of the model, or an
        option set that neither class takes (e.g. ``--flows`` for a guide without flows).
    """
    from pvae.engine.pair import model_defaults
    from pvae.guides import get_guide
    from pvae.models import get_model

    model_cls = get_model(config.model)
    default_guide, _, defaults = model_defaults(model_cls)
    guide = config.guide if config.guide is not None else default_guide
    guide_cls = get_guide(guide)
    takes = {"model": _keywords(model_cls), "guide": _keywords(guide_cls)}
    values = {}
    for name in dict.fromkeys(MODEL_OPTIONS + GUIDE_OPTIONS):
        value = getattr(config, name)
        takers = [what for what, options in (("model", MODEL_OPTIONS), ("guide", GUIDE_OPTIONS)) if name in options]
        taken = [what for what in takers if takes[what] is None or name in takes[what]]
        if value is None:
            value = defaults.get(name)
        elif not taken:
            owner = model_cls if takers == ["model"] else guide_cls
            raise ValueError(f"the {takers[-1]} {owner.__name__} takes no {name!r} option: drop {options.flag(name)}")
        for what in taken:
            if value is None:
                value = (takes[what] or {}).get(name)
        values[name] = tuple(value) if isinstance(value, list) else value
    if values.get("library") == "none":  # unset means none: runs written before the option resolve as they did
        values["library"] = None
    return replace(config, guide=guide, **values)


def _keywords(cls: type) -> dict | None:
    """Keyword → default of a constructor (``inspect.Parameter.empty`` where it has none);
    ``None`` for one that takes ``**kwargs``."""
    parameters = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    return {
        name: (None if p.default is inspect.Parameter.empty else p.default)
        for name, p in parameters.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }


def build_pair(
    config: PairConfig,
    x_shape: tuple[int, ...],
    num_classes: int = 10,
    check: bool = True,
    dataset: "data.Dataset | None" = None,
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Instantiate the model and guide ``config`` names for data of shape ``x_shape``, and check that
    they fit each other (:func:`pvae.engine.pair.check_pair`).

    Each constructor gets ``x_shape``, then the options of :data:`MODEL_OPTIONS` or
    :data:`GUIDE_OPTIONS` its signature accepts, as :func:`resolve` resolves them (``None``: the
    class's default), and ``num_classes`` if it asks for it.

    :param check: trace the pair once to check that it fits (off only where tensors have no storage,
        as on the ``meta`` device, where :mod:`pvae.measures.memory` builds a pair to count its sizes).
    :param dataset: the data the pair is for: its likelihood learns what it needs of them
        (:func:`fit_to_data`).
    :raises ValueError: for an option set that the class does not take, or a model and guide that
        do not fit each other (``z_dim``, their latent sites).
    """
    from pvae.engine.pair import check_pair
    from pvae.guides import get_guide
    from pvae.models import get_model

    config = resolve(config)
    model = _construct(get_model(config.model), config, MODEL_OPTIONS, x_shape, num_classes)
    guide = _construct(get_guide(config.guide), config, GUIDE_OPTIONS, x_shape, num_classes)
    if dataset is not None:
        fit_to_data(model, dataset, guide)
    if check:
        check_pair(model, guide)
    return model, guide


def fit_to_data(model: torch.nn.Module, dataset: "data.Dataset", guide: torch.nn.Module | None = None) -> None:
    """Tell the pair what it needs of the data: the likelihood, the log sd of standardized features (so
    that log p(x) is in nats of the data as given), a binomial's number of trials (the largest count of the
    training split) and the training rows' mean total (for an observed library size); for counts, pvae's
    encoders read them on a log1p scale and the decoder starts at the training mean (its output bias), so
    that counts in the thousands train from the first step. What does not ask is left alone.

    :raises ValueError: for standardized data under a likelihood that cannot add their Jacobian.
    """
    from pvae.engine.nets import ConvEncoder, MLPEncoder

    likelihood = getattr(model, "likelihood", None)
    if dataset.log_scale is not None:
        if not hasattr(likelihood, "set_data_scale"):
            raise ValueError(
                f"these real-valued features are standardized, and {type(likelihood).__name__} cannot add the "
                "Jacobian (−Σ log sd) that keeps log p(x) in nats of the data as given: give it set_data_scale"
            )
        likelihood.set_data_scale(dataset.log_scale)
    asks = getattr(likelihood, "library_mode", False) or hasattr(likelihood, "set_trials")
    counts = dataset.model_kind == "counts"
    if not (asks or counts):
        return
    moments = data.feature_moments(dataset.train)  # one pass over the training split serves every question
    if getattr(likelihood, "library_mode", False):  # prior draws use the training rows' mean total
        likelihood.mean_library = torch.tensor(float(moments["totals"].mean()), dtype=torch.float32)
    if hasattr(likelihood, "set_trials"):
        likelihood.set_trials(max(1, int(moments["max"])))
    if not counts:
        return
    for module in [*model.modules(), *(guide.modules() if guide is not None else ())]:
        if isinstance(module, MLPEncoder | ConvEncoder):
            module.log1p_input = True
    mean, variance = moments["mean"], moments["variance"]
    starts = hasattr(likelihood, "start_at")
    bias = likelihood.start_at(mean.float(), variance.float()) if starts else None
    last = model.decoder[-1] if isinstance(getattr(model, "decoder", None), torch.nn.Sequential) else None
    if bias is not None and isinstance(last, torch.nn.Linear) and last.out_features >= len(bias):
        with torch.no_grad():
            last.bias[: len(bias)] = bias  # the first parameter block: the mean


def restore(path: str | os.PathLike, device: str | torch.device = "cpu", dataset=None):
    """Rebuild a trained run: its config, data, and model and guide with the saved parameters.

    :param path: the run directory.
    :param device: where the model and guide go; the checkpoint is read onto the CPU first, so a run
        written on any device restores on any other. The dataset stays on the host.
    :param dataset: the run's data, already loaded from its config (by the training that wrote the run): not
        read again.
    :returns: ``(run, config, dataset, model, guide)``; model and guide are in eval mode, on ``device``.
    :raises RunError: if ``path`` is not a run, its config or checkpoint cannot be read, its weights are not
        finite, or its checkpoint does not fit the pair.
    """
    run = Run.open(path)
    config = read_config(run)
    dataset = data.load(config.data) if dataset is None else dataset
    model, guide = build_pair(config.pair, dataset.x_shape, dataset.num_classes, dataset=dataset)
    state = run.load_checkpoint()
    broken = [
        f"{part}.{name}"
        for part in ("model", "guide")
        for name, tensor in state[part].items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    if broken:
        raise RunError(
            f"{run.path / CHECKPOINT} holds NaN or infinite weights ({', '.join(broken[:3])}"
            f"{', ...' if len(broken) > 3 else ''}): its training diverged; train again with a lower --lr"
        )
    for part, module in (("model", model), ("guide", guide)):
        try:
            module.load_state_dict(state[part])
        except RuntimeError as error:
            raise RunError(
                f"the checkpoint in {run.path} does not fit the pair its {CONFIG} builds "
                f"({config.pair.model}/{config.pair.guide}): in the {part}, {_mismatch(error)}; {CONFIG} was changed "
                "since the run was trained, or the checkpoint is another run's: restore the file from a copy, or train "
                "again with --overwrite"
            ) from error
    return run, config, dataset, model.to(device).eval(), guide.to(device).eval()


def read_config(run: Run) -> RunConfig:
    """The :class:`RunConfig` of ``run``'s ``config.json``.

    :raises RunError: naming the file, and what of it this pvae cannot read (an unknown key, a value of another
        type than its field's: ``pair.z_dim is "two", not an integer``, a value the configuration refuses).
    """
    try:
        return RunConfig.from_dict(run.config)
    except (AttributeError, TypeError, ValueError) as error:
        raise RunError(f"{run.path / CONFIG} is not a configuration this pvae reads ({error}): {CORRUPT_FIX}") from None


def _mismatch(error: RuntimeError) -> str:
    """What of a state dict did not fit, from ``load_state_dict``'s message (its first line says only that
    something did not): the first difference, shapes as ``(16, 4)``, and how many more there are."""
    lines = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
    if not lines:
        return str(error).strip()
    first = re.sub(r"torch\.Size\(\[(.*?)\]\)", r"(\1)", lines[0])
    first = re.sub(
        r"^size mismatch for (\S+): copying a param with shape (.+?) from checkpoint, the shape in current model is "
        r"(.+?)\.?$",
        r"\1 is \2 in the checkpoint, \3 in the pair",
        first,
    )
    more = len(lines) - 1
    first = first[:1].lower() + first[1:]  # "Unexpected key(s) in state_dict: ..." within a sentence
    return first.rstrip(". ") + (f" (and {more} more difference{'s' if more > 1 else ''})" if more else "")


def _construct(cls: type, config: PairConfig, names: tuple[str, ...], x_shape, num_classes: int):
    takes = _keywords(cls)
    kwargs = {n: getattr(config, n) for n in names if (takes is None or n in takes) and getattr(config, n) is not None}
    if takes is not None and "num_classes" in takes:
        kwargs["num_classes"] = num_classes
    return cls(x_shape, **kwargs)
