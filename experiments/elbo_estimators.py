"""Which ELBO estimator, and how many particles? Value, gradient signal-to-noise, cost and result.

Trains a base pair (``OUT/base``, reused if it is already there), then runs
``pvae compare-elbos`` on it: every estimator of the registry at K = 1, 5, 10, 50, and, with
``--train-epochs``, a fresh pair trained with each estimator for the same epochs and for the
same wall-clock time. Writes ``OUT/results.json``, ``OUT/results.md`` and ``OUT/figures/``.
The options of ``pvae compare-elbos`` are this script's too (see ``--help``); ``--seed`` and ``--device`` are
the base pair's as well.

    python experiments/elbo_estimators.py --data digits --out runs/elbos-digits --train-epochs 100
    python experiments/elbo_estimators.py --data fashion-mnist --out runs/elbos-fmnist --base-epochs 10 \\
        --train-epochs 10
    python experiments/elbo_estimators.py --data digits --model linear --out runs/elbos-ppca   # exact log p(x)
"""

import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import command_line  # noqa: E402

from pvae.app.measures import compare  # noqa: E402
from pvae.app.train import TrainSettings, train  # noqa: E402
from pvae.base import options  # noqa: E402
from pvae.cli import command_options  # noqa: E402
from pvae.data import DataConfig  # noqa: E402
from pvae.engine.config import PairConfig  # noqa: E402

#: ``--model`` → the ``pvae train`` settings of its base pair.
BASES = {
    "vae": {"model": "vae", "elbo": "meanfield"},
    # probabilistic PCA on grey levels: its exact log p(x) sits beside the bounds
    "linear": {"model": "linear", "binarize": "none", "z_dim": 10},  # it brings hidden=() and gaussian
}


@options.config
class ElboEstimators:
    """The base pair's training.

    :param base_epochs: epochs of the base pair.
    """

    base_epochs: int | None = None

    def __post_init__(self):
        options.positive(self, "base_epochs")


def main(argv: list[str] | None = None) -> int:
    parser = command_line.parser(__doc__.splitlines()[0])
    options.add_options(parser, DataConfig, only=("data", "data_dir"))
    options.add_options(parser, PairConfig, only=("model",))
    options.add_options(parser, ElboEstimators, defaults={"base_epochs": (None, "pvae train's")})
    for cls, how in command_options("compare-elbos"):  # pvae compare-elbos's own options, with its defaults
        options.add_options(parser, cls, **how)
    args = parser.parse_args(argv)
    data, pair, own = command_line.configs(parser, args, DataConfig, PairConfig, ElboEstimators)
    settings, device = command_line.configs(parser, args, *(cls for cls, _ in command_options("compare-elbos")))
    if pair.model not in BASES:
        parser.error(f"--model {pair.model}: the base pairs are {', '.join(BASES)}")
    if settings.out is None:
        parser.error("--out is required: the results folder (the base run goes to OUT/base)")
    out = Path(settings.out)
    base = out / "base"
    with command_line.refusals(parser):
        if not (base / "checkpoint.pt").exists():
            trained = TrainSettings(
                data=data.data, data_dir=data.data_dir, out=str(base), seed=settings.seed, device=device.device
            )
            trained = replace(trained, progress=False, **BASES[pair.model])
            if own.base_epochs:
                trained = replace(trained, epochs=own.base_epochs)
            # a base run without a checkpoint never finished
            train(replace(trained, overwrite=base.exists()))
        compare(base, settings, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
