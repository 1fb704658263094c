"""``pvae train``: a run's whole life — its settings resolved and checked, the run directory created or
resumed, training, the test log p(x), the figures.

:class:`TrainSettings` holds every setting of a training run in one flat frozen record (each declared once,
in its own config class), so that the Python API and the command line give the same run, and a sweep's cell
is ``dataclasses.replace(base, beta=4.0)``.
"""

import sys
import time
from collections.abc import Collection
from dataclasses import fields, replace
from pathlib import Path

from pvae import data
from pvae.base import options
from pvae.base.device import DeviceConfig
from pvae.base.runs import RunOptions
from pvae.data import DataConfig
from pvae.engine.config import PairConfig, RunConfig
from pvae.engine.trainconfig import TrainConfig
from pvae.measures.evaluate import EvaluateConfig
from pvae.studies.tensorboard import TensorBoardConfig

from .common import Interrupted, rank_device, say_estimate, short_name
from .measures import evaluate_run, plot_run

TrainSettings = options.combine(
    "TrainSettings",
    """Every setting of ``pvae train``: the data, the pair, the training, the test log p(x) it ends with, where
    the run is written and where it computes. A ``None`` is worked out from the other settings by
    :func:`run_config` (the model's own guide and estimator, the data's epochs); the help says how.""",
    (
        DataConfig,
        {
            "defaults": {
                "val_size": data.default_in_words("val_size"),
                "labels": "every label",
                "data_dir": "$PVAE_DATA, ~/.cache/pvae, then the system copies",
            }
        },
    ),
    (
        PairConfig,
        {
            "defaults": {
                "guide": "the model's; gaussian for a VAE",
                "z_dim": "the model's; 20 for vae, 2 for linear",
                "hidden": "the model's; 400 for vae, none (affine) for linear",
                "likelihood": "the model's; bernoulli for vae, gaussian for linear",
                "net": "the model's; mlp",
                "flows": "the guide's; 2 for iaf",
                "aux_weight": "the guide's; 50 for m2",
            }
        },
    ),
    (
        TrainConfig,
        {
            "defaults": {
                "elbo": "the model's, else meanfield",
                "beta": "1, or the --model preset's",
                "epochs": data.default_in_words("epochs"),
                "alpha": "0.5",
                "max_seconds": "no limit",
            }
        },
    ),
    (EvaluateConfig, {"only": ("samples",)}),  # K of the final test log p(x); its seed is training's
    (RunOptions, {"defaults": {"out": "runs/<time>-<data>-<model>"}}),
    (TensorBoardConfig, {}),
    (DeviceConfig, {}),
)


def user_data_defaults(data_config, pair, epochs: int | None, batch_size: int, loaded: dict | None = None):
    """What a run on the user's own data records: the data's absolute path, checksum and kind; the
    likelihood the kind calls for where the model's own cannot hold the data; and, unless given, epochs
    enough for about 2000 steps (10 to 500).

    :param loaded: where to leave the dataset read (``loaded["dataset"]``), so that training does not read the
        file (and hash it) again.
    :returns: ``(data_config, pair_config, epochs)``.
    """
    from pvae.data.userdata import DEFAULT_LIKELIHOOD
    from pvae.engine.config import resolve

    dataset = data.load(data_config)
    if pair.library == "observed" and dataset.model_kind != "counts":
        raise ValueError(
            f"--library observed conditions counts on each row's total; these data are {dataset.model_kind}: drop it"
        )
    data_config = replace(
        data_config, data=dataset.source["path"], checksum=dataset.source["sha256"], kind=dataset.kind
    )
    if loaded is not None:
        loaded["dataset"] = dataset  # what data.load(data_config) gives: the same file, its kind now named
    if pair.likelihood is None:
        own = resolve(pair).likelihood  # None where the model takes no likelihood
        if own is not None and not _holds(own, dataset.model_kind):
            pair = replace(pair, likelihood=DEFAULT_LIKELIHOOD[dataset.model_kind])
    if epochs is None:
        epochs = data.default_epochs(dataset, batch_size)
    return data_config, pair, epochs


def _holds(likelihood: str, kind: str) -> bool:
    from pvae.engine.likelihoods import get_likelihood

    return kind in getattr(get_likelihood(likelihood), "support", (kind,))


