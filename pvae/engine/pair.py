"""The contract between the engine and a model/guide pair, in one place.

A **model** is a ``PyroModule`` with the members of :class:`Model`; a **guide** one with the members
of :class:`Guide`. Everything else the engine needs to know about a pair — which sites beta scales,
how the label is used, whether the guide is a point mass ... — is a *trait*: the pair declares it as a
**class attribute (or method) of the same name**, and leaves it out to take the default. The engine
reads the traits once, with :func:`traits`, into one frozen :class:`Traits` record, and never looks
at the pair's attributes itself. Every trait, its side, its default and its meaning is declared once, in
:data:`DECLARATIONS`; :func:`trait_table` writes them as the table of the reference, with the built-in
classes that declare each.

A public attribute whose name is close to a trait's (``mean_feild``, ``latent_site``) is refused by
name, and so are the retired booleans ``conditional``/``semi_supervised``: a misspelt trait never falls
back to its default in silence. Beyond declarations, :func:`check_pair` traces model and guide once on
a tiny batch and refuses a pair whose ``z_dim``\\ s disagree, a model without the latent site ``"z"``,
and a guide whose latent sites are not the model's. What a pair can train on and with is checked in
:mod:`pvae.engine.compatibility`; names become classes in :mod:`pvae.engine.resolve`.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args, runtime_checkable

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from pvae.base.sites import Y, Z

#: How a model uses the label ``y``.
Labels = Literal["none", "observed", "semi-supervised"]

#: Options a pair is built with (:class:`pvae.engine.config.PairConfig`); a model's ``defaults`` names some of them.
OPTIONS = ("z_dim", "hidden", "likelihood", "net", "flows", "aux_weight")

#: Who declares a trait: the model, the guide, or the model's ``likelihood`` module.
Side = Literal["model", "guide", "likelihood"]


@runtime_checkable
class Model(Protocol):
    """What the engine calls on a generative model p(x | z) p(z).

    Sites ``"z"`` (latent) and ``"x"`` (observed) inside the ``"data"`` plate at ``dim=-1``; a model
    that uses labels also has ``"y"``. Optional traits: :data:`DECLARATIONS`.
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
    the label latent) inside the ``"data"`` plate. Optional traits: :data:`DECLARATIONS`.
    """

    #: Dimension of the latent site ``"z"``; must equal the model's.
    z_dim: int

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Any:
        """Sample the latent sites given ``x`` ``(batch, *x_shape)`` (and ``y`` where the model observes it)."""


@dataclass(frozen=True)
class Declaration:
    """One trait as a pair declares it.

    :param name: the attribute, or method, the pair declares.
    :param side: who declares it (:data:`Side`).
    :param default: its value where it is not declared (``None`` for a method: absent).
    :param meaning: what it says, in markdown (a cell of :func:`trait_table`).
    :param args: the arguments of a method, e.g. ``"x"``; ``None`` for a value.
    :param by_constructor: the pair sets it in ``__init__`` from a constructor argument of the same name.
    """

    name: str
    side: Side
    default: Any
    meaning: str
    args: str | None = None
    by_constructor: bool = False


#: Every trait a pair may declare, in the order :func:`trait_table` shows them.
DECLARATIONS: tuple[Declaration, ...] = (
    Declaration("latent_sites", "model", (Z,), "the latent sites beta scales, in model and guide"),
    Declaration(
        "labels",
        "model",
        "none",
        'how the label `y` is used: `"none"` (ignored), `"observed"` (every datapoint\'s label, in training and '
        'evaluation) or `"semi-supervised"` (observed where known in training, latent otherwise)',
    ),
    Declaration(
        "num_classes",
        "model",
        None,
        "number of labels the decoder reads (`None`: it reads none)",
        by_constructor=True,
    ),
    Declaration("default_guide", "model", "gaussian", "the guide `pvae train --model NAME` uses without `--guide`"),
    Declaration("default_elbo", "model", "meanfield", "the estimator it uses without `--elbo`"),
    Declaration(
        "defaults",
        "model",
        {},
        f"options used where no flag is given, among {', '.join(f'`{o}`' for o in OPTIONS)}; an option in "
        "neither takes the model's constructor default, else the guide's",
    ),
    Declaration("log_marginal", "model", None, "exact log p(x) per datapoint", args="x"),
    Declaration("label_prior", "model", None, "p(y), to draw labels for samples of a label-reading decoder", args=""),
    Declaration("point_estimate", "guide", False, "q(z|x) is a point mass: no density, no bound on log p(x)"),
    Declaration("mean_field", "guide", True, "no latent depends on another (else `--elbo meanfield` is refused)"),
    Declaration(
        "classify", "guide", None, "logits of q(y|x): accuracy is reported; a semi-supervised model needs it", args="x"
    ),
    Declaration(
        "auxiliary_loss", "guide", None, "a loss summed over a labelled batch, added to the negative ELBO", args="x, y"
    ),
    Declaration("requires_binary", "likelihood", False, "the likelihood needs pixels of exactly 0 or 1"),
    Declaration("requires_grey", "likelihood", False, "the likelihood needs grey levels"),
    Declaration(
        "support", "likelihood", ("binary", "counts", "levels", "real"), "the kinds of data the likelihood holds"
    ),
)


def _values(side: Side) -> dict[str, Any]:
    return {d.name: d.default for d in DECLARATIONS if d.side == side and d.args is None}


def _methods(side: Side) -> tuple[str, ...]:
    return tuple(d.name for d in DECLARATIONS if d.side == side and d.args is not None)


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
    :param support: the kinds of data (:data:`pvae.data.userdata.KINDS`) the likelihood holds.
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
MODEL_TRAITS: dict[str, Any] = _values("model")
#: Optional methods of a model.
MODEL_METHODS = _methods("model")
#: Declarations a guide may make, with their defaults.
GUIDE_TRAITS: dict[str, Any] = _values("guide")
#: Optional methods of a guide.
GUIDE_METHODS = _methods("guide")
#: Declarations a likelihood may make, with their defaults.
LIKELIHOOD_TRAITS: dict[str, Any] = _values("likelihood")
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
                f"{close[0]}? (rename it; see the traits in pvae.engine.pair)"
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
# Checking that a model and guide fit each other.


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
                f"the model {type(model).__name__} has no {member!r}, which every model needs: see "
                "pvae.engine.pair.Model"
            )
    if not callable(guide):
        raise ValueError(f"the guide {type(guide).__name__} is not callable: see pvae.engine.pair.Guide")
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
            f"pictures and diagnostics read {Z!r}; name the model's latent pvae.base.sites.Z"
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


# --------------------------------------------------------------------------------------------
# The table of every trait.


def _literal(value: Any) -> str:
    """A default as Python spells it, strings in double quotes (``("z",)``, ``{"hidden": ()}``)."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(map(_literal, value)) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _comparable(value: Any) -> Any:
    """A tuple of names as the set it stands for (a likelihood's ``support`` in any order), else the value."""
    return frozenset(value) if isinstance(value, (tuple, list)) else value


