"""The ``pvae`` command: the one place where strings become configs.

Every option is a field of a frozen config dataclass (its name, type, default and help declared
once, there); :mod:`pvae.base.options` generates each subcommand's flags from the classes in
:func:`command_options`, and the dataclasses' ``__post_init__`` refuses what cannot work, here as in
the Python API. Failures the user can fix end as one line ``pvae CMD: error: ...`` and exit status 2;
Ctrl-C as one line and exit status 130 (128 + SIGINT, the shell's convention).
"""

import argparse
import difflib
import importlib
import sys

from pvae import __version__
from pvae.base import options
from pvae.base.options import add_options, from_args

#: Exit status of a run stopped by Ctrl-C (128 + SIGINT), distinct from 2, a bad input.
INTERRUPTED = 130

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

#: Where a command computes: the last config of every command that computes (train's settings hold it).
DEVICE = ("pvae.base.device:DeviceConfig", {})

#: Subcommand → its one-line help, and the config classes whose fields are its options, each with
#: the keyword arguments of :func:`pvae.base.options.add_options` (which fields, which defaults come
#: from elsewhere). Classes are named, not imported, so that a command imports only what it runs.
COMMANDS: dict[str, tuple[str, list[tuple[str, dict]]]] = {
    "train": ("train a model/guide pair, then evaluate and plot it", [("pvae.app.train:TrainSettings", {})]),
    "evaluate": (
        "ELBO, its terms and importance-sampled log p(x) of a run",
        [("pvae.measures.evaluate:EvaluateConfig", {}), DEVICE],
    ),
    "plot": ("write the figures of a run into RUN/figures", [DEVICE]),
    "sample": (
        "draw images from a trained model, of one class if it has labels",
        [("pvae.measures.evaluate:SampleConfig", {}), DEVICE],
    ),
    "compare-elbos": (
        "compare ELBO estimators on a trained pair: bounds, gradient signal-to-noise, cost, result of training",
        [("pvae.measures.compare:CompareConfig", {"defaults": {"estimators": (None, "all the pair can use")}}), DEVICE],
    ),
    "diagnose": (
        "how good is q(z|x): PSIS k̂, NUTS, the gaps, posterior collapse",
        [("pvae.measures.diagnostics:DiagnoseConfig", {}), DEVICE],
    ),
    "disentangle": (
        "score the codes against the data's ground-truth factors: beta-VAE, FactorVAE, MIG, DCI, SAP, modularity",
        [("pvae.measures.disentangle.score:DisentangleConfig", {"defaults": DISENTANGLE_DEFAULTS}), DEVICE],
    ),
    "quality": (
        "score samples against the test images in a classifier's features: Fréchet distance, precision, recall, "
        "sharpness",
        [
            ("pvae.measures.quality.score:QualityConfig", {"defaults": QUALITY_DEFAULTS}),
            (
                "pvae.measures.quality.ppc:PPCConfig",
                {"only": ("replicates", "coverage", "pairs")},
            ),  # data that are not images
            DEVICE,
        ],
    ),
    "runs": (
        "one table of every run under a folder: the settings that differ, the test numbers, mean ± sd over seeds",
        [("pvae.studies.study:RunsConfig", {"defaults": {"out": (None, "the folder of the runs")}})],
    ),
    "report": (
        "write one self-contained HTML page of a run, or of the runs under a folder",
        [("pvae.studies.report:ReportConfig", {"defaults": {"out": (None, "RUN/report.html")}})],
    ),
    "sweep": (
        "train one run per cell of a grid over pvae train's options (given after --), each its own run directory; "
        "resumable, one cell at a time (--cell I) or N at once (--workers N)",
        [("pvae.studies.sweep:SweepConfig", {}), DEVICE],
    ),
    "encode": (
        "write q(z|x)'s mean and sd (or draws) of every row of the run's data, or of a new file with its columns",
        [("pvae.measures.encode:EncodeConfig", {"defaults": {"out": (None, "RUN/encoded.npz")}}), DEVICE],
    ),
    "upgrade": (
        "rewrite a checkpoint an older pvae wrote in the form pvae reads without running code (admits only "
        "NumPy's array constructors; refuses a file that names anything else)",
        [],
    ),
}

#: Subcommand → the application's function that runs it: called with the command's positional arguments,
#: then one instance of each of its config classes (:func:`command_options`), in order.
RUNS = {
    "train": "pvae.app.train:train",
    "evaluate": "pvae.app.measures:evaluate",
    "plot": "pvae.app.measures:plot",
    "sample": "pvae.app.measures:sample",
    "compare-elbos": "pvae.app.measures:compare",
    "diagnose": "pvae.app.measures:diagnose",
    "disentangle": "pvae.app.measures:disentangle",
    "quality": "pvae.app.measures:quality",
    "encode": "pvae.app.measures:encode",
    "runs": "pvae.app.studies:runs",
    "report": "pvae.app.studies:report",
    "sweep": "pvae.app.studies:sweep",
    "upgrade": "pvae.app.studies:upgrade",
}

