"""The result of training with each estimator: the test log p(x) of a fresh pair trained with each, for
the same number of epochs or for the same wall-clock time.

Each run is :func:`pvae.engine.train.fit` itself, with the estimator settings of its
:class:`pvae.engine.train.TrainConfig` replaced: what differs between the runs is the estimator and nothing
else (the same seed, the same initial parameters, the same data). This module adds only the loop over
estimators and the scoring of each trained pair.
"""

import math
from collections.abc import Sequence
from dataclasses import replace

import pyro
import torch

from pvae import data as pdata
from pvae.engine.train import fit
from pvae.measures.compare.estimator import Estimator
from pvae.measures.evaluate import evaluate


def train_each(
    build,
    dataset: pdata.Dataset,
    test_x: torch.Tensor,
    estimators: Sequence[Estimator],
    train,
    epochs: int,
    seconds: float | None = None,
    iwae_samples: int = 1000,
    progress: bool = False,
    test_y: torch.Tensor | None = None,
) -> list[dict]:
    """Train a fresh pair with each estimator, for ``epochs`` epochs or, when ``seconds`` is
    given, for that many seconds of training steps (up to ``epochs`` epochs), and score each on
    ``test_x``.

    :param build: called with no arguments, returns a freshly initialised ``(model, guide)``;
        the seed is set before each call, so every estimator starts from the same parameters.
    :param train: the :class:`pvae.engine.train.TrainConfig` whose estimator settings are replaced.
    :param test_y: the test points' labels, for pairs that observe them.
    :returns: one dict per estimator: its fields, ``budget`` (``"epochs"`` or ``"seconds"``),
        ``epochs`` (fractional: steps / steps per epoch), ``train_seconds``, ``elbo``, ``log_px``
        and ``log_px_se`` on the test points, ``iwae_samples``, and ``log_px_diff`` with
        ``log_px_diff_se``: the mean over test points of log p(x) minus the first estimator's,
        and its paired standard error (much smaller than either ``log_px_se``, since the
        points' own spread cancels).
    """
    rows, first = [], None
    for est in estimators:
        config = replace(
            train,
            elbo=est.name,
            particles=est.particles,
            alpha=est.alpha,
            vectorize=est.vectorize,
            epochs=epochs,
            max_seconds=seconds,
            jit="off",  # at equal wall-clock time, every estimator runs the same way
        )
        pyro.set_rng_seed(train.seed)
        model, guide = build()
        history = fit(model, guide, dataset, config, progress=progress)
        per_epoch = math.ceil(len(dataset.train) / config.batch_size)
        pyro.set_rng_seed(train.seed)
        scores = evaluate(model, guide, test_x, test_y, num_samples=iwae_samples, per_datapoint=True)
        log_px = scores["per_datapoint"]["log_px"]
        first = log_px if first is None else first
        diff = log_px - first
        rows.append(
            {
                **est.as_dict(),
                "budget": "epochs" if seconds is None else "seconds",
                "epochs": sum(m["steps"] for m in history) / per_epoch,
                "train_seconds": sum(m["seconds"] for m in history),
                "elbo": scores["elbo"],
                "log_px": scores["log_px"],
                "log_px_se": scores["log_px_se"],
                "log_px_diff": float(diff.mean()),
                "log_px_diff_se": float(diff.std() / len(diff) ** 0.5) if len(diff) > 1 else float("nan"),
                "iwae_samples": iwae_samples,
            }
        )
    return rows
