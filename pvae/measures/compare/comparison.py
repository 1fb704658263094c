"""Every measurement of an estimator comparison for one trained pair, as one result
(:func:`compare_estimators`, ``pvae compare-elbos``), and its settings (:class:`CompareConfig`)."""

from dataclasses import field, replace

import pyro
import torch

from pvae import data as pdata
from pvae.base import options
from pvae.base.device import module_device, to_device
from pvae.engine.estimators import ESTIMATORS, is_traceable
from pvae.engine.pair import traits
from pvae.measures.compare.estimator import Estimator, estimator_grid
from pvae.measures.compare.measure import bound_values, check_estimators, gradient_stats, ordering, step_cost
from pvae.measures.compare.training import train_each
from pvae.measures.evaluate import EvaluateConfig, pair_args


@options.config
class CompareConfig:
    """What :func:`compare_estimators` measures, on how much data, and where ``pvae compare-elbos``
    writes it.

    :param estimators: registry names to compare, comma-separated on the command line.
    :param particles: the values of K, the particles of each estimator.
    :param alpha: order of the Rényi bound for ``renyi``.
    :param points: test datapoints the bounds are estimated on.
    :param repeats: estimates of each bound (its standard error comes from their spread).
    :param grad_points: test datapoints in the fixed batch of the gradient estimates.
    :param grad_repeats: gradient estimates per estimator and K.
    :param cost_batch: training datapoints per timed step.
    :param cost_steps: timed steps per estimator and K.
    :param jit: also time the losses ``torch.jit.trace`` can compile (trace, meanfield, enum).
    :param train_epochs: train a fresh pair with each estimator for N epochs (0: skip the
        training comparison).
    :param train_particles: K of every training run.
    :param train_seconds: wall-clock budget of the equal-time runs; None: what the first
        estimator took for ``train_epochs``; 0: no equal-time runs.
    :param test_points: test datapoints the trained pairs are scored on.
    :param samples: K, importance samples per datapoint of the trained pairs' test log p(x) (``pvae evaluate``'s
        default).
    :param seed: seeds every draw.
    :param out: folder of results.json, results.md and figures/ (None: RUN/elbos).
    """

    estimators: tuple[str, ...] | None = field(
        default=("trace", "meanfield", "graph", "enum", "iwae", "renyi", "dreg"),
        metadata=options.choices(lambda: ESTIMATORS),
    )
    particles: tuple[int, ...] = (1, 5, 10, 50)
    alpha: float = 0.5
    points: int = 100
    repeats: int = 20
    grad_points: int = 16
    grad_repeats: int = 200
    cost_batch: int = 128
    cost_steps: int = 20
    jit: bool = True
    train_epochs: int = 0
    train_particles: int = 5
    train_seconds: float | None = None
    test_points: int = 1000
    samples: int = EvaluateConfig.samples  # the trained pairs are scored as `pvae evaluate` scores a run
    seed: int = 0
    out: str | None = None

    def __post_init__(self):
        options.seed(self, "seed")
        options.require(self, "estimators", self.estimators is None or len(self.estimators) > 0, "at least one name")
        options.require(
            self, "particles", len(self.particles) > 0 and min(self.particles) >= 1, "positive numbers such as 1,5,10"
        )
        options.positive(self, "points", "repeats", "grad_points", "grad_repeats", "cost_batch", "cost_steps")
        options.positive(self, "train_particles", "test_points", "samples")
        options.positive(self, "train_epochs", "train_seconds", zero=True)
        options.positive(self, "alpha", zero=True)
        if self.train_seconds is not None and self.train_epochs == 0:
            raise ValueError(
                f"--train-seconds {self.train_seconds:g} budgets the equal-time runs of the training comparison, which "
                "--train-epochs 0 (the default) skips: add --train-epochs N, or leave --train-seconds out"
            )
        # the Rényi bound of order 1 is the ELBO, which this command compares under its own name
        options.require(
            self, "alpha", self.alpha != 1, "other than 1 (alpha=1 is the ELBO: compare it with --estimators trace)"
        )


