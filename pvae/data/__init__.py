"""Datasets as in-memory tensors: images ``(N, C, H, W)`` in [0, 1], labels ``(N,)``.

Images are stored compactly (grey levels as bytes, binary images as packed bits) and converted to
float32 per batch (:class:`pvae.data.split.Split`). ``digits`` (scikit-learn's bundled 8×8 digits) needs no
network. ``mnist``, ``fashion-mnist`` and ``kmnist`` are read from IDX files found in a data
directory, or downloaded from their canonical mirrors and checked against the published MD5 sums
(:mod:`pvae.data.idx`). ``dsprites`` is rendered procedurally, with its ground-truth factors
(:mod:`pvae.data.dsprites`).
"""

import difflib
import math
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from pvae.base import options
from pvae.data import dsprites, userdata
from pvae.data.idx import IDX_DATASETS, DataError, locate_idx, read_idx
from pvae.data.split import MISSING, Split
from pvae.data.split import Index as Index  # also importable from pvae.data, where callers import them
from pvae.data.split import LazyImages as LazyImages
from pvae.data.split import unpack_bits as unpack_bits
from pvae.data.userdata import KIND_WORDS, KINDS, image_files

if TYPE_CHECKING:  # only for annotations: the data layer does not need the metrics
    from pvae.measures.disentangle.ground_truth import GroundTruth

BINARIZE = ("dynamic", "static", "none")
#: Options of :class:`DataConfig` that only the user's own data take.
USER_DATA_OPTIONS = (
    "test_size",
    "label_column",
    "factor_columns",
    "split_column",
    "drop_columns",
    "image_size",
    "layer",
    "kind",
    "checksum",
)
#: The splits of every dataset.
SPLITS = ("train", "val", "test")
#: Each split's fixed binarization draws from its own seed (``seed + offset``), so the test
#: set's bits do not depend on the sizes of the other splits.
_SEED_OFFSETS = {"val": 1, "test": 2, "train": 3}


@options.config(error=DataError)
class DataConfig:
    """Which data, how split and how binarized.

    :param data: the dataset: ``digits`` (bundled), ``mnist``, ``fashion-mnist``, ``kmnist`` or
        ``dsprites`` (rendered, with ground-truth factors), or your own data: a path to a ``.npy``,
        ``.npz``, ``.pt``, ``.csv``, ``.tsv``, ``.parquet`` or ``.h5ad`` file or a folder of images
        (see :mod:`pvae.data.userdata`).
    :param data_dir: folder holding the IDX files (or where downloads go), or dSprites' original
        ``.npz`` (or where its rendering is cached); only this folder is used when given, and it
        must exist.
    :param binarize: ``dynamic`` (a fresh Bernoulli draw of every training batch; validation and
        test binarized once with ``data_seed``), ``static`` (every split binarized once with
        ``data_seed``) or ``none`` (grey levels; the default for your own data, which are modelled as
        they are).
    :param val_size: datapoints held out of the training split for validation: a count, or a fraction
        below 1 (a dataset's own number when unset; 10% of your own data).
    :param test_size: datapoints of your own data held out for testing, a count or a fraction below 1
        (default 10%; the built-in datasets have their own test splits).
    :param data_seed: seed of the split, of the fixed binarizations and of the kept labels.
    :param download: whether a missing IDX dataset may be downloaded.
    :param labels: keep N training labels, balanced over the classes, and mark the others
        missing (-1), for semi-supervised learning (``--model m2``); validation and test keep all
        of theirs.
    :param train_size: train on a fixed-seed random subset of N training datapoints (for quick
        runs); validation and test are unchanged.
    :param label_column: the column of a table (or of an ``.h5ad``'s ``obs``) that holds the labels.
    :param factor_columns: columns that hold ground-truth factors (for ``pvae disentangle``).
    :param split_column: a column whose values (train, val, test) give each row's split.
    :param drop_columns: columns of a table that are not features.
    :param image_size: resize every image of a folder to H,W.
    :param layer: the layer of an ``.h5ad`` file to model instead of its ``X``.
    :param kind: what the numbers are — binary, counts, levels (in [0, 1]) or real — when not the kind
        found (a narrower kind is refused: counts cannot be called binary).
    :param checksum: the SHA-256 of your data file (or folder), recorded by ``pvae train``: a run whose
        file has changed since is refused.
    """

    data: str = "digits"
    data_dir: str | None = None
    binarize: str | None = field(default=None, metadata=options.choices(BINARIZE))
    val_size: float | None = None
    data_seed: int = 0
    download: bool = True
    labels: int | None = None
    train_size: int | None = None
    test_size: float | None = None
    label_column: str | None = None
    factor_columns: tuple[str, ...] = ()
    split_column: str | None = None
    drop_columns: tuple[str, ...] = ()
    image_size: tuple[int, ...] = ()
    layer: str | None = None
    kind: str | None = field(default=None, metadata=options.choices(KINDS))
    checksum: str | None = None

    def __post_init__(self):
        try:
            if self.binarize is None:  # built-in images are binarized; your own data are modelled as given
                object.__setattr__(self, "binarize", "dynamic" if self.data in DATASETS else "none")
            for name in ("val_size", "test_size"):  # a whole count reads as an int, from Python or the CLI
                size = getattr(self, name)
                if isinstance(size, float) and size.is_integer():
                    object.__setattr__(self, name, int(size))
            options.seed(self, "data_seed")
            options.positive(self, "val_size", "labels", "train_size", "test_size")
            if self.data not in DATASETS and not _looks_like_path(self.data):
                raise ValueError(
                    f"--data {self.data!r} is not one of {', '.join(DATASETS)}, nor a file or folder here; give a "
                    "built-in name or the path of your data"
                )
            for name in ("val_size", "test_size"):
                size = getattr(self, name)
                options.require(
                    self, name, size is None or size < 1 or float(size).is_integer(), "a count, or a fraction below 1"
                )
            if self.data in DATASETS:
                given = [
                    options.flag(f.name)
                    for f in fields(self)
                    if f.name in USER_DATA_OPTIONS and getattr(self, f.name) not in (None, ())
                ]
                if given:
                    verb = "applies" if len(given) == 1 else "apply"
                    raise ValueError(
                        f"{', '.join(given)} {verb} to your own data (--data PATH), not to the built-in {self.data}"
                    )
            else:
                options.require(self, "data", bool(self.data.strip()), "a built-in name or the path of your data")
            if self.data_dir is not None:
                options.require(self, "data_dir", bool(str(self.data_dir).strip()), "a folder")
                where = Path(self.data_dir).expanduser()
                options.require(self, "data_dir", not where.exists() or where.is_dir(), "a folder, not a file")
                # recorded absolute: the run reads the same folder from wherever it is opened
                object.__setattr__(self, "data_dir", str(where.absolute()))
        except ValueError as error:
            raise DataError(str(error)) from None

    @property
    def is_user_data(self) -> bool:
        """Whether ``data`` is a path to the user's own data rather than a built-in name."""
        return self.data not in DATASETS

    def binarization_of(self, split: str) -> str:
        """How :func:`evaluation_split` binarized ``split``, in words (for result tables)."""
        if self.binarize == "none":
            return "none (the data as given)" if self.is_user_data else "none (grey levels)"
        return f"binarized once with seed {self.data_seed + _SEED_OFFSETS[split]}"


