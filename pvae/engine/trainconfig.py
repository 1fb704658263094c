"""How to fit a pair: the estimator, beta and its schedule, the optimizer, the budget, the seed.

:class:`TrainConfig` sits below the trainer (:mod:`pvae.engine.train`), so that what checks a pair against the
settings (:mod:`pvae.engine.compatibility`) reads them without knowing the trainer.
"""

from dataclasses import field, replace

from pvae.base import options
from pvae.engine.estimators import ESTIMATORS
from pvae.engine.objectives import BETA_SCHEDULES, JIT_MODES, BetaSchedule


@options.config
class TrainConfig:
    """How to fit a pair.

    :param elbo: the estimator, a name from :data:`pvae.engine.estimators.ESTIMATORS`.
    :param beta: scale of the latent sites' log-densities in model and guide (1: the ELBO); under
        a schedule, the value it reaches. With ``--elbo tcvae``, the weight of the total correlation
        alone (beta-TCVAE).
    :param beta_schedule: how beta moves over training: ``constant``, ``linear-warmup`` or
        ``cyclical`` (see :class:`pvae.engine.objectives.BetaSchedule`).
    :param beta_warmup: epochs of the linear warm-up.
    :param beta_cycles: cycles of the cyclical schedule over training.
    :param beta_ramp: fraction of each cycle in which beta rises.
    :param epochs: passes over the training split (None: the data's default, :func:`pvae.data.default_epochs`).
    :param batch_size: datapoints per step.
    :param lr: Adam's learning rate.
    :param particles: samples of z per datapoint and step (K of ``iwae``, ``renyi``, ``dreg``).
    :param vectorize: draw the particles in one vectorized pass (else a Python loop over them).
    :param alpha: order of the Rényi bound, ``--elbo renyi`` only (when unset,
        :data:`pvae.engine.estimators.DEFAULT_ALPHA`).
    :param max_seconds: stop once the training steps have taken this long (for comparisons at
        equal wall-clock time); the last epoch is then partial.
    :param seed: seeds torch, numpy and Python's RNGs (initialisation, batches, binarization, z).
    :param jit: compile the loss with ``torch.jit.trace`` (faster steps; see
        :class:`pvae.engine.objectives.TracedLoss`): ``auto`` compiles where the estimator allows it and
        the compiled loss matches the eager one (value and gradient, on a fresh draw), and runs
        eagerly otherwise; ``on`` compiles or refuses; ``off`` never compiles.
    :param validate: keep Pyro's argument and support checks on for every step; by default they
        check the first batch only, since they cost about as much as the rest of Pyro's bookkeeping.
    """

    elbo: str = field(default="meanfield", metadata=options.choices(lambda: sorted(ESTIMATORS)))
    beta: float = 1.0
    epochs: int | None = None
    batch_size: int = 128
    lr: float = 1e-3
    particles: int = 1
    vectorize: bool = True
    alpha: float | None = None
    max_seconds: float | None = None
    seed: int = 0
    jit: str = field(default="auto", metadata=options.choices(JIT_MODES))
    validate: bool = False
    beta_schedule: str = field(default="constant", metadata=options.choices(lambda: sorted(BETA_SCHEDULES)))
    beta_warmup: float = 10.0
    beta_cycles: int = 4
    beta_ramp: float = 0.5

    def __post_init__(self):
        options.seed(self, "seed")
        options.positive(self, "epochs", "batch_size", "lr", "particles", "beta_warmup", "beta_cycles")
        options.positive(self, "beta", "max_seconds", zero=True)
        check_alpha(self)
        options.require(self, "beta_ramp", 0 < self.beta_ramp <= 1, "a fraction of a cycle, 0 < ramp ≤ 1")
        if self.beta == 0 and self.beta_schedule != "constant":
            raise ValueError(f"--beta-schedule {self.beta_schedule} moves beta from 0 up to --beta, which is 0 here")

    def schedule(self) -> BetaSchedule:
        """beta over training.

        :raises ValueError: for a cyclical schedule whose epochs are not set yet (:meth:`for_data` sets them).
        """
        if self.epochs is None and self.beta_schedule == "cyclical":
            raise ValueError("a cyclical beta schedule spreads its cycles over --epochs: give --epochs")
        return BetaSchedule(
            self.beta_schedule, self.beta, self.epochs or 1, self.beta_warmup, self.beta_cycles, self.beta_ramp
        )

    def for_data(self, dataset) -> "TrainConfig":
        """This config with its epochs set, where they are not, to the data's default
        (:func:`pvae.data.default_epochs`: the built-in dataset's own, or about 2000 steps of your own data).

        :param dataset: the :class:`pvae.data.Dataset` trained on.
        """
        if self.epochs is not None:
            return self
        from pvae.data import default_epochs

        return replace(self, epochs=default_epochs(dataset, self.batch_size))


def check_alpha(config) -> None:
    """Refuse a Rényi order ``config.alpha`` that is NaN, infinite, negative or 1 (the ELBO itself)."""
    options.positive(config, "alpha", zero=True)
    options.require(config, "alpha", config.alpha != 1, "other than 1 (alpha=1 is the ELBO: use --elbo trace)")
