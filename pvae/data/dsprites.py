"""dSprites: 737,280 binary 64×64 images of a shape under every combination of five factors.

The grid of Matthey et al. (2017), generated here procedurally and deterministically: 3 shapes
(square, ellipse, heart) × 6 scales ``linspace(0.5, 1, 6)`` × 40 orientations ``linspace(0, 2π, 40)``
(both ends, so the first and the last orientation draw the same image) × 32 x-positions × 32
y-positions ``linspace(0, 1, 32)``, in that order, y fastest: image ``i`` has the factor indices
``numpy.unravel_index(i, FACTOR_SIZES)``. The procedural shapes follow the factor grid, not the
original's pixels: a square, an ellipse twice as long as wide, a heart, each centred on its position
(x moves it right, y down, one pixel a step, from pixel 16 to 47), the largest about a third of the
image wide and never clipped.

The grid is rendered once (a few seconds), then cached as packed bits (8 pixels a byte, 377 MB)
in the data directory. When the original ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` is in
the data directory, it is read instead, after its shapes and factor grids are checked.
"""

import math
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from pvae.base.files import atomic_write
from pvae.data.idx import DataError, check_data_dir, default_data_dir, search_dirs
from pvae.data.split import Split, unpack_bits

#: The factors, in the grid's order.
FACTOR_NAMES = ("shape", "scale", "orientation", "x", "y")
#: How many values each factor takes.
FACTOR_SIZES = (3, 6, 40, 32, 32)
#: The names of the shapes, by shape index.
SHAPES = ("square", "ellipse", "heart")
#: Image side in pixels.
SIZE = 64
#: The file of the original dataset, read instead of rendering when found.
ORIGINAL = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
#: The cache of the rendered grid (the version changes whenever the renderer's pixels do).
CACHE = "dsprites-procedural-v1.npy"
#: Datapoints of the test split; validation takes ``val_size`` more, training the rest.
TEST_SIZE = 10_000

_PATCH = 32  # side of the square around a sprite's centre that holds every sprite whole
_BYTES = SIZE * SIZE // 8  # packed bytes of one image
_SQUARE_HALF_SIDE = 10.75  # at scale 1: side 21.5 px, half-diagonal 15.2 px < _PATCH / 2
_ELLIPSE_AXES = (15.0, 7.5)  # semi-axes at scale 1: 30 × 15 px
_HEART_UNIT = 11.2  # px per unit of the heart curve; its farthest point lies 1.34 units from the centre
_HEART_CENTRE = 0.118  # the heart curve's box spans y in [-1, 1.236]: its middle


def factor_values(sizes: tuple[int, ...] = FACTOR_SIZES) -> tuple[np.ndarray, ...]:
    """The value grid of each factor: shape 1, 2, 3; scale, orientation, x and y as linspaces.

    :param sizes: how many values each factor takes (the dSprites grid by default).
    """
    return (
        np.arange(1, sizes[0] + 1, dtype=np.float64),
        np.linspace(0.5, 1.0, sizes[1]),
        np.linspace(0.0, 2 * math.pi, sizes[2]),
        np.linspace(0.0, 1.0, sizes[3]),
        np.linspace(0.0, 1.0, sizes[4]),
    )


def _sprites(shape: int, scale: float, angles: np.ndarray) -> np.ndarray:
    """Sprites of one shape and scale at each angle, ``(len(angles), _PATCH, _PATCH)`` bool.

    A pixel is on when its centre lies inside the shape rotated by the angle. Rows run down (v),
    columns right (u); the sprite's centre is the patch's centre, a pixel corner.
    """
    offsets = np.arange(_PATCH) + 0.5 - _PATCH / 2  # pixel centres: -15.5 .. 15.5
    v, u = np.meshgrid(offsets, offsets, indexing="ij")  # (_PATCH, _PATCH)
    # 2π draws exactly what 0 draws: the angle is reduced before its sine and cosine are taken
    theta = np.mod(angles, 2 * math.pi)[:, None, None]
    cos, sin = np.cos(theta), np.sin(theta)
    p, q = cos * u + sin * v, -sin * u + cos * v  # rotated back into the shape's frame: (angles, _PATCH, _PATCH)
    if SHAPES[shape] == "square":
        half = _SQUARE_HALF_SIDE * scale
        return (np.abs(p) <= half) & (np.abs(q) <= half)
    if SHAPES[shape] == "ellipse":
        a, b = _ELLIPSE_AXES[0] * scale, _ELLIPSE_AXES[1] * scale
        return (p / a) ** 2 + (q / b) ** 2 <= 1.0
    x, y = p / (_HEART_UNIT * scale), -q / (_HEART_UNIT * scale) + _HEART_CENTRE  # y up: the point at the bottom
    return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0.0


