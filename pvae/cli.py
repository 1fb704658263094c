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
    from pvae.objectives import BETA_SCHEDULES, ESTIMATORS

    parser = argparse.ArgumentParser(prog="pvae", description="Variational autoencoders as Pyro model/guide pairs.")
    parser.add_argument("--version", action="version", version=f"pvae {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model/guide pair, then evaluate and plot it")
    train.add_argument("--data", default="digits", choices=DATASETS, help="dataset (default: digits, bundled)")
    train.add_argument(
        "--data-dir", help="folder holding the IDX files (default: $PVAE_DATA, ~/.cache/pvae, system paths)"
    )
    train.add_argument(
        "--model", default="vae", help="model name, preset (ae) or module:ClassName / path.py:ClassName (default: vae)"
    )
    train.add_argument("--guide", help="guide name or module:ClassName (default: the model's, gaussian for a VAE)")
    train.add_argument("--likelihood", default="bernoulli", help="observation model (default: bernoulli)")
    train.add_argument("--net", default="mlp", help="encoder/decoder family: mlp or conv (default: mlp)")
    train.add_argument("--flows", type=_positive(int), help="transforms of a flow guide (--guide iaf)")
    train.add_argument("--aux-weight", type=float, help="weight of M2's classification loss (default 50)")
    train.add_argument("--labels", type=_positive(int), help="keep N training labels, balanced per class (M2)")
    train.add_argument("--elbo", choices=sorted(ESTIMATORS), help="estimator (default: the model's, else meanfield)")
    train.add_argument("--beta", type=float, help="scale of the latent sites' log-densities (default: 1)")
    train.add_argument("--beta-schedule", default="constant", choices=sorted(BETA_SCHEDULES))
    train.add_argument("--beta-warmup", type=_positive(float), default=10.0, help="epochs of linear-warmup")
    train.add_argument("--beta-cycles", type=_positive(int), default=4, help="cycles of the cyclical schedule")
    train.add_argument("--beta-ramp", type=_positive(float), default=0.5, help="rising fraction of each cycle")
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

    sample = sub.add_parser("sample", help="draw images from a trained model, of one class if it has labels")
    sample.add_argument("run", help="run directory")
    sample.add_argument("--label", type=int, help="the class to draw (models whose decoder reads a label)")
    sample.add_argument("-n", type=_positive(int), default=100, help="how many (default: 100)")
    sample.add_argument("--seed", type=int, default=0, help="seed of the draws of z")
    sample.add_argument("--out", help="PNG to write (default: RUN/figures/samples[-label-K].png)")
    return parser


def resolve_pair(args) -> tuple[str, str, str, float]:
    """``(model, guide, elbo, beta)`` from the flags, the ``--model`` preset and the model's defaults.

    :raises ValueError: when a flag contradicts the preset it was given with.
    """
    from models import MODELS, PRESETS, get_model

    if args.model not in MODELS and args.model not in PRESETS and ":" not in args.model:
        raise ValueError(
            f"unknown model {args.model!r}; choose one of {sorted(MODELS)}, the preset "
            f"{' or '.join(sorted(PRESETS))}, or give module:ClassName"
        )
    preset = PRESETS.get(args.model, {"model": args.model})
    for key in ("guide", "beta", "elbo"):
        given = getattr(args, key)
        if key in preset and given is not None and given != preset[key]:
            raise ValueError(
                f"--model {args.model} means --{key} {preset[key]}; drop --{key} {given}, or name the model itself"
            )
    cls = get_model(preset["model"])
    guide = args.guide or preset.get("guide") or getattr(cls, "default_guide", "gaussian")
    elbo = args.elbo or preset.get("elbo") or getattr(cls, "default_elbo", "meanfield")
    beta = args.beta if args.beta is not None else preset.get("beta", 1.0)
    if beta == 0 and args.beta_schedule != "constant":
        raise ValueError(f"--beta-schedule {args.beta_schedule} moves beta from 0 up to --beta, which is 0 here")
    return _absolute(preset["model"]), _absolute(guide), elbo, beta


def _absolute(name: str) -> str:
    """``path/to/file.py:Class`` with an absolute path, so that a run can be restored from anywhere."""
    module, sep, attr = name.rpartition(":")
    return f"{Path(module).resolve()}{sep}{attr}" if sep and module.endswith(".py") else name


