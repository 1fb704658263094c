"""One split of a dataset: its datapoints stored compactly (grey levels as bytes, binary images as packed
bits, counts in the smallest exact dtype, a memory map or a sparse matrix read a batch of rows at a time) and
converted to float32 per batch (:meth:`Split.images`)."""

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

#: The label of a datapoint whose label was dropped (see ``pvae.data.DataConfig.labels``).
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

    Storage kinds, chosen by the fields:

    * grey levels on a grid: ``data`` uint8 ``(N, C, H, W)`` and ``levels``, the images being
      ``data / levels`` (the IDX sets store 255 levels, digits 16, so every value is exact);
    * binary images: ``data`` uint8 ``(N, ceil(C·H·W / 8))``, 8 pixels a byte in flattened pixel order
      (the first pixel in the high bit, as :func:`numpy.packbits`), and ``shape`` ``(C, H, W)``;
    * counts: ``data`` of an integer dtype ``(N, ...)``, the smallest that holds them;
    * anything else: ``data`` float ``(N, ...)`` as given (user data that is on no grid).

    ``data`` may also be a NumPy array (a memory map of a ``.npy`` file, read a batch of rows at a
    time) or a SciPy sparse matrix (densified per batch): the split then holds ``index``, the rows of
    ``data`` it is made of, so that splitting never copies the data.

    Build the first two with :meth:`from_levels` and :meth:`from_bits`, the others as ``Split(x, y)``.

    :param data: the stored pixels or features, as above.
    :param y: integer labels ``(N,)`` (:data:`MISSING` where a label was dropped).
    :param levels: the number of grey levels of uint8 ``data`` (``None`` otherwise).
    :param shape: the shape of one datapoint of packed ``data`` (``None`` otherwise).
    :param factors: ground-truth factor indices ``(N, F)`` int64, or ``None`` when the dataset has none.
    :param index: the rows of ``data`` this split holds (``None``: every row, in order).
    :param loc: per-feature shift of standardization (``None``: none); the split gives ``(x − loc) / scale``.
    :param scale: per-feature scale of standardization.
    :param origin: each datapoint's row in the user's file (``None`` for the built-in datasets).
    """

    data: object
    y: torch.Tensor
    levels: int | None = None
    shape: tuple[int, ...] | None = None
    factors: torch.Tensor | None = None
    index: torch.Tensor | None = None
    loc: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    origin: torch.Tensor | None = None

    def __post_init__(self):
        if self.levels is not None and self.shape is not None:
            raise ValueError("a Split stores grey levels or packed bits, not both: give levels or shape")
        dtype = self.data.dtype
        if (self.levels is not None or self.shape is not None) and dtype not in (torch.uint8, np.uint8):
            raise ValueError(f"grey levels and packed bits are stored as uint8, got {dtype}")
        if self.shape is not None and tuple(self.data.shape[1:]) != (_packed_bytes(self.shape),):
            raise ValueError(f"packed bits of shape {self.shape} take {_packed_bytes(self.shape)} bytes a datapoint")
        if len(self.y) != len(self) or (self.factors is not None and len(self.factors) != len(self)):
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
        return len(self.index) if self.index is not None else self.data.shape[0]

    @property
    def x_shape(self) -> tuple[int, ...]:
        """Shape of one datapoint, e.g. ``(1, 28, 28)``."""
        return self.shape if self.shape is not None else tuple(self.data.shape[1:])

    @property
    def lazy(self) -> bool:
        """Whether ``data`` is read a batch of rows at a time (a memory map or a sparse matrix)."""
        return not isinstance(self.data, torch.Tensor)

    @property
    def is_binary(self) -> bool:
        """Whether the split is stored as packed bits (every pixel 0 or 1)."""
        return self.shape is not None

    def images(self, index: Index = None) -> torch.Tensor:
        """The images at ``index`` as float32 ``(n, C, H, W)`` in [0, 1], converted from storage now.

        :param index: a LongTensor of rows, a slice, or ``None`` for the whole split (which, for a
            large split, is large: ask for the rows you need).
        """
        rows = self._rows(index)
        if self.shape is not None:
            return unpack_bits(rows, self.shape)
        if self.levels is not None:
            return rows.float().div_(self.levels)
        x = rows if rows.dtype == torch.float32 else rows.float()
        if self.loc is not None:
            x = (x - self.loc) / self.scale  # standardized with the training split's statistics
        return x

    def datapoints(self, stop: int | None = None) -> "torch.Tensor | LazyImages":
        """The first ``stop`` datapoints (all: ``None``) as the model sees them, for code that reads them a
        batch at a time (evaluation): the tensor of :meth:`images` for a split held in memory, a
        :class:`LazyImages` that reads each batch when asked for a lazy one (a file larger than memory)."""
        if not self.lazy:
            return self.images(None if stop is None else slice(stop))
        return LazyImages(self, len(self) if stop is None else min(stop, len(self)))

    def raw(self, index: Index = None) -> torch.Tensor:
        """The datapoints at ``index`` in the units of the data as given (float64: not standardized)."""
        rows = self._rows(index)
        if self.shape is not None:
            return unpack_bits(rows, self.shape).double()
        if self.levels is not None:
            return rows.double().div_(self.levels)
        return rows.double()

    def _rows(self, index: Index) -> torch.Tensor:
        """The stored rows at ``index``, as a tensor (read from a memory map or densified from sparse)."""
        if self.index is not None:
            index = self.index if index is None else self.index[index]
        if not self.lazy:
            return self.data if index is None else self.data[index]
        if index is None:
            index = slice(None)
        elif isinstance(index, torch.Tensor):
            index = index.numpy()
        part = self.data[index]
        part = part.toarray() if hasattr(part, "toarray") else np.array(part)  # a copy: the map is read-only here
        return torch.from_numpy(part.reshape((part.shape[0], *self.data.shape[1:])))

    def subset(self, index: Index) -> "Split":
        """The datapoints at ``index``, stored as they are here (a lazy split keeps its data and
        narrows its ``index``).

        :param index: a LongTensor of rows or a slice.
        """
        factors = None if self.factors is None else self.factors[index]
        origin = None if self.origin is None else self.origin[index]
        if self.lazy:
            rows = self.index if self.index is not None else torch.arange(self.data.shape[0])
            return replace(self, index=rows[index], y=self.y[index], factors=factors, origin=origin)
        return replace(self, data=self.data[index], y=self.y[index], factors=factors, origin=origin)

    @property
    def nbytes(self) -> int:
        """Bytes held in memory by the stored images (labels and factors not counted; a memory map's
        rows are on disk)."""
        if not self.lazy:
            return self.data.numel() * self.data.element_size()
        if hasattr(self.data, "nnz"):  # sparse: values and column indices
            return int(self.data.data.nbytes + self.data.indices.nbytes + self.data.indptr.nbytes)
        return 0

    @property
    def labelled(self) -> torch.Tensor:
        """Boolean mask ``(N,)`` of the datapoints that keep their label."""
        return self.y != MISSING

    @property
    def fully_labelled(self) -> bool:
        """Whether no label is missing."""
        return bool(self.labelled.all())


class LazyImages:
    """The first ``n`` datapoints of a lazy :class:`Split`, indexed like a tensor of them (a slice or a
    LongTensor of rows gives ``split.images`` of those rows), so that evaluation reads one batch at a time.

    :param split: the split.
    :param n: how many of its datapoints.
    """

    def __init__(self, split: Split, n: int):
        self.split, self.n = split, n

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.n, *self.split.x_shape))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, slice):
            return self.split.images(slice(*index.indices(self.n)))
        index = torch.as_tensor(index)
        if index.dtype == torch.bool:  # a mask of the n datapoints
            index = torch.nonzero(index).squeeze(1)
        return self.split.images(index.long())


def _packed_bytes(shape: tuple[int, ...]) -> int:
    return -(-math.prod(shape) // 8)
