"""The contract between the engine and a model/guide pair, in one place.

A **model** is a ``PyroModule`` with the members of :class:`Model`; a **guide** one with the members
of :class:`Guide`. Everything else the engine needs to know about a pair — which sites beta scales,
how the label is used, whether the guide is a point mass ... — is a *trait*: the pair declares it as a
**class attribute (or method) of the same name**, and leaves it out to take the default. The engine
reads the traits once, with :func:`traits`, into one frozen :class:`Traits` record, and never looks
at the pair's attributes itself. Every trait, its default and its reader:

========================  =====  ====================  ==========================================================
trait                     side   default               meaning
========================  =====  ====================  ==========================================================
``latent_sites``          model  ``("z",)``            the latent sites beta scales (in model and guide)
``labels``                model  ``"none"``            how the label ``y`` is used: ``"none"`` (ignored),
                                                       ``"observed"`` (every datapoint's label is observed, in
                                                       training and evaluation), ``"semi-supervised"``
                                                       (observed where known in training; latent otherwise)
``num_classes``           model  ``None``              number of labels the decoder reads (``None``: it reads none)
``default_guide``         model  ``"gaussian"``        the guide ``pvae train --model NAME`` uses without ``--guide``
``default_elbo``          model  ``"meanfield"``       the estimator it uses without ``--elbo``
``defaults``              model  ``{}``                default options (``z_dim``, ``hidden``, ``likelihood``,
                                                       ``net``, ``flows``, ``aux_weight``) where a flag is not given
``log_marginal(x)``       model  absent                exact log p(x) per datapoint
``label_prior()``         model  absent                p(y), to draw labels for samples of a label-reading decoder
``point_estimate``        guide  ``False``             q(z|x) is a point mass: no density, no bound on log p(x)
``mean_field``            guide  ``True``              no latent depends on another (``meanfield`` applies)
``classify(x)``           guide  absent                logits of q(y|x): accuracy is reported; M2 needs it
``auxiliary_loss(x, y)``  guide  absent                a summed loss of a labelled batch, added to the negative ELBO
``requires_binary``       lik.   ``False``             the model's ``likelihood`` needs pixels of exactly 0 or 1
``requires_grey``         lik.   ``False``             the model's ``likelihood`` needs grey levels
``support``               lik.   every kind            the kinds of data it holds (binary, counts, levels, real)
========================  =====  ====================  ==========================================================

(``lik.``: the model's ``likelihood`` module.) A public attribute whose name is close to a trait's
(``mean_feild``, ``latent_site``) is refused by name, and so are the retired booleans
``conditional``/``semi_supervised``: a misspelt trait never falls back to its default in silence.

Beyond declarations, :func:`check_pair` traces model and guide once on a tiny batch and refuses a
pair whose ``z_dim``\\ s disagree, a model without the latent site ``"z"``, and a guide whose latent
sites are not the model's; :func:`check_compatible` refuses data and settings the pair cannot train
on, and :func:`applicable_estimators` says which estimators apply.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args, runtime_checkable

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from pvae.estimators import ESTIMATORS, make_elbo, untraceable_reason
from pvae.sites import Y, Z

if TYPE_CHECKING:  # only for annotations: pvae.train imports this module
    from pvae.data import Dataset
    from pvae.train import TrainConfig

#: How a model uses the label ``y``.
Labels = Literal["none", "observed", "semi-supervised"]

#: Options a pair is built with (:class:`pvae.config.PairConfig`); a model's ``defaults`` names some of them.
OPTIONS = ("z_dim", "hidden", "likelihood", "net", "flows", "aux_weight")


@runtime_checkable
class Model(Protocol):
    """What the engine calls on a generative model p(x | z) p(z).

    Sites ``"z"`` (latent) and ``"x"`` (observed) inside the ``"data"`` plate at ``dim=-1``; a model
    that uses labels also has ``"y"``. Optional traits: see the module's table.
    """

    #: Dimension of the latent site ``"z"``.
    z_dim: int
    #: Shape of one datapoint, e.g. ``(1, 28, 28)``.
    x_shape: tuple[int, ...]

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Any:
        """Sample the latent sites and observe ``x`` ``(batch, *x_shape)`` (and ``y`` ``(batch,)``)."""

    def prior(self, batch_shape: tuple[int, ...] = ()) -> dist.Distribution:
        """p(z) with the given batch shape; event shape ``(z_dim,)``."""

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> dist.Distribution:
        """p(x | z) (given ``y`` for a label-reading decoder); event shape ``x_shape``, ``mean`` for pictures."""


@runtime_checkable
class Guide(Protocol):
    """What the engine calls on an amortized guide q(z | x): the model's signature, and ``z_dim``.

    It samples the model's latent sites (``"z"``, and ``"y"`` where a semi-supervised model leaves
    the label latent) inside the ``"data"`` plate. Optional traits: see the module's table.
    """

    #: Dimension of the latent site ``"z"``; must equal the model's.
    z_dim: int

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Any:
        """Sample the latent sites given ``x`` ``(batch, *x_shape)`` (and ``y`` where the model observes it)."""


@dataclass(frozen=True)
class Traits:
    """A pair's traits, read once by :func:`traits`: what the engine may know about a model and guide.

    :param model: the model's class name (for messages).
    :param guide: the guide's class name; ``None`` for the traits of a model alone.
    :param z_dim: the model's latent dimension.
    :param guide_z_dim: the guide's (``None`` for a model alone, or a guide that does not say).
    :param x_shape: the shape of one datapoint the model expects (``None`` if it does not say).
    :param latent_sites: sites beta scales.
    :param labels: how the label is used (:data:`Labels`).
    :param num_classes: labels the decoder reads (``None``: none).
    :param default_guide: guide used unless another is named.
    :param default_elbo: estimator used unless another is named.
    :param defaults: the model's default options, as sorted ``(name, value)`` pairs (see :attr:`options`).
    :param exact_marginal: the model has ``log_marginal(x)``.
    :param label_prior: the model has ``label_prior()``.
    :param likelihood: class name of the model's ``likelihood`` module (``None``: it has none).
    :param requires_binary: the likelihood needs binary pixels.
    :param requires_grey: the likelihood needs grey levels.
    :param support: the kinds of data (:data:`pvae.userdata.KINDS`) the likelihood holds.
    :param point_estimate: the guide is a point mass.
    :param mean_field: no latent of the guide depends on another.
    :param classifies: the guide has ``classify(x)``.
    :param auxiliary_loss: the guide has ``auxiliary_loss(x, y)``.
    """

    model: str
    guide: str | None = None
    z_dim: int | None = None
    guide_z_dim: int | None = None
    x_shape: tuple[int, ...] | None = None
    latent_sites: tuple[str, ...] = (Z,)
    labels: Labels = "none"
    num_classes: int | None = None
    default_guide: str = "gaussian"
    default_elbo: str = "meanfield"
    defaults: tuple[tuple[str, Any], ...] = ()
    exact_marginal: bool = False
    label_prior: bool = False
    likelihood: str | None = None
    requires_binary: bool = False
    requires_grey: bool = False
    support: tuple[str, ...] = ("binary", "counts", "levels", "real")
    point_estimate: bool = False
    mean_field: bool = True
    classifies: bool = False
    auxiliary_loss: bool = False

    @property
    def options(self) -> dict[str, Any]:
        """The model's default options as a dict."""
        return dict(self.defaults)

    @property
    def decodes_labels(self) -> bool:
        """Whether the decoder reads a label (the model has ``num_classes``)."""
        return self.num_classes is not None

    def takes_labels(self, training: bool = False) -> bool:
        """Whether the pair is called with the labels: always for ``"observed"``, in training only
        for ``"semi-supervised"`` (evaluation scores x alone, the guide proposing the label)."""
        return self.labels == "observed" or (training and self.labels == "semi-supervised")


