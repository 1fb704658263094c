"""Command-line options generated from frozen config dataclasses: each option is declared once.

A field becomes the flag ``--field-name`` (a one-letter field ``-n``); its type comes from the
annotation (``int``, ``float``, ``str``, ``bool``, ``tuple[int, ...]`` or ``tuple[str, ...]`` as a
comma-separated list, any of them ``| None``), its default from the field, its help from the
``:param name:`` line of the class docstring, and its choices from the field's metadata
(:func:`choices`). A class of options is declared with :func:`config`, which makes it a frozen dataclass whose
every instance refuses a value of the wrong type or outside its choices before the class's own checks
(``__post_init__``): the Python API refuses what the command line refuses, and :func:`flag` gives its messages
the name the user typed.

This module imports no other module of pvae.
"""

import argparse
import dataclasses
import difflib
import inspect
import math
import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Sequence

#: The key of a field's metadata that holds its choices: a sequence or a callable returning one.
CHOICES = "choices"
#: The key of a field's metadata that makes a ``tuple[str, ...]`` option take one or more words
#: (``--grid beta=1,2 seed=0,1``) instead of one comma-separated word.
WORDS = "words"
#: The key of a field's metadata that makes a comma-separated list option add up when given again (:func:`repeatable`).
REPEATABLE = "repeatable"
#: The key of a field's metadata that marks it as a file the command writes (:func:`output`).
OUTPUT = "output"
#: The key of a field's metadata that says, in words, the default a ``None`` stands for (:func:`default_is`).
DEFAULT_IS = "default_is"


def choices(values: Sequence[str] | Callable[[], Iterable[str]]) -> dict:
    """Field metadata declaring the allowed values of an option.

    :param values: the names, or a callable returning them (for a registry filled after the
        class is defined).
    :returns: the ``metadata`` of :func:`dataclasses.field`.
    """
    return {CHOICES: values}


def words(metavar: str = "WORD") -> dict:
    """Field metadata for a ``tuple[str, ...]`` option that takes one or more words, each an item
    (for items that hold commas themselves: ``--grid beta=1,2 seed=0,1``); given again, its words add to
    those given before (``--grid beta=1,2 --grid seed=0,1`` is ``--grid beta=1,2 seed=0,1``).

    :param metavar: how the help shows a word.
    :returns: the ``metadata`` of :func:`dataclasses.field`.
    """
    return {WORDS: metavar}


def repeatable(**more) -> dict:
    """Field metadata for a comma-separated list option whose items add up when it is given again
    (``--metric-options dci.n_estimators=20 --metric-options mig.bins=10`` is both), where a second use would
    otherwise replace the first without a word.

    :param more: other metadata (e.g. ``**choices(...)``) merged in.
    :returns: the ``metadata`` of :func:`dataclasses.field`.
    """
    return {REPEATABLE: True, **more}


def output(**more) -> dict:
    """Field metadata marking an option as a file the command writes: :func:`check_outputs` refuses two such
    options that name one file (the second would replace the first).

    :param more: other metadata (e.g. ``**choices(...)``) merged in.
    :returns: the ``metadata`` of :func:`dataclasses.field`.
    """
    return {OUTPUT: True, **more}


def default_is(words: str) -> dict:
    """Field metadata of an option whose default is ``None`` so that a value given can be told from none given
    (e.g. an option that applies only with another): the help shows ``(default: WORDS)``.

    :param words: the default that ``None`` stands for, as the help shows it (``"50"``).
    :returns: the ``metadata`` of :func:`dataclasses.field`.
    """
    return {DEFAULT_IS: words}


def flag(name: str) -> str:
    """The command-line spelling of the field ``name``: ``z_dim`` → ``--z-dim``, ``n`` → ``-n``."""
    return f"-{name}" if len(name) == 1 else "--" + name.replace("_", "-")


