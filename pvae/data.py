"""Datasets as in-memory tensors: images ``(N, C, H, W)`` in [0, 1], labels ``(N,)``.

Images are stored compactly (grey levels as bytes, binary images as packed bits) and converted to
float32 per batch (:meth:`Split.images`). ``digits`` (scikit-learn's bundled 8×8 digits) needs no
network. ``mnist``, ``fashion-mnist`` and ``kmnist`` are read from IDX files found in a data
directory, or downloaded from their canonical mirrors and checked against the published MD5 sums
(:mod:`pvae.idx`). ``dsprites`` is rendered procedurally, with its ground-truth factors
(:mod:`pvae.dsprites`).
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from pvae import options
from pvae.idx import IDX_DATASETS, DataError, locate_idx, read_idx

if TYPE_CHECKING:  # only for annotations: the data layer does not need the metrics
    from pvae.disentangle.ground_truth import GroundTruth

BINARIZE = ("dynamic", "static", "none")
#: The splits of every dataset.
SPLITS = ("train", "val", "test")
#: Each split's fixed binarization draws from its own seed (``seed + offset``), so the test
#: set's bits do not depend on the sizes of the other splits.
_SEED_OFFSETS = {"val": 1, "test": 2, "train": 3}


@dataclass(frozen=True)
class DataConfig:
    """Which data, how split and how binarized.

    :param data: the dataset: ``digits`` (bundled), ``mnist``, ``fashion-mnist``, ``kmnist`` or
        ``dsprites`` (rendered, with ground-truth factors).
    :param data_dir: folder holding the IDX files (or where downloads go), or dSprites' original
        ``.npz`` (or where its rendering is cached); only this folder is used when given, and it
        must exist.
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
    :param train_size: train on a fixed-seed random subset of N training datapoints (for quick
        runs); validation and test are unchanged.
    """

    data: str = field(default="digits", metadata=options.choices(lambda: DATASETS))
    data_dir: str | None = None
    binarize: str = field(default="dynamic", metadata=options.choices(BINARIZE))
    val_size: int | None = None
    data_seed: int = 0
    download: bool = True
    labels: int | None = None
    train_size: int | None = None

    def __post_init__(self):
        try:
            options.seed(self, "data_seed")
            options.check_choices(self)
            options.positive(self, "val_size", "labels", "train_size")
        except ValueError as error:
            raise DataError(str(error)) from None

    def binarization_of(self, split: str) -> str:
        """How :func:`evaluation_split` binarized ``split``, in words (for result tables)."""
        if self.binarize == "none":
            return "none (grey levels)"
        return f"binarized once with seed {self.data_seed + _SEED_OFFSETS[split]}"


#: The label of a datapoint whose label was dropped (see ``DataConfig.labels``).
MISSING = -1


#: What :meth:`Split.images` accepts as an index: a LongTensor, a slice, or ``None`` for every datapoint.
Index = torch.Tensor | slice | None


def unpack_bits(rows: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Packed binary images ``(n, ceil(prod(shape) / 8))`` uint8 → ``(n, *shape)`` float32 of zeros and ones.

    :param rows: 8 pixels a byte in flattened pixel order, the first pixel in the high bit (as
        :func:`numpy.packbits` packs them).
    :param shape: the shape of one image.
    """
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=rows.device)
    bits = (rows.unsqueeze(-1) >> shifts) & 1  # (n, bytes, 8)
    return bits.reshape(len(rows), 8 * rows.shape[-1])[:, : math.prod(shape)].reshape(len(rows), *shape).float()