# --------------------------------------------------------------------------------------------
# Reading the declarations.

#: Declarations a model may make, with their defaults.
MODEL_TRAITS: dict[str, Any] = {
    "latent_sites": (Z,),
    "labels": "none",
    "num_classes": None,
    "default_guide": "gaussian",
    "default_elbo": "meanfield",
    "defaults": {},
}
#: Optional methods of a model.
MODEL_METHODS = ("log_marginal", "label_prior")
#: Declarations a guide may make, with their defaults.
GUIDE_TRAITS: dict[str, Any] = {"point_estimate": False, "mean_field": True}
#: Optional methods of a guide.
GUIDE_METHODS = ("classify", "auxiliary_loss")
#: Declarations a likelihood may make, with their defaults.
LIKELIHOOD_TRAITS: dict[str, Any] = {
    "requires_binary": False,
    "requires_grey": False,
    "support": ("binary", "counts", "levels", "real"),
}
#: Names pvae once read, and what to declare instead.
RETIRED = {"conditional": "labels = 'observed'", "semi_supervised": "labels = 'semi-supervised'"}

_KNOWN = (*MODEL_TRAITS, *MODEL_METHODS, *GUIDE_TRAITS, *GUIDE_METHODS, *LIKELIHOOD_TRAITS)
#: Members of the contract (and the VAE's hook ``label``, which samples the label site) that sit
#: close to a trait's name without being a misspelling of one.
_NOT_MISSPELT = {"label", "forward", "prior", "decode", "z_dim", "x_shape", "likelihood"}


