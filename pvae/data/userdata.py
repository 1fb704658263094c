"""The user's own data: files read into arrays, what kind of numbers they hold, and their checksum.

``--data PATH`` (or :func:`pvae.data.from_arrays` in Python) takes

* ``.npy`` — read memory-mapped (never whole): ``(N, D)`` vectors, ``(N, H, W)`` grey images,
  ``(N, C, H, W)`` or ``(N, H, W, C)`` images (C of 1, 3 or 4);
* ``.npz`` — keys ``x``, optional ``y`` (labels), ``factors`` (ground-truth factor indices ``(N, F)``)
  and ``split`` (``train``/``val``/``test`` per row);
* ``.pt`` — a tensor, or a dict of tensors with the keys of ``.npz``, read with ``weights_only=True``;
* ``.csv``, ``.tsv``, ``.parquet`` — every numeric column a feature, except the columns named by
  ``--label-column``, ``--factor-columns``, ``--split-column`` and ``--drop-columns``;
* a folder of images (PNG, JPEG, BMP, TIFF), grey or colour, one subfolder per class as
  torchvision's ``ImageFolder`` (or the images themselves, unlabelled; not both);
* ``.h5ad`` — AnnData's ``X`` or ``--layer NAME``, a sparse matrix kept sparse, labels from ``obs``.

Labels are classes: more than :data:`MANY_CLASSES` of them need :data:`ROWS_PER_CLASS` rows a class on
average (:func:`check_classes`), else the column is a measurement, to give as a factor or drop.
Nothing is ever unpickled: ``np.load(..., allow_pickle=False)``, ``torch.load(..., weights_only=True)``.
Every problem is one :class:`~pvae.data.idx.DataError` naming the file, what is wrong and the fix.

The data's **kind** (:data:`KINDS`) is found by :func:`find_kind`: ``binary`` (every value 0 or 1),
``counts`` (non-negative integers, some above 1), ``levels`` (values in [0, 1]) or ``real``.
"""

import hashlib
import math
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from pvae.data.idx import DataError

#: Data kind → what its values are. A likelihood's ``support`` is a tuple of these names
#: (:mod:`pvae.engine.likelihoods`).
KIND_VALUES: dict[str, str] = {
    "binary": "0 or 1",
    "levels": "values in [0, 1]",
    "counts": "non-negative integers",
    "real": "any real numbers",
}
#: The kinds of data.
KINDS = tuple(KIND_VALUES)
#: What each kind is, in words (said when data are loaded).
KIND_WORDS = {
    "binary": "binary (0 or 1)",
    "levels": "levels in [0, 1]",
    "counts": "counts (non-negative integers)",
    "real": "real-valued",
}
assert set(KIND_WORDS) == set(KINDS)
#: The likelihood a kind gets unless ``--likelihood`` names another.
DEFAULT_LIKELIHOOD = {
    "binary": "bernoulli",
    "counts": "negative-binomial",
    "levels": "continuous-bernoulli",
    "real": "gaussian-per-pixel",
}
#: Suffixes of the image files a folder is read for.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: Suffixes of the tables.
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")
#: Every file suffix ``--data`` reads.
SUFFIXES = (".npy", ".npz", ".pt", *TABLE_SUFFIXES, ".h5ad")
#: Values of a split column or ``split`` array.
SPLIT_NAMES = ("train", "val", "test")
#: Rows scanned at a time when a large array is checked (its kind, non-finite values, statistics).
CHUNK_ROWS = 4096


