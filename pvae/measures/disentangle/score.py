"""Score a trained pair's disentanglement against a dataset's ground-truth factors (``pvae disentangle``).

The representation is the encoder's mean E_q[z | x] by default, as in disentanglement_lib and in
Locatello et al. (2019); ``representation="sample"`` reads one draw z ~ q(z | x) per image instead.
Every metric draws its points from the whole ground-truth grid (training images included, as
disentanglement_lib does), with its own generator seeded from ``seed`` (so one metric's numbers do not
depend on which others ran), and is reported twice when the data have a ``shape`` factor: over every
factor, and without shape (Chen et al., 2018, leave it out of MIG).

With the mean representation each grid point is encoded once and its code kept: the metrics at their
defaults draw about four million points of dSprites' 737,280, so all of them together cost about one
pass of the encoder over the grid.
"""

import inspect
import math
import time
from collections.abc import Callable
from dataclasses import field

import numpy as np
import torch
from pyro import poutine

from pvae.base import options
from pvae.base.device import module_device, to_device
from pvae.base.sites import Z
from pvae.engine.pair import traits
from pvae.measures.disentangle import METRICS, MINIMUMS, factor_entropies, mutual_information_matrix
from pvae.measures.disentangle.ground_truth import GroundTruth
from pvae.measures.evaluate import posterior_mean

#: Metrics that fix a factor and draw the others: they need every combination of factors.
INTERVENING = ("beta_vae", "factor_vae")
#: The codes the metrics may read.
REPRESENTATIONS = ("mean", "sample")
#: The factor left out of the second set of scores, when the data have it.
SHAPE = "shape"
#: Each metric's option for the points it scores on (MIG fits nothing, so it has none).
_EVAL_OPTION = {
    "beta_vae": "num_eval",
    "factor_vae": "num_eval",
    "dci": "num_test",
    "sap": "num_test",
    "modularity": "num_test",
}


@options.config
class DisentangleConfig:
    """Settings of :func:`score` and of ``pvae disentangle``, whose defaults they are.

    :param metrics: the metrics computed, names from :data:`pvae.measures.disentangle.METRICS`, each once (all when
        unset).
    :param representation: the codes the metrics read: ``mean`` (E_q[z | x], disentanglement_lib's
        choice) or ``sample`` (one draw z ~ q(z | x) per image, drawn afresh each time a point is drawn).
    :param num_train: points (votes, for the beta-VAE and FactorVAE scores) each metric fits or
        estimates on (disentanglement_lib's defaults: 10,000; at least 2).
    :param num_eval: points (votes) each metric scores on (disentanglement_lib's defaults: 5,000; at least 2).
    :param metric_options: options of one metric, ``metric.option=value`` (comma-separated; each option once, of
        a metric computed), which take precedence over ``--num-train`` and ``--num-eval``, e.g.
        ``dci.n_estimators=20``: DCI's boosting grows one tree per class of every factor and stage, about 6 minutes
        on dSprites on two CPU cores at its defaults, 9 seconds with
        ``dci.num_train=2000,dci.num_test=1000,dci.n_estimators=20``.
    :param mi_points: grid points of the mutual-information matrix of the figure.
    :param batch_size: images encoded at once (128 encodes dSprites about three times as fast on a CPU
        as 1000, whose activations overflow the caches).
    :param seed: seed of the metrics' draws.
    :param out: folder of the results.
    """

    metrics: tuple[str, ...] | None = field(
        default=None, metadata=options.repeatable(**options.choices(lambda: tuple(METRICS)))
    )
    representation: str = field(default="mean", metadata=options.choices(REPRESENTATIONS))
    num_train: int | None = None
    num_eval: int | None = None
    metric_options: tuple[str, ...] = field(default=(), metadata=options.repeatable())
    mi_points: int = 10_000
    batch_size: int = 128
    seed: int = 0
    out: str | None = None

    def __post_init__(self):
        options.seed(self, "seed")
        options.positive(self, "num_train", "num_eval", "mi_points", "batch_size")
        options.require(self, "metrics", self.metrics is None or len(self.metrics) > 0, "at least one name")
        options.require(self, "mi_points", self.mi_points >= 2, "at least 2 (a mutual information over one point is 0)")
        self.parsed_options()  # refuses a name, an option or a value that does not exist, or one given twice
        self._check_sizes()

    def _check_sizes(self) -> None:
        """Refuse a size a metric computed would take below its least (:data:`pvae.measures.disentangle.MINIMUMS`),
        naming where it came from: ``--num-train``, ``--num-eval`` or ``--metric-options``."""
        parsed = self.parsed_options()
        for name in self.metrics or METRICS:
            for option, value in self.settings_of(name).items():
                least, why = MINIMUMS[name].get(option, (1, ""))
                if value >= least:
                    continue
                if option in parsed.get(name, {}):
                    raise ValueError(
                        f"--metric-options {name}.{option}={value}: {name} needs {option} ≥ {least} ({why}); give "
                        f"{name}.{option}={least} or more"
                    )
                given = "--num-train" if option == "num_train" else "--num-eval"
                raise ValueError(
                    f"{given} {value}: {name} needs {option} ≥ {least} ({why}); give {given} {least} or more"
                )

    def parsed_options(self) -> dict[str, dict[str, int | float]]:
        """``metric_options`` as metric → {option: value}.

        :raises ValueError: for a pair not of the form ``metric.option=value``, a metric or option that
            does not exist (listing those that do), a metric not among ``metrics``, an option given twice, or a
            value that is not a positive number.
        """
        parsed: dict[str, dict[str, int | float]] = {}
        given: dict[str, str] = {}
        for item in self.metric_options:
            key, sep, text = item.partition("=")
            name, dot, option = key.partition(".")
            if not (sep and dot and name and option):
                raise ValueError(f"--metric-options {item!r} is not metric.option=value, e.g. dci.n_estimators=20")
            if name not in METRICS:
                raise ValueError(f"--metric-options {item!r}: no metric {name!r}; the metrics are {', '.join(METRICS)}")
            if self.metrics is not None and name not in self.metrics:
                raise ValueError(
                    f"--metric-options {item!r}: {name} is not among --metrics ({','.join(self.metrics)}), so the "
                    f"option would do nothing; add {name} to --metrics or drop the option"
                )
            if key in given:
                raise ValueError(f"--metric-options sets {key} twice ({given[key]}, {item}): give it once")
            given[key] = item
            known = [p for p in inspect.signature(METRICS[name]).parameters.values() if p.kind == p.KEYWORD_ONLY]
            types = {p.name: type(p.default) for p in known if p.name != "factors"}
            if option not in types:
                raise ValueError(
                    f"--metric-options {item!r}: {name} has no option {option!r}; its options are {', '.join(types)}"
                )
            try:
                value = types[option](text)
            except ValueError:
                value = None
            if value is None or not math.isfinite(value) or value <= 0:
                raise ValueError(f"--metric-options {item!r}: {option} must be a positive {types[option].__name__}")
            parsed.setdefault(name, {})[option] = value
        return parsed

    def largest_draw(self) -> int:
        """The most grid points one metric (or the mutual-information matrix) draws at once, with the
        metrics' own defaults where this config leaves a size to them: what sizes the memory of the scores."""
        sizes = [self.mi_points]
        for name in self.metrics or METRICS:
            defaults = {
                p.name: p.default
                for p in inspect.signature(METRICS[name]).parameters.values()
                if p.default is not inspect.Parameter.empty
            }
            chosen = defaults | self.settings_of(name)
            sizes += [v for k, v in chosen.items() if k.startswith("num_") and isinstance(v, int)]
        return max(sizes)

    def settings_of(self, name: str) -> dict:
        """The keyword arguments of metric ``name`` that this config sets (its sizes)."""
        chosen = {}
        if self.num_train is not None:
            chosen["num_train"] = self.num_train
        if self.num_eval is not None and name in _EVAL_OPTION:
            chosen[_EVAL_OPTION[name]] = self.num_eval
        return chosen | self.parsed_options().get(name, {})