def _class_names(cls: type) -> set[str]:
    """Public attributes a class defines, outside the classes of torch and Pyro."""
    return {
        name
        for klass in cls.__mro__
        if klass is not object and klass.__module__.split(".")[0] not in ("torch", "pyro", "typing", "builtins")
        for name in vars(klass)
        if not name.startswith("_")
    }


def _instance_names(obj: Any) -> set[str]:
    """Public attributes an instance sets on itself (in ``__init__``)."""
    return {name for name in vars(obj) if not name.startswith("_")}


def _refuse_near_misses(names: set[str], cls: type, what: str) -> None:
    """Refuse retired trait names and names a letter or two away from a trait's."""
    for name in sorted(names):
        if name in RETIRED:
            raise ValueError(
                f"the {what} {cls.__name__} declares {name!r}, which pvae no longer reads: "
                f"declare {RETIRED[name]} instead"
            )
        if name in _KNOWN or name in _NOT_MISSPELT:
            continue
        close = [c for c in difflib.get_close_matches(name, _KNOWN, n=1, cutoff=0.8) if abs(len(c) - len(name)) <= 2]
        if close:
            raise ValueError(
                f"the {what} {cls.__name__} has an attribute {name!r}, which pvae does not read: did you mean "
                f"{close[0]}? (rename it; see the traits in pvae.pair)"
            )


def _declared(obj: Any, table: Mapping[str, Any], what: str) -> dict[str, Any]:
    """The declarations of ``table`` ``obj`` makes, else their defaults, checked for type."""
    cls = obj if isinstance(obj, type) else type(obj)
    out = {}
    for name, default in table.items():
        value = getattr(obj, name, default)
        if callable(value) and not isinstance(value, type):
            raise ValueError(f"the {what} {cls.__name__} defines {name} as a method; declare it as a value")
        out[name] = value
    return out