@dataclass
class Arrays:
    """What a data file holds, before it is split.

    :param x: ``(N, D)`` vectors or ``(N, C, H, W)`` images: a NumPy array (possibly memory-mapped)
        or a SciPy sparse matrix ``(N, D)``.
    :param y: integer labels ``(N,)`` or ``None``.
    :param classes: the name of each label, where the file names them.
    :param factors: ground-truth factor indices ``(N, F)`` or ``None``.
    :param factor_names: the factors' names.
    :param split: ``(N,)`` array of ``train``/``val``/``test``, or ``None`` (pvae splits).
    :param features: the features' names (a table's columns), or ``None``.
    :param rows: the rows' names (an AnnData's ``obs_names``), or ``None``.
    :param levels: the value of a white pixel of uint8 images (255), else ``None``.
    """

    x: object
    y: np.ndarray | None = None
    classes: tuple[str, ...] | None = None
    factors: np.ndarray | None = None
    factor_names: tuple[str, ...] | None = None
    split: np.ndarray | None = None
    features: tuple[str, ...] | None = None
    rows: tuple[str, ...] | None = None
    levels: int | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        n = self.x.shape[0]
        for name in ("y", "factors", "split"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise DataError(f"{name} has {len(value)} rows but x has {n}: give one per datapoint")


class ReadOptions(Protocol):
    """How a file is read: the fields of :class:`pvae.data.DataConfig` that concern files (declared there,
    once; a ``DataConfig`` is what :func:`read` is given)."""

    label_column: str | None
    factor_columns: tuple[str, ...]
    split_column: str | None
    drop_columns: tuple[str, ...]
    image_size: tuple[int, ...]
    layer: str | None


def read(path: str | os.PathLike, options: ReadOptions) -> Arrays:
    """Read a data file or folder into :class:`Arrays`.

    :raises DataError: for a missing file, an unknown suffix, an empty file, or contents that cannot be
        data (see the module's docstring); the message names the file and the fix.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"--data {path}: no such file or folder (give a path to a data file, or one of the built-in names)"
        )
    if path.is_dir():
        return _read_folder(path, options)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(
            f"--data {path}: pvae does not read {suffix or 'files without a suffix'}; give one of "
            f"{', '.join(SUFFIXES)} or a folder of images"
        )
    if path.stat().st_size == 0:
        raise DataError(f"--data {path} is empty (0 bytes)")
    _refuse_options_for(path, options)
    reader: Callable[[Path, ReadOptions], Arrays] = {
        ".npy": _read_npy,
        ".npz": _read_npz,
        ".pt": _read_pt,
        ".h5ad": _read_h5ad,
    }.get(suffix, _read_table)
    arrays = reader(path, options)
    if arrays.x.shape[0] < 2:
        raise DataError(f"--data {path} holds {arrays.x.shape[0]} datapoint(s): a model needs at least a few")
    return arrays


def _refuse_options_for(path: Path, options: ReadOptions) -> None:
    """Options that mean nothing to this kind of file: columns of an array file, a layer of anything but an
    ``.h5ad``, a size for anything but a folder of images."""
    suffix = path.suffix.lower()
    columns = {
        "--label-column": options.label_column,
        "--factor-columns": options.factor_columns,
        "--split-column": options.split_column,
        "--drop-columns": options.drop_columns,
    }
    if suffix == ".h5ad":  # its obs has columns, its X none to drop
        columns = {"--drop-columns": options.drop_columns}
    elif suffix in TABLE_SUFFIXES:
        columns = {}
    given = [flag for flag, value in columns.items() if value]
    if given:
        raise DataError(f"{', '.join(given)} name columns of a table; {path.name} has none: drop them")
    if options.layer is not None and suffix != ".h5ad":
        raise DataError(f"--layer names a layer of an .h5ad file; {path.name} has none: drop it")
    if options.image_size:
        raise DataError(f"--image-size resizes the images of a folder; {path.name} is a file: drop it")


# --------------------------------------------------------------------------------------------
# Arrays


def _array_shape(path: Path, x: np.ndarray, what: str = "the array") -> np.ndarray:
    """Vectors ``(N, D)`` or images ``(N, C, H, W)`` from what a file holds."""
    if x.dtype == object or x.dtype.kind not in "biuf":
        raise DataError(f"{path}: {what} holds {x.dtype} values; pvae models numbers (bool, int or float)")
    if x.ndim == 1:
        raise DataError(
            f"{path}: {what} is 1-D ({x.shape[0]} values); give one row per datapoint, e.g. reshape it to "
            f"({x.shape[0]}, 1) for one feature"
        )
    if x.ndim == 3:
        return x[:, None]  # (N, H, W) grey images → (N, 1, H, W), a view
    if x.ndim == 4 and x.shape[1] not in (1, 3, 4) and x.shape[-1] in (1, 3, 4):
        return np.moveaxis(x, -1, 1)  # channels last → (N, C, H, W), a view: a memory map stays one
    if x.ndim > 4:
        raise DataError(f"{path}: {what} has shape {x.shape}; give (N, D) vectors or (N, C, H, W) images")
    return x


class NpyRows:
    """The rows of a ``.npy`` file, read from disk as they are asked for (``os.pread``), never the whole file.

    Reading rows with plain reads rather than a memory map keeps them out of the process's resident memory
    once a batch is done (the pages stay in the kernel's file cache, which it reclaims as it needs), so a
    file larger than memory trains with the resident memory of a few batches.

    :param path: the ``.npy`` file (C order; its header is checked).
    :ivar shape: ``(N, ...)`` as the file holds it, then as :meth:`view` makes it (``(N, C, H, W)``).
    :ivar dtype: the file's dtype.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        try:  # the header, through NumPy's own reader (a memory map of it, dropped at once)
            mapped = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except ValueError as error:
            if "object" in str(error).lower() or "pickle" in str(error).lower():
                raise DataError(
                    f"{path} holds Python objects, which pvae does not unpickle (reading them can run code): save "
                    "a numeric array, e.g. np.save(path, x.astype(np.float32))"
                ) from None
            raise DataError(f"{path} is not a readable .npy file ({error})") from None
        shape, dtype, self.offset = mapped.shape, mapped.dtype, mapped.offset
        fortran = mapped.flags.f_contiguous and not mapped.flags.c_contiguous
        del mapped
        if fortran and len(shape) > 1:
            raise DataError(
                f"{path} is stored in Fortran order; save it C-ordered: np.save(path, np.ascontiguousarray(x))"
            )
        self.stored = tuple(shape)
        self.dtype = dtype
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize if shape else 0
        expected = self.offset + (shape[0] if shape else 0) * self.row_bytes
        if self.path.stat().st_size < expected:
            raise DataError(
                f"{path} is truncated: its header promises {expected} bytes, the file has {self.path.stat().st_size}"
            )
        self.transform = None  # (stored rows) → rows of `shape`
        self.shape = self.stored

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def view(self, shape: tuple[int, ...], transform) -> "NpyRows":
        """These rows seen with another shape per row (grey images given a channel, channels moved first)."""
        view = object.__new__(NpyRows)
        view.__dict__.update(self.__dict__)
        view.shape, view.transform = tuple(shape), transform
        return view

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        n = self.stored[0]
        if isinstance(index, slice):
            start, stop, step = index.indices(n)
            if step == 1:
                rows = self._read_run(start, max(stop - start, 0))
            else:
                rows = self[np.arange(start, stop, step)]
                return rows
        else:
            index = np.asarray(index, dtype=np.int64).reshape(-1)
            if len(index) and (index.min() < -n or index.max() >= n):
                raise IndexError(f"row index out of range for {n} rows")
            index = np.where(index < 0, index + n, index)
            order = np.argsort(index, kind="stable")
            rows = np.empty((len(index), *self.stored[1:]), dtype=self.dtype)
            fd = os.open(self.path, os.O_RDONLY)
            try:
                for position in order:  # in file order: neighbouring rows come from the same pages
                    row = int(index[position])
                    chunk = os.pread(fd, self.row_bytes, self.offset + row * self.row_bytes)
                    rows[position] = np.frombuffer(chunk, dtype=self.dtype).reshape(self.stored[1:])
            finally:
                os.close(fd)
        return rows if self.transform is None else self.transform(rows)

    def _read_run(self, start: int, count: int) -> np.ndarray:
        with open(self.path, "rb") as handle:
            handle.seek(self.offset + start * self.row_bytes)
            data = handle.read(count * self.row_bytes)
        return np.frombuffer(data, dtype=self.dtype).reshape((count, *self.stored[1:])).copy()


def _read_npy(path: Path, options: ReadOptions) -> Arrays:
    rows = NpyRows(path)
    if rows.dtype.kind not in "biuf":
        raise DataError(f"{path}: the array holds {rows.dtype} values; pvae models numbers (bool, int or float)")
    shape = rows.stored
    if len(shape) == 1:
        raise DataError(
            f"{path}: the array is 1-D ({shape[0]} values); give one row per datapoint, e.g. reshape it to "
            f"({shape[0]}, 1) for one feature"
        )
    levels = 255 if rows.dtype == np.uint8 and len(shape) in (3, 4) else None  # image bytes, as in image files
    if len(shape) == 3:  # (N, H, W) grey images
        return Arrays(rows.view((shape[0], 1, *shape[1:]), lambda r: r[:, None]), levels=levels)
    if len(shape) == 4 and shape[1] not in (1, 3, 4) and shape[-1] in (1, 3, 4):  # channels last
        viewed = (shape[0], shape[3], shape[1], shape[2])
        return Arrays(rows.view(viewed, lambda r: np.ascontiguousarray(np.moveaxis(r, -1, 1))), levels=levels)
    if len(shape) > 4:
        raise DataError(f"{path}: the array has shape {shape}; give (N, D) vectors or (N, C, H, W) images")
    return Arrays(rows, levels=levels)


def _read_npz(path: Path, options: ReadOptions) -> Arrays:
    try:
        archive = np.load(path, allow_pickle=False)
        names = set(archive.files)
        if "x" not in names:
            raise DataError(f"{path} has no array 'x' (it has {', '.join(sorted(names)) or 'none'}): name the data x")
        got = {k: archive[k] for k in ("x", "y", "factors", "split") if k in names}
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise DataError(f"{path} holds Python objects, which pvae does not unpickle: save numeric arrays") from None
        raise DataError(f"{path} is not a readable .npz file ({error})") from None
    except OSError as error:
        raise DataError(f"{path} is not a readable .npz file ({error})") from None
    return _arrays_from_dict(path, got)


def _read_pt(path: Path, options: ReadOptions) -> Arrays:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # names Python objects: reading them could run code
        raise DataError(
            f"{path} holds Python objects besides tensors, and is not a file of tensors pvae reads without running "
            "code: save a tensor, or a dict of tensors, with torch.save"
        ) from None
    except Exception as error:  # RuntimeError, EOFError ... for broken files
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:100]
        raise DataError(f"{path} is not a readable .pt file ({first})") from None
    if isinstance(loaded, torch.Tensor):
        loaded = {"x": loaded}
    if not isinstance(loaded, dict) or "x" not in loaded:
        raise DataError(f"{path} holds {type(loaded).__name__}; give a tensor, or a dict with the tensor 'x'")
    got = {}
    for key in ("x", "y", "factors", "split"):
        if key in loaded:
            value = loaded[key]
            got[key] = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    return _arrays_from_dict(path, got)


def _arrays_from_dict(path: Path, got: dict) -> Arrays:
    x = _array_shape(path, got["x"], "x")
    n = x.shape[0]
    for key in ("y", "factors", "split"):
        if key in got and len(got[key]) != n:
            raise DataError(f"{path}: {key} has {len(got[key])} rows but x has {n}: give one per datapoint")
    fix = "if it is a measurement, save it as 'factors' (a ground truth) or leave y out"
    y, classes = read_labels(path, got["y"], "y", fix) if "y" in got else (None, None)
    factors = None
    if "factors" in got:
        factors = np.asarray(got["factors"])
        if factors.ndim == 1:
            factors = factors[:, None]
        if factors.ndim != 2 or factors.dtype.kind not in "biu":
            raise DataError(
                f"{path}: factors must be integer indices of shape (N, F), not {factors.dtype} {factors.shape}"
            )
    split = _splits(path, got["split"], "split") if "split" in got else None
    return Arrays(x, y, classes, factors, None, split)


def read_labels(path, values, what: str, fix: str) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """Integer labels 0..K−1 from integers (kept) or names (sorted, their names kept as classes).

    :param path: the file, for messages.
    :param values: one label per row: integers, whole numbers as floats, or names.
    :param what: the labels, for messages (``--label-column target``, ``y``).
    :param fix: what to do where they are too many to be classes (:func:`check_classes`).
    :returns: ``(labels (N,) int64, class names or None)``.
    :raises DataError: for labels that are not one per row, fractions, or too many classes.
    """
    values = np.asarray(values)
    if values.ndim != 1:
        raise DataError(f"{path}: {what} must be one label per datapoint, not an array of shape {values.shape}")
    check_classes(values, path, what, fix)
    if values.dtype.kind == "f":
        if not np.all(np.mod(values, 1) == 0):
            raise DataError(
                f"{path}: {what} holds fractions such as {values[np.mod(values, 1) != 0][0]:g}; a label names a "
                "class: give a column of class names or whole numbers"
            )
        values = values.astype(np.int64)
    if values.dtype.kind in "iub" and values.min() >= 0:
        labels, classes = values.astype(np.int64), None
    else:
        names, labels = np.unique(values.astype(str), return_inverse=True)
        classes = tuple(str(n) for n in names)
    return labels.astype(np.int64), classes


#: Labels with more distinct values than this ...
MANY_CLASSES = 20
#: ... and fewer rows than this a class, on average, are refused (:func:`check_classes`).
ROWS_PER_CLASS = 5


def check_classes(labels, where, what: str, fix: str) -> None:
    """Refuse labels that are not classes: more than :data:`MANY_CLASSES` distinct values and fewer than
    :data:`ROWS_PER_CLASS` rows a class on average. Such a column is a measurement or an identifier (wine's
    proline, 121 values in 178 rows, would make 121 classes of about one row each), not a class a model could
    condition on or a classifier learn. Twenty classes or fewer always pass, and so do many classes with rows
    to spare: digits' 10 in 1,797 rows, 50 cell types in 5,000 cells, ImageNet's 1,000 in 1.2 million images.

    :param labels: one label per row (numbers or names).
    :param where: the file, for the message.
    :param what: the labels, for the message (``--label-column target``, ``y``).
    :param fix: what to do instead, the message's end.
    :raises DataError: naming the number of distinct values and ``fix``.
    """
    labels = np.asarray(labels)
    distinct = len(np.unique(labels))
    if distinct > MANY_CLASSES and distinct * ROWS_PER_CLASS > len(labels):
        raise DataError(
            f"{where}: {what} holds {distinct} distinct values in {len(labels)} rows, {len(labels) / distinct:.1f} "
            f"rows a class: a quantity, not classes (labels of more than {MANY_CLASSES} classes need "
            f"{ROWS_PER_CLASS} rows a class on average); {fix}"
        )


def _splits(path, values, what: str) -> np.ndarray:
    values = np.asarray(values).astype(str)
    unknown = sorted(str(v) for v in set(np.unique(values)) - set(SPLIT_NAMES))
    if unknown:
        raise DataError(f"{path}: {what} holds {', '.join(unknown[:3])}; its values must be train, val or test")
    for name in ("train", "test"):
        if not (values == name).any():
            raise DataError(f"{path}: {what} marks no row {name!r}; a run needs train and test rows")
    return values


# --------------------------------------------------------------------------------------------
# Tables


def _pandas():
    try:
        import pandas
    except ImportError:
        raise DataError("reading tables needs pandas (and pyarrow for .parquet): pip install 'pvae[data]'") from None
    return pandas


def _read_table(path: Path, options: ReadOptions) -> Arrays:
    pd = _pandas()
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except ImportError as error:
        raise DataError(f"reading {path.name} needs pyarrow: pip install 'pvae[data]' ({error})") from None
    except Exception as error:  # pandas' ParserError names the line of a ragged row
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DataError(f"{path} is not a readable table: {first}") from None
    if frame.shape[0] == 0:
        raise DataError(f"{path} has a header but no rows")
    if suffix != ".parquet":  # pandas renames a repeated name (a, a.1): read the header as written
        import csv

        with open(path, newline="") as handle:
            header = next(csv.reader(handle, delimiter="\t" if suffix == ".tsv" else ","), [])
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise DataError(f"{path}: the column name {repeated[0]!r} appears more than once; give each column its own")
    return arrays_from_frame(frame, options, str(path))


def arrays_from_frame(frame, options: ReadOptions, where: str = "the table") -> Arrays:
    """:class:`Arrays` from a pandas ``DataFrame``: the named columns apart, every other a feature.

    :raises DataError: for a named column that is missing, a feature column that is not numeric, or
        a missing value.
    """
    columns = [str(c) for c in frame.columns]
    frame = frame.set_axis(columns, axis=1)
    separators = (";", "\t", ",", "|")
    if len(columns) == 1 and any(sep in columns[0] for sep in separators):  # before any column is looked up
        separator = next(sep for sep in separators if sep in columns[0])
        raise DataError(
            f"{where} reads as one column named {columns[0][:60]!r}: its values seem separated by {separator!r}, "
            f"not by the {'tab' if where.endswith('.tsv') else 'comma'} its suffix says; save it with that separator"
        )
    named = [options.label_column, *options.factor_columns, options.split_column, *options.drop_columns]
    for option, name in [
        ("--label-column", options.label_column),
        *[("--factor-columns", n) for n in options.factor_columns],
        ("--split-column", options.split_column),
        *[("--drop-columns", n) for n in options.drop_columns],
    ]:
        if name is not None and name not in columns:
            raise DataError(f"{option} {name}: {where} has no such column; its columns are {_listed(columns)}")
    both = [
        c for c in (options.label_column, options.split_column, *options.factor_columns) if c in options.drop_columns
    ]
    if both:
        raise DataError(f"--drop-columns {both[0]} drops the column that another option names: name it once")
    features = [c for c in columns if c not in named]
    if features and features[0].startswith("Unnamed: 0") and np.array_equal(frame[features[0]], np.arange(len(frame))):
        raise DataError(
            f"{where}: the first column {features[0]!r} is 0, 1, 2, ...: pandas' saved index, not a feature; drop it "
            f"with --drop-columns '{features[0]}', or save the table with index=False"
        )
    text = [c for c in features if not _numeric(frame[c])]
    if len(text) == 1 and len(features) == 1 and any(sep in text[0] for sep in (";", "\t", ",", "|")):
        separator = next(sep for sep in (";", "\t", ",", "|") if sep in text[0])
        raise DataError(
            f"{where} reads as one column named {text[0][:60]!r}: its values seem separated by {separator!r}, not by "
            f"the {'tab' if where.endswith('.tsv') else 'comma'} its suffix says; save it with that separator"
        )
    if text:
        raise DataError(
            f"{where}: the columns {_listed(text)} are not numbers; name a label with --label-column, or leave them "
            f"out with --drop-columns {','.join(text[:5])}"
        )
    if not features:
        raise DataError(f"{where} has no feature column left once the named ones are set apart")
    values = frame[features].to_numpy()
    if values.dtype == object or values.dtype.kind == "b":
        values = values.astype(np.float64)
    unusable = _unusable(values.astype(np.float64))
    if unusable is not None:
        (row, col), count, huge = unusable
        at = f"{where}: row {row + 1} (counting data rows from 1), column {features[col]!r} is {values[row, col]}"
        if huge:
            raise DataError(f"{at}, {_BEYOND_FLOAT32}; rescale the column (a unit of 1e6, a log)")
        raise DataError(f"{at} ({count} such value(s)); fill or drop them first")
    y = classes = None
    if options.label_column is not None:
        labels = frame[options.label_column]
        if labels.isna().any():
            raise DataError(
                f"--label-column {options.label_column}: row {int(np.argmax(labels.isna())) + 1} has no label"
            )
        name = options.label_column
        fix = f"if it is a measurement, name it in --factor-columns {name} (a ground truth) or --drop-columns {name}"
        y, classes = read_labels(where, labels.to_numpy(), f"--label-column {name}", fix)
    factors = None
    if options.factor_columns:
        factors = np.stack([_factor_codes(frame[c], where, c) for c in options.factor_columns], axis=1)
    split = None
    if options.split_column is not None:
        split = _splits(where, frame[options.split_column].to_numpy(), f"--split-column {options.split_column}")
    notes = [] if options.label_column is not None else _label_like(frame, features)
    return Arrays(
        smallest_exact(values),
        y,
        classes,
        factors,
        tuple(options.factor_columns) or None,
        split,
        tuple(features),
        notes=notes,
    )


#: Column names that usually hold labels, not features (compared in lower case).
LABEL_NAMES = ("target", "label", "labels", "class", "classes", "y", "species", "cell_type", "celltype", "diagnosis")


def _label_like(frame, features: list[str]) -> list[str]:
    """Notes on feature columns that look like a label (a label's name, few whole values) or an identifier
    (a different whole number in every row): a table's easiest mistakes, said rather than refused."""
    notes = []
    for name in features:
        column = frame[name].to_numpy()
        if column.dtype.kind not in "iu" and not (column.dtype.kind == "f" and np.all(np.mod(column, 1) == 0)):
            continue
        distinct = len(np.unique(column))
        if name.lower() in LABEL_NAMES and distinct <= MANY_CLASSES:
            notes.append(
                f"column {name!r} ({distinct} values) looks like a label, here a feature: --label-column {name}"
            )
        elif distinct == len(column) >= 20:
            notes.append(
                f"column {name!r} holds a different whole number in every row, like an identifier, here a "
                f"feature: --drop-columns {name} if it is one"
            )
    return notes


def _factor_codes(column, where: str, name: str) -> np.ndarray:
    values = column.to_numpy()
    if column.isna().any():
        raise DataError(f"--factor-columns {name}: row {int(np.argmax(column.isna())) + 1} has no value")
    _, codes = np.unique(values, return_inverse=True)  # sorted values → 0..K−1
    return codes.astype(np.int64)


def _numeric(column) -> bool:
    return column.dtype.kind in "biuf"


def _listed(names: list[str], most: int = 30) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def smallest_exact(values: np.ndarray) -> np.ndarray:
    """``values`` in the smallest dtype that holds each exactly: unsigned or signed integers of 8 to
    64 bits for whole numbers, float32 where it round-trips, else float64."""
    if values.dtype.kind in "biu" or (values.dtype.kind == "f" and np.all(np.mod(values, 1) == 0)):
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        for kind in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64):
            info = np.iinfo(kind)
            if info.min <= lo and hi <= info.max:
                return values.astype(kind)
    as32 = values.astype(np.float32)
    return as32 if np.array_equal(as32.astype(values.dtype), values) else values.astype(np.float64)


