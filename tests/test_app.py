"""The application's functions, called from Python: the settings they take refuse what the command line refuses,
by name, and the command line builds exactly the settings a Python caller would."""

import dataclasses
from pathlib import Path

import pytest

from pvae.app import measures, studies
from pvae.app.train import TrainSettings, run_config
from pvae.base.device import DeviceConfig
from pvae.base.options import from_args
from pvae.cli import build_parser, command_options
from pvae.measures.evaluate import EvaluateConfig
from pvae.studies.sweep import SweepConfig


@pytest.mark.parametrize(
    "values, words",
    [
        ({"epochs": "x"}, "--epochs must be an integer, not 'x'"),
        ({"z_dim": 2.5}, "--z-dim must be an integer, not 2.5"),
        ({"beta": "1"}, "--beta must be a number, not '1'"),
        ({"hidden": 400}, "--hidden must be a tuple of integers, not 400"),
        ({"progress": "no"}, "--progress must be true or false, not 'no'"),
        ({"samples": 0}, "--samples must be a positive number, not 0"),  # EvaluateConfig's own rule
        ({"beta": -1.0}, "--beta must be a non-negative number, not -1.0"),  # TrainConfig's own rule
        ({"resume": True, "overwrite": True}, "--resume continues the run in --out, --overwrite replaces it"),
    ],
)
def test_train_settings_refuse_what_the_command_line_refuses_when_they_are_made(values, words):
    with pytest.raises(ValueError) as refused:
        TrainSettings(**values)
    assert str(refused.value).startswith(words)
    with pytest.raises(ValueError):  # a variant is made through __init__ too
        dataclasses.replace(TrainSettings(), **values)


def test_a_misspelt_setting_is_refused_with_the_nearest_name_and_a_list_becomes_a_tuple():
    with pytest.raises(TypeError, match="TrainSettings has no setting 'zdim'; did you mean z_dim?"):
        TrainSettings(zdim=3)
    assert TrainSettings(hidden=[32, 16]).hidden == (32, 16)  # frozen, hashable, as the parser gives it
    assert TrainSettings(out=Path("runs/a")).out == Path("runs/a")  # a path may be a Path


def test_the_command_line_builds_the_settings_a_python_caller_writes():
    argv = ["train", "--epochs", "3", "--z-dim", "4", "--hidden", "32,16", "--beta", "2", "--no-progress"]
    args = build_parser(only="train").parse_args(argv)
    ((settings_class, _),) = command_options("train")
    from_cli = from_args(settings_class, args)
    from_python = TrainSettings(epochs=3, z_dim=4, hidden=(32, 16), beta=2.0, progress=False)
    assert from_cli == from_python
    config = run_config(from_python)
    assert (config.train.epochs, config.pair.z_dim, config.pair.hidden, config.train.beta) == (3, 4, (32, 16), 2.0)
    assert run_config(TrainSettings()).train.epochs == 100  # the data's own: digits declare 100


def test_a_command_function_takes_its_own_config_or_none_for_its_defaults(tmp_path):
    with pytest.raises(TypeError, match=r"config must be a pvae\.measures\.evaluate\.EvaluateConfig .*not 'x'"):
        measures.evaluate(tmp_path, "x")
    with pytest.raises(TypeError, match=r"device must be a pvae\.base\.device\.DeviceConfig"):
        measures.plot(tmp_path, "cpu")
    for function in (measures.diagnose, measures.compare, measures.quality, measures.encode, measures.disentangle):
        with pytest.raises(Exception) as refused:  # the defaults are taken; then the folder is no run
            function(tmp_path / "no-run")
        assert "config.json" in str(refused.value) or "not a run directory" in str(refused.value), function
    assert EvaluateConfig(samples=7) == EvaluateConfig(samples=7)  # the configs are values


def test_a_sweeps_grid_given_as_one_string_is_refused_with_the_tuple_it_wants(tmp_path):
    with pytest.raises(ValueError, match=r"--grid must be a tuple of strings, e.g. \('beta=1,2',\), not 'beta=1,2'"):
        SweepConfig(grid="beta=1,2")
    with pytest.raises(ValueError, match="pvae train has no option 'nosuch'. Its options: "):
        studies.sweep(tmp_path / "s", SweepConfig(grid=("nosuch=1",)), DeviceConfig(), base=TrainSettings(epochs=1))
    assert not (tmp_path / "s").exists()