class EncodedGrid:
    """A ground truth seen through an encoder: its observations are codes ``(n, d)``, and each grid
    point is encoded once, when a metric first draws it.

    :param ground_truth: the grid and its images.
    :param encode: images ``(n, C, H, W)`` → codes ``(n, d)``; must be deterministic (the mean).
    :param batch_size: images encoded at once.
    """

    def __init__(self, ground_truth: GroundTruth, encode: Callable[[torch.Tensor], torch.Tensor], batch_size: int):
        self.ground_truth = ground_truth
        self.factor_names = tuple(ground_truth.factor_names)
        self.factor_sizes = tuple(ground_truth.factor_sizes)
        self.factor_values = tuple(ground_truth.factor_values)
        self.encode = encode
        self.batch_size = batch_size
        self.codes: torch.Tensor | None = None  # (grid points, d), filled where ``known``
        self.known = torch.zeros(math.prod(self.factor_sizes), dtype=torch.bool)

    @property
    def encoded(self) -> int:
        """How many grid points have been encoded."""
        return int(self.known.sum())

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` grid points drawn uniformly, as the ground truth draws them."""
        return self.ground_truth.sample_factors(n, rng)

    def observations(self, factors: np.ndarray) -> torch.Tensor:
        """The codes ``(n, d)`` of the grid points ``factors`` ``(n, F)``, encoding those not seen yet."""
        index = torch.from_numpy(np.ravel_multi_index(tuple(np.asarray(factors).T), self.factor_sizes))
        missing = index[~self.known[index]].unique()
        for chunk in missing.split(self.batch_size) if len(missing) else ():
            points = np.stack(np.unravel_index(chunk.numpy(), self.factor_sizes), axis=1)
            codes = self.encode(self.ground_truth.observations(points))  # (len(chunk), d)
            if self.codes is None:
                self.codes = torch.empty(len(self.known), codes.shape[1], dtype=codes.dtype)
            self.codes[chunk] = codes
            self.known[chunk] = True
        return self.codes[index]


def representation(guide, kind: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The codes of images ``(n, C, H, W)`` under ``guide``: ``(n, z_dim)``.

    :param guide: a guide that reads images alone.
    :param kind: ``mean`` (E_q[z | x]) or ``sample`` (one draw z ~ q(z | x)).
    """
    if kind == "mean":
        return lambda images: posterior_mean(guide, images)

    @torch.no_grad()
    def sample(images):
        # images come from the host grid; the codes go back there
        return poutine.trace(guide).get_trace(to_device(images, module_device(guide))).nodes[Z]["value"].cpu()

    return sample


def factor_sets(ground_truth: GroundTruth) -> dict[str, tuple[str, ...] | None]:
    """The sets of factors scored: every factor, and every factor but ``shape`` when there is one."""
    names = tuple(ground_truth.factor_names)
    sets: dict[str, tuple[str, ...] | None] = {"all factors": None}
    if SHAPE in names and len(names) > 1:
        sets["without shape"] = tuple(n for n in names if n != SHAPE)
    return sets


def score(
    model,
    guide,
    ground_truth: GroundTruth,
    config: DisentangleConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Every metric of ``config`` on the guide's codes of ``ground_truth``, with and without shape.

    :param model: the generative model (read for its traits only).
    :param guide: the guide whose codes are scored.
    :param ground_truth: the grid of factors and its images, or an :class:`EncodedGrid` of this guide's
        means kept from an earlier call (scores under several metric seeds encode the grid once).
    :param config: which metrics, which codes, how many points, which seed.
    :param progress: called with each metric's name before it runs.
    :returns: ``metrics`` (name → set of factors → the metric's dict), ``mutual_information``
        (the factors × dimensions matrix in nats, the factors' entropies, the points),
        ``seconds`` per metric and the settings.
    :raises ValueError: for a guide that needs labels, or an encoder whose codes are not finite.
    """
    config = DisentangleConfig() if config is None else config
    pair = traits(model, guide)
    if pair.takes_labels():
        raise ValueError(
            "disentangle scores codes of images alone, but this guide reads a label too; "
            "train a pair whose guide reads x only (e.g. --model vae)"
        )
    encode = representation(guide, config.representation)
    # codes are kept per grid point; a ground truth of observed rows has no grid to keep them on
    cached = config.representation == "mean" and not getattr(ground_truth, "observational", False)
    if isinstance(ground_truth, EncodedGrid):  # codes kept from an earlier call (other metric seeds)
        if not cached:
            raise ValueError("an EncodedGrid holds encoder means; score sampled codes on the ground truth itself")
        grid, ground_truth = ground_truth, ground_truth.ground_truth
    else:
        grid = EncodedGrid(ground_truth, encode, config.batch_size) if cached else ground_truth
    if cached:

        def represent(codes):
            return codes.numpy()
    else:

        def represent(images):
            return encode(images).numpy()

    names = config.metrics or tuple(METRICS)
    if config.metrics is None and getattr(ground_truth, "observational", False) and not ground_truth.complete:
        names = tuple(n for n in names if n not in INTERVENING)  # they need combinations the rows lack
    results: dict = {"metrics": {}, "seconds": {}}
    for name in names:
        if progress:
            progress(name)
        tic = time.perf_counter()
        results["metrics"][name] = {
            label: METRICS[name](
                grid, represent, np.random.default_rng(config.seed), factors=factors, **config.settings_of(name)
            )
            for label, factors in factor_sets(ground_truth).items()
        }
        results["seconds"][name] = time.perf_counter() - tic
    rng = np.random.default_rng(config.seed)
    factors = grid.sample_factors(config.mi_points, rng)
    codes = represent(grid.observations(factors))
    if not np.isfinite(codes).all():
        raise ValueError("the encoder gives codes that are not finite; the run's weights are broken: retrain it")
    results["mutual_information"] = {
        "matrix": mutual_information_matrix(codes, factors).tolist(),
        "entropies": factor_entropies(factors).tolist(),
        "points": config.mi_points,
        "bins": 20,
    }
    results.update(
        factor_names=list(ground_truth.factor_names),
        factor_sizes=list(ground_truth.factor_sizes),
        representation=config.representation,
        seed=config.seed,
        encoded_points=grid.encoded if cached else None,
    )
    return results


#: The headline number of each metric, as tables show it.
HEADLINES = {
    "beta_vae": "eval_accuracy",
    "factor_vae": "eval_accuracy",
    "mig": "discrete_mig",
    "dci": "disentanglement",
    "sap": "sap",
    "modularity": "modularity",
}


def describe(results: dict) -> str:
    """The scores as a small text table: one line per metric and score, one column per set of factors
    (``—`` where a score does not exist for a set, such as MIG's share of the factor left out)."""
    lines, labels = [], []
    for name, by_set in results["metrics"].items():
        labels = list(by_set)
        keys = dict.fromkeys(k for scores in by_set.values() for k, v in scores.items() if isinstance(v, float))
        for key in keys:
            cells = (by_set[label].get(key) for label in labels)
            lines.append(f"{name + ' ' + key:36s} " + "  ".join("      —" if v is None else f"{v:7.3f}" for v in cells))
    header = f"{'':36s} " + "  ".join(f"{label:>7s}" for label in labels)
    return "\n".join([header, *lines])
