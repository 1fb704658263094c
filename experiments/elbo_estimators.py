"""Which ELBO estimator, and how many particles? Value, gradient signal-to-noise, cost and result.

Trains a base pair (``OUT/base``, reused if it is already there), then runs
``pvae compare-elbos`` on it: every estimator of the registry at K = 1, 5, 10, 50, and, with
``--train-epochs``, a fresh pair trained with each estimator for the same epochs and for the
same wall-clock time. Writes ``OUT/results.json``, ``OUT/results.md`` and ``OUT/figures/``.
Flags this script does not know go to ``pvae compare-elbos`` (see ``pvae compare-elbos --help``).

    python experiments/elbo_estimators.py --data digits --out runs/elbos-digits --train-epochs 100
    python experiments/elbo_estimators.py --data fashion-mnist --out runs/elbos-fmnist --base-epochs 10 \\
        --train-epochs 10
    python experiments/elbo_estimators.py --data digits --model linear --out runs/elbos-ppca   # exact log p(x)
"""

import argparse
import sys
from pathlib import Path

from pvae.cli import main as pvae

#: ``--model`` → the ``pvae train`` flags of its base pair.
BASES = {
    "vae": ["--model", "vae", "--elbo", "meanfield"],
    # probabilistic PCA on grey levels: its exact log p(x) sits beside the bounds
    "linear": ["--model", "linear", "--binarize", "none", "--z-dim", "10"],  # it brings hidden=() and gaussian
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits", help="dataset (default: digits)")
    parser.add_argument("--data-dir", help="folder of the IDX files")
    parser.add_argument("--model", default="vae", choices=sorted(BASES), help="base pair (default: vae)")
    parser.add_argument("--base-epochs", type=int, help="epochs of the base pair (default: pvae train's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="results folder; the base run goes to OUT/base")
    args, compare_flags = parser.parse_known_args(argv)
    out = Path(args.out)
    base = out / "base"
    if not (base / "checkpoint.pt").exists():
        train = ["train", "--data", args.data, "--out", str(base), "--seed", str(args.seed), "--no-progress"]
        train += BASES[args.model]
        if args.data_dir:
            train += ["--data-dir", args.data_dir]
        if args.base_epochs:
            train += ["--epochs", str(args.base_epochs)]
        if base.exists():
            train.append("--overwrite")  # a base run without a checkpoint never finished
        if pvae(train):
            return 1
    return pvae(["compare-elbos", str(base), "--out", str(out), "--seed", str(args.seed), *compare_flags])


if __name__ == "__main__":
    sys.exit(main())