# --------------------------------------------------------------------------------------------
# Image folders


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise DataError("reading a folder of images needs Pillow: pip install 'pvae[data]'") from None
    return Image


def image_files(folder: Path) -> tuple[list[Path], list[str] | None]:
    """The image files of ``folder`` in a fixed order, and the class names: one per subfolder holding
    images (``ImageFolder``'s layout), or ``None`` for images directly in the folder (subfolders without
    images, and hidden ones, are not read).

    :raises DataError: for images at the top level beside class folders, which would be left out.
    """
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    def images_in(where: Path, deep: bool = True) -> list[Path]:
        return sorted(
            p
            for p in (where.rglob("*") if deep else where.iterdir())
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")
        )

    classes = {s.name: images_in(s) for s in subfolders}
    classes = {name: files for name, files in classes.items() if files}  # a folder without images is no class
    loose = images_in(folder, deep=False)
    if classes and loose:  # ImageFolder reads the class folders alone: the loose images would be left out unsaid
        names = list(classes)
        raise DataError(
            f"--data {folder} holds {len(loose)} image(s) at its top level (such as {loose[0].name}) beside the "
            f"class folders {_listed(names, 5)}, and pvae reads one subfolder per class: move the loose images into "
            "a class folder, or point --data at a folder of only images"
        )
    if classes:
        return [p for files in classes.values() for p in files], list(classes)
    return loose, None


