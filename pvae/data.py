"""Datasets as in-memory tensors: images ``(N, C, H, W)`` in [0, 1], labels ``(N,)``.

``digits`` (scikit-learn's bundled 8×8 digits) needs no network. ``mnist``, ``fashion-mnist`` and
``kmnist`` are read from IDX files found in a data directory, or downloaded from their canonical
mirrors and checked against the published MD5 sums (:mod:`pvae.idx`).
"""

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from pvae import options
from pvae.idx import IDX_DATASETS, DataError, locate_idx, read_idx

BINARIZE = ("dynamic", "static", "none")
#: The splits of every dataset.
SPLITS = ("train", "val", "test")
#: Each split's fixed binarization draws from its own seed (``seed + offset``), so the test
#: set's bits do not depend on the sizes of the other splits.
_SEED_OFFSETS = {"val": 1, "test": 2, "train": 3}


@dataclass(frozen=True)
class DataConfig:
    """Which data, how split and how binarized.

    :param data: the dataset: ``digits`` (bundled), ``mnist``, ``fashion-mnist`` or ``kmnist``.
    :param data_dir: folder holding the IDX files (or where downloads go); only this folder is used
        when given, and it must exist.
    :param binarize: ``dynamic`` (a fresh Bernoulli draw of every training batch; validation and
        test binarized once with ``data_seed``), ``static`` (every split binarized once with
        ``data_seed``) or ``none`` (grey levels).
    :param val_size: datapoints held out of the training split for validation (a dataset's own
        number when unset).
    :param data_seed: seed of the split, of the fixed binarizations and of the kept labels.
    :param download: whether a missing IDX dataset may be downloaded.
    :param labels: keep N training labels, balanced over the classes, and mark the others
        missing (-1), for semi-supervised learning (``--model m2``); validation and test keep all
        of theirs.
    """

    data: str = field(default="digits", metadata=options.choices(lambda: DATASETS))
    data_dir: str | None = None
    binarize: str = field(default="dynamic", metadata=options.choices(BINARIZE))
    val_size: int | None = None
    data_seed: int = 0
    download: bool = True
    labels: int | None = None

    def __post_init__(self):
        try:
            options.seed(self, "data_seed")
            options.check_choices(self)
            options.positive(self, "val_size", "labels")
        except ValueError as error:
            raise DataError(str(error)) from None

    def binarization_of(self, split: str) -> str:
        """How :func:`evaluation_split` binarized ``split``, in words (for result tables)."""
        if self.binarize == "none":
            return "none (grey levels)"
        return f"binarized once with seed {self.data_seed + _SEED_OFFSETS[split]}"


#: The label of a datapoint whose label was dropped (see ``DataConfig.labels``).
MISSING = -1


@dataclass(frozen=True)
class Split:
    """One split: ``x`` images ``(N, C, H, W)`` in [0, 1], ``y`` integer labels ``(N,)``
    (:data:`MISSING` where a label was dropped)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def labelled(self) -> torch.Tensor:
        """Boolean mask ``(N,)`` of the datapoints that keep their label."""
        return self.y != MISSING

    @property
    def fully_labelled(self) -> bool:
        """Whether no label is missing."""
        return bool(self.labelled.all())


@dataclass(frozen=True)
class Dataset:
    """Train, validation and test splits of one dataset.

    With ``binarize="dynamic"``, ``train.x`` keeps its grey levels (the trainer draws a binary
    batch from them each step, see :func:`binarize`) while ``val`` and ``test`` are binarized once.
    """

    name: str
    train: Split
    val: Split
    test: Split
    binarize: str
    num_classes: int

    @property
    def x_shape(self) -> tuple[int, ...]:
        """Shape of one datapoint, e.g. ``(1, 28, 28)``."""
        return tuple(self.train.x.shape[1:])

    @property
    def is_binary(self) -> bool:
        """Whether every split the model sees holds only zeros and ones."""
        return self.binarize != "none"

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

    Batching indexes the in-memory tensors with a permutation: no per-item Python work.
    The last batch may be smaller.
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size}")
    order = torch.randperm(len(split), generator=generator)
    for start in range(0, len(split), batch_size):
        index = order[start : start + batch_size]
        yield split.x[index], split.y[index]


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
        yield split.x[order[start : start + batch_size]], None
        if len(pool) < size:
            pool = torch.cat([pool, labelled[torch.randperm(len(labelled), generator=generator)]])
        index, pool = pool[:size], pool[size:]
        yield split.x[index], split.y[index]


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
    return Split(split.x, y)


#: Every dataset name :func:`load` accepts.
DATASETS = ("digits", *IDX_DATASETS)


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
        x = torch.from_numpy(images.copy()).float().div_(255.0).unsqueeze(1)
        splits.append(Split(x, torch.from_numpy(labels.astype(np.int64))))
    return splits[0], splits[1]


def _load_digits(config: DataConfig) -> tuple[Split, Split]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).div_(16.0).unsqueeze(1)  # (1797, 1, 8, 8)
    y = torch.tensor(bunch.target, dtype=torch.int64)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(config.data_seed))
    n_test = 360
    test, train = order[:n_test], order[n_test:]
    return Split(x[train], y[train]), Split(x[test], y[test])


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
    return Split(binarize(split.x, torch.Generator().manual_seed(seed)), split.y)


def load(config: DataConfig = DataConfig()) -> Dataset:
    """Load, split and binarize a dataset as the config says.

    Validation is a fixed-seed random subset of the training split; digits' test split is a
    fixed-seed 360 of its 1797 images, the IDX sets keep their official 10,000 test images.

    :raises DataError: for an unknown name or binarization, or data that cannot be found.
    """
    if config.binarize not in BINARIZE:
        raise DataError(f"unknown binarization {config.binarize!r}; choose one of {list(BINARIZE)}")
    if config.data == "digits":
        train, test = _load_digits(config)
        val_size = 180 if config.val_size is None else config.val_size
    elif config.data in IDX_DATASETS:
        train, test = _load_idx(config.data, config)
        val_size = 5000 if config.val_size is None else config.val_size
    else:
        raise DataError(f"unknown dataset {config.data!r}; choose one of {list(DATASETS)}")
    if not 0 < val_size < len(train):
        raise DataError(f"--val-size must be between 1 and {len(train) - 1} for {config.data}, not {val_size}")
    generator = torch.Generator().manual_seed(config.data_seed)
    order = torch.randperm(len(train), generator=generator)
    val = Split(train.x[order[:val_size]], train.y[order[:val_size]])
    train = Split(train.x[order[val_size:]], train.y[order[val_size:]])
    if config.binarize != "none":
        val = _binarized(val, config.data_seed + _SEED_OFFSETS["val"])
        test = _binarized(test, config.data_seed + _SEED_OFFSETS["test"])
        if config.binarize == "static":
            train = _binarized(train, config.data_seed + _SEED_OFFSETS["train"])
    num_classes = int(max(train.y.max(), test.y.max())) + 1
    if config.labels is not None:
        train = keep_labels(train, config.labels, num_classes, torch.Generator().manual_seed(config.data_seed + 4))
    return Dataset(config.data, train, val, test, config.binarize, num_classes)