def render(sizes: tuple[int, ...] = FACTOR_SIZES) -> np.ndarray:
    """Every image of the grid, packed: ``(prod(sizes), SIZE·SIZE / 8)`` uint8, in the grid's order.

    Rendered one (shape, scale) at a time: its sprites at every angle, copied to every position
    (a position step moves a sprite by one pixel), then packed.

    :param sizes: how many values each factor takes; positions take at most 33 values.
    """
    shapes, scales, angles = factor_values(sizes)[:3]
    nx, ny = sizes[3], sizes[4]
    if max(nx, ny) > SIZE - _PATCH + 1:
        raise ValueError(f"at most {SIZE - _PATCH + 1} positions fit one pixel apart; got {nx} × {ny}")
    out = np.empty((math.prod(sizes), _BYTES), dtype=np.uint8)
    block = len(angles) * nx * ny  # images of one (shape, scale)
    images = np.zeros((len(angles), nx, ny, SIZE, SIZE), dtype=bool)
    for s in range(len(shapes)):
        for k, scale in enumerate(scales):
            sprites = _sprites(s, scale, angles)  # (angles, _PATCH, _PATCH)
            images[:] = False
            for i in range(nx):  # x: columns
                for j in range(ny):  # y: rows
                    images[:, i, j, j : j + _PATCH, i : i + _PATCH] = sprites
            start = (s * len(scales) + k) * block
            out[start : start + block] = np.packbits(images.reshape(block, -1), axis=1)
    return out


def read_npz(path: str | os.PathLike, sizes: tuple[int, ...] = FACTOR_SIZES) -> np.ndarray:
    """The images of the original dSprites file, packed as :func:`render` packs them.

    The file holds ``imgs`` ``(N, 64, 64)`` uint8 of zeros and ones, ``latents_values`` and
    ``latents_classes`` ``(N, 6)``: color (one value), then the five factors, in the grid's order.
    The images are read in blocks straight from the archive, so the 3 GB of bytes are never in
    memory at once.

    :param path: the ``.npz`` file.
    :param sizes: the grid the file must hold (dSprites' by default).
    :raises DataError: naming the file and what was expected, when it cannot be read, lacks a key,
        has other shapes or dtypes, holds pixels other than 0 and 1, or a factor grid or order differs.
    """
    path = Path(path)
    n = math.prod(sizes)
    expected = (
        f"expected the dSprites archive: imgs ({n}, {SIZE}, {SIZE}) uint8 of 0 and 1, latents_values and "
        f"latents_classes ({n}, 6) with color then {', '.join(FACTOR_NAMES)} on the grid {sizes}, y fastest"
    )

    def refuse(problem: str) -> DataError:
        return DataError(f"{path}: {problem}; {expected} (replace the file, or remove it to render the grid)")

    try:
        with open(path, "rb") as file:  # opened here so that it is closed whatever np.load makes of it
            archive = np.load(file)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise refuse("cannot be read as .npz (it holds a single .npy array)")
            missing = {"imgs", "latents_values", "latents_classes"} - set(archive.files)
            if missing:
                raise refuse(f"no {', '.join(sorted(missing))} in the archive")
            values, classes = archive["latents_values"], archive["latents_classes"]
            _check_factors(values, classes, sizes, refuse)
            with archive.zip.open("imgs.npy") as handle:
                return _packed_images(handle, n, refuse)
    except DataError:
        raise
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as error:
        # numpy reads unknown bytes as a pickle and advises allow_pickle=True: advice not for a data archive
        reason = "not a zip archive" if "pickle" in str(error) else f"{type(error).__name__}: {error}"
        raise refuse(f"cannot be read as .npz ({reason})") from error