def _read_folder(folder: Path, options: ReadOptions) -> Arrays:
    Image = _pil()
    files, classes = image_files(folder)
    if not files:
        raise DataError(
            f"--data {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}), directly or in one subfolder per class"
        )
    if options.label_column or options.factor_columns or options.split_column or options.drop_columns or options.layer:
        raise DataError(f"--data {folder} is a folder of images: column and layer options do not apply; drop them")
    size = tuple(options.image_size) if options.image_size else None
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise DataError(f"--image-size takes H,W such as 64,64, not {','.join(map(str, size))}")
    pixels, sizes, modes = [], {}, set()
    for file in files:
        try:
            with Image.open(file) as image:
                image.load()
                if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                    raise DataError(
                        f"{file} is a {image.mode} image (16-bit or float pixels), which pvae would have to cut to 8 "
                        "bits: convert the images to 8-bit, or save their values as a .npy array"
                    )
                if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                    raise DataError(
                        f"{file} has an alpha channel, which pvae would drop: save the images without it (RGB or grey)"
                    )
                colour = image.mode not in ("1", "L")
                modes.add(colour)
                image = image.convert("RGB" if colour else "L")
                if size is not None and image.size != (size[1], size[0]):
                    image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                array = np.asarray(image, dtype=np.uint8)
        except (OSError, SyntaxError, ValueError) as error:
            raise DataError(f"{file} is not a readable image ({error}); remove or replace it") from None
        sizes.setdefault(array.shape[:2], file)
        pixels.append(array)
    if len(sizes) > 1:
        (a, first), (b, second) = list(sizes.items())[:2]
        raise DataError(
            f"--data {folder}: images of different sizes ({first.relative_to(folder)} is {a[0]}×{a[1]}, "
            f"{second.relative_to(folder)} is {b[0]}×{b[1]}); give --image-size H,W to resize them all"
        )
    if len(modes) > 1:  # grey and colour mixed: every image as RGB
        pixels = [np.repeat(p[..., None], 3, axis=-1) if p.ndim == 2 else p for p in pixels]
    x = np.stack(pixels)
    x = x[:, None] if x.ndim == 3 else np.ascontiguousarray(np.moveaxis(x, -1, 1))  # (N, C, H, W) uint8
    y = None
    if classes is not None:
        index = {name: i for i, name in enumerate(classes)}
        y = np.array([index[f.relative_to(folder).parts[0]] for f in files], dtype=np.int64)
        if len(classes) < 2:
            y, classes = None, None  # one subfolder: unlabelled images
    rows = tuple(str(f.relative_to(folder)) for f in files)
    return Arrays(x, y, tuple(classes) if classes else None, rows=rows, levels=255)


