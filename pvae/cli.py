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


def _positive(kind, zero: bool = False):
    """A parser of positive numbers of ``kind`` (with ``zero``: non-negative ones)."""

    def parse(text: str):
        value = kind(text)
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"must be {'non-negative' if zero else 'positive'}, got {text}")
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
    train.add_argument(
        "--particles", type=_positive(int), default=1, help="samples of z per datapoint and step (K of iwae/renyi/dreg)"
    )
    train.add_argument(
        "--vectorize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="draw the particles in one vectorized pass (default) or loop over them",
    )
    train.add_argument("--alpha", type=float, help="order of the Rényi bound, --elbo renyi only (default 0.5)")
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
    compare = sub.add_parser(
        "compare-elbos",
        help="compare ELBO estimators on a trained pair: bounds, gradient signal-to-noise, cost, result of training",
    )
    compare.add_argument("run", help="run directory of the trained pair")
    compare.add_argument(
        "--estimators",
        type=_names,
        help=f"comma-separated, of {','.join(ESTIMATORS)} (default: all the pair can use)",
    )
    compare.add_argument("--particles", type=_ks, default=(1, 5, 10, 50), help="values of K (default: 1,5,10,50)")
    compare.add_argument("--alpha", type=float, default=0.5, help="order of the Rényi bound (default: 0.5)")
    compare.add_argument("--points", type=_positive(int), default=100, help="test points of the bounds (default: 100)")
    compare.add_argument("--repeats", type=_positive(int), default=20, help="estimates of each bound (default: 20)")
    compare.add_argument("--grad-points", type=_positive(int), default=16, help="test points of the gradient batch")
    compare.add_argument("--grad-repeats", type=_positive(int), default=200, help="gradient estimates (default: 200)")
    compare.add_argument("--cost-batch", type=_positive(int), default=128, help="datapoints per timed step")
    compare.add_argument("--cost-steps", type=_positive(int), default=20, help="timed steps per estimator and K")
    compare.add_argument(
        "--jit",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the losses torch.jit.trace compiles (trace, meanfield, enum); default: yes",
    )
    compare.add_argument(
        "--train-epochs",
        type=_positive(int, zero=True),
        default=0,
        help="train a fresh pair with each estimator for N epochs (default: 0, skip)",
    )
    compare.add_argument("--train-particles", type=_positive(int), default=5, help="K of the training runs")
    compare.add_argument(
        "--train-seconds",
        type=_positive(float, zero=True),
        help="budget of the equal-time runs (default: what the first estimator took; 0: none)",
    )
    compare.add_argument("--test-points", type=_positive(int), default=1000, help="test points of the trained pairs")
    compare.add_argument("--iwae-samples", type=_positive(int), default=1000, help="K of their test log p(x)")
    compare.add_argument("--seed", type=int, default=0)
    compare.add_argument("--out", help="folder of results.json, results.md and figures (default: RUN/elbos)")
    diagnose = sub.add_parser("diagnose", help="how good is q(z|x): PSIS k̂, NUTS, the gaps, posterior collapse")
    diagnose.add_argument("run", help="run directory")
    diagnose.add_argument(
        "--n-points", type=_positive(int), default=100, help="datapoints of k̂ and of the gaps (default: 100)"
    )
    diagnose.add_argument("--samples", type=_positive(int), default=1000, help="draws of q per datapoint for k̂")
    diagnose.add_argument(
        "--nuts-points", type=_positive(int, zero=True), default=5, help="datapoints NUTS samples (0: none; default 5)"
    )
    diagnose.add_argument("--chains", type=_positive(int), default=4, help="NUTS chains (default: 4)")
    diagnose.add_argument("--nuts-warmup", type=_positive(int), default=500, help="NUTS warm-up steps per chain")
    diagnose.add_argument("--nuts-draws", type=_positive(int), default=500, help="NUTS draws kept per chain")
    diagnose.add_argument(
        "--log-px-samples", type=_positive(int), default=5000, help="K of log p(x) in the gaps (default: 5000)"
    )
    diagnose.add_argument(
        "--latent-points", type=_positive(int), default=1000, help="datapoints of active units and I(x;z)"
    )
    diagnose.add_argument("--split", default="test", choices=("train", "val", "test"))
    diagnose.add_argument("--seed", type=int, default=0, help="seed of every draw")
    diagnose.add_argument("--out", help="folder of the results (default: RUN/diagnostics)")
    return parser


