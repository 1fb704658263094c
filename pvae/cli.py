"""The ``pvae`` command: the one place where strings become configs.

Every option is a field of a frozen config dataclass (its name, type, default and help declared
once, there); :mod:`pvae.options` generates each subcommand's flags from the classes in
:func:`command_options`, and the dataclasses' ``__post_init__`` refuses what cannot work, here as in
the Python API. Failures the user can fix end as one line ``pvae CMD: error: ...`` and exit status 2;
Ctrl-C as one line and exit status 130 (128 + SIGINT, the shell's convention).
"""

import argparse
import difflib
import importlib
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from pvae import __version__
from pvae.options import add_options, from_args

if TYPE_CHECKING:  # a command imports only what it runs
    from pvae.config import RunConfig

#: Exit status of a run stopped by Ctrl-C (128 + SIGINT), distinct from 2, a bad input.
INTERRUPTED = 130

#: Options of ``pvae train`` whose default comes from other options (the model, its preset, the data).
TRAIN_DEFAULTS = {
    "guide": (None, "the model's; gaussian for a VAE"),
    "elbo": (None, "the model's, else meanfield"),
    "beta": (None, "1, or the --model preset's"),
    "epochs": (None, "100 for digits, 10 otherwise"),
    "z_dim": (None, "the model's; 20 for vae, 2 for linear"),
    "hidden": (None, "the model's; 400 for vae, none (affine) for linear"),
    "likelihood": (None, "the model's; bernoulli for vae, gaussian for linear"),
    "net": (None, "the model's; mlp"),
    "flows": (None, "the guide's; 2 for iaf"),
    "aux_weight": (None, "the guide's; 50 for m2"),
    "val_size": (None, "180 for digits, 5000 for the 28×28 sets"),
    "labels": (None, "every label"),
    "data_dir": (None, "$PVAE_DATA, ~/.cache/pvae, then the system copies"),
    "alpha": (None, "0.5"),
    "max_seconds": (None, "no limit"),
    "out": (None, "runs/<time>-<data>-<model>"),
}

#: Options of ``pvae disentangle`` whose default each metric brings.
DISENTANGLE_DEFAULTS = {
    "metrics": (None, "all"),
    "num_train": (None, "each metric's own"),
    "num_eval": (None, "each metric's own"),
    "out": (None, "RUN/disentanglement"),
}

#: Options of ``pvae quality`` whose default comes from elsewhere.
QUALITY_DEFAULTS = {
    "inception": (None, "no standard FID"),
    "out": (None, "RUN/quality"),
}

#: Subcommand → its one-line help, and the config classes whose fields are its options, each with
#: the keyword arguments of :func:`pvae.options.add_options` (which fields, which defaults come
#: from elsewhere). Classes are named, not imported, so that a command imports only what it runs.
COMMANDS: dict[str, tuple[str, list[tuple[str, dict]]]] = {
    "train": (
        "train a model/guide pair, then evaluate and plot it",
        [
            ("pvae.data:DataConfig", {"defaults": TRAIN_DEFAULTS}),
            ("pvae.config:PairConfig", {"defaults": TRAIN_DEFAULTS}),
            ("pvae.train:TrainConfig", {"defaults": TRAIN_DEFAULTS}),
            ("pvae.evaluate:EvaluateConfig", {"only": ("samples",)}),  # K of the final test log p(x)
            ("pvae.runs:RunOptions", {"defaults": TRAIN_DEFAULTS}),
            ("pvae.tensorboard:TensorBoardConfig", {}),
        ],
    ),
    "evaluate": ("ELBO, its terms and importance-sampled log p(x) of a run", [("pvae.evaluate:EvaluateConfig", {})]),
    "plot": ("write the figures of a run into RUN/figures", []),
    "sample": ("draw images from a trained model, of one class if it has labels", [("pvae.evaluate:SampleConfig", {})]),
    "compare-elbos": (
        "compare ELBO estimators on a trained pair: bounds, gradient signal-to-noise, cost, result of training",
        [("pvae.compare:CompareConfig", {"defaults": {"estimators": (None, "all the pair can use")}})],
    ),
    "diagnose": (
        "how good is q(z|x): PSIS k̂, NUTS, the gaps, posterior collapse",
        [("pvae.diagnostics:DiagnoseConfig", {})],
    ),
    "disentangle": (
        "score the codes against the data's ground-truth factors: beta-VAE, FactorVAE, MIG, DCI, SAP, modularity",
        [("pvae.disentangle.score:DisentangleConfig", {"defaults": DISENTANGLE_DEFAULTS})],
    ),
    "quality": (
        "score samples against the test images in a classifier's features: Fréchet distance, precision, recall, "
        "sharpness",
        [
            ("pvae.quality.score:QualityConfig", {"defaults": QUALITY_DEFAULTS}),
            ("pvae.quality.ppc:PPCConfig", {"only": ("replicates", "coverage", "pairs")}),  # data that are not images
        ],
    ),
    "runs": (
        "one table of every run under a folder: the settings that differ, the test numbers, mean ± sd over seeds",
        [("pvae.study:RunsConfig", {"defaults": {"out": (None, "the folder of the runs")}})],
    ),
    "report": (
        "write one self-contained HTML page of a run, or of the runs under a folder",
        [("pvae.report:ReportConfig", {"defaults": {"out": (None, "RUN/report.html")}})],
    ),
    "sweep": (
        "train one run per cell of a grid over pvae train's options (given after --), each its own run directory; "
        "resumable, one cell at a time (--cell I) or N at once (--workers N)",
        [("pvae.sweep:SweepConfig", {})],
    ),
    "encode": (
        "write q(z|x)'s mean and sd (or draws) of every row of the run's data, or of a new file with its columns",
        [("pvae.encode:EncodeConfig", {"defaults": {"out": (None, "RUN/encoded.npz")}})],
    ),
    "upgrade": (
        "rewrite a checkpoint an older pvae wrote in the form pvae reads without running code (admits only "
        "NumPy's array constructors; refuses a file that names anything else)",
        [],
    ),
}