# --------------------------------------------------------------------------------------------
# AnnData


def _read_h5ad(path: Path, options: ReadOptions) -> Arrays:
    try:
        import anndata
    except ImportError:
        raise DataError("reading .h5ad needs anndata: pip install 'pvae[anndata]'") from None
    try:
        adata = anndata.read_h5ad(path)
    except Exception as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DataError(f"{path} is not a readable .h5ad file ({first})") from None
    if options.layer is not None:
        if options.layer not in adata.layers:
            raise DataError(f"--layer {options.layer}: {path.name} has the layers {_listed(list(adata.layers))}")
        x = adata.layers[options.layer]
    else:
        x = adata.X
    if x is None:
        raise DataError(f"{path} has no X matrix; name a layer with --layer")
    from scipy import sparse

    if sparse.issparse(x):
        x = sparse.csr_matrix(x)
        if x.dtype.kind not in "biuf":
            raise DataError(f"{path}: X holds {x.dtype} values")
    else:
        x = np.asarray(x)
    obs = adata.obs
    y = classes = None
    if options.label_column is not None:
        if options.label_column not in obs.columns:
            raise DataError(f"--label-column {options.label_column}: obs has the columns {_listed(list(obs.columns))}")
        name = options.label_column
        fix = f"if it is a measurement, name it in --factor-columns {name} (a ground truth) instead of --label-column"
        y, classes = read_labels(path, obs[name].astype(str).to_numpy(), f"obs[{name!r}]", fix)
    factors = None
    for name in options.factor_columns:
        if name not in obs.columns:
            raise DataError(f"--factor-columns {name}: obs has the columns {_listed(list(obs.columns))}")
    if options.factor_columns:
        factors = np.stack([_factor_codes(obs[c], str(path), c) for c in options.factor_columns], axis=1)
    split = None
    if options.split_column is not None:
        if options.split_column not in obs.columns:
            raise DataError(f"--split-column {options.split_column}: obs has the columns {_listed(list(obs.columns))}")
        split = _splits(path, obs[options.split_column].astype(str).to_numpy(), f"obs[{options.split_column!r}]")
    return Arrays(
        x,
        y,
        classes,
        factors,
        tuple(options.factor_columns) or None,
        split,
        tuple(str(v) for v in adata.var_names),
        tuple(str(v) for v in adata.obs_names),
    )