@dataclass(frozen=True)
class Dataset:
    """Train, validation and test splits of one dataset.

    With ``binarize="dynamic"``, ``train`` keeps its grey levels (the trainer draws a binary
    batch from them each step, see :func:`binarize`) while ``val`` and ``test`` are binarized once.

    :param ground_truth: the factors that generated the images (:mod:`pvae.data.dsprites`), or ``None``.
    :param kind: what the stored numbers are (:data:`pvae.data.userdata.KINDS`): ``levels`` for the built-in
        images, whatever was found (or asked for) for the user's own data.
    :param has_labels: whether the labels are the data's (``False``: every label is 0, a stand-in).
    :param features: the features' names (a table's columns), or ``None``.
    :param classes: the labels' names, or ``None`` (the labels are their own names).
    :param source: for the user's own data: ``path`` (absolute), ``bytes`` and ``sha256``.
    :param notes: what pvae made of the data, in words (said when it is loaded).
    :param is_user_data: whether these are the user's own data (:func:`from_arrays`, ``--data PATH``) rather
        than a built-in dataset: figures draw the user's grey images as they are (0 black), the built-in ones
        as ink on paper (:func:`pvae.plots.run.grey_map`).
    """

    name: str
    train: Split
    val: Split
    test: Split
    binarize: str
    num_classes: int
    ground_truth: "GroundTruth | None" = None
    kind: str = "levels"
    has_labels: bool = True
    features: tuple[str, ...] | None = None
    classes: tuple[str, ...] | None = None
    source: dict | None = None
    notes: tuple[str, ...] = ()
    is_user_data: bool = False

    @property
    def x_shape(self) -> tuple[int, ...]:
        """Shape of one datapoint, e.g. ``(1, 28, 28)``, or ``(D,)`` for vectors."""
        return self.train.x_shape

    @property
    def is_image(self) -> bool:
        """Whether a datapoint is an image ``(C, H, W)`` rather than a vector ``(D,)``."""
        return len(self.x_shape) == 3

    @property
    def is_binary(self) -> bool:
        """Whether every split the model sees holds only zeros and ones."""
        return self.binarize != "none" or self.kind == "binary"

    @property
    def model_kind(self) -> str:
        """The kind of the numbers the model sees: ``binary`` once binarized, else :attr:`kind`."""
        return "binary" if self.is_binary else self.kind

    @property
    def standardized(self) -> bool:
        """Whether the model sees standardized features (real-valued data)."""
        return self.train.scale is not None

    @property
    def log_scale(self) -> torch.Tensor | None:
        """log sd of each standardized feature, shape ``x_shape`` (``None`` when not standardized): a
        likelihood subtracts its sum, so that every log-density is in nats of the data as given."""
        return None if self.train.scale is None else self.train.scale.log().reshape(self.x_shape)

    def unstandardize(self, x: torch.Tensor) -> torch.Tensor:
        """What the model sees (or draws) in the units of the data as given."""
        if self.train.scale is None:
            return x
        return x * self.train.scale.to(x.device) + self.train.loc.to(x.device)

    def describe(self) -> str:
        """One line: what the data are and how they were split."""
        shape = "×".join(map(str, self.x_shape))
        what = f"{shape} images" if self.is_image else f"{self.x_shape[0]} features"
        labels = f"{self.num_classes} classes" if self.has_labels else "no labels"
        n = len(self.train) + len(self.val) + len(self.test)
        text = f"{self.name}: {n} rows of {what}, {KIND_WORDS[self.kind]}, {labels}"
        return "; ".join([text, *self.notes])

    def training_batch(self, x: torch.Tensor) -> torch.Tensor:
        """A training batch as the trainer feeds it: a fresh binary draw under dynamic
        binarization, else ``x`` as stored."""
        return binarize(x) if self.binarize == "dynamic" else x

    def split(self, name: str) -> Split:
        """The split called ``train``, ``val`` or ``test``."""
        if name not in ("train", "val", "test"):
            raise DataError(f"unknown split {name!r}; choose train, val or test")
        return getattr(self, name)


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw binary pixels with P(pixel = 1) equal to its grey level."""
    return torch.bernoulli(x, generator=generator)


def batches(
    split: Split, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` minibatches of ``split`` in a random order drawn from ``generator``.

    Batching indexes the in-memory tensors with a permutation: no per-item Python work; ``x`` is
    float32, converted from storage one batch at a time. The last batch may be smaller.
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size}")
    order = torch.randperm(len(split), generator=generator)
    for start in range(0, len(split), batch_size):
        index = order[start : start + batch_size]
        yield split.images(index), split.y[index]


def semi_supervised_batches(
    split: Split, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Alternate a batch of unlabelled datapoints ``(x, None)`` with a batch of labelled ones ``(x, y)``.

    One pass covers the unlabelled datapoints once; the labelled ones, usually far fewer, are
    drawn in turn from a fresh permutation whenever one runs out, so that every step of the
    semi-supervised objective sees labels (Kingma et al., 2014, draw both kinds in every batch).
    Labelled batches hold ``min(batch_size, number of labels)`` datapoints.

    :raises DataError: if the split has no labelled or no unlabelled datapoint.
    """
    labelled = torch.nonzero(split.labelled).squeeze(1)
    unlabelled = torch.nonzero(~split.labelled).squeeze(1)
    if len(labelled) == 0 or len(unlabelled) == 0:
        raise DataError(
            f"semi-supervised batches need labelled and unlabelled datapoints; this split has {len(labelled)} "
            f"labelled of {len(split)} (choose --labels between 1 and {len(split) - 1})"
        )
    size = min(batch_size, len(labelled))
    pool = labelled[torch.randperm(len(labelled), generator=generator)]
    order = unlabelled[torch.randperm(len(unlabelled), generator=generator)]
    for start in range(0, len(order), batch_size):
        yield split.images(order[start : start + batch_size]), None
        if len(pool) < size:
            pool = torch.cat([pool, labelled[torch.randperm(len(labelled), generator=generator)]])
        index, pool = pool[:size], pool[size:]
        yield split.images(index), split.y[index]


