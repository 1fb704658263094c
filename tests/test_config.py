"""The configs: each option declared once, and the Python API refusing what the command line refuses."""

import argparse
import dataclasses
import math
from dataclasses import dataclass, field

import pytest

from pvae.base import options
from pvae.base.runs import RunOptions
from pvae.cli import COMMANDS, build_parser, command_options, main
from pvae.data import DataConfig
from pvae.engine.config import PairConfig, RunConfig
from pvae.engine.train import TrainConfig
from pvae.measures.compare import CompareConfig
from pvae.measures.diagnostics import DiagnoseConfig
from pvae.measures.disentangle.score import DisentangleConfig
from pvae.measures.evaluate import EvaluateConfig, SampleConfig
from pvae.studies.study import RunsConfig
from pvae.studies.tensorboard import TensorBoardConfig

NAN, INF = float("nan"), float("inf")

# (command, flags, the config the flags make, its keyword arguments, words of the message)
REFUSED = [
    ("train", ["--hidden", "-5"], PairConfig, {"hidden": (-5,)}, "--hidden must be positive widths"),
    ("train", ["--hidden", "0"], PairConfig, {"hidden": (0,)}, "--hidden must be positive widths"),
    ("train", ["--hidden", "400,0"], PairConfig, {"hidden": (400, 0)}, "--hidden must be positive widths"),
    ("train", ["--z-dim", "0"], PairConfig, {"z_dim": 0}, "--z-dim must be a positive number, not 0"),
    ("train", ["--flows", "-2"], PairConfig, {"flows": -2}, "--flows must be a non-negative number, not -2"),
    ("train", ["--aux-weight", "nan"], PairConfig, {"aux_weight": NAN}, "--aux-weight must be a non-negative"),
    ("train", ["--beta", "nan"], TrainConfig, {"beta": NAN}, "--beta must be a non-negative number, not nan"),
    ("train", ["--beta", "inf"], TrainConfig, {"beta": INF}, "--beta must be a non-negative number, not inf"),
    ("train", ["--beta", "-1"], TrainConfig, {"beta": -1.0}, "--beta must be a non-negative number, not -1.0"),
    ("train", ["--alpha", "nan"], TrainConfig, {"alpha": NAN}, "--alpha must be a non-negative number, not nan"),
    ("train", ["--alpha", "-3"], TrainConfig, {"alpha": -3.0}, "--alpha must be a non-negative number, not -3.0"),
    ("train", ["--alpha", "1"], TrainConfig, {"alpha": 1.0}, "alpha=1 is the ELBO: use --elbo trace"),
    ("train", ["--lr", "0"], TrainConfig, {"lr": 0.0}, "--lr must be a positive number, not 0.0"),
    ("train", ["--lr", "inf"], TrainConfig, {"lr": INF}, "--lr must be a positive number, not inf"),
    ("train", ["--particles", "0"], TrainConfig, {"particles": 0}, "--particles must be a positive number, not 0"),
    ("train", ["--epochs", "0"], TrainConfig, {"epochs": 0}, "--epochs must be a positive number, not 0"),
    ("train", ["--batch-size", "-8"], TrainConfig, {"batch_size": -8}, "--batch-size must be a positive number"),
    ("train", ["--beta-ramp", "1.5"], TrainConfig, {"beta_ramp": 1.5}, "0 < ramp ≤ 1"),
    ("train", ["--max-seconds", "-1"], TrainConfig, {"max_seconds": -1.0}, "--max-seconds must be a non-negative"),
    ("train", ["--labels", "0"], DataConfig, {"labels": 0}, "--labels must be a positive number, not 0"),
    ("train", ["--val-size", "0"], DataConfig, {"val_size": 0}, "--val-size must be a positive number"),
    ("train", ["--resume", "--overwrite"], RunOptions, {"resume": True, "overwrite": True}, "give one of them"),
    ("evaluate", ["--samples", "0"], EvaluateConfig, {"samples": 0}, "--samples must be a positive number, not 0"),
    ("evaluate", ["--points", "0"], EvaluateConfig, {"points": 0}, "--points must be a positive number, not 0"),
    ("sample", ["-n", "0"], SampleConfig, {"n": 0}, "-n must be a positive number, not 0"),
    ("sample", ["--label", "-1"], SampleConfig, {"label": "-1"}, "--label must be a class: its index (a non-negative"),
    ("compare-elbos", ["--repeats", "0"], CompareConfig, {"repeats": 0}, "--repeats must be a positive number"),
    ("compare-elbos", ["--alpha", "-3"], CompareConfig, {"alpha": -3.0}, "--alpha must be a non-negative number"),
    ("compare-elbos", ["--alpha", "1"], CompareConfig, {"alpha": 1.0}, "alpha=1 is the ELBO"),
    ("compare-elbos", ["--particles", "0,5"], CompareConfig, {"particles": (0, 5)}, "--particles must be positive"),
    ("compare-elbos", ["--estimators", "elbow"], CompareConfig, {"estimators": ("elbow",)}, "'elbow' is not one of"),
    ("diagnose", ["--khat-samples", "20"], DiagnoseConfig, {"khat_samples": 20}, "--khat-samples must be at least 100"),
    ("diagnose", ["--chains", "1"], DiagnoseConfig, {"chains": 1}, "--chains must be at least 2"),
    ("diagnose", ["--coverage", "1.5"], DiagnoseConfig, {"coverage": 1.5}, "--coverage must be a mass in (0, 1)"),
    ("diagnose", ["--samples", "0"], DiagnoseConfig, {"samples": 0}, "--samples must be a positive number, not 0"),
    ("evaluate", ["--points", "1"], EvaluateConfig, {"points": 1}, "--points must be at least 2 (the ± is a standard"),
    ("diagnose", ["--max-r-hat", "0.5"], DiagnoseConfig, {"max_r_hat": 0.5}, "--max-r-hat must be above 1 (R-hat"),
    ("diagnose", ["--max-r-hat", "1"], DiagnoseConfig, {"max_r_hat": 1.0}, "--max-r-hat must be above 1"),
    ("train", ["--tensorboard-every", "5"], TensorBoardConfig, {"tensorboard_every": 5},
     "--tensorboard-every applies with --tensorboard: add --tensorboard or drop it"),
    ("train", ["--tensorboard-images", "2"], TensorBoardConfig, {"tensorboard_images": 2},
     "--tensorboard-images applies with --tensorboard: add --tensorboard or drop it"),
    ("compare-elbos", ["--estimators", "trace,iwae,trace"], CompareConfig, {"estimators": ("trace", "iwae", "trace")},
     "--estimators names trace twice: give each once, e.g. --estimators trace,iwae"),
    ("disentangle", ["--metrics", "mig,mig"], DisentangleConfig, {"metrics": ("mig", "mig")}, "names mig twice"),
    ("disentangle", ["--metrics", "sap", "--metric-options", "mig.bins=10"], DisentangleConfig,
     {"metrics": ("sap",), "metric_options": ("mig.bins=10",)}, "mig is not among --metrics (sap)"),
    ("disentangle", ["--metric-options", "mig.bins=5,mig.bins=10"], DisentangleConfig,
     {"metric_options": ("mig.bins=5", "mig.bins=10")}, "--metric-options sets mig.bins twice"),
    ("disentangle", ["--num-eval", "1"], DisentangleConfig, {"num_eval": 1},
     "--num-eval 1: beta_vae needs num_eval ≥ 2"),
    ("disentangle", ["--mi-points", "1"], DisentangleConfig, {"mi_points": 1}, "--mi-points must be at least 2"),
    ("runs", ["--csv", "t.txt", "--markdown", "t.txt"], RunsConfig, {"csv": "t.txt", "markdown": "t.txt"},
     "--csv t.txt and --markdown t.txt name one file"),
]  # fmt: skip