#: Subcommand → its positional arguments, where they are not one run directory.
POSITIONALS = {
    "train": [],
    "runs": [("folder", {"help": "folder holding run directories (searched recursively)"})],
    "report": [("run", {"help": "a run directory, or a folder holding run directories"})],
    "sweep": [("out", {"help": "the sweep's folder: sweep.json and one run directory per cell"})],
}


#: Options every command that computes takes besides its own (where it computes).
COMMON = [("pvae.device:DeviceConfig", {})]
#: Commands that only read what other commands wrote (tables, pages): no --device, nothing to compute.
READERS = ("runs", "report", "upgrade")


def command_options(command: str) -> list[tuple[type, dict]]:
    """The config classes of ``command`` (see :data:`COMMANDS`), then those of :data:`COMMON`,
    imported, with their keyword arguments of :func:`pvae.options.add_options`.

    :param command: a key of :data:`COMMANDS`.
    """
    classes = []
    for name, kwargs in COMMANDS[command][1] + ([] if command in READERS else COMMON):
        module, _, attr = name.partition(":")
        classes.append((getattr(importlib.import_module(module), attr), kwargs))
    return classes


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``PROG: error: ...``, with exit status 2, and
    that takes no abbreviation of an option (``--epoch`` is not silently ``--epochs``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        """Print one line naming the problem (and ``--help``), and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        """As argparse's, but an option this (sub)command does not have is an error that suggests the
        nearest one it has (``--z_dim`` → ``--z-dim``)."""
        parsed, extra = super().parse_known_args(args, namespace)
        unknown = [a for a in extra if a.startswith("-")]
        if unknown and self._subparsers is None:
            given = unknown[0].split("=", 1)[0]
            near = difflib.get_close_matches(given, list(self._option_string_actions), n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]}?" if near else ""
            self.error(f"no option {given}{hint}")
        if extra and self._subparsers is None:  # said here, by the command, not by `pvae` without its name
            self.error(f"unexpected argument {extra[0]!r} (an option that takes no value, or one too many)")
        return parsed, extra


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of every subcommand.

    :param only: generate the options of this subcommand only (the others keep their name and
        help), so that a command imports only the modules it needs.
    """
    parser = Parser(prog="pvae", description="Variational autoencoders as Pyro model/guide pairs.")
    parser.add_argument("--version", action="version", version=f"pvae {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command, (text, _) in COMMANDS.items():
        child = sub.add_parser(command, help=text, description=text[0].upper() + text[1:] + ".", allow_abbrev=False)
        for name, kwargs in POSITIONALS.get(command, [("run", {"help": "run directory"})]):
            child.add_argument(name, **kwargs)
        if only is None or only == command:
            for cls, kwargs in command_options(command):
                add_options(child, cls, **kwargs)
    return parser


def short_name(name: str) -> str:
    """A pair's name as a banner shows it: ``/abs/path/to/file.py:Class`` → ``file.py:Class``."""
    module, sep, attr = name.rpartition(":")
    return f"{Path(module).name}{sep}{attr}" if sep and module.endswith(".py") else name


def _device(args):
    """The device ``--device`` names, refused (naming the devices there are) where this machine lacks it:
    checked before a run is read, said by :func:`_say_device` once it has been."""
    from pvae.device import DeviceConfig, resolve_device

    return resolve_device(from_args(DeviceConfig, args).device)


def _say_device(name: str | None, device) -> None:
    """One line on stderr: where the command computes (``name``: what ``--device`` said; ``None``: say
    nothing, as when ``train`` evaluates its run after its banner said it)."""
    from pvae.device import describe_device

    if name is not None:
        print(f"device: {describe_device(name, device)}", file=sys.stderr)


def _open_run(args):
    """The run ``args.run`` names, restored onto ``--device`` (refused before the run is read where this
    machine lacks it; under torchrun, this rank's device), with one line (rank 0's) saying where the
    command computes.

    :returns: ``(run, config, dataset, model, guide)``, as :func:`pvae.config.restore`.
    """
    from pvae import distributed
    from pvae.config import restore

    device = distributed.device_for_rank(args.device, _device(args))
    restored = restore(args.run, device)
    if distributed.rank_from_environment() == 0:
        _say_device(args.device, device)
    return restored


def _check_out(out: str | None) -> None:
    """Refuse an ``--out`` that cannot be written before the run is read (a large dataset takes a while)."""
    from pvae.runs import check_writable

    if out:
        check_writable(out, "--out")


def _results_folder(out: str | None, run, name: str, *configs) -> tuple[Path, dict]:
    """Where a command that reads a run writes: ``--out``, else ``RUN/name``, refused before any work when
    it cannot be written; an earlier result there of the same model with other settings is kept, moved
    beside it (:func:`pvae.runs.keep_earlier_results`) when the new one is written (:func:`_write_results`, so
    that a command stopped before its end leaves it where it was), and said.

    :returns: the folder, and what the result records of what it measured and how (``model_id``,
        ``command_settings``).
    """
    from pvae import options
    from pvae.runs import check_writable

    folder = Path(out) if out else run.path / name
    check_writable(folder, "--out" if out else "the results folder")
    settings, defaults = options.what_settings(*configs)
    record = _Record(model_id=run.model_id, command_settings=settings)
    record.defaults = None if out else defaults  # --out: a folder of the user's choice, nothing moved there
    return folder, record


class _Record(dict):
    """What a result records of the model it measured and how; :attr:`defaults`: the commands' defaults, for
    naming an earlier result moved aside (None: nothing is moved)."""

    defaults: dict | None = None


def _write_results(folder: Path, record: "_Record") -> None:
    """Before a command writes its results into ``folder``: move an earlier result of other settings aside
    (see :func:`_results_folder`), and say where it went."""
    from pvae.runs import keep_earlier_results

    if record.defaults is None:
        return
    kept = keep_earlier_results(folder, record["command_settings"], record.defaults, record["model_id"])
    if kept is not None:
        print(f"note: the earlier results in {folder} (other settings) are kept in {kept}", file=sys.stderr)


def user_data_defaults(data_config, pair, epochs: int | None, batch_size: int, loaded: dict | None = None):
    """What a run on the user's own data records: the data's absolute path, checksum and kind; the
    likelihood the kind calls for where the model's own cannot hold the data; and, unless given, epochs
    enough for about 2000 steps (10 to 500).

    :param loaded: where to leave the dataset read (``loaded["dataset"]``), so that training does not read the
        file (and hash it) again.
    :returns: ``(data_config, pair_config, epochs)``.
    """
    from pvae import data
    from pvae.config import resolve
    from pvae.userdata import DEFAULT_LIKELIHOOD

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
        steps = max(1, -(-len(dataset.train) // batch_size))
        epochs = min(500, max(10, -(-2000 // steps)))
    return data_config, pair, epochs


def _holds(likelihood: str, kind: str) -> bool:
    from pvae.likelihoods import get_likelihood

    return kind in getattr(get_likelihood(likelihood), "support", (kind,))


def given_options(argv: list[str]) -> set[str]:
    """The options named on a command line, by their field names (``--z-dim 3`` and ``--no-progress`` give
    ``z_dim`` and ``progress``); abbreviations are off, so a flag is always written whole."""
    names = set()
    for token in argv:
        if token.startswith("--") and len(token) > 2:
            flag = token[2:].split("=", 1)[0]
            names.add(flag.replace("-", "_"))
            if flag.startswith("no-"):
                names.add(flag[3:].replace("-", "_"))
    return names


def _resumed_settings(args, out: Path) -> None:
    """``train --resume``: the settings of the run in ``out`` for every option the command line does not
    name, so that ``pvae train --resume --out RUN`` goes on with the run as it was started (options that are
    named must still agree with it, but --epochs and --jit)."""
    from pvae.config import read_config
    from pvae.runs import Run

    given = getattr(args, "given", None)
    if given is None or not (out / "config.json").is_file():
        return  # a parsed namespace of unknown origin, or no run there (Run.open says so below)
    run = Run.open(out)
    read_config(run)  # a config.json this pvae cannot read is refused here, naming the field
    saved = run.config
    if "data" in given:  # said before any data are read (or downloaded)
        from pvae.data import DATASETS

        old = (saved.get("data") or {}).get("data")
        new = args.data if args.data in DATASETS else str(Path(args.data).expanduser().absolute())
        if old is not None and new != old:
            raise ValueError(
                f"--resume continues the run in {out}, trained on {old}: --data {args.data} is other data; leave "
                "--data out, or train a new run on it (another --out)"
            )
    derived = {"checksum", "kind"} if "data" in given else set()  # what pvae found of the run's own file
    for section in ("data", "pair", "train"):
        for name, value in (saved.get(section) or {}).items():
            if name not in given and name not in derived and hasattr(args, name):
                setattr(args, name, tuple(value) if isinstance(value, list) else value)
    own = run.summary().get("evaluation") or {}  # the test log p(x)'s own settings, recorded at its end
    for name in ("samples", "seed"):
        if name not in given and isinstance(own.get(name), int):
            setattr(args, name, own[name])


def train_config(args, loaded: dict | None = None) -> "RunConfig":
    """The configuration ``pvae train`` makes of its parsed options, checked as it checks them before it
    reads any data (the dataclasses' ``__post_init__``, the pair's defaults, the beta schedule); what
    ``pvae sweep`` checks every cell with before the first starts.

    :param args: ``pvae train``'s parsed options.
    :param loaded: where to leave the user's dataset when it is read to find its kind (:func:`user_data_defaults`).
    :returns: the :class:`pvae.config.RunConfig` of the run.
    :raises ValueError: what ``pvae train`` would refuse.
    """
    from pvae.config import PairConfig, RunConfig, resolve
    from pvae.data import DataConfig
    from pvae.device import DeviceConfig
    from pvae.evaluate import EvaluateConfig
    from pvae.pair import resolve_pair
    from pvae.runs import RunOptions
    from pvae.tensorboard import TensorBoardConfig
    from pvae.train import TrainConfig

    from_args(RunOptions, args), from_args(DeviceConfig, args), from_args(TensorBoardConfig, args)
    EvaluateConfig(samples=args.samples, seed=args.seed)
    model, guide, elbo, beta = resolve_pair(args.model, args.guide, args.elbo, args.beta, args.beta_schedule)
    data_config = from_args(DataConfig, args)
    pair = from_args(PairConfig, args, model=model, guide=guide)
    if data_config.is_user_data:  # the file is read now: its kind picks the likelihood, its size the epochs
        data_config, pair, epochs = user_data_defaults(data_config, pair, args.epochs, args.batch_size, loaded)
    else:
        epochs = args.epochs if args.epochs is not None else (100 if args.data == "digits" else 10)
    config = RunConfig(
        data=data_config,
        pair=resolve(pair),
        train=from_args(TrainConfig, args, elbo=elbo, beta=beta, epochs=epochs),
    )
    config.train.schedule()  # refuses a schedule that cannot work
    return config


def _train(args) -> Path:
    import pyro

    from pvae import data, distributed
    from pvae.config import RunConfig, build_pair
    from pvae.device import describe_device
    from pvae.evaluate import EvaluateConfig
    from pvae.memory import check_step_memory
    from pvae.pair import check_compatible, traits
    from pvae.runs import FIGURES, Run, RunOptions, check_writable
    from pvae.tensorboard import FOLDER, TensorBoardConfig, TensorBoardLog, check_available
    from pvae.train import check_estimator, fit

    # every option is checked before anything is read or written
    options = from_args(RunOptions, args)
    if options.resume and options.out:  # the options left out are the run's own
        _resumed_settings(args, Path(options.out))
    board = from_args(TensorBoardConfig, args)
    if board.tensorboard:
        check_available()
    evaluation = EvaluateConfig(samples=args.samples, seed=args.seed)
    device = distributed.device_for_rank(args.device, _device(args))  # said in the banner
    loaded: dict = {}
    config = train_config(args, loaded)
    model_name, guide_name = config.pair.model, config.pair.guide
    elbo, beta, epochs = config.train.elbo, config.train.beta, config.train.epochs
    name = f"{short_name(model_name)}/{short_name(guide_name)}"
    data_name = Path(config.data.data).stem if config.data.is_user_data else config.data.data
    out = Path(options.out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}-{data_name}-{Path(model_name).stem}")
    check_writable(out)
    distributed.check_batch_size(config.train.batch_size)
    distributed.setup(device)  # under torchrun: join the other ranks (no-op otherwise)
    rank0 = distributed.is_main()
    if not rank0:  # rank 0 reads (and downloads, on first use) the data first, so that no two write its cache
        distributed.barrier()
    dataset = loaded.get("dataset") or data.load(config.data)
    if rank0:
        distributed.barrier()
    pyro.set_rng_seed(args.seed)
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
        from pvae.evaluate import estimate_seconds

        test = evaluation_split(dataset, config.data, "test")
        seconds = estimate_seconds(model.eval(), guide.eval(), test.datapoints(), test.y, evaluation.samples)
        model.train(), guide.train()
        _say_estimate("after training, the test log p(x)", seconds, len(test), evaluation.samples, lower="--samples")
    if options.resume:
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
                    _differences(
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
        run, done = Run.create(out, config.to_dict(), overwrite=options.overwrite), 0
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
            f"epoch{'s' if epochs != 1 else ''} on {describe_device(args.device, device)}{processes} → {out}",
            file=sys.stderr,
        )
        if config.data.is_user_data:
            given = ", given each row's total (--library observed)" if config.pair.library == "observed" else ""
            print(f"data: {dataset.describe()}; likelihood {config.pair.likelihood}{given}", file=sys.stderr)
    say = (lambda line: print(line, file=sys.stderr)) if rank0 else None
    log = TensorBoardLog(out / FOLDER, dataset, board, say) if board.tensorboard and rank0 else None
    try:
        history = fit(
            model,
            guide,
            dataset,
            config.train,
            run=run,
            resume=options.resume,
            progress=options.progress,
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
        _evaluate_run(out, evaluation, device)
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
        test = _evaluate_run(out, evaluation, device, dataset=dataset)  # the data training read, not read again
        if log is not None:
            log.finish(sum(m["steps"] for m in history), config.to_dict(), test)
        distributed.shutdown()
        _plot_run(out, device, dataset=dataset)
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted after training ({len(history)} epochs, all saved in {out}); `pvae evaluate {out}` and "
            f"`pvae plot {out}` finish the job"
        ) from None
    return out


class Interrupted(Exception):
    """Ctrl-C stopped a command; the message says what was kept and how to go on."""


def _evaluation_suffix(config, own: dict | None) -> str:
    """'' for an evaluation with the settings of the run's own (training's, ``own``: its ``samples`` and
    ``seed``; the defaults for a run that did not record them), else ``_K100_seed3`` ...: an evaluation with
    other settings is kept beside the run's, never over it."""
    from pvae.evaluate import EvaluateConfig

    default = EvaluateConfig()
    own = own or {"samples": default.samples, "seed": default.seed}
    parts = []
    if config.samples != own.get("samples"):
        parts.append(f"K{config.samples}")
    if config.seed != own.get("seed"):
        parts.append(f"seed{config.seed}")
    return "".join(f"_{p}" for p in parts)


#: Seconds of work past which a command says up front how long it will take.
SAY_ABOVE_SECONDS = 30.0


def _say_estimate(
    what: str, seconds: float | None, points: int, samples: int, rank0: bool = True, lower: str = "--samples, --points"
) -> None:
    """Say how long an importance-sampling pass will take, before it starts, when that is long."""
    from pvae import distributed
    from pvae.memory import format_seconds

    if seconds is None or seconds < SAY_ABOVE_SECONDS or not rank0:
        return
    ranks = distributed.world_size()
    shared = f", shared by {ranks} processes" if ranks > 1 else ""
    print(
        f"{what}: about {format_seconds(seconds / ranks)} for {points} datapoints × K = {samples} samples of z "
        f"(timed on the first batch{shared}); {lower} make it shorter",
        file=sys.stderr,
    )


def _evaluate_run(path, config, device="cpu", say: str | None = None, dataset=None) -> dict:
    from pvae import distributed
    from pvae.config import restore
    from pvae.data import evaluation_split
    from pvae.evaluate import check_finite, describe, estimate_seconds, evaluate_shared
    from pvae.runs import check_writable

    run, run_config, dataset, model, guide = restore(path, device, dataset)
    rank0 = distributed.is_main()
    if rank0:
        _say_device(say, device)
    check_writable(run.path, "the run directory")  # summary.json is written after the work
    part = evaluation_split(dataset, run_config.data, config.split)
    x, y = part.datapoints(config.points), part.y[: config.points]  # read a batch at a time where lazy
    _say_estimate("evaluate", estimate_seconds(model, guide, x, y, config.samples), len(x), config.samples, rank0)
    tic = time.perf_counter()
    # under torchrun the ranks share the datapoints and rank 0 gathers them; otherwise one process, as always
    result = evaluate_shared(
        model, guide, x, y, num_samples=config.samples, batch_size=config.batch_size, seed=config.seed
    )
    if not rank0:
        return {}
    result["seconds"] = time.perf_counter() - tic
    check_finite(result, config.split)  # before the summary keeps it
    partial = len(x) < len(part)
    result["datapoints"] = f"{'first' if partial else 'all'} {len(x)} of the {config.split} split"
    result["binarization"] = run_config.data.binarization_of(config.split)
    result["model_id"] = run.model_id  # the model measured: a later training of the run makes this result stale
    # the split's entry holds the run's own settings (training's); other settings go under their own key
    key = (f"{config.split}_first{len(x)}" if partial else config.split) + _evaluation_suffix(
        config, run.summary().get("evaluation")
    )
    run.update_summary(**{key: result})
    print(f"{config.split}: {describe(result)} [{result['datapoints']}]")
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


def _sample_run(path, config, device="cpu", say: str | None = None) -> Path:
    import math

    import numpy as np
    import torch

    from pvae.config import restore
    from pvae.evaluate import sample_prior
    from pvae.files import atomic_write, save_figure
    from pvae.memory import check_allocation
    from pvae.plots.run import FeatureView, grey_map, plot_feature_rows, plot_images
    from pvae.runs import check_writable

    if config.out:
        check_writable(config.out, "--out", file=True)
    run, _, dataset, model, _ = restore(path, device)
    _say_device(say, device)
    prior = model.prior((1,))
    z_numel = prior.batch_shape.numel() * prior.event_shape.numel()
    numbers = config.n * (math.prod(dataset.x_shape) + z_numel)  # z and the decoder's means, then the figure's
    what = f"-n {config.n} draws of {'×'.join(map(str, dataset.x_shape))} datapoints"
    check_allocation(3 * 4 * numbers, what, "lower -n", device)
    label = _class_index(config.label, dataset)
    if not config.out:
        check_writable(run.path / "figures", "the run directory")
    y = None if label is None else torch.full((config.n,), label, dtype=torch.long)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        images = sample_prior(model, config.n, y)
    title = "decoder means at samples from the prior" + ("" if label is None else f", class {config.label}")
    target = config.path(run.figures)
    if dataset.is_image:
        save_figure(plot_images(images, 10, title, cmap=grey_map(dataset)), target)
    else:  # vectors: a heat map of the draws, and the draws themselves in the data's units
        draws = dataset.unstandardize(images)
        save_figure(plot_feature_rows(draws, FeatureView.of(dataset), title + ", in the data's units"), target)
        values = target.with_suffix(".npy")
        atomic_write(values, lambda handle: np.save(handle, draws.numpy()))
        print(f"the draws as an array ({config.n}, {draws.shape[1]}) in {values}")
    print(f"{config.n} samples{'' if label is None else f' of class {config.label}'} in {target}")
    return target


def _class_index(label: str | None, dataset) -> int | None:
    """The index of the class ``--label`` names (its index, or its name where the classes have names)."""
    if label is None:
        return None
    names = list(dataset.classes or ())
    if label in names:
        return names.index(label)
    if label.isdigit():
        return int(label)  # its range is checked against the model's classes
    known = (
        f"one of {', '.join(names[:20])}{' ...' if len(names) > 20 else ''}, or its index" if names else "a class index"
    )
    raise ValueError(f"--label {label} names no class of {dataset.name}: give {known} 0..{dataset.num_classes - 1}")


def _plot_run(path, device="cpu", say: str | None = None, dataset=None) -> list[Path]:
    from pvae.config import restore
    from pvae.files import save_figure
    from pvae.plots.run import run_figures
    from pvae.runs import check_writable

    run, _, dataset, model, guide = restore(path, device, dataset)
    _say_device(say, device)
    check_writable(run.path / "figures", "the run directory")
    written = []
    for name, fig in run_figures(model, guide, dataset, run.metrics()).items():
        target = run.figures / f"{name}.png"
        save_figure(fig, target)
        written.append(target)
    print(f"figures: {', '.join(p.name for p in written)} in {run.figures}")
    if not run.metrics():
        print(f"no curves.png: {run.path / 'metrics.jsonl'} records no epoch")
    return written


def _compare_run(args) -> Path:
    import pyro

    from pvae.compare import CompareConfig, compare_estimators, write_comparison
    from pvae.config import build_pair, restore
    from pvae.data import evaluation_split
    from pvae.memory import check_step_memory
    from pvae.pair import applicable_estimators, traits

    # checked before the run is read: the names, once the pair is known, are those it can use
    settings = from_args(CompareConfig, args, estimators=args.estimators or CompareConfig().estimators)
    device = _device(args)
    _check_out(settings.out)
    run, config, dataset, model, guide = restore(args.run, device)
    _say_device(args.device, device)
    out, record = _results_folder(settings.out, run, "elbos", settings)
    batch = max(settings.points, settings.grad_points, settings.cost_batch)  # the largest batch a step holds
    sizes = {settings.points: "--points", settings.grad_points: "--grad-points", settings.cost_batch: "--cost-batch"}
    check_step_memory(
        config.pair,
        dataset.x_shape,
        dataset.num_classes,
        batch,
        max(settings.particles),
        device,
        settings.samples if settings.train_epochs else None,
        batch_option=sizes[batch],
    )
    reasons = applicable_estimators(traits(model, guide), dataset, config.train)
    names = args.estimators or tuple(n for n, why in reasons.items() if why is True)
    for name in names:
        if reasons[name] is not True:
            raise ValueError(f"--estimators {name}: {reasons[name]}")
    if not names:
        raise ValueError(f"no estimator applies to this pair: {next(iter(reasons.values()))}")
    settings = replace(settings, estimators=names)
    test = evaluation_split(dataset, config.data, "test")

    def build():
        model, guide = build_pair(config.pair, dataset.x_shape, dataset.num_classes, dataset=dataset)
        return model.to(device), guide.to(device)

    pyro.set_rng_seed(settings.seed)
    head = slice(max(settings.points, settings.grad_points, settings.test_points))  # all compare reads
    x = test.images(head).to(device)
    y = None if test.y is None else test.y[head].to(device)
    results = compare_estimators(
        model, guide, dataset, x, settings, build, config.train, test_y=y, only_usable=not args.estimators
    )
    results.update(run=str(run.path), **record)
    pair = f"{short_name(config.pair.model)}/{short_name(config.pair.guide)}"
    _write_results(out, record)
    write_comparison(results, out, f"ELBO estimators: {pair} on {config.data.data}")
    print(f"results in {out}: results.json, results.md, figures/")
    return out


def _diagnose_run(args) -> Path:
    from pvae import az, distributed
    from pvae.data import evaluation_split
    from pvae.device import module_device
    from pvae.diagnostics import DiagnoseConfig, describe_diagnostics, diagnose
    from pvae.evaluate import estimate_seconds, reconstruct
    from pvae.files import save_figure, write_json
    from pvae.plots.diagnostics import diagnostic_figures
    from pvae.plots.run import grey_map

    config = from_args(DiagnoseConfig, args)  # refuses bad settings before the run is read
    _check_out(config.out)
    run, run_config, dataset, model, guide = _open_run(args)
    rank0 = distributed.rank_from_environment() == 0
    out, record = _results_folder(config.out, run, "diagnostics", config)
    part = evaluation_split(dataset, run_config.data, config.split)
    tic = time.perf_counter()
    head = slice(max(config.points, config.nuts_points, config.latent_points))  # diagnose reads no further
    x = part.images(slice(config.points))
    passes = (("Pareto k̂", config.khat_samples, "--khat-samples"), ("the gaps' log p(x)", config.samples, "--samples"))
    for what, k, option in passes:
        seconds = estimate_seconds(model, guide, x, part.y[: len(x)], k)
        _say_estimate(f"diagnose: {what}", seconds, len(x), k, rank0, f"{option}, --points")
    # under torchrun the ranks share the NUTS chains, rank 0 runs the rest and writes (no-op otherwise)
    distributed.setup(module_device(model))
    results, idata = diagnose(
        model,
        guide,
        part.images(head),
        part.y[head],
        config,
        progress=lambda name: print(f"diagnose: {name} ...", file=sys.stderr),
    )
    distributed.shutdown()
    if not rank0:
        return out
    results.update(
        run=str(run.path),
        **record,  # the model measured (a later training of the run makes this result stale), and how
        pair=f"{run_config.pair.model}/{run_config.pair.guide}",
        split=config.split,
        binarization=run_config.data.binarization_of(config.split),
        seconds=time.perf_counter() - tic,
    )
    _write_results(out, record)
    write_json(out / "diagnostics.json", results)
    if idata is not None:
        az.save_netcdf(idata, out / "posterior.nc")
    worst = None
    if "importance" in results and len(part.x_shape) == 3:  # images: the worst datapoints beside their reconstructions
        order = results["importance"]["worst"][:10]
        k_hat = results["importance"]["per_datapoint"]["k_hat"]
        x = part.images(order)
        worst = (x, reconstruct(model, guide, x, part.y[order]), [k_hat[i] for i in order])
    for name, fig in diagnostic_figures(results, idata, worst, grey_map(dataset)).items():
        save_figure(fig, out / "figures" / f"{name}.png")
    print(describe_diagnostics(results))
    print(f"results in {out}: diagnostics.json{', posterior.nc' if idata is not None else ''}, figures/")
    return out


def _disentangle_run(args) -> Path:
    import numpy as np
    import pyro

    from pvae.data import WITH_FACTORS, DataError
    from pvae.diagnostics import latent_usage
    from pvae.disentangle.score import DisentangleConfig, describe, score
    from pvae.files import save_figure, write_json
    from pvae.memory import check_allocation
    from pvae.plots.disentangle import plot_mutual_information
    from pvae.plots.run import traversal_figure

    config = from_args(DisentangleConfig, args)  # refuses bad settings before the run is read
    _check_out(config.out)
    run, run_config, dataset, model, guide = _open_run(args)
    if dataset.ground_truth is None and run_config.data.is_user_data:
        raise DataError(
            f"{run.path} was trained on your own data without factors: name the columns that hold them with "
            "--factor-columns A,B (or give an .npz a 'factors' array) and train again"
        )
    if dataset.ground_truth is None:
        raise DataError(
            f"{run.path} was trained on {run_config.data.data}, which has no ground-truth factors; disentangle "
            f"scores runs on data that have them ({', '.join(WITH_FACTORS)}), e.g. pvae train --data dsprites "
            "--net burgess --hidden 256 --z-dim 10"
        )
    out, record = _results_folder(config.out, run, "disentanglement", config)
    points, ground_truth = config.largest_draw(), dataset.ground_truth
    prior = model.prior((1,))
    width = prior.batch_shape.numel() * prior.event_shape.numel() + len(ground_truth.factor_sizes)
    what = f"the scores' {points} grid points at once (their factors and codes)"
    check_allocation(2 * 8 * points * width, what, "lower --num-train, --num-eval, --mi-points")  # on the host
    pyro.set_rng_seed(config.seed)  # sampled codes
    tic = time.perf_counter()
    results = score(
        model, guide, dataset.ground_truth, config, progress=lambda n: print(f"disentangle: {n} ...", file=sys.stderr)
    )
    test = dataset.test.images(slice(1000)), dataset.test.y[:1000]
    usage = latent_usage(model, guide, *test, prior_draws=1000)  # KL per dimension and active units
    results["latent"] = {
        "kl_per_dim": usage["kl_per_dim"].tolist() if "kl_per_dim" in usage else None,
        "active": usage["active"],
        "points": len(test[0]),
    }
    results.update(
        run=str(run.path),
        **record,  # the model measured (a later training of the run makes this result stale), and how
        pair=f"{run_config.pair.model}/{run_config.pair.guide}",
        seconds_total=time.perf_counter() - tic,
    )
    _write_results(out, record)
    write_json(out / "disentanglement.json", results)
    information = results["mutual_information"]
    figures = {
        "mutual_information": plot_mutual_information(
            np.array(information["matrix"]), results["factor_names"], np.array(information["entropies"])
        ),
        "traversals": traversal_figure(model, guide, *test, usage=usage, dataset=dataset),
    }
    for name, fig in figures.items():
        save_figure(fig, out / "figures" / f"{name}.png")
    print(describe(results))
    print(f"results in {out}: disentanglement.json, figures/")
    return out


def _quality_run(args) -> Path:
    from pvae.files import save_figure, write_json
    from pvae.plots.quality import plot_likelihood_draws, plot_spectra
    from pvae.plots.run import grey_map
    from pvae.quality.ppc import PPCConfig
    from pvae.quality.score import QualityConfig, describe, quality, spectra

    config = from_args(QualityConfig, args)  # refuses bad settings before the run is read
    ppc = from_args(PPCConfig, args, rows=config.samples, seed=config.seed)
    _check_out(config.out)
    run, run_config, dataset, model, guide = _open_run(args)
    own = replace(ppc, rows=PPCConfig.rows, seed=PPCConfig.seed)  # those two follow --samples and --seed
    out, record = _results_folder(config.out, run, "quality", config, *([] if dataset.is_image else [own]))
    if not dataset.is_image:
        return _posterior_predictive(run, run_config, dataset, model, guide, config, ppc, out, record)
    inception = None
    if config.inception is not None:
        from pvae.quality.inception import load_inception

        inception = load_inception(None if config.inception == "auto" else config.inception)  # fails before work
    grey, classifier = _feature_classifier(run_config, dataset, config)
    tic = time.perf_counter()
    results = quality(
        model, guide, grey, classifier, config, inception, lambda n: print(f"quality: {n} ...", file=sys.stderr)
    )
    images = results.pop("images")
    results.update(
        run=str(run.path),
        **record,  # the model measured (a later training of the run makes this result stale), and how
        pair=f"{run_config.pair.model}/{run_config.pair.guide}",
        seconds_total=time.perf_counter() - tic,
    )
    _write_results(out, record)
    write_json(out / "quality.json", results)
    figures = {
        "spectra": plot_spectra(spectra(results), config.cutoff),
        "likelihood_draws": plot_likelihood_draws(
            images["data"], images["prior"], images["likelihood draws"], cmap=grey_map(grey)
        ),
    }
    for name, fig in figures.items():
        save_figure(fig, out / "figures" / f"{name}.png")
    print(describe(results))
    for what, why in results["notes"].items():
        print(f"not applicable: {what}: {why}")
    print(f"results in {out}: quality.json, figures/")
    return out


def _feature_classifier(run_config, dataset, config):
    """The run's data as the classifier reads them (grey levels, every label) and its feature classifier,
    loaded from the cache or trained (``config.train_classifier``)."""
    from pvae import data
    from pvae.quality.classifier import classifier_path, load_classifier
    from pvae.quality.score import check_sizes
    from pvae.runs import check_writable

    grey_config = replace(run_config.data, binarize="none", labels=None, train_size=None)
    grey = dataset if grey_config == run_config.data else data.load(grey_config)
    check_sizes(config, len(grey.test))  # before a classifier is trained for nothing
    cache = classifier_path(grey_config)
    if config.train_classifier and not cache.is_file():  # one trained is kept there: check before training it
        check_writable(cache.parent, "the classifier cache (in --data-dir, or $PVAE_DATA)")
    try:
        classifier = load_classifier(grey_config, train=config.train_classifier, progress=config.progress)
    except ValueError as error:
        if config.train_classifier or "no classifier" not in str(error):
            raise
        raise ValueError(f"{error}, or drop --no-train-classifier and pvae quality trains it") from None
    accuracy = classifier.info.get("test_accuracy", float("nan"))
    what = "images" if grey.is_image else "rows"
    print(f"quality: features of a classifier of {grey.name} {what} (test accuracy {accuracy:.3f})", file=sys.stderr)
    return grey, classifier


def _posterior_predictive(run, run_config, dataset, model, guide, config, ppc, out: Path, record: dict) -> Path:
    """``pvae quality`` on data that are not images: posterior predictive checks, and where the data have
    labels the classifier's scores of the model's rows."""
    from pvae.files import save_figure, write_json
    from pvae.plots.quality import plot_ppc
    from pvae.quality.ppc import posterior_predictive_check
    from pvae.quality.score import describe, quality

    if config.inception is not None:
        raise ValueError("--inception scores images; this run's data are vectors: drop --inception")
    tic = time.perf_counter()
    results: dict = {"posterior_predictive": posterior_predictive_check(model, guide, dataset, ppc)}
    if not dataset.has_labels:
        results["classifier_skipped"] = (
            "the data have no labels (a table's --label-column, an .npz's y, an image folder's class folders give them)"
        )
    elif len(dataset.test) <= config.neighbours:
        results["classifier_skipped"] = (
            f"the test split holds {len(dataset.test)} rows, not more than --neighbours {config.neighbours}"
        )
    else:
        grey, classifier = _feature_classifier(run_config, dataset, config)
        scores = quality(
            model, guide, grey, classifier, config, None, lambda n: print(f"quality: {n} ...", file=sys.stderr)
        )
        scores.pop("images")
        results.update(scores)
    results.update(
        run=str(run.path),
        **record,  # the model measured (a later training of the run makes this result stale), and how
        pair=f"{run_config.pair.model}/{run_config.pair.guide}",
        seconds_total=time.perf_counter() - tic,
    )
    _write_results(out, record)
    write_json(out / "quality.json", results)
    save_figure(plot_ppc(results["posterior_predictive"]), out / "figures" / "ppc.png")
    print(describe(results))
    for what, why in results.get("notes", {}).items():
        print(f"not applicable: {what}: {why}")
    print(f"results in {out}: quality.json, figures/ppc.png")
    return out


def _train_command(args) -> None:
    from pvae import distributed

    out = _train(args)
    if distributed.rank_from_environment() == 0:
        board = f", tensorboard/ (tensorboard --logdir {out})" if args.tensorboard else ""
        print(f"results in {out}: summary.json, metrics.jsonl, checkpoint.pt, figures/{board}")


def _evaluate_command(args) -> None:
    from pvae import distributed
    from pvae.evaluate import EvaluateConfig

    config = from_args(EvaluateConfig, args)
    device = distributed.device_for_rank(args.device, _device(args))
    distributed.setup(device)  # under torchrun the ranks share the datapoints (no-op otherwise)
    _evaluate_run(args.run, config, device, say=args.device)
    distributed.shutdown()


def _sample_command(args) -> None:
    from pvae.evaluate import SampleConfig

    config = from_args(SampleConfig, args)
    _sample_run(args.run, config, _device(args), say=args.device)


def _runs_command(args) -> None:
    from pvae.files import atomic_write, save_figure
    from pvae.runs import check_writable
    from pvae.study import RunsConfig, check_plot, collect, table, to_csv, to_markdown

    config = from_args(RunsConfig, args)
    for option, target in (("--csv", config.csv), ("--markdown", config.markdown)):
        if target:
            check_writable(target, option, file=True)
    records = collect(args.folder)
    result = table(records, group=config.group)
    figure = None
    if config.plot:
        from pvae.plots.study import plot_against

        grouped = result if config.group else table(records)  # error bars are over the seeds of a group
        check_plot(grouped, records, config.plot, config.against)
        out = Path(config.out or args.folder)
        check_writable(out)
        figure = out / f"{config.plot}-vs-{config.against}.png"
        save_figure(plot_against(grouped, config.plot, config.against), figure)
    text = to_markdown(result)
    for target, content in ((config.csv, to_csv(result)), (config.markdown, text)):
        if target:
            atomic_write(target, lambda handle, content=content: handle.write(content.encode()))
    print(text, end="")
    written = [str(p) for p in (config.csv, config.markdown, figure) if p]
    if written:
        print(f"written: {', '.join(written)}", file=sys.stderr)


def _report_command(args) -> None:
    from pvae.report import ReportConfig, write_report

    out = write_report(args.run, from_args(ReportConfig, args))
    print(f"report in {out}")


def _encode_command(args) -> Path:
    import pyro

    from pvae.encode import EncodeConfig, encode, file_rows, reconstruct, run_rows, write_codes
    from pvae.runs import check_writable

    config = from_args(EncodeConfig, args)  # refuses bad settings before the run is read
    if config.out:
        check_writable(config.out, "--out", file=True, example="encoded.npz")
    run, run_config, dataset, model, guide = _open_run(args)
    target = Path(config.out) if config.out else run.path / "encoded.npz"
    if not config.out:
        check_writable(run.path, "the run directory")
    if config.data is not None:
        rows = file_rows(dataset, run_config.data, config.data)
        source = config.data
    else:
        rows = run_rows(dataset, run_config.data)
        source = run_config.data.data if run_config.data.is_user_data else None
    if target.suffix.lower() == ".h5ad" and (source is None or Path(source).suffix.lower() != ".h5ad"):
        raise ValueError(f"--out {target}: an .h5ad output is a copy of the .h5ad the data came from; choose .npz")
    pyro.set_rng_seed(config.seed)
    codes = encode(model, guide, rows.x, rows.y, config.draws, config.batch_size)
    if config.reconstruct:
        mean = codes["mean"] if "mean" in codes else codes["draws"].mean(1)
        codes["reconstruction"] = reconstruct(model, dataset, mean, rows.y, config.batch_size)
    write_codes(target, codes, rows, source)
    what = f"{config.draws} draws of z" if config.draws else "q(z|x)'s mean and sd"
    extra = " and the decoder's means" if config.reconstruct else ""
    print(f"{what}{extra} of {len(rows.x)} rows in {target}")
    return target


def _upgrade_command(args) -> None:
    from pvae.runs import CHECKPOINT, Run, RunError, upgrade_checkpoint

    path = Run.open(args.run).path / CHECKPOINT
    if not path.is_file():
        raise RunError(f"{path.parent} has no {CHECKPOINT}: nothing to upgrade")
    if upgrade_checkpoint(path):
        print(f"{path}: rewritten in the current form (tensors and plain values only)")
    else:
        print(f"{path} is already in the current form: nothing written")


def _sweep_command(args) -> None:
    from pvae import distributed
    from pvae.sweep import Sweep, SweepConfig, run_sweep

    def train(argv: list[str]) -> None:
        try:
            _train_command(build_parser(only="train").parse_args(["train", *argv]))
        except Interrupted as stop:  # the sweep stops as a whole on Ctrl-C
            raise KeyboardInterrupt(str(stop)) from None

    parser = next(a for a in build_parser(only="train")._actions if a.dest == "command").choices["train"]
    sweep = Sweep(args.out, from_args(SweepConfig, args), args.train_options, parser, train_config, args.device)
    try:
        run_sweep(sweep, train, writes=distributed.rank_from_environment() == 0)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; the same command goes on where it stopped: {sweep.command()}") from None


#: Subcommand → what runs it, given the parsed arguments.
_HANDLERS = {
    "train": _train_command,
    "evaluate": _evaluate_command,
    "plot": lambda args: _plot_run(args.run, _device(args), say=args.device),
    "sample": _sample_command,
    "compare-elbos": _compare_run,
    "diagnose": _diagnose_run,
    "disentangle": _disentangle_run,
    "quality": _quality_run,
    "runs": _runs_command,
    "report": _report_command,
    "sweep": _sweep_command,
    "encode": _encode_command,
    "upgrade": _upgrade_command,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pvae`` console script.

    :returns: the exit status: 0, 2 for an input the message explains, 130 after Ctrl-C.
    """
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if a in COMMANDS), None)
    rest = None
    if command == "sweep" and "--" in argv:  # the options of every cell's `pvae train`
        argv, rest = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    if command == "sweep":  # `--grid --beta=1,2`: a grid item spelt as a flag, read as the grid spells it
        from pvae.sweep import item_words

        argv = item_words(argv)
    try:
        args = build_parser(only=command).parse_args(argv)
        args.train_options = rest or []
        args.given = given_options(argv)
    except KeyboardInterrupt:  # while the modules a command needs are imported
        print(
            f"pvae {command or ''}: interrupted before anything ran; nothing was written".replace(" :", ":"),
            file=sys.stderr,
        )
        return INTERRUPTED
    from pvae import distributed
    from pvae.data import DataError
    from pvae.runs import RunError

    # under torchrun, a rank's messages say which rank it is, and a failing rank leaves at once
    # (os._exit, never waiting for the others): torchrun sees its status and stops the rest
    who = f"{distributed.rank_prefix()}pvae {args.command}"
    if (
        distributed.under_torchrun()
        and args.command not in ("train", "evaluate", "diagnose")
        and (args.command != "sweep" or args.cell is None)
    ):
        print(
            f"{who}: error: under torchrun only `pvae train`, `pvae evaluate`, `pvae diagnose` and `pvae sweep --cell "
            f"I` run (their ranks share the work); run `pvae {args.command}` as one process, without torchrun",
            file=sys.stderr,
        )
        return distributed.leave(2)
    try:
        _HANDLERS[args.command](args)
    except (DataError, RunError, ValueError, FloatingPointError) as error:
        print(f"{who}: error: {error}", file=sys.stderr)
        return distributed.leave(2)
    except Interrupted as stop:
        print(f"{who}: {stop}", file=sys.stderr)
        return distributed.leave(INTERRUPTED)
    except KeyboardInterrupt:
        print(f"\n{who}: interrupted", file=sys.stderr)
        return distributed.leave(INTERRUPTED)
    except Exception as error:
        if not distributed.under_torchrun():
            raise
        if distributed.lost_a_rank(error):  # another rank died (killed, out of memory): not this rank's fault
            what = "stopped after its last checkpoint" if args.command == "train" else "stopped"
            resume = "; the same torchrun command with --resume goes on from it" if args.command == "train" else ""
            print(
                f"{who}: error: another process of this torchrun ended without a word (killed, or out of memory; "
                f"its own log says which), so this one {what}{resume}",
                file=sys.stderr,
            )
            return distributed.leave(2)
        import traceback

        traceback.print_exc()
        print(f"{who}: {type(error).__name__}: {error}", file=sys.stderr)
        return distributed.leave(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