def resumed_settings(settings, given: Collection[str]):
    """``train --resume``: the settings of the run in ``settings.out`` for every setting ``given`` does not
    name, so that ``pvae train --resume --out RUN`` goes on with the run as it was started (settings that are
    named must still agree with it, but epochs and jit).

    :param settings: a :class:`TrainSettings` with ``resume`` and ``out``.
    :param given: the settings the caller chose (the command line: the options typed).
    :returns: ``settings`` with the run's own values where none was given.
    """
    from pvae.base.runs import Run
    from pvae.data import DATASETS
    from pvae.engine.config import read_config

    out = Path(settings.out)
    if not (out / "config.json").is_file():
        return settings  # no run there: Run.open says so
    run = Run.open(out)
    read_config(run)  # a config.json this pvae cannot read is refused here, naming the field
    saved = run.config
    if "data" in given:  # said before any data are read (or downloaded)
        old = (saved.get("data") or {}).get("data")
        data = settings.data
        new = data if data in DATASETS else str(Path(data).expanduser().absolute())
        if old is not None and new != old:
            raise ValueError(
                f"--resume continues the run in {out}, trained on {old}: --data {data} is other data; leave "
                "--data out, or train a new run on it (another --out)"
            )
    derived = {"checksum", "kind"} if "data" in given else set()  # what pvae found of the run's own file
    names = {f.name for f in fields(settings)}
    own = {}
    for section in ("data", "pair", "train"):
        for name, value in (saved.get(section) or {}).items():
            if name not in given and name not in derived and name in names:
                own[name] = tuple(value) if isinstance(value, list) else value
    evaluation = run.summary().get("evaluation") or {}  # the test log p(x)'s own settings, recorded at its end
    for name in ("samples", "seed"):
        if name not in given and isinstance(evaluation.get(name), int):
            own[name] = evaluation[name]
    return replace(settings, **own)


def run_config(settings, loaded: dict | None = None) -> RunConfig:
    """The configuration of the run ``settings`` describe, checked before any data are read (the dataclasses'
    ``__post_init__``, the pair's defaults, the beta schedule); what ``pvae sweep`` checks every cell with
    before the first starts.

    :param settings: a :class:`TrainSettings`.
    :param loaded: where to leave the user's dataset when it is read to find its kind (:func:`user_data_defaults`).
    :returns: the :class:`pvae.engine.config.RunConfig` of the run.
    :raises ValueError: what ``pvae train`` refuses.
    """
    from pvae.engine.config import resolve
    from pvae.engine.resolve import resolve_pair

    from_args = options.from_args
    from_args(RunOptions, settings), from_args(DeviceConfig, settings), from_args(TensorBoardConfig, settings)
    EvaluateConfig(samples=settings.samples, seed=settings.seed)
    model, guide, elbo, beta = resolve_pair(settings.model, settings.guide, settings.elbo, settings.beta)
    data_config = from_args(DataConfig, settings)
    pair = from_args(PairConfig, settings, model=model, guide=guide)
    if data_config.is_user_data:  # the file is read now: its kind picks the likelihood, its size the epochs
        data_config, pair, epochs = user_data_defaults(data_config, pair, settings.epochs, settings.batch_size, loaded)
    else:
        epochs = settings.epochs if settings.epochs is not None else data.default_epochs(data_config)
    config = RunConfig(
        data=data_config,
        pair=resolve(pair),
        train=from_args(TrainConfig, settings, elbo=elbo, beta=beta, epochs=epochs),
    )
    config.train.schedule()  # refuses a schedule that cannot work
    return config