# --------------------------------------------------------------------------------------------
# What the numbers are


def row_chunks(x, chunk: int = CHUNK_ROWS):
    """``x`` as dense float64 NumPy chunks of rows (for arrays too large to convert at once)."""
    for start in range(0, x.shape[0], chunk):
        part = x[start : start + chunk]
        part = part.toarray() if hasattr(part, "toarray") else np.asarray(part)
        yield start, part.reshape(len(part), -1)


#: The largest magnitude a float32 holds: pvae computes in float32, so a larger value would be infinite.
FLOAT32_MAX = float(np.finfo(np.float32).max)


_BEYOND_FLOAT32 = f"beyond what a float32 holds (±{FLOAT32_MAX:.1e})"


def _unusable(values: np.ndarray) -> tuple[tuple[int, int], int, bool] | None:
    """The first value of ``values`` ``(n, d)`` pvae cannot compute with — NaN or infinite first, else one beyond
    :data:`FLOAT32_MAX` — as ``((row, column), how many such values, whether it is the latter)``; None for none."""
    for mask, huge in ((~np.isfinite(values), False), (np.abs(values) > FLOAT32_MAX, True)):
        found = np.argwhere(mask)
        if len(found):
            return (int(found[0][0]), int(found[0][1])), len(found), huge
    return None