@functools.cache
def _model_class_traits(cls: type) -> dict[str, Any]:
    """The class-level declarations of a model class, checked (cached: a class does not change)."""
    _refuse_near_misses(_class_names(cls), cls, "model")
    for name in (*GUIDE_TRAITS, *GUIDE_METHODS):
        if hasattr(cls, name):
            raise ValueError(f"the model {cls.__name__} declares {name!r}, a trait of a guide: move it to the guide")
    declared = _declared(cls, {k: v for k, v in MODEL_TRAITS.items() if k != "num_classes"}, "model")
    sites = declared["latent_sites"]
    if isinstance(sites, str) or not all(isinstance(s, str) for s in sites) or not sites:
        raise ValueError(f"{cls.__name__}.latent_sites must be a non-empty tuple of site names, got {sites!r}")
    declared["latent_sites"] = tuple(sites)
    if declared["labels"] not in get_args(Labels):
        raise ValueError(
            f"{cls.__name__}.labels must be one of {', '.join(map(repr, get_args(Labels)))}, got {declared['labels']!r}"
        )
    for name in ("default_guide", "default_elbo"):
        if not isinstance(declared[name], str):
            raise ValueError(f"{cls.__name__}.{name} must be a registry name (a str), got {declared[name]!r}")
    options = declared["defaults"]
    if not isinstance(options, Mapping) or set(options) - set(OPTIONS):
        raise ValueError(
            f"{cls.__name__}.defaults must map options among {', '.join(OPTIONS)} to values, got {options!r}"
        )
    declared["defaults"] = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))
    declared["exact_marginal"] = callable(getattr(cls, "log_marginal", None))
    declared["label_prior"] = callable(getattr(cls, "label_prior", None))
    return declared


@functools.cache
def _guide_class_traits(cls: type) -> dict[str, Any]:
    """The class-level declarations of a guide class, checked."""
    _refuse_near_misses(_class_names(cls), cls, "guide")
    for name in ("latent_sites", "labels", "default_guide", "default_elbo", "defaults"):
        if hasattr(cls, name):
            raise ValueError(f"the guide {cls.__name__} declares {name!r}, a trait of a model: move it to the model")
    declared = _declared(cls, GUIDE_TRAITS, "guide")
    for name, value in declared.items():
        if not isinstance(value, bool):
            raise ValueError(f"{cls.__name__}.{name} must be True or False, got {value!r}")
    declared["classifies"] = callable(getattr(cls, "classify", None))
    declared["auxiliary_loss"] = callable(getattr(cls, "auxiliary_loss", None))
    return declared


@functools.cache
def _likelihood_class_traits(cls: type) -> dict[str, Any]:
    _refuse_near_misses(_class_names(cls), cls, "likelihood")
    declared = _declared(cls, LIKELIHOOD_TRAITS, "likelihood")
    return {name: tuple(value) if name == "support" else bool(value) for name, value in declared.items()}


def model_defaults(model_cls: type) -> tuple[str, str, dict[str, Any]]:
    """What a model class brings: its default guide, its default estimator and its default options.

    :param model_cls: a model class (not an instance: options are resolved before it is built).
    :returns: ``(default_guide, default_elbo, defaults)``.
    :raises ValueError: for a misspelt or ill-typed declaration.
    """
    declared = _model_class_traits(model_cls)
    return declared["default_guide"], declared["default_elbo"], dict(declared["defaults"])


def traits(model: torch.nn.Module, guide: torch.nn.Module | None = None) -> Traits:
    """Read the traits of a model and guide into one record.

    :param model: the generative model.
    :param guide: its guide; ``None`` reads the model alone (the guide's traits keep their defaults).
    :raises ValueError: naming the attribute and the fix, for a misspelt or retired trait name, a
        trait declared on the wrong side, or a value of the wrong kind.
    """
    name = type(model).__name__
    fields: dict[str, Any] = dict(_model_class_traits(type(model)))  # a copy: the class's record is cached
    _refuse_near_misses(_instance_names(model), type(model), "model")  # set in __init__: num_classes, a typo ...
    num_classes = getattr(model, "num_classes", None)
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(f"{name}.num_classes must be a positive int or None, got {num_classes!r}")
    likelihood = getattr(model, "likelihood", None)
    if likelihood is not None:
        fields.update(_likelihood_class_traits(type(likelihood)), likelihood=type(likelihood).__name__)
    x_shape = getattr(model, "x_shape", None)
    fields.update(
        model=name,
        num_classes=num_classes,
        z_dim=getattr(model, "z_dim", None),
        x_shape=None if x_shape is None else tuple(x_shape),
    )
    if guide is not None:
        _refuse_near_misses(_instance_names(guide), type(guide), "guide")
        fields.update(
            _guide_class_traits(type(guide)), guide=type(guide).__name__, guide_z_dim=getattr(guide, "z_dim", None)
        )
    return Traits(**fields)