#: Subcommand → its positional arguments, where they are not one run directory.
POSITIONALS = {
    "train": [],
    "runs": [("folder", {"help": "folder holding run directories (searched recursively)"})],
    "report": [("run", {"help": "a run directory, or a folder holding run directories"})],
    "sweep": [("out", {"help": "the sweep's folder: sweep.json and one run directory per cell"})],
}


#: Commands that only read what other commands wrote (tables, pages): no --device, nothing to compute.
READERS = ("runs", "report", "upgrade")


def command_options(command: str) -> list[tuple[type, dict]]:
    """The config classes of ``command`` (see :data:`COMMANDS`), imported, with their keyword arguments of
    :func:`pvae.base.options.add_options`.

    :param command: a key of :data:`COMMANDS`.
    """
    classes = []
    for name, kwargs in COMMANDS[command][1]:
        module, _, attr = name.partition(":")
        classes.append((getattr(importlib.import_module(module), attr), kwargs))
    return classes


class Parser(options.Parser):
    """:class:`pvae.base.options.Parser` (one-line errors, no abbreviations), whose unknown option is an error that
    suggests the nearest one it has."""

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


def _function(command: str):
    module, _, name = RUNS[command].partition(":")
    return getattr(importlib.import_module(module), name)


def _dispatch(args) -> None:
    """Run ``args.command``: its application function called with its positional arguments, then one config of
    each class of :func:`command_options`, built from the parsed options in that order (so that each refuses
    what it refuses in the order the command reads them)."""
    positionals = [getattr(args, name) for name, _ in POSITIONALS.get(args.command, [("run", {})])]
    configs = [from_args(cls, args) for cls, _ in command_options(args.command)]
    keywords = {"given": args.given} if args.command == "train" else {}
    if args.command == "sweep":  # the options after --, every cell's, read as pvae train reads them
        from pvae.app.train import TrainSettings
        from pvae.studies.sweep import refuse_reserved

        def refuse(message):
            raise ValueError(f"after --: {message}")

        refuse_reserved(args.train_options)  # before a --help there prints pvae train's help
        train = Parser(prog="pvae train", add_help=False)
        for cls, kwargs in command_options("train"):
            add_options(train, cls, **kwargs)
        train.error = refuse
        base = from_args(TrainSettings, train.parse_args(args.train_options))
        keywords = {"base": base, "given": given_options(args.train_options), "train_options": args.train_options}
    _function(args.command)(*positionals, *configs, **keywords)


def _train_options_before_the_separator(argv: list[str]) -> None:
    """``pvae sweep OUT --grid beta=1,4 --epochs 5``: an option of ``pvae train`` given where the sweep's own go
    is refused with the fix (the cells' shared options go after ``--``), not as an unknown option."""

    def flags(command: str) -> set[str]:
        child = next(a for a in build_parser(only=command)._actions if a.dest == "command").choices[command]
        return set(child._option_string_actions)

    words = [token.split("=", 1)[0] for token in argv if token.startswith("--")]
    stray = [word for word in words if word not in flags("sweep")]
    if stray and stray[0] in flags("train"):
        Parser(prog="pvae sweep").error(
            f"{stray[0]} is an option of pvae train: give the options every cell shares after --, e.g. pvae sweep "
            f"OUT --grid beta=1,4 -- {stray[0]} ..."
        )


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
        from pvae.studies.sweep import item_words

        argv = item_words(argv)
    try:
        if command == "sweep" and rest is None:
            _train_options_before_the_separator(argv)
        args = build_parser(only=command).parse_args(argv)
        args.train_options = rest or []
        args.given = given_options(argv)
    except KeyboardInterrupt:  # while the modules a command needs are imported
        print(
            f"pvae {command or ''}: interrupted before anything ran; nothing was written".replace(" :", ":"),
            file=sys.stderr,
        )
        return INTERRUPTED
    from pvae.app.common import Interrupted
    from pvae.base import distributed
    from pvae.base.runs import RunError
    from pvae.data import DataError

    # under torchrun, a rank's messages say which rank it is, and every rank leaves through os._exit
    # (distributed.leave): a failing one never waits for the others (torchrun sees its status and stops the
    # rest), a finished one skips the interpreter's teardown, where torch's distributed objects can abort it
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
        _dispatch(args)
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
    return distributed.leave(0)  # a rank that is done ends here, past the teardown that can abort it


if __name__ == "__main__":
    sys.exit(main())