def find_kind(x, where: str = "the data", levels: int | None = None) -> str:
    """The narrowest of :data:`KINDS` that holds every value of ``x``, read a chunk of rows at a time.

    :param levels: ``x`` holds images as bytes out of ``levels`` (255): they are levels in [0, 1], binary
        when every pixel is 0 or ``levels``.
    :raises DataError: for a NaN or infinite value, naming its row and column (flattened feature index).
    """
    if levels is not None:
        return "binary" if _scan_bytes(x, levels)[1] else "levels"
    binary, integers, unit = True, True, True
    minimum = math.inf
    for start, part in row_chunks(x):
        unusable = _unusable(part) if part.dtype.kind == "f" else None
        if unusable is not None:
            (row, col), _, huge = unusable
            at = f"{where}: x[{start + row}, {col}] (row {start + row}, feature {col}, counting from 0)"
            at += f" is {part[row, col]}"
            raise DataError(
                f"{at}, {_BEYOND_FLOAT32}; rescale it" if huge else f"{at}; fill or drop non-finite values first"
            )
        if part.size == 0:
            continue
        minimum = min(minimum, float(part.min()))
        if binary:
            binary = bool(np.isin(part, (0, 1)).all())
        if integers:
            integers = part.dtype.kind in "biu" or bool(np.all(np.mod(part, 1) == 0))
        if unit:
            unit = minimum >= 0 and float(part.max()) <= 1
    if binary:
        return "binary"
    if integers and minimum >= 0:
        return "counts"
    if unit:
        return "levels"
    return "real"