# --------------------------------------------------------------------------------------------
# Checks of a pair, of a pair against data and settings, and which estimators apply.


def _latent_sites(program: torch.nn.Module, args: tuple) -> list[str]:
    trace = poutine.trace(program).get_trace(*args)
    return [
        n for n, s in trace.nodes.items() if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s)
    ]


def check_pair(model: torch.nn.Module, guide: torch.nn.Module) -> Traits:
    """Refuse a model and guide that do not fit each other, before any training; return their traits.

    Model and guide are traced once on a batch of two zero datapoints (with labels, for a model
    that observes them; without, for a semi-supervised one, whose label is then latent), leaving
    every random number generator as it was.

    :raises ValueError: naming both classes and the fix, when the model lacks a member of
        :class:`Model`, the ``z_dim``\\ s disagree, the model has no latent site ``"z"``,
        ``latent_sites`` names a site the model does not sample, or the guide samples a site the
        model does not have or misses one it has.
    """
    for member in ("forward", "prior", "decode", "z_dim", "x_shape"):
        if not hasattr(model, member):
            raise ValueError(
                f"the model {type(model).__name__} has no {member!r}, which every model needs: see pvae.pair.Model"
            )
    if not callable(guide):
        raise ValueError(f"the guide {type(guide).__name__} is not callable: see pvae.pair.Guide")
    pair = traits(model, guide)
    names = f"the model {pair.model} and the guide {pair.guide}"
    if pair.guide_z_dim is not None and pair.guide_z_dim != pair.z_dim:
        raise ValueError(f"{names} disagree on z_dim ({pair.z_dim} and {pair.guide_z_dim}): build both with one z_dim")
    reference = next(iter(model.parameters()), None)
    device = reference.device if reference is not None else None
    x = torch.zeros((2, *pair.x_shape), device=device)
    args = (x, torch.zeros(2, dtype=torch.long, device=device)) if pair.labels == "observed" else (x,)
    state = pyro.util.get_rng_state()
    try:
        with torch.no_grad():
            model_sites = _latent_sites(model, args)
            guide_sites = _latent_sites(guide, args)
    finally:
        pyro.util.set_rng_state(state)
    if Z not in model_sites:
        raise ValueError(
            f"the model {pair.model} has no latent site {Z!r} (its latent sites: {model_sites}): the engine's prior, "
            f"pictures and diagnostics read {Z!r}; name the model's latent pvae.sites.Z"
        )
    unknown = [s for s in pair.latent_sites if s not in model_sites]
    if unknown:
        raise ValueError(
            f"{pair.model}.latent_sites names {unknown}, which the model does not sample (it samples {model_sites}): "
            "list its latent sites"
        )
    extra = [s for s in guide_sites if s not in model_sites]
    missing = [s for s in model_sites if s not in guide_sites]
    if extra or missing:
        problem = (
            f"the guide samples {extra}, which the model does not have"
            if extra
            else f"the guide does not propose {missing}, which the model samples"
        )
        hint = f" (with {Y!r} latent: a semi-supervised model, e.g. --model m2)" if Y in extra else ""
        raise ValueError(
            f"{names} do not fit: {problem}; use the model's guide (--guide {pair.default_guide}) or a model "
            f"that has these sites{hint}"
        )
    return pair