def keep_labels(split: Split, n: int, num_classes: int, generator: torch.Generator) -> Split:
    """``split`` with only ``n`` labels kept, as evenly over the classes as ``n`` allows.

    Class c keeps ``n // num_classes`` labels, one more for the first ``n % num_classes``
    classes; the kept datapoints are drawn with ``generator``; every other label becomes
    :data:`MISSING`.

    :raises DataError: if ``n`` is out of range or a class has too few datapoints.
    """
    if not 0 < n < len(split):
        raise DataError(f"--labels must be between 1 and {len(split) - 1} for this split, got {n}")
    if n < num_classes:
        raise DataError(
            f"--labels {n} leaves some of the {num_classes} classes without a labelled datapoint: "
            f"give --labels {num_classes} or more"
        )
    y = torch.full_like(split.y, MISSING)
    for c in range(num_classes):
        members = torch.nonzero(split.y == c).squeeze(1)
        want = n // num_classes + (c < n % num_classes)
        if len(members) < want:
            raise DataError(f"class {c} has {len(members)} training datapoints, fewer than the {want} labels asked")
        chosen = members[torch.randperm(len(members), generator=generator)[:want]]
        y[chosen] = split.y[chosen]
    return replace(split, y=y)


@dataclass(frozen=True)
class BuiltIn:
    """What a built-in dataset declares: the defaults of a run on it, and what it holds.

    :param epochs: epochs a run trains unless told (``--epochs``; :func:`default_epochs`).
    :param val_size: datapoints held out of the training split for validation unless told (``--val-size``).
    :param factors: whether its images come with ground-truth factors (:attr:`Dataset.ground_truth`).
    """

    epochs: int
    val_size: int
    factors: bool = False