@dataclass(frozen=True)
class Split:
    """One split, its images kept compactly and given as float32 per index.

    Three storage kinds, chosen by the fields:

    * grey levels on a grid: ``data`` uint8 ``(N, C, H, W)`` and ``levels``, the images being
      ``data / levels`` (the IDX sets store 255 levels, digits 16, so every value is exact);
    * binary images: ``data`` uint8 ``(N, ceil(C·H·W / 8))``, 8 pixels a byte in flattened pixel order
      (the first pixel in the high bit, as :func:`numpy.packbits`), and ``shape`` ``(C, H, W)``;
    * anything else: ``data`` float32 ``(N, ...)`` as given (user data that is on no grid).

    Build the first two with :meth:`from_levels` and :meth:`from_bits`, the last as ``Split(x, y)``.

    :param data: the stored pixels, as above.
    :param y: integer labels ``(N,)`` (:data:`MISSING` where a label was dropped).
    :param levels: the number of grey levels of uint8 ``data`` (``None`` otherwise).
    :param shape: the shape of one datapoint of packed ``data`` (``None`` otherwise).
    :param factors: ground-truth factor indices ``(N, F)`` int64, or ``None`` when the dataset has none.
    """

    data: torch.Tensor
    y: torch.Tensor
    levels: int | None = None
    shape: tuple[int, ...] | None = None
    factors: torch.Tensor | None = None

    def __post_init__(self):
        if self.levels is not None and self.shape is not None:
            raise ValueError("a Split stores grey levels or packed bits, not both: give levels or shape")
        if (self.levels is not None or self.shape is not None) and self.data.dtype != torch.uint8:
            raise ValueError(f"grey levels and packed bits are stored as uint8, got {self.data.dtype}")
        if self.levels is None and self.shape is None and not self.data.is_floating_point():
            raise ValueError(f"float images must be a floating tensor, got {self.data.dtype}; use Split.from_levels")
        if self.shape is not None and self.data.shape[1:] != (_packed_bytes(self.shape),):
            raise ValueError(f"packed bits of shape {self.shape} take {_packed_bytes(self.shape)} bytes a datapoint")
        if len(self.y) != len(self.data) or (self.factors is not None and len(self.factors) != len(self.data)):
            raise ValueError("images, labels and factors of a split must have one row per datapoint")

    @classmethod
    def from_levels(
        cls, pixels: torch.Tensor, levels: int, y: torch.Tensor, factors: torch.Tensor | None = None
    ) -> "Split":
        """A split of grey levels ``pixels / levels``.

        :param pixels: uint8 ``(N, C, H, W)``, each at most ``levels``.
        :param levels: the value of a white pixel (255 for the IDX sets, 16 for digits).
        :param y: labels ``(N,)``.
        :param factors: factor indices ``(N, F)`` or ``None``.
        """
        return cls(pixels, y, levels=levels, factors=factors)

    @classmethod
    def from_bits(cls, images: torch.Tensor, y: torch.Tensor, factors: torch.Tensor | None = None) -> "Split":
        """A split of binary images, packed 8 pixels a byte.

        :param images: ``(N, C, H, W)`` of zeros and ones (any dtype; nonzero is one).
        :param y: labels ``(N,)``.
        :param factors: factor indices ``(N, F)`` or ``None``.
        """
        flat = images.reshape(len(images), -1).numpy() != 0  # (N, C·H·W) bool
        packed = torch.from_numpy(np.packbits(flat, axis=1))
        return cls(packed, y, shape=tuple(images.shape[1:]), factors=factors)

    def __len__(self) -> int:
        return self.data.shape[0]

    @property
    def x_shape(self) -> tuple[int, ...]:
        """Shape of one datapoint, e.g. ``(1, 28, 28)``."""
        return self.shape if self.shape is not None else tuple(self.data.shape[1:])

    @property
    def is_binary(self) -> bool:
        """Whether the split is stored as packed bits (every pixel 0 or 1)."""
        return self.shape is not None

    def images(self, index: Index = None) -> torch.Tensor:
        """The images at ``index`` as float32 ``(n, C, H, W)`` in [0, 1], converted from storage now.

        :param index: a LongTensor of rows, a slice, or ``None`` for the whole split (which, for a
            large split, is large: ask for the rows you need).
        """
        rows = self.data if index is None else self.data[index]
        if self.shape is not None:
            return unpack_bits(rows, self.shape)
        if self.levels is not None:
            return rows.float().div_(self.levels)
        return rows if rows.dtype == torch.float32 else rows.float()

    def subset(self, index: Index) -> "Split":
        """The datapoints at ``index``, stored as they are here.

        :param index: a LongTensor of rows or a slice.
        """
        factors = None if self.factors is None else self.factors[index]
        return replace(self, data=self.data[index], y=self.y[index], factors=factors)

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored images (labels and factors not counted)."""
        return self.data.numel() * self.data.element_size()

    @property
    def labelled(self) -> torch.Tensor:
        """Boolean mask ``(N,)`` of the datapoints that keep their label."""
        return self.y != MISSING

    @property
    def fully_labelled(self) -> bool:
        """Whether no label is missing."""
        return bool(self.labelled.all())


def _packed_bytes(shape: tuple[int, ...]) -> int:
    return -(-math.prod(shape) // 8)


@dataclass(frozen=True)
class Dataset:
    """Train, validation and test splits of one dataset.

    With ``binarize="dynamic"``, ``train`` keeps its grey levels (the trainer draws a binary
    batch from them each step, see :func:`binarize`) while ``val`` and ``test`` are binarized once.

    :param ground_truth: the factors that generated the images (:mod:`pvae.dsprites`), or ``None``.
    """

    name: str
    train: Split
    val: Split
    test: Split
    binarize: str
    num_classes: int
    ground_truth: "GroundTruth | None" = None

    @property
    def x_shape(self) -> tuple[int, ...]:
        """Shape of one datapoint, e.g. ``(1, 28, 28)``."""
        return self.train.x_shape

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


#: Every dataset name :func:`load` accepts.
DATASETS = ("digits", *IDX_DATASETS, "dsprites")
#: The datasets whose images come with ground-truth factors (:attr:`Dataset.ground_truth`).
WITH_FACTORS = ("dsprites",)


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


def load(config: DataConfig = DataConfig()) -> Dataset:
    """Load, split and binarize a dataset as the config says.

    Validation is a fixed-seed random subset of the training split; digits' test split is a
    fixed-seed 360 of its 1797 images, the IDX sets keep their official 10,000 test images, and
    dSprites draws 10,000 test and 5,000 validation images from its grid with the seed. With
    ``train_size``, training keeps a fixed-seed subset of the training split.

    :raises DataError: for an unknown name or binarization, data that cannot be found, or sizes
        that do not fit the dataset.
    """
    if config.binarize not in BINARIZE:
        raise DataError(f"unknown binarization {config.binarize!r}; choose one of {list(BINARIZE)}")
    ground_truth = None
    if config.data == "digits":
        train, test = _load_digits(config)
        val_size = 180 if config.val_size is None else config.val_size
    elif config.data in IDX_DATASETS:
        train, test = _load_idx(config.data, config)
        val_size = 5000 if config.val_size is None else config.val_size
    elif config.data == "dsprites":
        from pvae import dsprites  # the renderer, imported only for the dataset that needs it

        val_size = 5000 if config.val_size is None else config.val_size
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