def check_compatible(pair: Traits, dataset: Dataset, config: TrainConfig | None = None) -> None:
    """Refuse data or settings a pair cannot train on: grey levels for a likelihood of binary
    pixels (binary pixels for one of grey levels), the wrong datapoint shape, dropped labels for a
    model that does not use them all, fewer classes than the data's, a semi-supervised model without
    a classifying guide or without the enumerating estimator, the mean-field estimator for a guide
    that is not mean-field, ``tcvae`` for a pair with latent sites other than ``"z"``, an unknown
    estimator or a bad alpha, ``--jit on`` with an estimator it cannot compile. (``tcvae``'s need for a
    diagonal Gaussian q(z|x) is checked when its loss first runs: the traits do not say the family.)

    :param pair: the pair's :class:`Traits`.
    :param dataset: the data it would train on.
    :param config: the training settings (``None``: check the data alone).
    :raises ValueError: naming the fix.
    """

    if pair.requires_binary and not dataset.is_binary and dataset.kind == "levels":
        raise ValueError(
            f"the {pair.likelihood} likelihood needs binary pixels but binarize='none' keeps "
            "grey levels; use --binarize dynamic (or static), or a likelihood for grey levels "
            "(--likelihood continuous-bernoulli, or --likelihood gaussian)"
        )
    if pair.labels != "none" and not dataset.has_labels:
        raise ValueError(
            f"{pair.model} uses labels, and these data have none: name the label column (--label-column), or use "
            "a model without labels (--model vae)"
        )
    if pair.x_shape is not None and pair.x_shape != tuple(dataset.x_shape):
        raise ValueError(f"the model expects datapoints of shape {pair.x_shape}, the data has {dataset.x_shape}")
    semi = pair.labels == "semi-supervised"
    if not semi and not dataset.train.fully_labelled:  # only the semi-supervised model takes --labels
        if pair.labels == "observed":
            raise ValueError(
                f"{pair.model} observes the label of every datapoint, but some training labels were "
                "dropped (--labels); train it on all labels, or use the semi-supervised model (--model m2)"
            )
        raise ValueError(
            f"--labels drops training labels, which only a semi-supervised model uses; {pair.model} "
            "ignores labels: drop --labels, or use --model m2"
        )
    if pair.num_classes is not None and pair.num_classes < dataset.num_classes:
        raise ValueError(f"the model has {pair.num_classes} classes, the data {dataset.num_classes}")
    if config is not None and config.elbo == "meanfield" and not pair.mean_field:
        raise ValueError(
            f"{pair.guide} makes one latent depend on another, which the mean-field estimator ignores: use --elbo trace"
        )
    if semi and pair.guide is not None and not pair.classifies:
        raise ValueError(
            f"{pair.model} leaves unknown labels to the guide, but {pair.guide} proposes none "
            "(it has no classify(x)): use --guide m2"
        )
    if pair.requires_grey and dataset.is_binary and dataset.kind in ("binary", "levels"):
        raise ValueError(
            f"the {pair.likelihood} likelihood is for grey levels: on binary pixels its density grows "
            "without bound as the decoder saturates; use --binarize none, or --likelihood bernoulli"
        )
    if pair.likelihood is not None and dataset.model_kind not in pair.support:
        raise ValueError(_support_message(pair, dataset.model_kind))
    if semi and config is not None and config.elbo != "enum":
        raise ValueError(
            f"{pair.model} sums over the unknown labels by enumeration: use --elbo enum, not {config.elbo!r}"
        )
    if config is not None and config.elbo == "tcvae" and pair.latent_sites != (Z,):
        raise ValueError(
            f"tcvae splits the KL of the one latent site {Z!r}, but {pair.model} has the latent sites "
            f"{list(pair.latent_sites)}: use --elbo trace (the beta-VAE)"
        )
    if config is not None:
        elbo = make_elbo(config.elbo, alpha=config.alpha)  # refuses an unknown name or a bad alpha
        why = untraceable_reason(elbo)
        if config.jit == "on" and why is not None:
            raise ValueError(
                f"--jit on compiles the loss with torch.jit.trace, but {why}: use --jit auto (eager where a trace "
                "cannot hold the loss) or --jit off"
            )


def _support_message(pair: Traits, kind: str) -> str:
    from pvae.likelihoods import LIKELIHOODS, check_support

    name = next((n for n, cls in LIKELIHOODS.items() if cls.__name__ == pair.likelihood), None)
    if name is None:  # a likelihood of the user's: its declared support, in words
        return f"the {pair.likelihood} likelihood holds {' or '.join(pair.support)} data, not {kind} data"
    try:
        check_support(LIKELIHOODS[name], kind, name)
    except ValueError as error:
        return str(error)
    return f"the {name} likelihood cannot hold {kind} data"