def choices_of(f: dataclasses.Field) -> tuple[str, ...] | None:
    """The allowed values of field ``f``, or ``None`` when any value of its type goes."""
    values = f.metadata.get(CHOICES)
    if values is None:
        return None
    return tuple(values() if callable(values) else values)


def config(cls: type | None = None, /, *, error: type[ValueError] = ValueError):
    """Declare a class of options: ``cls`` becomes a frozen dataclass whose every instance, however it is made
    (the command line, the Python API, a stored ``config.json``, :func:`dataclasses.replace`), first refuses a
    field of the wrong type (:func:`check_types`) or outside its choices (:func:`check_choices`), then runs the
    class's own ``__post_init__``, which checks what only the class knows (ranges, combinations); a setting it does
    not have is refused naming the nearest one it has. This is the one rule every config class of pvae follows, so
    none checks its types by hand.

    :param cls: the class, its fields annotated as a dataclass's are, its options documented by ``:param:``
        lines of its docstring.
    :param error: what a refusal raises, for a class whose own refusals are a kind of ``ValueError`` of its own
        (``@options.config(error=DataError)``).
    :returns: the frozen dataclass (with ``error`` only: the decorator).
    """
    if cls is None:
        return lambda cls: config(cls, error=error)
    own = cls.__dict__.get("__post_init__")

    def __post_init__(self):
        try:
            check_types(self)
            check_choices(self)
        except ValueError as refused:
            if error is ValueError:
                raise
            raise error(str(refused)) from None
        if own is not None:
            own(self)

    __post_init__.__doc__ = own.__doc__ if own is not None else None
    cls.__post_init__ = __post_init__
    cls.__pvae_config__ = True
    made = dataclasses.dataclass(frozen=True)(cls)
    init, names = made.__init__, [f.name for f in dataclasses.fields(made)]

    def __init__(self, *args, **kwargs):  # a misspelt setting names the nearest (dataclasses.replace comes here too)
        for key in kwargs:
            if key not in names:
                near = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
                hint = f"; did you mean {near[0]}?" if near else f"; its settings: {', '.join(names)}"
                raise TypeError(f"{made.__name__} has no setting {key!r}{hint}")
        init(self, *args, **kwargs)

    __init__.__signature__ = inspect.signature(init)
    made.__init__ = __init__
    return made


def is_config(cls: type) -> bool:
    """Whether ``cls`` was declared with :func:`config` (the test of the rule reads this)."""
    return bool(cls.__dict__.get("__pvae_config__")) and dataclasses.is_dataclass(cls)


def check_choices(config) -> None:
    """Refuse a value outside its field's :func:`choices`, naming the flag and the allowed values, and a list of
    choices that names one twice (``--metrics mig,mig``: the second would be computed again, or silently not).

    :param config: a dataclass instance (called from its ``__post_init__``).
    :raises ValueError: for the first field whose value is not among its choices, or names one twice.
    """
    for f in dataclasses.fields(config):
        allowed = choices_of(f)
        value = getattr(config, f.name)
        if allowed is None or value is None:
            continue
        for item in value if isinstance(value, tuple) else (value,):
            if item not in allowed:
                near = difflib.get_close_matches(str(item), allowed, n=1, cutoff=0.6)
                hint = f"; did you mean {near[0]}?" if near else ""
                shown = ", ".join(repr(a) if "," in a else a for a in allowed)  # a name with a comma, quoted
                raise ValueError(f"{flag(f.name)} {item!r} is not one of {shown}{hint}")
        if isinstance(value, tuple) and len(set(value)) < len(value):
            twice = next(item for i, item in enumerate(value) if item in value[:i])
            once = ",".join(map(str, dict.fromkeys(value)))
            raise ValueError(f"{flag(f.name)} names {twice} twice: give each once, e.g. {flag(f.name)} {once}")