def compare_estimators(
    model: torch.nn.Module,
    guide: torch.nn.Module,
    dataset: pdata.Dataset,
    test_x: torch.Tensor,
    config: CompareConfig | None = None,
    build=None,
    train=None,
    progress=print,
    test_y: torch.Tensor | None = None,
    only_usable: bool = False,
) -> dict:
    """Every measurement of :mod:`pvae.measures.compare` for the trained pair ``(model, guide)``, at beta = 1 (the
    bounds on log p(x), whatever beta the pair was trained with).

    Before anything is measured, every estimator is run once on two test points (a value, a
    gradient, a training step), so that one that cannot run stops the comparison in seconds, not
    after the others have been measured.

    :param test_x: test datapoints (binarized as the pair expects); the bounds use the first
        ``config.points``, the gradients the first ``config.grad_points``.
    :param test_y: their labels, passed to pairs that observe them (a conditional pair scores
        p(x | y)); ``None`` for unlabelled data.
    :param only_usable: leave out, with a note, the estimators that cannot run on this pair (for a
        default list); otherwise one that cannot run is refused.
    :raises ValueError: for an estimator that cannot run (unless ``only_usable``), or when none can.
    :param build: returns a fresh ``(model, guide)``, for the training comparison.
    :param train: the :class:`pvae.engine.train.TrainConfig` of the training comparison.
    :param progress: called with a line of text as each part finishes (``None``: silent).
    :returns: ``{"settings", "values", "exact_log_px", "ordering", "gradients", "cost",
        "training"}``; ``exact_log_px`` only for models with an exact ``log_marginal``.
    """
    config = CompareConfig() if config is None else config
    say = progress or (lambda text: None)
    grid = estimator_grid(config.estimators, config.particles, config.alpha, len(dataset.train))
    model.eval()
    guide.eval()
    device = module_device(model)
    rows = lambda t, n: None if t is None else t[:n]  # noqa: E731
    unusable, notes = check_estimators(model, guide, test_x[:2], grid, rows(test_y, 2)), []
    if unusable and not only_usable:
        setting, why = next(iter(unusable.items()))
        raise ValueError(f"--estimators {setting.split()[0]} cannot run on this pair: {why}")
    for setting, why in unusable.items():
        notes.append(f"{setting} is left out: it cannot run on this pair ({why})")
        say(notes[-1])
    grid = [e for e in grid if e.setting not in unusable]
    if not grid:
        raise ValueError(f"no estimator can run on this pair: {'; '.join(notes)}")
    config = replace(config, estimators=tuple(dict.fromkeys(e.name for e in grid)))
    n = len(test_x)  # the settings record the points there were, where the test split has fewer
    config = replace(
        config,
        points=min(config.points, n),
        grad_points=min(config.grad_points, n),
        test_points=min(config.test_points, n),
    )
    pyro.set_rng_seed(config.seed)
    x, y = test_x[: config.points], rows(test_y, config.points)
    values = bound_values(model, guide, x, grid, config.repeats, y)
    with torch.no_grad():
        exact = None
        if traits(model, guide).exact_marginal:
            exact = float(model.log_marginal(*pair_args(model, x, y)).mean())
    say(f"values: {len(values)} bounds on {len(x)} test points")
    gradients = []
    for est in grid:
        pyro.set_rng_seed(config.seed)
        grad_x, grad_y = test_x[: config.grad_points], rows(test_y, config.grad_points)
        stats = gradient_stats(model, guide, grad_x, est, config.grad_repeats, grad_y)
        gradients.append({**est.as_dict(), **stats})
    say(f"gradients: {len(gradients)} estimators × {config.grad_repeats} repeats")
    head = slice(config.cost_batch)
    cost_x = dataset.training_batch(to_device(dataset.train.images(head), device))
    cost_y = None if dataset.train.y is None else to_device(dataset.train.y[head], device)
    cost = []
    compiled = [replace(e, jit=True) for e in grid if config.jit and is_traceable(e.elbo())]
    for est in grid + compiled:
        pyro.set_rng_seed(config.seed)
        row = {**est.as_dict(), **step_cost(model, guide, cost_x, est, config.cost_steps, y=cost_y)}
        if row["eager_reason"] is not None:  # its compiled loss failed the check: no compiled row
            notes.append(f"{est.label} is not timed compiled: {row['eager_reason']}")
            say(notes[-1])
            continue
        cost.append(row)
    say(f"cost: {len(cost)} estimators, {config.cost_steps} steps of {len(cost_x)} datapoints")
    training = []
    if config.train_epochs > 0:
        if build is None or train is None:
            raise ValueError("the training comparison needs build (a fresh pair) and train (a TrainConfig)")
        trained = [
            Estimator(n, config.train_particles, config.alpha if n == "renyi" else None) for n in config.estimators
        ]
        test = test_x[: config.test_points]
        test_labels = rows(test_y, config.test_points)
        training = train_each(
            build, dataset, test, trained, train, config.train_epochs, None, config.samples, test_y=test_labels
        )
        say(f"training: {len(trained)} estimators, {config.train_epochs} epochs each")
        seconds = training[0]["train_seconds"] if config.train_seconds is None else config.train_seconds
        if seconds:  # as long as the first estimator took, up to 100 times the epochs
            limit = 100 * config.train_epochs
            training += train_each(
                build, dataset, test, trained, train, limit, seconds, config.samples, test_y=test_labels
            )
            say(f"training: {len(trained)} estimators, {seconds:.1f} s each")
    return {
        "settings": {k: getattr(config, k) for k in config.__dataclass_fields__},
        "values": values,
        "exact_log_px": exact,
        "ordering": ordering(values, exact),
        "gradients": gradients,
        "cost": cost,
        "training": training,
        "notes": notes,
    }
