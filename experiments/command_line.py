"""The command lines of the experiment scripts, generated as pvae's own are (:mod:`pvae.base.options`).

A script's option that is a pvae setting comes from the config class that declares it (``add_options(parser,
TrainConfig, only=("epochs",), defaults={"epochs": (3, "3")})`` where the script has a default of its own); an
option of the script alone is a field of a frozen config dataclass in the script. The two settings that several
scripts share and pvae has none of, the results folder and torch's threads, are declared here.
"""

import argparse
import contextlib

from pvae.base import options
from pvae.base.runs import RunError
from pvae.data import DataError


@options.config
class Results:
    """Where a script writes its results.

    :param out: folder of the results (results.json, results.md and any figures).
    """

    out: str | None = None

    def __post_init__(self):
        options.require(self, "out", self.out is None or bool(str(self.out).strip()), "a folder")


@options.config
class Threads:
    """How many threads torch computes with.

    :param threads: torch threads.
    """

    threads: int | None = None

    def __post_init__(self):
        options.positive(self, "threads")


def parser(doc: str, **kwargs) -> argparse.ArgumentParser:
    """A script's parser, described by the first paragraph of its docstring ``doc``.

    :param kwargs: more keyword arguments of :class:`argparse.ArgumentParser` (``epilog`` ...).
    """
    return options.Parser(description=doc.split("\n\n")[0], **kwargs)


@contextlib.contextmanager
def refusals(parser: argparse.ArgumentParser):
    """What a config or a run refuses (a :class:`ValueError`, :class:`pvae.data.DataError` or
    :class:`pvae.base.runs.RunError`, whose message names the option and the fix) ends the script as a wrong
    option does: one line ``PROG: error: ...``, exit status 2."""
    try:
        yield
    except (ValueError, DataError, RunError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")


def configs(parser: argparse.ArgumentParser, args: argparse.Namespace, *classes: type, **values) -> list:
    """One instance of each of ``classes`` from the parsed ``args`` (:func:`pvae.base.options.from_args`), its
    ``__post_init__``'s refusal said as a wrong option is (:func:`refusals`).

    :param values: field → value, given to each class that has the field (they win over ``args``).
    """
    with refusals(parser):
        built = []
        for cls in classes:
            names = {f for f in cls.__dataclass_fields__}
            built.append(options.from_args(cls, args, **{k: v for k, v in values.items() if k in names}))
        return built