def _packed_images(handle, n: int, refuse) -> np.ndarray:
    """Read the ``.npy`` array of ``n`` images of 0 and 1 from ``handle`` in blocks, packing each."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    version = np.lib.format.read_magic(handle)
    if version not in readers:
        raise refuse(f"imgs is stored in .npy format {version}, which pvae does not read")
    shape, fortran, dtype = readers[version](handle)
    if shape != (n, SIZE, SIZE) or dtype != np.uint8 or fortran:
        raise refuse(f"imgs is {'Fortran-ordered ' if fortran else ''}{dtype} of shape {shape}")
    out = np.empty((n, _BYTES), dtype=np.uint8)
    rows = 4096  # images a block: 16 MB of bytes
    for start in range(0, n, rows):
        count = min(rows, n - start)
        raw = handle.read(count * SIZE * SIZE)
        if len(raw) != count * SIZE * SIZE:
            raise refuse(f"imgs ends after {start + len(raw) // (SIZE * SIZE)} images")
        block = np.frombuffer(raw, dtype=np.uint8).reshape(count, -1)
        if block.max(initial=0) > 1:
            raise refuse(f"imgs holds the pixel value {int(block.max())}")
        out[start : start + count] = np.packbits(block, axis=1)
    return out


def _check_factors(values: np.ndarray, classes: np.ndarray, sizes: tuple[int, ...], refuse) -> None:
    """Refuse factor arrays that are not the grid ``sizes`` in the grid's order."""
    n = math.prod(sizes)
    if values.shape != (n, 6) or classes.shape != (n, 6):
        raise refuse(f"latents_values has shape {values.shape} and latents_classes {classes.shape}")
    if not np.issubdtype(values.dtype, np.floating) or not np.issubdtype(classes.dtype, np.integer):
        raise refuse(f"latents_values is {values.dtype} and latents_classes {classes.dtype}")
    if len(np.unique(values[:, 0])) != 1:
        raise refuse("the color factor takes more than one value")
    grid = np.stack(np.unravel_index(np.arange(n), sizes), axis=1)  # (n, 5): the order of the images
    if not np.array_equal(classes[:, 1:], grid):
        raise refuse("latents_classes are not the grid in order")
    for f, (name, values_f) in enumerate(zip(FACTOR_NAMES, factor_values(sizes), strict=True)):
        if not np.allclose(values[:, f + 1], values_f[grid[:, f]], rtol=0, atol=1e-6):
            raise refuse(f"the {name} values are not {np.array2string(values_f, precision=4, threshold=8)}")