def byte_kind(x, levels: int, where: str = "the data") -> tuple[str, int | None]:
    """The kind of images stored as bytes out of ``levels`` (255), and the levels to store them with, found
    in one pass over ``x``: bytes that are all 0 or ``levels`` are binary (``"binary"``, ``levels``), other
    bytes up to ``levels`` are ``"levels"``; bytes that are all 0 or 1 are binary images, not levels out of
    255 (``"binary"``, ``None``), and values no larger than 1 that are not bytes are read as
    :func:`find_kind` reads them (``None``: no levels).

    :param x: ``(N, ...)`` the images, as :func:`row_chunks` reads them.
    :param levels: the value of a white pixel.
    :param where: the file, for messages.
    """
    largest, black_and_white = _scan_bytes(x, levels)
    if largest <= 1:  # not levels out of 255
        return ("binary" if x.dtype == np.uint8 else find_kind(x, where)), None
    return ("binary" if black_and_white else "levels"), levels


def _scan_bytes(x, levels: int) -> tuple[float, bool]:
    """``x``'s largest value, and whether each is 0 or ``levels``, in one pass a chunk of rows at a time."""
    largest, black_and_white = 0.0, True
    for _, part in row_chunks(x):
        if part.size:
            largest = max(largest, float(part.max()))
            black_and_white = black_and_white and bool(np.isin(part, (0, levels)).all())
    return largest, black_and_white


def checksum(path: str | os.PathLike) -> str:
    """SHA-256 of a file, or of a folder's image files (their relative names and bytes, in order)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else image_files(path)[0]
    for file in files:
        if file != path:
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class ObservedFactors:
    """Factors recorded beside the rows of the user's data (``--factor-columns``): a ground truth that is
    not a generator. Points are drawn among the rows, and a point's observation is a row with exactly
    its factors (one of them, drawn with a fixed seed, when several have).

    The metrics that only draw points — MIG, DCI, SAP, modularity — need nothing more. The beta-VAE and
    FactorVAE scores fix one factor and draw the others, so they need rows for combinations the data may
    not hold: :meth:`observations` refuses a point no row has, naming it (:attr:`complete` says whether
    every combination is present).

    :param factor_names: one name per factor column.
    :param factors: ``(N, F)`` factor indices of the rows, each factor coded 0 … K − 1.
    :param fetch: rows (``(n,)`` int64 indices) → their observations, as the model sees them.
    """

    #: Read by :func:`pvae.measures.disentangle.score.score`: points are rows, there is no grid to cache codes on.
    observational = True

    def __init__(self, factor_names, factors: np.ndarray, fetch):
        self.factors = np.asarray(factors, dtype=np.int64)
        self.factor_names = tuple(factor_names)
        self.factor_sizes = tuple(int(column.max()) + 1 for column in self.factors.T)
        self.factor_values = tuple(np.arange(size, dtype=np.float64) for size in self.factor_sizes)
        self.fetch = fetch
        keys = np.ravel_multi_index(tuple(self.factors.T), self.factor_sizes)
        order = np.argsort(keys, kind="stable")
        self._keys, self._rows = keys[order], order
        self.complete = len(np.unique(keys)) == int(np.prod(self.factor_sizes, dtype=np.float64))
        self._rng = np.random.default_rng(0)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """The factors of ``n`` rows drawn uniformly (with replacement)."""
        return self.factors[rng.integers(0, len(self.factors), size=n)]

    def observations(self, factors: np.ndarray) -> torch.Tensor:
        """A row with exactly each point's factors, as the model sees it: ``(n, ...)``.

        :raises ValueError: for a point no row has (a combination the data do not hold).
        """
        keys = np.ravel_multi_index(tuple(np.asarray(factors, dtype=np.int64).T), self.factor_sizes)
        first = np.searchsorted(self._keys, keys, side="left")
        last = np.searchsorted(self._keys, keys, side="right")
        missing = np.flatnonzero(first == last)
        if len(missing):
            point = dict(zip(self.factor_names, np.asarray(factors)[missing[0]].tolist(), strict=True))
            raise ValueError(
                f"no row of the data has the factors {point}: this metric fixes one factor and draws the others, "
                "which needs every combination of the factors in the data; use mig, dci, sap or modularity"
            )
        pick = first + (self._rng.random(len(keys)) * (last - first)).astype(np.int64)
        return self.fetch(torch.from_numpy(self._rows[pick]))