@pytest.mark.parametrize("command,flags,cls,kwargs,message", REFUSED, ids=[" ".join(c[1]) for c in REFUSED])
def test_the_dataclass_and_the_command_line_refuse_the_same_values(
    tmp_path, capsys, command, flags, cls, kwargs, message
):
    with pytest.raises(ValueError) as refused:
        cls(**kwargs)
    assert message in str(refused.value)
    target = tmp_path / "out"
    run = [] if command == "train" else [str(tmp_path / "no-run")]  # refused before the run is read
    out = [] if command == "evaluate" else ["--out", str(target)]
    assert main([command, *run, *flags, *out]) == 2
    err = capsys.readouterr().err
    assert err == f"pvae {command}: error: {refused.value}\n"
    assert not target.exists()


@pytest.mark.parametrize(
    "argv,words",
    [
        (["train", "--hidden", "400,,200"], "argument --hidden: takes comma-separated integers such as"),
        (["train", "--z-dim", "two"], "argument --z-dim: expected an integer, not 'two'"),
        (["train", "--beta", "one"], "argument --beta: expected a number, not 'one'"),
        (["train", "--elbo", "elbow"], "argument --elbo: invalid choice: 'elbow'"),
        (["evaluate", "RUN", "--split", "tset"], "argument --split: invalid choice: 'tset'"),
        (["compare-elbos", "RUN", "--estimators", "trace,,iwae"], "takes comma-separated names such as"),
    ],
)
def test_values_that_do_not_parse_name_the_flag_and_its_format(capsys, argv, words):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert words in capsys.readouterr().err


