"""What a pair can train on and with: its traits checked against the data and the training settings.

:func:`check_compatible` refuses data and settings a pair cannot train on, naming the fix;
:func:`applicable_estimators` says which estimators of :data:`pvae.engine.estimators.ESTIMATORS` a pair can use.
Both read the pair's :class:`pvae.engine.pair.Traits`, never the pair itself.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from pvae.base.sites import Z
from pvae.engine.estimators import ESTIMATORS, make_elbo, untraceable_reason
from pvae.engine.likelihoods import LIKELIHOODS, check_support

if TYPE_CHECKING:  # annotations only
    from pvae.data import Dataset
    from pvae.engine.pair import Traits
    from pvae.engine.trainconfig import TrainConfig


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
    :param train: its :class:`pvae.engine.trainconfig.TrainConfig`; each estimator is checked in its place.
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


__all__ = ["applicable_estimators", "check_compatible"]