#: Every built-in dataset :func:`load` accepts, by name: digits are small and train long, the 28×28 sets and
#: dSprites are large.
BUILT_IN = {
    "digits": BuiltIn(epochs=100, val_size=180),
    **{name: BuiltIn(epochs=10, val_size=5000) for name in IDX_DATASETS},
    "dsprites": BuiltIn(epochs=10, val_size=5000, factors=True),
}
#: Every dataset name :func:`load` accepts.
DATASETS = tuple(BUILT_IN)
#: The datasets whose images come with ground-truth factors (:attr:`Dataset.ground_truth`).
WITH_FACTORS = tuple(name for name, declared in BUILT_IN.items() if declared.factors)
#: Training steps a run on your own data takes by default (:func:`default_epochs`), in whole epochs between
#: the bounds of :data:`USER_DATA_EPOCHS`.
USER_DATA_STEPS = 2000
#: The fewest and the most epochs a run on your own data takes by default.
USER_DATA_EPOCHS = (10, 500)


def default_epochs(data: "DataConfig | Dataset", batch_size: int | None = None) -> int:
    """Epochs a run on ``data`` trains unless told: a built-in dataset's own (:data:`BUILT_IN`); for your own
    data, enough for about :data:`USER_DATA_STEPS` steps of ``batch_size`` over their training split, within
    :data:`USER_DATA_EPOCHS`.

    :param data: the config of a built-in dataset, or a loaded dataset (your own data must be loaded: their
        default follows from their size).
    :param batch_size: datapoints a step; read for your own data only.
    :raises ValueError: for your own data given as a config, or without ``batch_size``.
    """
    if not data.is_user_data:
        return BUILT_IN[data.data if isinstance(data, DataConfig) else data.name].epochs
    if not isinstance(data, Dataset) or batch_size is None:
        raise ValueError(
            "the default epochs of your own data follow from their size and the batch size: pass the loaded "
            "dataset (pvae.data.load) and batch_size"
        )
    steps = max(1, -(-len(data.train) // batch_size))
    fewest, most = USER_DATA_EPOCHS
    return min(most, max(fewest, -(-USER_DATA_STEPS // steps)))


def default_in_words(name: str) -> str:
    """A default the built-in datasets declare (a field of :class:`BuiltIn`), in words for ``--help``: the
    value most of them take as ``otherwise``, e.g. ``100 for digits, 10 otherwise``.

    :param name: ``epochs`` or ``val_size``.
    """
    values = {dataset: getattr(declared, name) for dataset, declared in BUILT_IN.items()}
    common = Counter(values.values()).most_common(1)[0][0]
    others: dict[int, list[str]] = {}
    for dataset, value in values.items():
        if value != common:
            others.setdefault(value, []).append(dataset)
    return ", ".join(
        [*(f"{value} for {' and '.join(names)}" for value, names in others.items()), f"{common} otherwise"]
    )


def _load_idx(name: str, config: DataConfig) -> tuple[Split, Split]:
    paths = locate_idx(name, config.data_dir, config.download)
    splits = []
    for part in ("train", "test"):
        images, labels = read_idx(paths[f"{part}_images"]), read_idx(paths[f"{part}_labels"])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"{paths[f'{part}_images']}: images of shape {images.shape} do not match "
                f"{len(labels)} labels in {paths[f'{part}_labels']}"
            )
        pixels = torch.from_numpy(images.copy()).unsqueeze(1)  # (N, 1, 28, 28) uint8
        splits.append(Split.from_levels(pixels, 255, torch.from_numpy(labels.astype(np.int64))))
    return splits[0], splits[1]


def _load_digits(config: DataConfig) -> tuple[Split, Split]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = torch.tensor(bunch.images, dtype=torch.uint8).unsqueeze(1)  # (1797, 1, 8, 8), 0..16
    whole = Split.from_levels(pixels, 16, torch.tensor(bunch.target, dtype=torch.int64))
    order = torch.randperm(len(whole), generator=torch.Generator().manual_seed(config.data_seed))
    n_test = 360
    return whole.subset(order[n_test:]), whole.subset(order[:n_test])


def evaluation_split(dataset: Dataset, config: DataConfig, name: str) -> Split:
    """Split ``name`` as evaluation sees it: fixed binary pixels whenever binarization is on.

    Under dynamic binarization the training split keeps its grey levels for the trainer; to
    score it, it is binarized once with its own fixed seed, as static binarization would.
    """
    split = dataset.split(name)
    if name == "train" and config.binarize == "dynamic":
        return _binarized(split, config.data_seed + _SEED_OFFSETS["train"])
    return split


def _binarized(split: Split, seed: int) -> Split:
    """``split`` binarized once with ``seed``, stored as bits; a binary split is its own binarization."""
    if split.is_binary:
        return split
    bits = binarize(split.images(), torch.Generator().manual_seed(seed))  # one draw over the split, as always
    return Split.from_bits(bits, split.y, split.factors)


def load(config: DataConfig | None = None) -> Dataset:
    """Load, split and binarize a dataset as the config says.

    Validation is a fixed-seed random subset of the training split; digits' test split is a
    fixed-seed 360 of its 1797 images, the IDX sets keep their official 10,000 test images, and
    dSprites draws 10,000 test and 5,000 validation images from its grid with the seed. With
    ``train_size``, training keeps a fixed-seed subset of the training split.

    :raises DataError: for an unknown name or binarization, data that cannot be found, or sizes
        that do not fit the dataset.
    """
    config = DataConfig() if config is None else config  # a DataConfig has refused an unknown binarization
    ground_truth = None
    if config.is_user_data:
        return load_user_data(config)
    declared = BUILT_IN.get(config.data)
    if config.data == "digits":
        train, test = _load_digits(config)
        val_size = declared.val_size if config.val_size is None else _count(config.val_size, len(train), "val_size")
    elif config.data in IDX_DATASETS:
        train, test = _load_idx(config.data, config)
        val_size = declared.val_size if config.val_size is None else _count(config.val_size, len(train), "val_size")
    elif config.data == "dsprites":
        val_size = declared.val_size if config.val_size is None else int(config.val_size)
        train, val, test, ground_truth = dsprites.splits(config.data_dir, config.data_seed, val_size)
    else:
        raise DataError(f"unknown dataset {config.data!r}; choose one of {list(DATASETS)}")
    if ground_truth is None:
        if not 0 < val_size < len(train):
            raise DataError(f"--val-size must be between 1 and {len(train) - 1} for {config.data}, not {val_size}")
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(config.data_seed))
        train, val = train.subset(order[val_size:]), train.subset(order[:val_size])
    if config.binarize != "none":
        val = _binarized(val, config.data_seed + _SEED_OFFSETS["val"])
        test = _binarized(test, config.data_seed + _SEED_OFFSETS["test"])
        if config.binarize == "static":
            train = _binarized(train, config.data_seed + _SEED_OFFSETS["train"])
    if config.train_size is not None:
        train = keep_subset(train, config.train_size, torch.Generator().manual_seed(config.data_seed + 5))
    num_classes = int(max(train.y.max(), test.y.max())) + 1
    if config.labels is not None:
        train = keep_labels(train, config.labels, num_classes, torch.Generator().manual_seed(config.data_seed + 4))
    return Dataset(config.data, train, val, test, config.binarize, num_classes, ground_truth)


def keep_subset(split: Split, n: int, generator: torch.Generator) -> Split:
    """``n`` datapoints of ``split`` drawn without replacement with ``generator``, in the drawn order.

    :raises DataError: unless ``0 < n < len(split)``.
    """
    if not 0 < n < len(split):
        raise DataError(
            f"--train-size must be between 1 and {len(split) - 1}: the training split has {len(split)} "
            f"datapoints, so {n} keeps {'all of them (drop --train-size)' if n >= len(split) else 'none'}"
        )
    return split.subset(torch.randperm(len(split), generator=generator)[:n])


def _looks_like_path(name: str) -> bool:
    """A name the user meant as a path: it exists, or it has a folder or a file suffix in it."""
    return Path(name).expanduser().exists() or "/" in name or os.sep in name or bool(Path(name).suffix)


def _count(size: float, n: int, name: str) -> int:
    """A split's size from ``--val-size``/``--test-size``: a count, or a fraction below 1 of ``n`` (at least 1)."""
    if size < 1:
        return max(1, round(size * n))
    return int(size)


# --------------------------------------------------------------------------------------------
# The user's own data


def load_user_data(config: DataConfig) -> Dataset:
    """The user's data file or folder (``config.data``) as a :class:`Dataset` (see :mod:`pvae.data.userdata`).

    :raises DataError: for a file that cannot be read, data that cannot be modelled, or a file that has
        changed since ``config.checksum`` was recorded.
    """
    path = Path(config.data).expanduser()
    if not path.exists():
        near = difflib.get_close_matches(config.data, DATASETS, n=1)
        hint = f"; did you mean the built-in {near[0]}?" if near and "/" not in config.data else ""
        if config.checksum is not None:  # a run's data: say where it was and how to point the run at it again
            raise DataError(
                f"the data this run was trained on, {config.data}, is missing: put it back there, or, if it moved, "
                "write its new path into the run's config.json (data.data); its SHA-256 is checked when it is read"
            )
        raise DataError(
            f"--data {config.data}: no such file or folder{hint} (the built-in data: {', '.join(DATASETS)})"
        )
    digest = userdata.checksum(path)
    if config.checksum is not None and digest != config.checksum:
        raise DataError(
            f"{path.resolve()} has changed since the run was trained: its contents differ from the run's record "
            f"(last modified {_modified(path)}; checksum {digest[:8]}, the run's {config.checksum[:8]}): restore the "
            f"file it was trained on, or train a new run on the changed one (pvae train --data {config.data} --out "
            "NEW_FOLDER)"
        )
    arrays = userdata.read(path, config)
    dataset = from_arrays(
        arrays.x,
        arrays.y,
        arrays.factors,
        kind=config.kind,
        split=arrays.split,
        val_size=config.val_size,
        test_size=config.test_size,
        data_seed=config.data_seed,
        binarize=config.binarize,
        features=arrays.features,
        classes=arrays.classes,
        levels=arrays.levels,
        name=path.name,
        train_size=config.train_size,
        labels=config.labels,
        where=str(path),
        source={"path": str(path.resolve()), "bytes": _size(path), "sha256": digest},
        factor_names=arrays.factor_names,
    )
    return replace(dataset, notes=(*dataset.notes, *arrays.notes))  # what the reader noticed, said too


def _modified(path: Path) -> str:
    """When a file (or the last of a folder's images) was last modified, in local time to the minute."""
    files = [path] if path.is_file() else image_files(path)[0]
    newest = max((f.stat().st_mtime for f in files), default=path.stat().st_mtime)
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(newest))


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


#: The kinds each found kind may be read as (``--kind``): a wider kind holds it, a narrower one cannot.
WIDER_KINDS = {
    "binary": ("binary", "counts", "levels", "real"),
    "counts": ("counts", "real"),
    "levels": ("levels", "real"),
    "real": ("real",),
}


def from_arrays(
    x,
    y=None,
    factors=None,
    kind: str | None = None,
    *,
    split=None,
    val_size: float | None = None,
    test_size: float | None = None,
    data_seed: int = 0,
    binarize: str = "none",
    features: tuple[str, ...] | None = None,
    classes: tuple[str, ...] | None = None,
    levels: int | None = None,
    name: str = "arrays",
    train_size: int | None = None,
    labels: int | None = None,
    where: str = "the data",
    source: dict | None = None,
    factor_names: tuple[str, ...] | None = None,
) -> Dataset:
    """A :class:`Dataset` from arrays: what ``--data PATH`` builds, for data already in Python.

    The data's kind is found (:func:`pvae.data.userdata.find_kind`) and picks the likelihood a run uses
    unless told otherwise; real-valued features are standardized with the training split's mean and
    sd (every log-density stays in nats of the data as given: :attr:`Dataset.log_scale`).

    :param x: ``(N, D)`` vectors or ``(N, C, H, W)`` images: a NumPy array (a memory map stays one), a
        tensor, or a SciPy sparse matrix (kept sparse, densified per batch).
    :param y: labels ``(N,)``: integers from 0, or names (sorted into classes); ``None``: unlabelled.
    :param factors: ground-truth factor indices ``(N, F)``, or ``None``.
    :param kind: one of :data:`pvae.data.userdata.KINDS`, to read the data as a wider kind than found.
    :param split: ``train``/``val``/``test`` per row; ``None``: drawn with ``data_seed``.
    :param val_size: validation rows, a count or a fraction below 1 (default 10%).
    :param test_size: test rows, a count or a fraction below 1 (default 10%; ignored with ``split``).
    :param data_seed: seed of the split and of any binarization.
    :param binarize: as :attr:`DataConfig.binarize` (``none``: the data as they are).
    :param features: the features' names; ``classes``: the labels' names.
    :param levels: the value of white in uint8 images (255), which are then stored as bytes.
    :param name: what the data are called in messages and tables.
    :param train_size: keep a fixed-seed subset of N training rows.
    :param labels: keep N training labels (semi-supervised), as :attr:`DataConfig.labels`.
    :param where: the file, for messages.
    :param source: recorded on the dataset (its path, size and checksum).
    :param factor_names: the factors' names (default ``factor1``, ``factor2`` ...): with ``factors``, the
        dataset's ground truth is the rows' factors (:class:`pvae.data.userdata.ObservedFactors`).
    :raises DataError: naming the problem and the fix.
    """
    if isinstance(x, torch.Tensor):
        x = x.numpy()
    if not hasattr(x, "toarray") and not isinstance(x, userdata.NpyRows):  # read per batch: left as it is
        x = np.asarray(x) if not isinstance(x, np.ndarray) else x
        if x.dtype == object or x.dtype.kind not in "biuf":
            raise DataError(f"{where} holds {x.dtype} values; pvae models numbers (bool, int or float)")
        if x.ndim == 1:
            raise DataError(f"{where} is 1-D ({x.shape[0]} values): give one row per datapoint, e.g. shape (N, 1)")
        if x.ndim == 3:
            x = x[:, None]
    n = x.shape[0]
    if n < 3 * MIN_ROWS:
        raise DataError(f"{where} holds {n} datapoint(s): a model needs at least {3 * MIN_ROWS} (train, val, test)")
    if levels is None and x.dtype == np.uint8 and len(x.shape) == 4:  # bytes of images, as an image file holds
        levels = 255
    if levels is not None:  # one pass over the bytes: their kind, and whether they are levels at all
        found, levels = userdata.byte_kind(x, levels, where)
    else:
        found = userdata.find_kind(x, where)
    if kind is not None and kind not in WIDER_KINDS[found]:
        raise DataError(
            f"--kind {kind}: {where} holds data that are {userdata.KIND_WORDS[found]}, which cannot be read as {kind}; "
            f"choose one of {', '.join(WIDER_KINDS[found])}"
        )
    kind = kind or found
    notes = []
    has_labels = y is not None
    if y is None:
        y = np.zeros(n, dtype=np.int64)
    elif len(y) != n:
        raise DataError(f"{where}: {len(y)} labels for {n} datapoints: give one per datapoint")
    else:  # as a file's labels are read: names sorted into classes, fractions and too many classes refused
        fix = "if it is a measurement, pass it as factors (a ground truth), or leave y out"
        y, named = userdata.read_labels(where, np.asarray(y), "y", fix)
        classes = classes or named
    y = torch.as_tensor(y, dtype=torch.int64)
    if has_labels and len(torch.unique(y)) < 2:
        name = classes[0] if classes else int(y[0])
        raise DataError(f"{where}: every label is {name!r}, one class only; labels need two or more classes")
    if factors is not None:
        factors = torch.as_tensor(np.asarray(factors), dtype=torch.int64)
        if factors.ndim != 2 or len(factors) != n:
            raise DataError(f"{where}: factors must have shape (N, F) = ({n}, F), not {tuple(factors.shape)}")
    whole = replace(_store(x, y, factors, kind, levels), origin=torch.arange(n))
    parts = _split_rows(n, split, val_size, test_size, data_seed, where)
    train, val, test = (whole.subset(part) for part in parts)
    if kind == "real":
        loc, scale, constant = _feature_statistics(train)
        if constant:
            notes.append(f"{constant} constant feature(s) left unscaled")
        train, val, test = (replace(s, loc=loc, scale=scale) for s in (train, val, test))
        notes.append("features standardized with the training split's mean and sd")
    if binarize != "none":
        if kind not in ("binary", "levels"):
            raise DataError(f"--binarize {binarize} draws 0/1 from values in [0, 1]; {where} holds {kind} data")
        val = _binarized(val, data_seed + _SEED_OFFSETS["val"])
        test = _binarized(test, data_seed + _SEED_OFFSETS["test"])
        if binarize == "static":
            train = _binarized(train, data_seed + _SEED_OFFSETS["train"])
    if train_size is not None:
        train = keep_subset(train, train_size, torch.Generator().manual_seed(data_seed + 5))
    num_classes = int(y.max()) + 1
    if labels is not None:
        if not has_labels:
            raise DataError(f"--labels keeps some training labels, but {where} has none: give --label-column")
        train = keep_labels(train, labels, num_classes, torch.Generator().manual_seed(data_seed + 4))
    notes.insert(0, f"split {len(train)}/{len(val)}/{len(test)} (train/val/test)")
    ground_truth = None
    if factors is not None:
        names = tuple(factor_names) if factor_names else tuple(f"factor{i + 1}" for i in range(factors.shape[1]))
        every = replace(whole, loc=train.loc, scale=train.scale)  # all rows, as the model sees them
        ground_truth = userdata.ObservedFactors(names, factors.numpy(), every.images)
        notes.append(f"factors {', '.join(names)}")
    return Dataset(
        name,
        train,
        val,
        test,
        binarize,
        num_classes,
        ground_truth,
        kind,
        has_labels,
        features,
        classes,
        source,
        tuple(notes),
        is_user_data=True,
    )


def _store(x, y: torch.Tensor, factors, kind: str, levels: int | None) -> Split:
    """All rows as one :class:`Split`, stored compactly: bits for binary data, bytes for uint8 images,
    the smallest exact dtype for counts; a memory map or a sparse matrix as it is (read per batch)."""
    lazy = hasattr(x, "toarray") or isinstance(x, np.memmap | userdata.NpyRows)
    if lazy:
        return Split(x, y, levels=levels, factors=factors)
    if kind == "binary":
        return Split.from_bits(torch.from_numpy(np.ascontiguousarray(x)), y, factors)
    if levels is not None and x.dtype == np.uint8:
        return Split.from_levels(torch.from_numpy(np.ascontiguousarray(x)), levels, y, factors)
    stored = userdata.smallest_exact(np.ascontiguousarray(x)) if kind == "counts" else x
    if kind != "counts" and stored.dtype.kind != "f":
        stored = stored.astype(np.float32)
    return Split(torch.from_numpy(np.ascontiguousarray(stored)), y, factors=factors)


#: The fewest rows of a split: a mean's standard error (and every figure of a split) needs two.
MIN_ROWS = 2


def _split_rows(n: int, split, val_size, test_size, seed: int, where: str) -> tuple[torch.Tensor, ...]:
    """Rows of train, validation and test: from ``split`` where given (validation carved out of train
    when it marks none), else drawn with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    if split is not None:
        split = np.asarray(split).astype(str)
        rows = {name: torch.from_numpy(np.flatnonzero(split == name)) for name in ("train", "val", "test")}
        train, test = rows["train"], rows["test"]
        if len(rows["val"]):
            return train, rows["val"], test
    else:
        order = torch.randperm(n, generator=generator)
        n_test = _count(test_size, n, "test_size") if test_size is not None else max(MIN_ROWS, round(0.1 * n))
        if n - n_test < 2 * MIN_ROWS:
            raise DataError(f"--test-size {test_size} leaves {n - n_test} of {where}'s {n} rows to train on")
        test, train = order[:n_test], order[n_test:]
    n_val = _count(val_size, len(train), "val_size") if val_size is not None else max(MIN_ROWS, round(0.1 * len(train)))
    if len(train) - n_val < MIN_ROWS:
        raise DataError(f"--val-size {val_size} leaves {len(train) - n_val} of the {len(train)} rows to train on")
    for name, size in (("test", len(test)), ("validation", n_val)):
        if size < MIN_ROWS:
            option = "--test-size" if name == "test" else "--val-size"
            raise DataError(
                f"{where}: the {name} split would hold {size} row(s); a standard error needs {MIN_ROWS}: "
                f"give {option} {MIN_ROWS} or more"
            )
    train = train[torch.randperm(len(train), generator=generator)]
    return train[n_val:], train[:n_val], test


def feature_moments(split: Split, chunk: int = 4096) -> dict[str, torch.Tensor]:
    """One pass over ``split`` in the units of the data as given, a chunk of rows at a time (float64 sums):
    each feature's ``mean`` and ``variance`` (n − 1), shape ``x_shape``; the largest value ``max``; each row's
    total ``totals`` ``(N,)``."""
    total = square = largest = None
    totals = []
    for start in range(0, len(split), chunk):
        part = split.raw(slice(start, start + chunk)).reshape(-1, math.prod(split.x_shape))
        total = part.sum(0) if total is None else total + part.sum(0)
        square = (part**2).sum(0) if square is None else square + (part**2).sum(0)
        largest = part.max() if largest is None else torch.maximum(largest, part.max())
        totals.append(part.sum(1))
    n = len(split)
    mean = total / n
    variance = (square / n - mean**2).clamp_min(0) * n / max(n - 1, 1)
    shape = split.x_shape
    return {
        "mean": mean.reshape(shape),
        "variance": variance.reshape(shape),
        "max": largest,
        "totals": torch.cat(totals),
    }


def _feature_statistics(split: Split) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Each feature's mean and sd over ``split`` (:func:`feature_moments`), as float32; a feature of sd 0
    keeps scale 1. Returns ``(loc, scale, constant features)``."""
    moments = feature_moments(split)
    sd = moments["variance"].sqrt()
    constant = int((sd == 0).sum())
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))
    return moments["mean"].float(), sd.float(), constant