def test_an_empty_hidden_list_means_an_affine_map():
    args = build_parser(only="train").parse_args(["train", "--hidden", ""])
    assert args.hidden == () and PairConfig(hidden=args.hidden).hidden == ()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_is_a_field_and_every_field_an_option(command):
    """One declaration: the flags of a command are exactly the fields of its configs, the field
    name spelt as the flag, with the field's default (or the one the command works out later)."""
    parser = build_parser(only=command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    flags = {a.dest: a for a in sub._actions if a.option_strings and a.dest != "help"}
    fields = {}
    for cls, kwargs in command_options(command):
        only = kwargs.get("only")
        for f in dataclasses.fields(cls):
            if only is None or f.name in only:
                fields[f.name] = (f, kwargs.get("defaults", {}), options.docstring_params(cls)[f.name])
    assert set(flags) == set(fields)
    for name, (f, later, text) in fields.items():
        assert options.flag(name) in flags[name].option_strings
        default = later[name][0] if name in later else f.default
        assert flags[name].default == default, name
        assert flags[name].help.startswith(text.rstrip(".").replace("%", "%%")), name


def _config_classes() -> list[type]:
    """Every class that gives a command options, and each part of a record combined from several."""
    found = []
    for command in COMMANDS:
        for cls, _ in command_options(command):
            for each in (cls, *getattr(cls, "__pvae_parts__", ())):
                if each not in found:
                    found.append(each)
    return found


#: A value of another type than each kind an option takes (a number for text, text for a number ...).
_WRONG = {int: "3", float: "x", str: 3, bool: "yes", tuple: 3}
#: What a class needs given to be made at all (a sweep needs its cells).
_NEEDS = {"SweepConfig": {"grid": ("beta=1,2",)}}


@pytest.mark.parametrize("cls", _config_classes(), ids=lambda cls: cls.__name__)
def test_every_config_refuses_a_value_of_another_type_whichever_way_it_is_made(cls):
    """One rule (:func:`pvae.base.options.config`): every class of options, the engine's ``TrainConfig`` as much as
    a command's record, refuses a value of the wrong type when it is made, naming the flag and the type, and does
    so again when a copy is made with :func:`dataclasses.replace`; a setting it does not have names the nearest."""
    import typing

    assert options.is_config(cls)
    needs = _NEEDS.get(cls.__name__, {})
    default = cls(**needs)
    checked = 0
    for f in dataclasses.fields(cls):
        kind = [k for k in typing.get_args(typing.get_type_hints(cls)[f.name]) if k is not type(None)]
        kind = typing.get_type_hints(cls)[f.name] if not kind else kind[0]
        wrong = _WRONG.get(typing.get_origin(kind) or kind)
        if wrong is None:  # a kind the options do not parse: the class checks it itself
            continue
        with pytest.raises(ValueError, match=rf"^{options.flag(f.name)} must be "):
            cls(**{**needs, f.name: wrong})
        with pytest.raises(ValueError, match=rf"^{options.flag(f.name)} must be "):
            dataclasses.replace(default, **{f.name: wrong})
        checked += 1
    assert checked == len(dataclasses.fields(cls))  # every field of a config is of a kind the options parse
    first = dataclasses.fields(cls)[0].name
    with pytest.raises(TypeError, match=rf"^{cls.__name__} has no setting '{first}_'; did you mean {first}\?"):
        cls(**needs, **{f"{first}_": 1})
    with pytest.raises(TypeError, match=rf"^{cls.__name__} has no setting 'nosuch'; its settings: {first}"):
        dataclasses.replace(default, nosuch=1)


def test_one_name_per_concept_across_commands():
    """K importance samples is --samples, datapoints --points, wherever they appear."""

    def dests(command):
        parser = build_parser(only=command)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
        return {a.dest for a in sub._actions}

    for command in ("train", "evaluate", "compare-elbos", "diagnose"):
        assert "samples" in dests(command) and not {"iwae_samples", "log_px_samples"} & dests(command)
    for command in ("evaluate", "compare-elbos", "diagnose"):
        assert "points" in dests(command) and not {"limit", "n_points"} & dests(command)
    assert "khat_samples" in dests("diagnose") and "particles" in dests("train")


def test_help_choices_and_types_come_from_the_dataclass():
    @options.config
    class Example:
        """An example.

        :param width: how wide,
            in pixels.
        :param mode: how.
        :param sizes: the sizes.
        :param fast: go fast.
        :param careful: be careful.
        :param scale: a scale.
        """

        width: int = 3
        mode: str = field(default="a", metadata=options.choices(("a", "b")))
        sizes: tuple[int, ...] = (1, 2)
        fast: bool = False
        careful: bool = True
        scale: float | None = None

    parser = argparse.ArgumentParser()
    options.add_options(parser, Example)
    helps = {a.dest: a.help for a in parser._actions}
    assert helps["width"] == "how wide, in pixels (default: 3)"
    args = parser.parse_args(["--width", "5", "--mode", "b", "--sizes", "4,5,6", "--fast", "--no-careful"])
    assert options.from_args(Example, args) == Example(5, "b", (4, 5, 6), True, False, None)
    assert options.from_args(Example, parser.parse_args(["--scale", "0.5"])).scale == 0.5
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "c"])

    @options.config
    class Undocumented:
        """No parameters described."""

        width: int = 3

    with pytest.raises(TypeError, match=r"Undocumented.width has no ':param width:' line"):
        options.add_options(argparse.ArgumentParser(), Undocumented)

    @dataclass(frozen=True)
    class Plain:
        """A dataclass that does not check its values.

        :param width: how wide.
        """

        width: int = 3

    assert Plain(width="x").width == "x"  # what the rule is for
    with pytest.raises(TypeError, match="Plain gives options: declare it with @options.config"):
        options.add_options(argparse.ArgumentParser(), Plain)