def _train(args) -> Path:
    import pyro

    from pvae import data
    from pvae.config import PairConfig, RunConfig, build_pair
    from pvae.runs import Run
    from pvae.train import TrainConfig, check_compatible, fit

    epochs = args.epochs or (100 if args.data == "digits" else 10)
    model_name, guide_name, elbo, beta = resolve_pair(args)
    config = RunConfig(
        data=data.DataConfig(args.data, args.data_dir, args.binarize, seed=args.data_seed, labels=args.labels),
        pair=PairConfig(
            model_name, guide_name, args.z_dim, args.hidden, args.likelihood, args.net, args.flows, args.aux_weight
        ),
        train=TrainConfig(
            elbo,
            beta,
            epochs,
            args.batch_size,
            args.lr,
            args.particles,
            args.seed,
            args.jit,
            args.validate,
            args.beta_schedule,
            args.beta_warmup,
            args.beta_cycles,
            args.beta_ramp,
        ),
    )
    config.train.schedule()  # refuses a bad beta or schedule before anything is written
    out = Path(args.out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}-{args.data}-{Path(model_name).stem}")
    dataset = data.load(config.data)
    pyro.set_rng_seed(args.seed)
    model, guide = build_pair(config.pair, dataset.x_shape, dataset.num_classes)
    check_compatible(model, dataset, config.train, guide)
    if args.resume:
        run = Run.open(out)
        saved = RunConfig.from_dict(run.config)
        if replace(saved, train=replace(saved.train, epochs=epochs)) != config:
            raise ValueError(
                f"--resume needs the settings of the run in {out} (only --epochs may change); these differ: "
                f"{', '.join(_differences(saved.to_dict(), config.to_dict(), {'epochs'}))}"
            )
        if epochs != saved.train.epochs and saved.train.beta_schedule == "cyclical":
            raise ValueError(
                "a cyclical beta schedule spreads its cycles over --epochs: resume it with the same --epochs"
            )
        run.write_config(config.to_dict())
    else:
        run = Run.create(out, config.to_dict(), overwrite=args.overwrite)
    print(
        f"training {model_name}/{guide_name} ({elbo}, beta {beta}) on {args.data} "
        f"({len(dataset.train)} train, {len(dataset.val)} val, "
        f"{len(dataset.test)} test) for {epochs} epochs → {out}",
        file=sys.stderr,
    )
    history = fit(model, guide, dataset, config.train, run=run, resume=args.resume, progress=not args.no_progress)
    training = {
        "epochs": len(history),
        "final_train_loss": history[-1]["train_loss"],
        "final_val_elbo": history[-1]["val_elbo"],
        "seconds_per_epoch": sum(m["seconds"] for m in history) / len(history),
    }
    if "val_accuracy" in history[-1]:
        training["final_val_accuracy"] = history[-1]["val_accuracy"]
    run.update_summary(training=training)
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
    print(f"{split}: {describe(result, k)} [{result['datapoints']}]")
    return result


def _differences(a: dict, b: dict, ignore: set[str], prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ between two nested config dicts."""
    names = []
    for key in sorted(set(a) | set(b)):
        if key in ignore:
            continue
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            names += _differences(a[key], b[key], ignore, f"{prefix}{key}.")
        elif a.get(key) != b.get(key):
            names.append(f"{prefix}{key} ({a.get(key)!r} → {b.get(key)!r})")
    return names


def describe(result: dict, k: int) -> str:
    """One line of an evaluation's numbers, in nats per datapoint."""
    if result["elbo"] is None:
        text = (
            f"reconstruction {result['reconstruction']:.2f} nats per datapoint (the guide is a point mass: "
            "no ELBO or log p(x))"
        )
    else:
        text = (
            f"ELBO {result['elbo']:.2f} (reconstruction {result['reconstruction']:.2f}, KL {result['kl']:.2f}), "
            f"log p(x) ≈ {result['log_px']:.2f} ± {result['log_px_se']:.2f} with K={k}, nats per datapoint"
        )
    if "accuracy" in result:
        text += f"; classifier accuracy {result['accuracy']:.2%}"
    return text


def _sample_run(path, label: int | None, n: int, seed: int, out: str | None) -> Path:
    import matplotlib.pyplot as plt
    import torch

    from pvae.evaluate import sample_prior
    from pvae.plots import plot_images
    from pvae.runs import atomic_write, restore

    run, _, _, model, _ = restore(path)
    y = None if label is None else torch.full((n,), label, dtype=torch.long)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        images = sample_prior(model, n, y)
    title = "decoder means at samples from the prior" + ("" if label is None else f", class {label}")
    fig = plot_images(images, 10, title)
    target = Path(out) if out else run.figures / ("samples.png" if label is None else f"samples-label-{label}.png")
    atomic_write(target, lambda handle: fig.savefig(handle, format="png", dpi=120))
    plt.close(fig)
    print(f"{n} samples{'' if label is None else f' of class {label}'} in {target}")
    return target


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
        elif args.command == "sample":
            _sample_run(args.run, args.label, args.n, args.seed, args.out)
    except (DataError, RunError, ValueError, FloatingPointError) as error:
        print(f"pvae {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
