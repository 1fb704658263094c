"""Comparing ELBO estimators on one model/guide pair: value, gradient signal-to-noise, cost, result.

Every measurement runs an estimator through the same loss module the trainer uses
(:func:`pvae.engine.objectives.loss_module`, :func:`pvae.engine.objectives.backward`), so what is compared is
what ``fit`` trains. Values are in nats per datapoint.

* :func:`bound_values` — each bound's mean and standard error over repeated estimates on one
  batch (the ordering ELBO ≤ IWAE-K ≤ IWAE-K' ≤ log p(x) is checked by :func:`ordering`);
* :func:`gradient_stats` — per-parameter mean and variance of the gradient over repeated
  estimates on one batch, and the signal-to-noise ratio ``|mean| / std`` of Rainforth et al. (2018),
  for the guide's (encoder) and the model's (decoder) parameters separately;
* :func:`step_cost` — median seconds per training step and peak memory of one step;
* :func:`train_each` — the test log p(x) after training with each estimator for the same number
  of epochs, and for the same wall-clock time.

The modules: :mod:`pvae.measures.compare.estimator` (an estimator setting), :mod:`pvae.measures.compare.measure` (the
measurements at fixed parameters), :mod:`pvae.measures.compare.training` (the training comparison),
:mod:`pvae.measures.compare.comparison` (all of them as one result, :func:`compare_estimators`) and
:mod:`pvae.measures.compare.results` (the result as a document, Markdown and files).
"""

from pvae.measures.compare.comparison import CompareConfig, compare_estimators
from pvae.measures.compare.estimator import Estimator, estimator_grid
from pvae.measures.compare.measure import (
    ELBO_ESTIMATORS,
    bound_values,
    check_estimators,
    gradient_stats,
    ordering,
    step_cost,
)
from pvae.measures.compare.results import ordering_markdown, results_document, results_markdown
from pvae.measures.compare.training import train_each

__all__ = [
    "ELBO_ESTIMATORS",
    "CompareConfig",
    "Estimator",
    "bound_values",
    "check_estimators",
    "compare_estimators",
    "estimator_grid",
    "gradient_stats",
    "ordering",
    "ordering_markdown",
    "results_document",
    "results_markdown",
    "step_cost",
    "train_each",
]