def test_outputs_that_name_one_file_and_options_that_add_up(tmp_path):
    """:func:`options.output` fields may not name one file (links followed); :func:`options.words` and
    :func:`options.repeatable` options add up when given again (the first replaces the default);
    :func:`options.default_is` shows the default a
    ``None`` stands for."""

    @options.config
    class Example:
        """An example.

        :param table: a table.
        :param page: a page.
        :param names: names.
        :param items: items.
        :param every: how often.
        """

        table: str | None = field(default=None, metadata=options.output())
        page: str | None = field(default=None, metadata=options.output())
        names: tuple[str, ...] = field(default=("d",), metadata=options.words("NAME"))
        items: tuple[str, ...] | None = field(default=None, metadata=options.repeatable())
        every: int | None = field(default=None, metadata=options.default_is("50"))

        def __post_init__(self):
            options.check_outputs(self)

    Example(table="a.csv", page="a.md")
    (tmp_path / "real.txt").write_text("")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    with pytest.raises(ValueError, match=r"--table .*real.txt and --page .*link.txt name one file: the second"):
        Example(table=str(tmp_path / "real.txt"), page=str(tmp_path / "link.txt"))
    parser = argparse.ArgumentParser()
    options.add_options(parser, Example)
    args = parser.parse_args(["--names", "a", "b", "--names", "c", "--items", "x,y", "--items", "z"])
    assert options.from_args(Example, args) == Example(names=("a", "b", "c"), items=("x", "y", "z"))
    assert options.from_args(Example, parser.parse_args([])) == Example()
    assert parser.parse_args(["--names", "e"]).names == ("e",)  # the first use replaces the default
    assert {a.dest: a.help for a in parser._actions}["every"] == "how often (default: 50)"