def check_outputs(config) -> None:
    """Refuse two :func:`output` options of ``config`` that name the same file (the same path once made
    absolute, links followed): the second file written would replace the first.

    :param config: a dataclass instance (called from its ``__post_init__``).
    :raises ValueError: naming both options, the file and the fix.
    """
    seen: dict[str, str] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if not f.metadata.get(OUTPUT) or value is None or value == "":
            continue
        key = os.path.realpath(os.path.expanduser(os.fspath(value)))
        if key in seen:
            raise ValueError(
                f"{seen[key]} and {flag(f.name)} {value} name one file: the second would replace the first; give "
                "each its own file"
            )
        seen[key] = f"{flag(f.name)} {value}"


#: What a value of each type an option takes is, in a message: one, and a list of them.
KIND_WORDS = {int: "an integer", float: "a number", str: "text", bool: "true or false"}
LIST_WORDS = {int: "integers", float: "numbers", str: "strings", bool: "true or false values"}


def _of_kind(value, kind) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str | os.PathLike)  # a path given as a Path is a path
    return True  # a kind this module does not parse: its class checks it


def check_types(config) -> None:
    """Refuse a field of the dataclass instance ``config`` whose value is not of its annotated type (an integer,
    a number, text, true or false, a tuple of them, any of them or ``None`` where the annotation says so): the
    Python API's values are checked as the command line's are parsed. A list given for a tuple becomes the tuple.

    :raises ValueError: naming the option, the type it takes and the value given.
    """
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        kind, optional = _strip_none(hints[f.name])
        if value is None and optional:
            continue
        if typing.get_origin(kind) is tuple:
            item = typing.get_args(kind)[0]
            if isinstance(value, list):  # the frozen record keeps a tuple
                value = tuple(value)
                object.__setattr__(config, f.name, value)
            if isinstance(value, tuple) and all(_of_kind(v, item) for v in value):
                continue
            words = LIST_WORDS.get(item, str(item))
            hint = f", e.g. ({value!r},)" if isinstance(value, str) else ""
            raise ValueError(f"{flag(f.name)} must be a tuple of {words}{hint}, not {value!r}")
        if not _of_kind(value, kind):
            allowed = choices_of(f)
            what = f"one of {', '.join(allowed)}" if allowed is not None else KIND_WORDS[kind]
            raise ValueError(f"{flag(f.name)} must be {what}, not {value!r}")


def require(config, name: str, ok: bool, what: str) -> None:
    """Raise unless ``ok``: ``--name must be WHAT, not VALUE``.

    :param config: the dataclass instance.
    :param name: the field checked.
    :param ok: whether its value is acceptable.
    :param what: what it must be, in words that say the fix (``"a positive integer"``).
    :raises ValueError: naming the flag, the rule and the value given.
    """
    if not ok:
        value = getattr(config, name)
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
        raise ValueError(f"{flag(name)} must be {what}, not {shown}")


def positive(config, *names: str, zero: bool = False) -> None:
    """Refuse a field of ``names`` that is not a positive (with ``zero``: non-negative) finite
    number; ``None`` passes (it means "the default")."""
    for name in names:
        value = getattr(config, name)
        if value is None:
            continue
        ok = math.isfinite(value) and (value >= 0 if zero else value > 0)
        require(config, name, ok, "a non-negative number" if zero else "a positive number")


#: Seeds are what numpy's generators take: 0 ≤ seed < 2³².
MAX_SEED = 2**32 - 1


def seed(config, *names: str) -> None:
    """Refuse a seed field of ``names`` outside ``0 … 2³² − 1``."""
    for name in names:
        value = getattr(config, name)
        require(config, name, value is None or 0 <= value <= MAX_SEED, f"an integer from 0 to {MAX_SEED}")


def finite(config, *names: str) -> None:
    """Refuse a field of ``names`` that is NaN or infinite; ``None`` passes."""
    for name in names:
        value = getattr(config, name)
        require(config, name, value is None or math.isfinite(value), "a finite number")