def _names(text: str) -> tuple[str, ...]:
    """``"trace,iwae"`` → ("trace", "iwae")."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one name, e.g. trace,iwae")
    return names


def _ks(text: str) -> tuple[int, ...]:
    """``"1,5,10"`` → (1, 5, 10): positive numbers of particles."""
    try:
        ks = tuple(int(k) for k in text.split(",") if k.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"takes comma-separated numbers of particles such as 1,5,10, not {text!r}"
        ) from None
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"takes positive numbers of particles such as 1,5,10, not {text!r}")
    return ks


def resolve_pair(args) -> tuple[str, str, str, float]:
    """``(model, guide, elbo, beta)`` from the flags, the ``--model`` preset and the model's defaults.

    :raises ValueError: when a flag contradicts the preset it was given with.
    """
    from pvae.models import MODELS, PRESETS, get_model

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
    from pvae.memory import check_step_memory
    from pvae.runs import Run, check_writable
    from pvae.train import TrainConfig, check_compatible, fit

    epochs = args.epochs or (100 if args.data == "digits" else 10)
    model_name, guide_name, elbo, beta = resolve_pair(args)
    config = RunConfig(
        data=data.DataConfig(args.data, args.data_dir, args.binarize, seed=args.data_seed, labels=args.labels),
        pair=PairConfig(
            model_name, guide_name, args.z_dim, args.hidden, args.likelihood, args.net, args.flows, args.aux_weight
        ),
        train=TrainConfig(
            elbo=elbo,
            beta=beta,
            epochs=epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            num_particles=args.particles,
            vectorize=args.vectorize,
            alpha=args.alpha,
            seed=args.seed,
            jit=args.jit,
            validate=args.validate,
            beta_schedule=args.beta_schedule,
            beta_warmup=args.beta_warmup,
            beta_cycles=args.beta_cycles,
            beta_ramp=args.beta_ramp,
        ),
    )
    config.train.schedule()  # refuses a bad beta or schedule before anything is written
    out = Path(args.out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}-{args.data}-{Path(model_name).stem}")
    check_writable(out)
    dataset = data.load(config.data)
    pyro.set_rng_seed(args.seed)
    check_step_memory(
        config.pair, dataset.x_shape, dataset.num_classes, args.batch_size, args.particles, "cpu", args.iwae_samples
    )
    model, guide = build_pair(config.pair, dataset.x_shape, dataset.num_classes)
    check_compatible(model, dataset, config.train, guide)
    if args.resume:
        run = Run.open(out, writing=True)
        run.load_checkpoint()  # a broken checkpoint or metrics.jsonl is refused before config.json changes
        run.metrics()
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
    from pvae.runs import check_writable, restore

    run, config, dataset, model, guide = restore(path)
    check_writable(run.path, "the run directory")  # summary.json is written after the work
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
    import torch

    from pvae.evaluate import sample_prior
    from pvae.plots import plot_images
    from pvae.runs import check_writable, restore, save_figure

    if out:
        check_writable(out, "--out", file=True)
    run, _, _, model, _ = restore(path)
    if not out:
        check_writable(run.path / "figures", "the run directory")
    y = None if label is None else torch.full((n,), label, dtype=torch.long)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        images = sample_prior(model, n, y)
    title = "decoder means at samples from the prior" + ("" if label is None else f", class {label}")
    fig = plot_images(images, 10, title)
    target = Path(out) if out else run.figures / ("samples.png" if label is None else f"samples-label-{label}.png")
    save_figure(fig, target)
    print(f"{n} samples{'' if label is None else f' of class {label}'} in {target}")
    return target


def _plot_run(path) -> list[Path]:

    from pvae.plots import run_figures
    from pvae.runs import check_writable, restore, save_figure

    run, _, dataset, model, guide = restore(path)
    check_writable(run.path / "figures", "the run directory")
    written = []
    for name, fig in run_figures(model, guide, dataset, run.metrics()).items():
        target = run.figures / f"{name}.png"
        save_figure(fig, target)
        written.append(target)
    print(f"figures: {', '.join(p.name for p in written)} in {run.figures}")
    return written


def _compare_run(args) -> Path:
    import pyro

    from pvae.compare import CompareConfig, compare_estimators
    from pvae.config import build_pair
    from pvae.data import evaluation_split
    from pvae.objectives import ESTIMATORS, make_elbo
    from pvae.runs import check_writable, restore

    for name in args.estimators or ():  # before anything runs
        if name not in ESTIMATORS:
            raise ValueError(f"unknown estimator {name!r}; choose from {', '.join(ESTIMATORS)}")
    make_elbo("renyi", alpha=args.alpha)  # refuses alpha = 1 before anything runs
    run, config, dataset, model, guide = restore(args.run)
    out = Path(args.out) if args.out else run.path / "elbos"
    check_writable(out, "--out" if args.out else "the results folder")
    reasons = applicable_estimators(model, guide, dataset, config.train)
    names = args.estimators or tuple(n for n, why in reasons.items() if why is True)
    for name in names:
        if reasons[name] is not True:
            raise ValueError(f"--estimators {name}: {reasons[name]}")
    if not names:
        raise ValueError(f"no estimator applies to this pair: {next(iter(reasons.values()))}")
    settings = CompareConfig(
        estimators=names,
        particles=args.particles,
        alpha=args.alpha,
        points=args.points,
        value_repeats=args.repeats,
        grad_points=args.grad_points,
        grad_repeats=args.grad_repeats,
        cost_batch=args.cost_batch,
        cost_steps=args.cost_steps,
        jit=args.jit,
        train_epochs=args.train_epochs,
        train_particles=args.train_particles,
        train_seconds=args.train_seconds,
        test_points=args.test_points,
        iwae_samples=args.iwae_samples,
        seed=args.seed,
    )
    test = evaluation_split(dataset, config.data, "test")

    def build():
        return build_pair(config.pair, dataset.x_shape, dataset.num_classes)

    pyro.set_rng_seed(args.seed)
    results = compare_estimators(model, guide, dataset, test.x, settings, build, config.train)
    results["run"] = str(run.path)
    write_comparison(results, out, f"ELBO estimators: {config.pair.model}/{config.pair.guide} on {config.data.name}")
    print(f"results in {out}: results.json, results.md, figures/")
    return out


def _diagnose_run(args) -> Path:

    from pvae import az
    from pvae.data import evaluation_split
    from pvae.diagnostics import DiagnoseConfig, diagnose
    from pvae.evaluate import reconstruct
    from pvae.plots import diagnostic_figures
    from pvae.runs import check_writable, restore, save_figure, write_json

    config = DiagnoseConfig(
        points=args.n_points,
        samples=args.samples,
        nuts_points=args.nuts_points,
        chains=args.chains,
        warmup=args.nuts_warmup,
        draws=args.nuts_draws,
        log_px_samples=args.log_px_samples,
        latent_points=args.latent_points,
        seed=args.seed,
    )  # refuses bad settings before the run is read
    run, run_config, dataset, model, guide = restore(args.run)
    out = Path(args.out) if args.out else run.path / "diagnostics"
    check_writable(out, "--out" if args.out else "the results folder")
    part = evaluation_split(dataset, run_config.data, args.split)
    tic = time.perf_counter()
    results, idata = diagnose(
        model, guide, part.x, part.y, config, progress=lambda name: print(f"diagnose: {name} ...", file=sys.stderr)
    )
    results.update(
        run=str(run.path),
        pair=f"{run_config.pair.model}/{run_config.pair.guide}",
        split=args.split,
        binarization=run_config.data.binarization_of(args.split),
        seconds=time.perf_counter() - tic,
    )
    write_json(out / "diagnostics.json", results)
    if idata is not None:
        az.save_netcdf(idata, out / "posterior.nc")
    worst = None
    if "importance" in results and part.x.dim() == 4:  # images: the worst datapoints beside their reconstructions
        order = results["importance"]["worst"][:10]
        k_hat = results["importance"]["per_datapoint"]["k_hat"]
        x = part.x[order]
        worst = (x, reconstruct(model, guide, x, part.y[order]), [k_hat[i] for i in order])
    for name, fig in diagnostic_figures(results, idata, worst).items():
        save_figure(fig, out / "figures" / f"{name}.png")
    print(describe_diagnostics(results))
    print(f"results in {out}: diagnostics.json{', posterior.nc' if idata is not None else ''}, figures/")
    return out


def describe_diagnostics(results: dict) -> str:
    """The numbers of a diagnosis, one line per part, and what did not apply."""
    lines = []
    if "importance" in results:
        r, k = results["importance"], results["importance"]["k_hat"]
        lines.append(
            f"importance (N={len(r['worst'])}, K={results['settings']['samples']}): Pareto k̂ median {k['median']:.2f}, "
            f"max {k['max']:.2f}; {r['fraction_k_above_0.7']:.0%} of datapoints above 0.7, "
            f"{r['fraction_k_above_0.5']:.0%} above 0.5; ESS {r['ess_fraction']['median']:.1%} of K (median)"
        )
    if "nuts" in results:
        r, c = results["nuts"], results["nuts"]["convergence"]
        head = (
            f"NUTS ({r['datapoints']} datapoints): max R-hat {c['max_r_hat']:.3f}, min ESS bulk "
            f"{c['min_ess_bulk']:.0f} / tail {c['min_ess_tail']:.0f}, {c['divergences']} divergences"
        )
        if not r["converged"]:
            lines.append(f"{head}; {r['refused']}")
        for site, m in (r["comparison"] or {}).items():
            lines.append(
                f"{head}; guide vs NUTS on {site!r}: median |mean error| {m['median_abs_mean_error']:.2f} sd "
                f"(max {m['max_abs_mean_error']:.2f}), median sd ratio {m['median_sd_ratio']:.2f} "
                f"({m['min_sd_ratio']:.2f}–{m['max_sd_ratio']:.2f}), {results['settings']['coverage']:.0%} intervals "
                f"cover {m['mean_coverage']:.1%} of NUTS draws"
            )
    if "gaps" in results:
        g = results["gaps"]
        lines.append(
            f"gaps (N={len(g['per_datapoint']['log_px'])}): log p(x) {g['log_px']['mean']:.2f}, best local ELBO "
            f"{g['local_elbo']['mean']:.2f}, amortized ELBO {g['amortized_elbo']['mean']:.2f}; approximation gap "
            f"{g['approximation_gap']['mean']:.2f} ± {g['approximation_gap']['se']:.2f}, amortization gap "
            f"{g['amortization_gap']['mean']:.2f} ± {g['amortization_gap']['se']:.2f} nats"
        )
    if "latent" in results:
        r = results["latent"]
        text = f"latent: {len(r['active'])} of {len(r['activity'])} dimensions active"
        if "mutual_information" in r:
            saturated = (
                " (at its ceiling log N: more points would raise it)"
                if r["mutual_information"] > r["log_n"] - 0.05
                else ""
            )
            text += (
                f"; KL {r['kl']:.2f}; I(x;z) ≈ {r['mutual_information']:.2f} of at most log N = {r['log_n']:.2f}"
                f"{saturated}; KL(q(z) ‖ p(z)) {r['marginal_kl']:.2f}; {r['prior_holes']:.1%} of prior draws "
                "fall where q(z) is below its own 1% quantile (1% if q(z) = p(z))"
            )
        lines.append(text)
    for name, reason in results["not_applicable"].items():
        lines.append(f"not applicable, {name}: {reason}")
    return "\n".join(lines)


def applicable_estimators(model, guide, dataset, train) -> dict:
    """Which estimators a pair can train with.

    :param model: the generative model.
    :param guide: the guide.
    :param dataset: the data it trains on.
    :param train: its :class:`pvae.train.TrainConfig`; each estimator is checked in its place.
    :returns: estimator name → ``True``, or the reason the pair cannot use it.
    """
    from pvae.objectives import ESTIMATORS
    from pvae.train import check_compatible

    if getattr(guide, "point_estimate", False):
        return {n: "a point-mass guide has no density, so every bound is −∞" for n in ESTIMATORS}
    reasons = {}
    for name in ESTIMATORS:
        try:
            check_compatible(model, dataset, replace(train, elbo=name, jit=False, alpha=None), guide)
            reasons[name] = True
        except ValueError as error:
            reasons[name] = str(error)
    return reasons


def write_comparison(results: dict, out: Path, title: str) -> None:
    """Write ``results.json``, ``results.md`` and the figures of a comparison, each atomically.

    :param results: what :func:`pvae.compare.compare_estimators` returned.
    :param out: the folder (created if missing).
    :param title: the heading of ``results.md``.
    """

    from pvae.compare import results_markdown
    from pvae.plots import comparison_figures
    from pvae.runs import atomic_write, save_figure, write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results)
    text = results_markdown(results, title)
    atomic_write(out / "results.md", lambda handle: handle.write(text.encode()))
    for name, fig in comparison_figures(results).items():
        save_figure(fig, out / "figures" / f"{name}.png")


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
        elif args.command == "compare-elbos":
            _compare_run(args)
        elif args.command == "diagnose":
            _diagnose_run(args)
    except (DataError, RunError, ValueError, FloatingPointError) as error:
        print(f"pvae {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