def test_the_tensorboard_intervals_keep_their_defaults_with_tensorboard():
    assert (TensorBoardConfig(True).tensorboard_every, TensorBoardConfig(True).tensorboard_images) == (50, 5)
    assert TensorBoardConfig(True, 3, 1) == TensorBoardConfig(
        tensorboard=True, tensorboard_every=3, tensorboard_images=1
    )
    assert TensorBoardConfig().tensorboard_every is None  # nothing is logged: no interval


def test_config_json_of_earlier_runs_still_loads():
    """Runs written before the options took their flags' names keep loading."""
    old = {
        "data": {"name": "digits", "data_dir": None, "binarize": "dynamic", "val_size": None, "seed": 3},
        "pair": {"model": "vae", "guide": "gaussian", "z_dim": 2, "hidden": [64]},
        "train": {"elbo": "iwae", "num_particles": 5, "epochs": 2},
    }
    config = RunConfig.from_dict(old)
    assert (config.data.data, config.data.data_seed, config.train.particles) == ("digits", 3, 5)
    assert config.pair.hidden == (64,)
    assert RunConfig.from_dict(config.to_dict()) == config


def test_defaults_are_valid():
    for cls in (DataConfig, PairConfig, TrainConfig, EvaluateConfig, SampleConfig, CompareConfig, DiagnoseConfig):
        cls()  # no default is refused
    assert math.isfinite(TrainConfig().lr)


def test_the_help_of_the_pair_options_names_every_registered_choice():
    """``pvae train --help`` lists the models, guides, likelihoods and nets by name: the docstring it
    comes from keeps up with the registries."""
    from pvae.base.options import docstring_params
    from pvae.engine.config import PairConfig
    from pvae.engine.likelihoods import LIKELIHOODS
    from pvae.engine.nets import NETS
    from pvae.guides import GUIDES
    from pvae.models import MODELS, PRESETS

    helps = docstring_params(PairConfig)
    for option, names in (
        ("model", [*MODELS, *PRESETS]),
        ("guide", GUIDES),
        ("likelihood", LIKELIHOODS),
        ("net", NETS),
    ):
        listed = {w.strip(",.()") for w in helps[option].split()}
        assert set(names) <= listed, (option, set(names) - listed)


@pytest.mark.parametrize(
    "section, values, words",
    [
        ("pair", {"z_dim": "two"}, 'pair.z_dim is "two", not an integer (or null)'),
        ("pair", {"hidden": [16, "wide"]}, 'pair.hidden is [16, "wide"], not a list of integers (or null)'),
        ("train", {"beta": "4"}, 'train.beta is "4", not a number'),
        ("train", {"vectorize": "yes"}, 'train.vectorize is "yes", not true or false'),
        ("train", {"epochs": True}, "train.epochs is true, not an integer (or null)"),
        ("data", {"data": 3}, "data.data is 3, not text"),
        ("data", {"factor_columns": "a,b"}, 'data.factor_columns is "a,b", not a list of strings'),
    ],
)
def test_a_config_json_value_of_another_type_names_the_field_the_value_and_the_type(section, values, words):
    """config.json edited by hand (``"z_dim": "two"``): the field, the value and the type it should be, not
    Python's "must be real number, not str"; whole numbers written as floats still read as integers."""
    config = RunConfig().to_dict()
    config[section].update(values)
    with pytest.raises(ValueError) as refused:
        RunConfig.from_dict(config)
    assert str(refused.value) == words
    config = RunConfig().to_dict()
    config["pair"].update(z_dim=4.0, hidden=[16.0])
    config["train"].update(beta=1)
    read = RunConfig.from_dict(config)
    assert (read.pair.z_dim, read.pair.hidden, read.train.beta) == (4, (16,), 1)
    assert type(read.pair.z_dim) is int and read.pair.hidden == (16,)
    with pytest.raises(ValueError, match="config section 'train' is \\[1\\], not an object of settings"):
        RunConfig.from_dict({**RunConfig().to_dict(), "train": [1]})