def differences(a: dict, b: dict, ignore: set[str], prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ between two nested config dicts."""
    names = []
    for key in sorted(set(a) | set(b)):
        if key in ignore:
            continue
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            names += differences(a[key], b[key], ignore, f"{prefix}{key}.")
        elif a.get(key) != b.get(key):
            names.append(f"{prefix}{key} ({a.get(key)!r} → {b.get(key)!r})")
    return names


def train(settings, given: Collection[str] | None = None) -> Path:
    """Train the pair ``settings`` describe into its run directory, then evaluate it on the test split and draw
    its figures; under torchrun every rank trains and rank 0 writes.

    :param settings: a :class:`TrainSettings`.
    :param given: the settings the caller chose, whose values a resumed run must agree with (the others are the
        run's own); default: those that differ from :class:`TrainSettings`'s defaults.
    :returns: the run directory.
    :raises ValueError: for settings that cannot work, before anything is read or written.
    :raises Interrupted: on Ctrl-C, saying what was kept and how to go on.
    """
    out = _train(settings, options.given_fields(settings) if given is None else set(given))
    from pvae.base import distributed

    if distributed.rank_from_environment() == 0:
        board = f", tensorboard/ (tensorboard --logdir {out})" if settings.tensorboard else ""
        print(f"results in {out}: summary.json, metrics.jsonl, checkpoint.pt, figures/{board}")
    return out


def _train(settings, given: set[str]) -> Path:
    import pyro

    from pvae.base import distributed
    from pvae.base.device import describe_device
    from pvae.base.runs import FIGURES, Run, check_writable
    from pvae.engine.compatibility import check_compatible
    from pvae.engine.config import build_pair
    from pvae.engine.pair import traits
    from pvae.engine.train import check_estimator, fit
    from pvae.measures.memory import check_step_memory
    from pvae.studies.tensorboard import FOLDER, TensorBoardLog, check_available

    # every setting is checked before anything is read or written
    run_options = options.from_args(RunOptions, settings)
    if run_options.resume and run_options.out:  # the settings left out are the run's own
        settings = resumed_settings(settings, given)
    board = options.from_args(TensorBoardConfig, settings)
    if board.tensorboard:
        check_available()
    evaluation = EvaluateConfig(samples=settings.samples, seed=settings.seed)
    device = rank_device(options.from_args(DeviceConfig, settings))  # said in the banner
    loaded: dict = {}
    config = run_config(settings, loaded)
    model_name, guide_name = config.pair.model, config.pair.guide
    elbo, beta, epochs = config.train.elbo, config.train.beta, config.train.epochs
    name = f"{short_name(model_name)}/{short_name(guide_name)}"
    data_name = Path(config.data.data).stem if config.data.is_user_data else config.data.data
    out = Path(run_options.out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}-{data_name}-{Path(model_name).stem}")
    check_writable(out)
    distributed.check_batch_size(config.train.batch_size)
    distributed.setup(device)  # under torchrun: join the other ranks (no-op otherwise)
    rank0 = distributed.is_main()
    if not rank0:  # rank 0 reads (and downloads, on first use) the data first, so that no two write its cache
        distributed.barrier()
    dataset = loaded.get("dataset") or data.load(config.data)
    if rank0:
        distributed.barrier()
    pyro.set_rng_seed(settings.seed)
    check_step_memory(
        config.pair,
        dataset.x_shape,
        dataset.num_classes,
        config.train.batch_size,
        config.train.particles,
        device,
        evaluation.samples,
    )
    model, guide = build_pair(config.pair, dataset.x_shape, dataset.num_classes, dataset=dataset)
    model, guide = model.to(device), guide.to(device)
    check_compatible(traits(model, guide), dataset, config.train)
    check_estimator(model, guide, dataset, config.train)
    if rank0:  # the test log p(x) training ends with costs what it costs an untrained pair of the same shape
        from pvae.data import evaluation_split
        from pvae.measures.evaluate import estimate_seconds

        test = evaluation_split(dataset, config.data, "test")
        seconds = estimate_seconds(model.eval(), guide.eval(), test.datapoints(), test.y, evaluation.samples)
        model.train(), guide.train()
        say_estimate("after training, the test log p(x)", seconds, len(test), evaluation.samples, lower="--samples")
    if run_options.resume:
        run = Run.open(out, writing=True)
        run.load_checkpoint()  # a broken checkpoint or metrics.jsonl is refused before config.json changes
        done = len(run.metrics())
        if epochs < done:
            raise ValueError(
                f"--epochs {epochs} is fewer than the {done} epochs the run in {out} has trained: give --epochs "
                f"{done + 1} or more to train it further, or leave --epochs out to finish the run as it was set"
            )
        saved = RunConfig.from_dict(run.config)
        other_file = saved.data.data != config.data.data  # then its checksum and kind differ too: not said twice
        # --jit changes how the loss runs, not what it is: a run goes on with today's setting
        if replace(saved, train=replace(saved.train, epochs=epochs, jit=config.train.jit)) != config:
            raise ValueError(
                f"--resume continues the run in {out} with its own settings (only --epochs and --jit may change): "
                "leave out the options that differ, or give the run's values; these differ: "
                + ", ".join(
                    differences(
                        saved.to_dict(),
                        config.to_dict(),
                        {"epochs", "jit", *(("checksum", "kind") if other_file else ())},
                    )
                )
            )
        if epochs != saved.train.epochs and saved.train.beta_schedule == "cyclical":
            raise ValueError(
                "a cyclical beta schedule spreads its cycles over --epochs: resume it with the same --epochs"
            )
        if rank0:
            run.write_config(config.to_dict())
    elif rank0:
        for folder in (FIGURES, *([FOLDER] if board.tensorboard else [])):  # everything checked before a deletion
            check_writable(out / folder, "the run's folder")
        run, done = Run.create(out, config.to_dict(), overwrite=run_options.overwrite), 0
        if run.left:
            shown = ", ".join(str(p.relative_to(out)) for p in run.left[:5]) + (" ..." if len(run.left) > 5 else "")
            print(
                f"note: {len(run.left)} file(s) of {out} were left in place ({shown}): {run.left_why}; delete those "
                "that are old results",
                file=sys.stderr,
            )
    else:  # only rank 0 writes the run directory
        run, done = Run(out), 0
    world = distributed.world_size()
    processes = f" × {world} processes (global batch {config.train.batch_size})" if world > 1 else ""
    if rank0:
        print(
            f"{f'resuming after epoch {done}: ' if done else ''}training {name} ({elbo}, beta {beta}) on {data_name} "
            f"({len(dataset.train)} train, {len(dataset.val)} val, {len(dataset.test)} test) for {epochs} "
            f"epoch{'s' if epochs != 1 else ''} on {describe_device(settings.device, device)}{processes} → {out}",
            file=sys.stderr,
        )
        if config.data.is_user_data:
            given_total = ", given each row's total (--library observed)" if config.pair.library == "observed" else ""
            print(f"data: {dataset.describe()}; likelihood {config.pair.likelihood}{given_total}", file=sys.stderr)
    say = (lambda line: print(line, file=sys.stderr)) if rank0 else None
    log = TensorBoardLog(out / FOLDER, dataset, board, say) if board.tensorboard and rank0 else None
    try:
        history = fit(
            model,
            guide,
            dataset,
            config.train,
            run=run,
            resume=run_options.resume,
            progress=run_options.progress,
            say=say,
            log=log,
        )
    except KeyboardInterrupt:
        done = len(run.metrics())
        if done == 0:
            raise Interrupted("interrupted in the first epoch, before any checkpoint") from None
        raise Interrupted(
            f"interrupted after epoch {done} of {epochs}; the same command with --resume continues from {out}"
        ) from None
    finally:
        if log is not None:
            log.close()  # what was logged is on disk whatever happened; finish opens a file of its own
    if not rank0:  # the ranks share the test evaluation, then rank 0 plots alone
        distributed.barrier()  # rank 0 has written the last checkpoint and the training summary
        evaluate_run(out, evaluation, device)
        distributed.shutdown()
        return out
    training = {
        "epochs": len(history),
        "final_train_loss": history[-1]["train_loss"],
        "final_val_elbo": history[-1]["val_elbo"],
        "seconds_per_epoch": sum(m["seconds"] for m in history) / len(history),
        "model_id": run.model_id,
    }
    if "val_accuracy" in history[-1]:
        training["final_val_accuracy"] = history[-1]["val_accuracy"]
    run.update_summary(training=training, evaluation={"samples": evaluation.samples, "seed": evaluation.seed})
    distributed.barrier()
    try:
        test = evaluate_run(out, evaluation, device, dataset=dataset)  # the data training read, not read again
        if log is not None:
            log.finish(sum(m["steps"] for m in history), config.to_dict(), test)
        distributed.shutdown()
        plot_run(out, device, dataset=dataset)
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted after training ({len(history)} epochs, all saved in {out}); `pvae evaluate {out}` and "
            f"`pvae plot {out}` finish the job"
        ) from None
    return out