def docstring_params(cls: type) -> dict[str, str]:
    """``:param name: text`` of ``cls``'s docstring, continuation lines joined: name → text."""
    doc = inspect.getdoc(cls) or ""
    params: dict[str, str] = {}
    name = None
    for line in doc.splitlines():
        match = re.match(r":param (\w+):\s*(.*)", line.strip())
        if match:
            name = match.group(1)
            params[name] = match.group(2)
        elif name and line.startswith((" ", "\t")) and line.strip():
            params[name] += " " + line.strip()
        else:
            name = None
    return {k: re.sub(r"``(.*?)``|:\w+:`~?([^`]*)`", lambda m: m.group(1) or m.group(2), v) for k, v in params.items()}


def _strip_none(annotation) -> tuple[object, bool]:
    """``X | None`` → ``(X, True)``, ``X`` → ``(X, False)``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _number(kind: type) -> Callable[[str], object]:
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, not {text!r}") from None

    parse.__name__ = kind.__name__
    return parse


def _listing(kind: type, default) -> Callable[[str], tuple]:
    """A parser of comma-separated values: ``"512,256"`` → (512, 256), ``""`` → ()."""
    example = _shown(default) if isinstance(default, tuple) and default else ("512,256" if kind is int else "a,b")

    def parse(text: str) -> tuple:
        if not text.strip():
            return ()
        items = [item.strip() for item in text.split(",")]
        try:
            if "" in items:
                raise ValueError
            return tuple(kind(item) for item in items)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"takes comma-separated {'integers' if kind is int else 'names'} such as {example}, not {text!r}"
            ) from None

    parse.__name__ = f"list of {kind.__name__}"
    return parse


def _shown(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if value else '"" (none)'
    return str(value)


class _Extend(argparse.Action):
    """``action="extend"`` for an option whose default is a tuple (or ``None``): its first use replaces the
    default, each later use adds its items."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = getattr(namespace, self.dest, None)
        earlier = () if given is self.default else given or ()  # the default itself: not given yet
        setattr(namespace, self.dest, (*earlier, *values))


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``PROG: error: ...`` (with a pointer to ``--help``), with
    exit status 2, and that takes no abbreviation of an option (``--epoch`` is not silently ``--epochs``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        """Print one line naming the problem (and ``--help``), and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_options(
    parser: argparse.ArgumentParser,
    cls: type,
    only: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    defaults: dict[str, tuple[object, str]] | None = None,
) -> None:
    """Add one option per field of the dataclass ``cls`` to ``parser``.

    :param parser: the (sub)command's parser.
    :param cls: a class declared with :func:`config`, whose docstring has a ``:param name:`` line for every field.
    :param only: the fields to add (default: all but ``exclude``).
    :param exclude: fields the command sets itself.
    :param defaults: field → ``(default, words)`` for the fields whose command-line default is
        worked out later from other options (e.g. the model's own estimator): ``words`` says how,
        in the help.
    :raises TypeError: for a class not declared with :func:`config` (its instances would not refuse what the
        command line refuses), a field without help or of a type this module cannot parse.
    """
    if not is_config(cls):
        raise TypeError(f"{cls.__name__} gives options: declare it with @options.config, not a plain dataclass")
    helps = docstring_params(cls)
    hints = typing.get_type_hints(cls)
    defaults = defaults or {}
    wanted = None if only is None else set(only)
    for f in dataclasses.fields(cls):
        if (wanted is not None and f.name not in wanted) or f.name in exclude:
            continue
        if f.name not in helps:
            raise TypeError(f"{cls.__name__}.{f.name} has no ':param {f.name}:' line in the class docstring")
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        default, said = defaults.get(f.name, (default, f.metadata.get(DEFAULT_IS)))
        kind, optional = _strip_none(hints[f.name])
        text = helps[f.name].replace("%", "%%").rstrip(".")
        kwargs: dict = {"dest": f.name, "default": default}
        if kind is bool:
            if default:
                kwargs["action"] = argparse.BooleanOptionalAction
                text += " (default: on)"
            else:
                kwargs["action"] = "store_true"
                text += " (default: off)"
        else:
            if typing.get_origin(kind) is tuple and f.metadata.get(WORDS):
                item = typing.get_args(kind)[0]
                kwargs["type"] = _number(item) if item in (int, float) else item
                kwargs["nargs"] = "+"
                kwargs["metavar"] = f.metadata[WORDS]
                kwargs["action"] = _Extend  # given twice, the words add up (not: the second replaces the first)
            elif typing.get_origin(kind) is tuple:
                item = typing.get_args(kind)[0]
                kwargs["type"] = _listing(item, default)
                kwargs["metavar"] = "A,B,..."
                if f.metadata.get(REPEATABLE):
                    kwargs["action"] = _Extend
            elif kind in (int, float, str):
                kwargs["type"] = kind if kind is str else _number(kind)
                kwargs["metavar"] = {int: "N", float: "X", str: "TEXT"}[kind]
            else:
                raise TypeError(f"{cls.__name__}.{f.name}: cannot parse {hints[f.name]} from the command line")
            allowed = choices_of(f)
            if allowed is not None and typing.get_origin(kind) is tuple:
                text += f", of {', '.join(allowed)}"
            elif allowed is not None:
                kwargs["choices"] = allowed
                kwargs.pop("metavar")
            if said is not None:
                text += f" (default: {said})"
            elif default is not None:
                text += f" (default: {_shown(default)})"
            elif optional and "None" not in text:
                text += " (default: none)"
        parser.add_argument(flag(f.name), help=text, **kwargs)


def combine(name: str, doc: str, *parts: tuple[type, dict]) -> type:
    """One frozen dataclass whose fields are those of several config classes: every setting of a command in
    one flat record, so that a variant of it is ``dataclasses.replace(base, beta=4.0)`` and its options come
    from one class. Each field keeps the type, default, help and metadata its own class declares (the option
    is still declared once, there); :func:`from_args` builds each class back from the record.

    :param name: the new class's name.
    :param doc: the class docstring's opening text; the ``:param:`` lines of the fields follow it.
    :param parts: ``(cls, {"only": names, "defaults": {name: words}})`` per config class: ``only`` the fields to
        take (default: all), ``defaults`` the fields whose default is ``None`` here, worked out later from other
        settings, with ``words`` that say how (the help shows them).
    :returns: the frozen dataclass.
    :raises TypeError: for a field two classes declare.
    """
    spec, lines, owner = [], [], {}
    for cls, how in parts:
        helps, hints = docstring_params(cls), typing.get_type_hints(cls)
        wanted = how.get("only")
        derived = how.get("defaults", {})
        for f in dataclasses.fields(cls):
            if wanted is not None and f.name not in wanted:
                continue
            if f.name in owner:
                raise TypeError(f"{name}: {owner[f.name]} and {cls.__name__} both declare {f.name}")
            owner[f.name] = cls.__name__
            kind, metadata = hints[f.name], dict(f.metadata)
            if f.name in derived:
                kind, default = (
                    kind | None,
                    dataclasses.field(default=None, metadata={**metadata, DEFAULT_IS: derived[f.name]}),
                )
            elif f.default_factory is not dataclasses.MISSING:
                default = dataclasses.field(default_factory=f.default_factory, metadata=metadata)
            else:
                default = dataclasses.field(default=f.default, metadata=metadata)
            spec.append((f.name, kind, default))
            lines.append(f":param {f.name}: {helps.get(f.name, '')}")
    classes = [(cls, how.get("only"), how.get("defaults", {})) for cls, how in parts]

    def __post_init__(self):
        for cls, wanted, derived in classes:  # each class refuses what it refuses, as the command line's are
            names = [f.name for f in dataclasses.fields(cls) if wanted is None or f.name in wanted]
            # a derived setting left unset is worked out later: the class checks it then
            given = {name: getattr(self, name) for name in names}
            cls(**{name: value for name, value in given.items() if not (name in derived and value is None)})

    namespace = {"__annotations__": {n: kind for n, kind, _ in spec}, **{n: default for n, _, default in spec}}
    combined = config(types.new_class(name, (), {}, lambda ns: ns.update(namespace, __post_init__=__post_init__)))
    combined.__pvae_parts__ = tuple(cls for cls, _ in parts)  # each still a config of its own (the rule's test)
    combined.__doc__ = doc.strip() + "\n\n" + "\n".join(lines)
    caller = inspect.currentframe().f_back  # the module that declares the record names it
    combined.__module__ = caller.f_globals.get("__name__", __name__) if caller else __name__
    return combined


def given_fields(config) -> set[str]:
    """The fields of the dataclass instance ``config`` whose value differs from their default: the settings
    a caller of the Python API chose (the command line knows which options were typed; see the CLI)."""
    chosen = set()
    for f in dataclasses.fields(config):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if getattr(config, f.name) != default:
            chosen.add(f.name)
    return chosen


def from_args(cls: type, args: argparse.Namespace, **values):
    """An instance of ``cls`` from the parsed ``args``: every field found in ``args`` (others
    keep their default), then ``values``, which win; the list of a :func:`words` option becomes a tuple."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    return cls(**{**given, **values})


#: Settings that change how a result is computed or shown, not what it is.
HOW_NOT_WHAT = frozenset({"out", "progress", "train_classifier", "batch_size", "jit"})


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def what_settings(*configs) -> tuple[dict, dict]:
    """What ``configs`` (dataclasses) say a result is — every field but those of :data:`HOW_NOT_WHAT` — and
    their defaults, as JSON values (tuples as lists), for a result to record how it was made.

    :returns: ``(settings, defaults)``, by field name.
    """
    settings, defaults = {}, {}
    for config in configs:
        for f in dataclasses.fields(config):
            if f.name in HOW_NOT_WHAT:
                continue
            settings[f.name] = _plain(getattr(config, f.name))
            if f.default is not dataclasses.MISSING:
                defaults[f.name] = _plain(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                defaults[f.name] = _plain(f.default_factory())
    return settings, defaults


#: The words a text may say on and off with (:func:`parse_value`).
TRUE, FALSE = ("true", "on", "yes", "1"), ("false", "off", "no", "0")


class _Refusing(argparse.ArgumentParser):
    """A parser whose error is a :class:`ValueError` with argparse's message, not an exit."""

    def error(self, message: str):
        """Raise ``message``.

        :raises ValueError: always.
        """
        raise ValueError(message)


def _field(cls: type, name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def _default_of(f: dataclasses.Field):
    return f.default if f.default_factory is dataclasses.MISSING else f.default_factory()


def is_switch(cls: type, name: str) -> bool:
    """Whether the field ``name`` of the dataclass ``cls`` is on or off (a ``bool``: its option takes no value)."""
    return _strip_none(typing.get_type_hints(cls)[name])[0] is bool


def parse_value(cls: type, name: str, text: str):
    """The value the text ``text`` gives the field ``name`` of the dataclass ``cls``, read as the command line
    reads ``--name=TEXT`` (the same types, choices and messages); an on/off field takes true, on, yes or 1, and
    false, off, no or 0.

    :param cls: a dataclass whose fields :func:`add_options` makes options of.
    :param name: the field.
    :param text: the value as a user wrote it (``"512,256"`` for a list of integers).
    :raises ValueError: with the command line's message (``argument --lr: expected a number, not 'x'``).
    """
    if is_switch(cls, name):
        if text.lower() not in TRUE + FALSE:
            raise ValueError(f"{name} is on or off: give true or false, not {text!r}")
        return text.lower() in TRUE
    parser = _Refusing(add_help=False, allow_abbrev=False)
    add_options(parser, cls, only=(name,))
    value = getattr(parser.parse_args([f"{flag(name)}={text}"]), name)
    return tuple(value) if isinstance(value, list) else value


def switch_words(cls: type, name: str, on: bool) -> list[str]:
    """The words that set the on/off field ``name`` of the dataclass ``cls`` on the command line: ``--name`` for
    on; for off, ``--no-name`` where the option is on by default, else none (off is its default)."""
    if on:
        return [flag(name)]
    return [f"--no-{flag(name)[2:]}"] if _default_of(_field(cls, name)) and len(name) > 1 else []


def to_argv(config, names: Iterable[str] | None = None) -> list[str]:
    """The command-line words that give the dataclass instance ``config`` its values of the fields ``names``, in
    the order of its fields, as :func:`add_options` reads them back: ``--epochs 1 --hidden 32,16 --no-vectorize``
    (``--beta=-1``: a value that starts with a dash, or an empty one, is joined to its flag).

    :param config: a dataclass instance.
    :param names: the fields to give (other names are passed over); default: those that differ from their
        default (:func:`given_fields`).
    :raises ValueError: for a field to give that holds ``None`` where its default is not: no option says it.
    """
    chosen = given_fields(config) if names is None else set(names)
    words: list[str] = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name not in chosen or (value is None and _default_of(f) is None):
            continue
        if value is None:
            raise ValueError(f"{flag(f.name)}: no option gives None; leave it out to have its default")
        if isinstance(value, bool):
            words += switch_words(type(config), f.name, value)
            continue
        if isinstance(value, tuple) and f.metadata.get(WORDS):
            words += [flag(f.name), *map(str, value)]
            continue
        text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        words += [f"{flag(f.name)}={text}"] if not text or text.startswith("-") else [flag(f.name), text]
    return words


#: What an option takes, in words, by the name of its parser's type.
_KINDS = {
    "int": "integer",
    "float": "number",
    "str": "text",
    "list of int": "integers, comma-separated",
    "list of str": "names, comma-separated",
}


@dataclasses.dataclass(frozen=True)
class OptionHelp:
    """One option as ``--help`` shows it, as data (for a generated reference).

    :param name: the field the option sets.
    :param flags: its spellings (``("--progress", "--no-progress")`` for a switch on by default).
    :param kind: what it takes, in words: ``on/off``, ``integer``, ``number``, ``text``, ``integers,
        comma-separated``, ``names, comma-separated``, ``one or more WORD`` or ``one of a, b``.
    :param default: its default as the help says it (``on``, ``off``, ``none``, ``1e-3`` or words).
    :param help: its help without the default.
    """

    name: str
    flags: tuple[str, ...]
    kind: str
    default: str
    help: str


def describe_options(cls: type, **kwargs) -> list[OptionHelp]:
    """The options :func:`add_options` makes of the dataclass ``cls``, read back from the parser it builds, so
    that each reads as ``--help`` shows it.

    :param cls: a config dataclass.
    :param kwargs: the keyword arguments of :func:`add_options` (``only``, ``exclude``, ``defaults``).
    :returns: one :class:`OptionHelp` per option, in the order of the fields.
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_options(parser, cls, **kwargs)
    formatter = parser._get_formatter()
    described = []
    for action in parser._actions:
        text = formatter._expand_help(action) if action.help else ""  # as --help prints it
        found = re.search(r" \(default: (.*)\)$", text)
        default = found.group(1) if found else ""
        text = text[: found.start()] if found else text
        if action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction):
            kind = "on/off"
        elif action.choices is not None:
            kind = "one of " + ", ".join(map(str, action.choices))
        elif action.nargs == "+":
            kind = f"one or more {action.metavar}"
        else:
            name = getattr(action.type, "__name__", "str")
            kind = _KINDS.get(name, name)
        described.append(OptionHelp(action.dest, tuple(action.option_strings), kind, default, text))
    return described