def applicable_estimators(pair: Traits, dataset: Dataset, train: TrainConfig) -> dict[str, bool | str]:
    """Which estimators a pair can train with.

    :param pair: the pair's :class:`Traits`.
    :param dataset: the data it trains on.
    :param train: its :class:`pvae.train.TrainConfig`; each estimator is checked in its place.
    :returns: estimator name → ``True``, or the reason the pair cannot use it.
    """

    if pair.point_estimate:
        return {n: "a point-mass guide has no density, so every bound is −∞" for n in ESTIMATORS}
    reasons: dict[str, bool | str] = {}
    for name in ESTIMATORS:
        try:
            check_compatible(pair, dataset, replace(train, elbo=name, jit="off", alpha=None))
            reasons[name] = True
        except ValueError as error:
            reasons[name] = str(error)
    return reasons


# --------------------------------------------------------------------------------------------
# Naming a pair.


def resolve_pair(
    model: str,
    guide: str | None = None,
    elbo: str | None = None,
    beta: float | None = None,
    beta_schedule: str = "constant",
) -> tuple[str, str, str, float]:
    """``(model, guide, elbo, beta)`` from what was given, the ``--model`` preset and the model's defaults.

    :param model: a name of ``pvae.models.MODELS``, a preset of ``pvae.models.PRESETS`` (``"ae"``),
        ``"module:ClassName"`` or ``"path/to/file.py:ClassName"``.
    :param guide: the guide's name; ``None``: the preset's, else the model's ``default_guide``.
    :param elbo: the estimator's name; ``None``: the preset's, else the model's ``default_elbo``.
    :param beta: ``None``: the preset's, else 1.
    :param beta_schedule: the name of the schedule of beta (a schedule cannot move a beta of 0).
    :returns: model and guide names (a file path made absolute, so the run restores from anywhere),
        the estimator and beta.
    :raises ValueError: for an unknown model, or a setting that contradicts the preset it was given with.
    """
    from pvae.models import MODELS, PRESETS, get_model

    if model not in MODELS and model not in PRESETS and ":" not in model:
        raise ValueError(
            f"unknown model {model!r}; choose one of {sorted(MODELS)}, the preset "
            f"{' or '.join(sorted(PRESETS))}, or give module:ClassName"
        )
    preset = PRESETS.get(model, {"model": model})
    for key, given in (("guide", guide), ("beta", beta), ("elbo", elbo)):
        if key in preset and given is not None and given != preset[key]:
            raise ValueError(
                f"--model {model} means --{key} {preset[key]}; drop --{key} {given}, or name the model itself"
            )
    default_guide, default_elbo, _ = model_defaults(get_model(preset["model"]))
    guide = guide or preset.get("guide") or default_guide
    elbo = elbo or preset.get("elbo") or default_elbo
    beta = beta if beta is not None else preset.get("beta", 1.0)
    if beta == 0 and beta_schedule != "constant":
        raise ValueError(f"--beta-schedule {beta_schedule} moves beta from 0 up to --beta, which is 0 here")
    return absolute(preset["model"]), absolute(guide), elbo, beta


def absolute(name: str) -> str:
    """``path/to/file.py:Class`` with an absolute path, so that a run can be restored from anywhere;
    any other name unchanged.

    :param name: a registry name, ``"module:ClassName"`` or ``"file.py:ClassName"``.
    """
    module, sep, attr = name.rpartition(":")
    return f"{Path(module).resolve()}{sep}{attr}" if sep and module.endswith(".py") else name


__all__ = [
    "GUIDE_METHODS",
    "GUIDE_TRAITS",
    "LIKELIHOOD_TRAITS",
    "MODEL_METHODS",
    "MODEL_TRAITS",
    "OPTIONS",
    "RETIRED",
    "Guide",
    "Labels",
    "Model",
    "Traits",
    "absolute",
    "applicable_estimators",
    "check_compatible",
    "check_pair",
    "model_defaults",
    "resolve_pair",
    "traits",
]