def _declared_by(declaration: Declaration, registry: Mapping[str, type]) -> list[str]:
    """The names of ``registry`` whose class declares ``declaration`` other than its default, with the value
    where it is more than a yes."""
    shown = []
    for name, cls in registry.items():
        if declaration.args is not None:
            if callable(getattr(cls, declaration.name, None)):
                shown.append(f"`{name}`")
        elif declaration.by_constructor:
            if declaration.name in inspect.signature(cls).parameters:
                shown.append(f"`{name}`")
        else:
            value = getattr(cls, declaration.name, declaration.default)
            if _comparable(value) != _comparable(declaration.default):
                shown.append(f"`{name}`" if isinstance(value, bool) else f"`{name}` (`{_literal(value)}`)")
    return shown


def trait_table(registries: Mapping[str, Mapping[str, type]]) -> str:
    """Every trait of :data:`DECLARATIONS` as a markdown table: its name, side, default and meaning, and the
    classes of ``registries`` that declare it (the reference's table is this one, for the built-in registries).

    :param registries: side (``"model"``, ``"guide"``, ``"likelihood"``) → a registry, name → class
        (``pvae.models.MODELS``, ``pvae.guides.GUIDES``, ``pvae.engine.likelihoods.LIKELIHOODS``); a side left out
        leaves its column cells empty.
    :returns: the table, one row a line, ending with a newline.
    """
    rows = [("trait", "on", "default", "meaning", "declared by"), ("---",) * 5]
    for d in DECLARATIONS:
        name = d.name if d.args is None else f"{d.name}({d.args})"
        default = "absent" if d.args is not None else f"`{_literal(d.default)}`"
        by = ", ".join(_declared_by(d, registries.get(d.side, {})))
        if d.by_constructor and by:
            by += " (constructor argument)"
        rows.append((f"`{name}`", d.side, default, d.meaning, by))
    return "".join("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |\n" for row in rows)


__all__ = [
    "DECLARATIONS",
    "GUIDE_METHODS",
    "GUIDE_TRAITS",
    "LIKELIHOOD_TRAITS",
    "MODEL_METHODS",
    "MODEL_TRAITS",
    "OPTIONS",
    "RETIRED",
    "Declaration",
    "Guide",
    "Labels",
    "Model",
    "Side",
    "Traits",
    "check_pair",
    "model_defaults",
    "trait_table",
    "traits",
]
