"""The ``pvae`` command: the one place where strings become configs."""

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from pvae import __version__


def _hidden(text: str) -> tuple[int, ...]:
    """``"400"`` → (400,), ``"512,256"`` → (512, 256), ``""`` → () (an affine map)."""
    try:
        return tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--hidden takes comma-separated widths such as 400 or 512,256, not {text!r}"
        ) from None


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    from pvae.data import BINARIZE, DATASETS
    from pvae.objectives import ESTIMATORS

    parser = argparse.ArgumentParser(prog="pvae", description="Variational autoencoders as Pyro model/guide pairs.")
    parser.add_argument("--version", action="version", version=f"pvae {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model/guide pair, then evaluate and plot it")
    train.add_argument("--data", default="digits", choices=DATASETS, help="dataset (default: digits, bundled)")
    train.add_argument(
        "--data-dir", help="folder holding the IDX files (default: $PVAE_DATA, ~/.cache/pvae, system paths)"
    )
    train.add_argument("--model", default="vae", help="model name or module:ClassName (default: vae)")
    train.add_argument("--guide", default="gaussian", help="guide name or module:ClassName (default: gaussian)")
    train.add_argument("--likelihood", default="bernoulli", help="observation model (default: bernoulli)")
    train.add_argument("--elbo", default="meanfield", choices=sorted(ESTIMATORS), help="estimator (default: meanfield)")
    train.add_argument("--beta", type=float, default=1.0, help="scale of the latent site's log-density (default: 1)")
    train.add_argument("--z-dim", type=_positive(int), default=20)
    train.add_argument("--hidden", type=_hidden, default=(400,), help="hidden widths, e.g. 400 or 512,256")
    train.add_argument("--epochs", type=_positive(int), help="default: 100 for digits, 10 otherwise")
    train.add_argument("--batch-size", type=_positive(int), default=128)
    train.add_argument("--lr", type=_positive(float), default=1e-3)
    train.add_argument("--particles", type=_positive(int), default=1, help="samples of z per datapoint and step")
    train.add_argument("--jit", action="store_true", help="compile the loss with torch.jit.trace (faster steps)")
    train.add_argument("--validate", action="store_true", help="keep Pyro's checks on for every step, not the first")
    train.add_argument("--binarize", default="dynamic", choices=BINARIZE)
    train.add_argument("--seed", type=int, default=0, help="seed of initialisation, batches and draws of z")
    train.add_argument("--data-seed", type=int, default=0, help="seed of the splits and fixed binarizations")
    train.add_argument("--out", help="run directory (default: runs/<time>-<data>-<model>)")
    train.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train.add_argument("--iwae-samples", type=_positive(int), default=1000, help="K for the final test log p(x)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    evaluate = sub.add_parser("evaluate", help="ELBO, its terms and importance-sampled log p(x) of a run")
    evaluate.add_argument("run", help="run directory")
    evaluate.add_argument(
        "--iwae-samples", type=_positive(int), default=1000, help="K samples from q(z|x) (default: 1000)"
    )
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))
    evaluate.add_argument("--limit", type=_positive(int), help="only the first N datapoints (summary key SPLIT_firstN)")
    evaluate.add_argument("--batch-size", type=_positive(int), default=100)
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the samples of z")

    plot = sub.add_parser("plot", help="write the figures of a run into RUN/figures")
    plot.add_argument("run", help="run directory")
    return parser