class DSprites:
    """The dSprites grid as ground truth: the image of any factor combination.

    Holds the grid's packed images in some order (the splits' rows, see :func:`splits`) and where
    each image of the grid lies among them.

    :param bits: packed images ``(N, SIZE·SIZE / 8)`` uint8.
    :param row_of: ``(N,)`` int64: the row of ``bits`` holding the image of ravel index ``i``.
    """

    factor_names = FACTOR_NAMES
    factor_sizes = FACTOR_SIZES

    def __init__(self, bits: torch.Tensor, row_of: torch.Tensor):
        self.bits, self.row_of = bits, row_of
        self.factor_values = factor_values()

    def __len__(self) -> int:
        return len(self.row_of)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` factor combinations drawn uniformly and independently, as indices ``(n, 5)`` int64.

        :param n: how many.
        :param rng: the draws' generator.
        """
        return np.stack([rng.integers(0, size, size=n) for size in self.factor_sizes], axis=1).astype(np.int64)

    def observations(self, factors: np.ndarray) -> torch.Tensor:
        """The images of factor indices ``(n, 5)``: ``(n, 1, 64, 64)`` float32 of zeros and ones.

        :param factors: indices into each factor's grid.
        :raises ValueError: for indices off the grid.
        """
        factors = np.asarray(factors)
        if factors.ndim != 2 or factors.shape[1] != len(self.factor_sizes):
            raise ValueError(f"factors must have shape (n, {len(self.factor_sizes)}), got {factors.shape}")
        index = np.ravel_multi_index(tuple(factors.T), self.factor_sizes)  # raises off the grid
        return unpack_bits(self.bits[self.row_of[torch.from_numpy(index)]], (1, SIZE, SIZE))


def locate(data_dir: str | os.PathLike | None) -> tuple[Path | None, Path]:
    """Where the original file is (``None`` if nowhere) and where the rendered grid is cached.

    With ``data_dir``, only it and ``data_dir/dsprites`` are searched and the cache goes to
    ``data_dir/dsprites``; without it, ``$PVAE_DATA`` and ``~/.cache/pvae`` (each directly and in
    ``dsprites/``) are searched and the cache goes to the default data directory, as for the IDX sets.

    :param data_dir: ``--data-dir``; it must exist.
    :raises DataError: when ``data_dir`` is missing or a file.
    """
    if data_dir is not None:
        root = Path(data_dir)
        check_data_dir(root, "dsprites", "the dSprites .npz or the rendered cache")
        searched, cache_dir = [root, root / "dsprites"], root / "dsprites"
    else:
        searched, cache_dir = search_dirs("dsprites"), default_data_dir() / "dsprites"
    original = next((d / ORIGINAL for d in searched if (d / ORIGINAL).is_file()), None)
    cache = next((d / CACHE for d in searched if (d / CACHE).is_file()), cache_dir / CACHE)
    return original, cache


def grid_bits(data_dir: str | os.PathLike | None = None) -> np.ndarray:
    """The grid's packed images ``(737280, 512)`` uint8: the original file's, else the cached
    rendering, else a fresh rendering, written to the cache (atomically).

    :param data_dir: ``--data-dir`` (see :func:`locate`).
    :raises DataError: for a bad original file, a cache of the wrong size, or a cache that cannot
        be written.
    """
    original, cache = locate(data_dir)
    if original is not None:
        return read_npz(original)
    if cache.is_file():
        try:
            bits = np.load(cache, mmap_mode="r")
        except (OSError, ValueError) as error:
            raise DataError(f"{cache}: cannot be read ({error}); delete it and pvae renders the grid again") from error
        if bits.shape != (math.prod(FACTOR_SIZES), _BYTES) or bits.dtype != np.uint8:
            raise DataError(
                f"{cache}: holds {bits.dtype} of shape {bits.shape}, not the packed grid "
                f"({math.prod(FACTOR_SIZES)}, {_BYTES}) uint8; delete it and pvae renders the grid again"
            )
        return bits
    bits = render()
    try:
        atomic_write(cache, lambda handle: np.save(handle, bits))
    except OSError as error:
        raise DataError(
            f"cannot cache the rendered dSprites grid in {cache.parent} ({error.strerror or error}); "
            "pass --data-dir with a folder you can write to (377 MB)"
        ) from error
    return bits


def splits(data_dir: str | os.PathLike | None, seed: int, val_size: int):
    """dSprites' train, validation and test splits and its ground truth.

    A permutation drawn with ``seed`` orders the grid: its first :data:`TEST_SIZE` images are the
    test split, the next ``val_size`` validation, the rest training. The splits are views of one
    copy of the grid, which the ground truth shares; labels are the shape index, factors on every split.

    :param data_dir: ``--data-dir`` (see :func:`locate`).
    :param seed: the split's seed.
    :param val_size: validation datapoints.
    :returns: ``(train, val, test, ground_truth)``: three :class:`pvae.data.split.Split` and a :class:`DSprites`.
    :raises DataError: when ``val_size`` leaves no training datapoint, or the data cannot be read.
    """
    n = math.prod(FACTOR_SIZES)
    if not 0 < val_size < n - TEST_SIZE:
        raise DataError(f"--val-size must be between 1 and {n - TEST_SIZE - 1} for dsprites, not {val_size}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    bits = torch.from_numpy(np.ascontiguousarray(grid_bits(data_dir)[order.numpy()]))  # (n, 512), split order
    row_of = torch.empty(n, dtype=torch.int64)
    row_of[order] = torch.arange(n)
    factors = torch.from_numpy(np.stack(np.unravel_index(order.numpy(), FACTOR_SIZES), axis=1))  # (n, 5)
    bounds = {"test": (0, TEST_SIZE), "val": (TEST_SIZE, TEST_SIZE + val_size), "train": (TEST_SIZE + val_size, n)}
    parts = {
        name: Split(bits[a:b], factors[a:b, 0].clone(), shape=(1, SIZE, SIZE), factors=factors[a:b])
        for name, (a, b) in bounds.items()
    }
    return parts["train"], parts["val"], parts["test"], DSprites(bits, row_of)