def _train(args) -> Path:
    import pyro

    from pvae import data
    from pvae.config import PairConfig, RunConfig, build_pair
    from pvae.runs import Run
    from pvae.train import TrainConfig, check_compatible, fit

    epochs = args.epochs or (100 if args.data == "digits" else 10)
    config = RunConfig(
        data=data.DataConfig(args.data, args.data_dir, args.binarize, seed=args.data_seed),
        pair=PairConfig(args.model, args.guide, args.z_dim, args.hidden, args.likelihood),
        train=TrainConfig(
            args.elbo, args.beta, epochs, args.batch_size, args.lr, args.particles, args.seed, args.jit, args.validate
        ),
    )
    out = Path(args.out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}-{args.data}-{args.model.replace(':', '.')}")
    dataset = data.load(config.data)
    pyro.set_rng_seed(args.seed)
    model, guide = build_pair(config.pair, dataset.x_shape, dataset.num_classes)
    check_compatible(model, dataset)
    if args.resume:
        run = Run.open(out)
        saved = RunConfig.from_dict(run.config)
        if replace(saved, train=replace(saved.train, epochs=epochs)) != config:
            raise ValueError(
                f"--resume needs the settings of the run in {out} (only --epochs may change); see its config.json"
            )
        run.write_config(config.to_dict())
    else:
        run = Run.create(out, config.to_dict(), overwrite=args.overwrite)
    print(
        f"training {args.model}/{args.guide} on {args.data} ({len(dataset.train)} train, {len(dataset.val)} val, "
        f"{len(dataset.test)} test) for {epochs} epochs → {out}",
        file=sys.stderr,
    )
    history = fit(model, guide, dataset, config.train, run=run, resume=args.resume, progress=not args.no_progress)
    run.update_summary(
        training={
            "epochs": len(history),
            "final_train_loss": history[-1]["train_loss"],
            "final_val_elbo": history[-1]["val_elbo"],
            "seconds_per_epoch": sum(m["seconds"] for m in history) / len(history),
        }
    )
    _evaluate_run(out, "test", args.iwae_samples, None, 100, args.seed)
    _plot_run(out)
    return out


def _evaluate_run(path, split: str, k: int, limit: int | None, batch_size: int, seed: int) -> dict:
    import pyro

    from pvae.data import evaluation_split
    from pvae.evaluate import evaluate
    from pvae.runs import restore

    run, config, dataset, model, guide = restore(path)
    part = evaluation_split(dataset, config.data, split)
    x, y = part.x[:limit], part.y[:limit]
    pyro.set_rng_seed(seed)
    tic = time.perf_counter()
    result = evaluate(model, guide, x, y, num_samples=k, batch_size=batch_size)
    result["seconds"] = time.perf_counter() - tic
    partial = len(x) < len(part)
    result["datapoints"] = f"{'first' if partial else 'all'} {len(x)} of the {split} split"
    result["binarization"] = config.data.binarization_of(split)
    key = f"{split}_first{len(x)}" if partial else split
    run.update_summary(**{key: result})
    print(
        f"{split}: ELBO {result['elbo']:.2f} (reconstruction {result['reconstruction']:.2f}, KL {result['kl']:.2f}), "
        f"log p(x) ≈ {result['log_px']:.2f} ± {result['log_px_se']:.2f} with K={k}, nats per datapoint "
        f"[{result['datapoints']}]"
    )
    return result


def _plot_run(path) -> list[Path]:
    import matplotlib.pyplot as plt

    from pvae.plots import run_figures
    from pvae.runs import atomic_write, restore

    run, _, dataset, model, guide = restore(path)
    written = []
    for name, fig in run_figures(model, guide, dataset, run.metrics()).items():
        target = run.figures / f"{name}.png"
        atomic_write(target, lambda handle, fig=fig: fig.savefig(handle, format="png", dpi=120))
        plt.close(fig)
        written.append(target)
    print(f"figures: {', '.join(p.name for p in written)} in {run.figures}")
    return written


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pvae`` console script."""
    args = build_parser().parse_args(argv)
    from pvae.data import DataError
    from pvae.runs import RunError

    try:
        if args.command == "train":
            out = _train(args)
            print(f"results in {out}: summary.json, metrics.jsonl, checkpoint.pt, figures/")
        elif args.command == "evaluate":
            _evaluate_run(args.run, args.split, args.iwae_samples, args.limit, args.batch_size, args.seed)
        elif args.command == "plot":
            _plot_run(args.run)
    except (DataError, RunError, ValueError, FloatingPointError) as error:
        print(f"pvae {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
