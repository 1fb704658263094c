"""dSprites: the rendered grid's order and geometry, its cache, the original file's checks, its splits."""

import math

import numpy as np
import pytest
import torch

from pvae import data
from pvae.base.files import TEMPORARY
from pvae.data import DataConfig, DataError, dsprites, unpack_bits
from tests.conftest import derived_seed

N = math.prod(dsprites.FACTOR_SIZES)
SQUARE, ELLIPSE, HEART = 0, 1, 2


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """A data directory into which the grid was rendered and cached, and the grid's packed images."""
    root = tmp_path_factory.mktemp("data")
    return root, np.asarray(dsprites.grid_bits(root))


def _images(bits: np.ndarray, factors) -> torch.Tensor:
    """The images ``(n, 64, 64)`` of factor indices ``(n, 5)``."""
    index = np.ravel_multi_index(tuple(np.asarray(factors).T), dsprites.FACTOR_SIZES)
    return unpack_bits(torch.from_numpy(np.asarray(bits[index])), (1, 64, 64))[:, 0]


def _centre(images: torch.Tensor) -> torch.Tensor:
    """Centre of mass ``(n, 2)`` as (column, row)."""
    rows, cols = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    mass = images.sum((1, 2))
    return torch.stack([(images * cols).sum((1, 2)) / mass, (images * rows).sum((1, 2)) / mass], 1)


def test_the_grid_has_the_original_factor_values():
    shape, scale, orientation, x, y = dsprites.factor_values()
    assert shape.tolist() == [1.0, 2.0, 3.0] and scale.tolist() == np.linspace(0.5, 1, 6).tolist()
    assert orientation[0] == 0 and orientation[-1] == 2 * math.pi and len(orientation) == 40
    assert x.tolist() == y.tolist() == np.linspace(0, 1, 32).tolist()
    assert N == 737_280


def test_ravel_index_and_factors_agree_in_the_grid_order(cached):
    """Point-symmetric shapes have their centre of mass exactly on the pixel corner the position names:
    x moves the column, y the row, y fastest."""
    _, bits = cached
    rng = np.random.default_rng(derived_seed(0))
    factors = np.stack([rng.integers(0, 2, 300), *(rng.integers(0, s, 300) for s in (6, 40, 32, 32))], 1)
    centre = _centre(_images(bits, factors))
    expected = torch.from_numpy(15.5 + factors[:, 3:]).float()  # (column, row) = 15.5 + (x, y)
    assert torch.allclose(centre, expected, atol=1e-4)
    # consecutive images step y first: image i + 1 is image i one row down
    i = np.ravel_multi_index((0, 5, 0, 10, 10), dsprites.FACTOR_SIZES)
    first, second = unpack_bits(torch.from_numpy(bits[[i, i + 1]]), (1, 64, 64))[:, 0]
    assert torch.equal(second, torch.roll(first, 1, dims=0))


@pytest.mark.parametrize("shape", [SQUARE, ELLIPSE, HEART])
def test_position_translates_the_sprite_one_pixel_a_step_never_clipped(cached, shape):
    _, bits = cached
    factors = [[shape, 5, 7, i, 31 - i] for i in range(32)]
    images = _images(bits, factors)
    centre = _centre(images)
    assert torch.allclose(centre[1:, 0] - centre[:-1, 0], torch.ones(31), atol=1e-4)  # x: one column right
    assert torch.allclose(centre[1:, 1] - centre[:-1, 1], -torch.ones(31), atol=1e-4)  # y: one row up here
    assert len(set(images.sum((1, 2)).tolist())) == 1  # the same sprite everywhere: nothing cut at the border
    # the largest sprites at every orientation keep a margin at the border and span a third of the image or more
    big = _images(bits, [[shape, 5, o, x, y] for o in range(40) for x, y in ((0, 0), (31, 31))])
    assert float(big[:, 0].sum() + big[:, -1].sum() + big[:, :, 0].sum() + big[:, :, -1].sum()) == 0
    width = (big[0].sum(0) > 0).sum()
    assert 21 <= int(width) <= 32


def test_the_shapes_are_a_square_an_ellipse_and_a_heart(cached):
    _, bits = cached
    square, ellipse, heart = _images(bits, [[s, 5, 0, 16, 16] for s in (SQUARE, ELLIPSE, HEART)])
    assert int(square.sum()) == 22 * 22 and int((square.sum(0) > 0).sum()) == 22  # |u|, |v| ≤ 10.75 on half-pixels
    assert float(ellipse.sum()) == pytest.approx(math.pi * 15 * 7.5, rel=0.03)
    assert int((ellipse.sum(0) > 0).sum()) == 30 and int((ellipse.sum(1) > 0).sum()) == 14  # 30 × 15 px: long along x
    assert torch.equal(heart, heart.flip(1))  # mirror-symmetric left to right at orientation 0
    top, bottom = heart.nonzero()[:, 0].min(), heart.nonzero()[:, 0].max()
    assert float(_centre(heart[None])[0, 1]) < (top + bottom) / 2 - 1  # the lobes on top weigh more than the point
    quarter = _images(bits, [[ELLIPSE, 5, 10, 16, 16]])[0]  # 10 of 39 steps of 2π: about a quarter turn
    assert int((quarter.sum(1) > 0).sum()) > int((quarter.sum(0) > 0).sum())  # now long along y


def test_scale_grows_the_area(cached):
    _, bits = cached
    for shape in (SQUARE, ELLIPSE, HEART):
        for orientation in (0, 13, 27):
            area = _images(bits, [[shape, k, orientation, 8, 20] for k in range(6)]).sum((1, 2))
            assert bool((area[1:] > area[:-1]).all()), (shape, orientation, area.tolist())
    half, whole = _images(bits, [[SQUARE, 0, 0, 16, 16], [SQUARE, 5, 0, 16, 16]]).sum((1, 2)).tolist()
    assert (half, whole) == (10 * 10, 22 * 22)  # sides 10.75 and 21.5 px hold 10 and 22 pixel centres


def test_orientation_zero_and_two_pi_draw_the_same_image(cached):
    _, bits = cached
    first = [[s, k, 0, x, y] for s in range(3) for k in range(6) for x, y in ((0, 0), (5, 30), (31, 17))]
    last = [[s, k, 39, x, y] for s, k, _, x, y in first]
    assert torch.equal(_images(bits, first), _images(bits, last))
    assert not torch.equal(_images(bits, [[SQUARE, 5, 5, 0, 0]]), _images(bits, [[SQUARE, 5, 0, 0, 0]]))


def test_rendering_is_deterministic_and_cached_atomically(cached):
    root, bits = cached
    assert np.array_equal(dsprites.render(), bits)
    files = [p.name for p in (root / "dsprites").iterdir()]
    assert files == [dsprites.CACHE] and not any(TEMPORARY.match(name) for name in files)


def test_a_second_load_reads_the_cache_without_rendering(cached, monkeypatch):
    root, bits = cached

    def refuse(*args, **kwargs):
        raise AssertionError("rendered again")

    monkeypatch.setattr(dsprites, "render", refuse)
    assert np.array_equal(dsprites.grid_bits(root), bits)
    assert np.array_equal(dsprites.grid_bits(root / "dsprites"), bits)  # the subfolder itself as --data-dir


def test_a_cache_of_the_wrong_size_is_refused_with_its_name(tmp_path):
    (tmp_path / "dsprites").mkdir()
    np.save(tmp_path / "dsprites" / dsprites.CACHE, np.zeros((10, 512), dtype=np.uint8))
    with pytest.raises(DataError, match=r"dsprites-procedural-v1\.npy: holds uint8 of shape \(10, 512\).*delete it"):
        dsprites.grid_bits(tmp_path)


def test_the_dataset_keeps_bits_factors_labels_and_ground_truth(cached):
    root, bits = cached
    ds = data.load(DataConfig("dsprites", data_dir=str(root)))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (N - 15_000, 5_000, 10_000)
    assert ds.x_shape == (1, 64, 64) and ds.num_classes == 3 and ds.binarize == "dynamic"
    assert ds.train.nbytes == len(ds.train) * 4096 // 8  # 8 pixels a byte: 370 MB, not 11.8 GB as float32
    # the splits partition the grid, and every split's factors name its images
    seen = torch.cat([s.factors for s in (ds.train, ds.val, ds.test)])
    ravel = np.ravel_multi_index(tuple(seen.numpy().T), dsprites.FACTOR_SIZES)
    assert np.array_equal(np.sort(ravel), np.arange(N))
    for split in (ds.train, ds.val, ds.test):
        rows = torch.randint(0, len(split), (50,))
        assert torch.equal(split.images(rows)[:, 0], _images(bits, split.factors[rows].numpy()))
        assert torch.equal(split.y, split.factors[:, 0]) and split.factors.dtype == torch.int64
    # the ground truth draws factors uniformly on the grid and renders them as the splits do
    truth = ds.ground_truth
    assert truth.factor_names == ("shape", "scale", "orientation", "x", "y")
    assert truth.factor_sizes == (3, 6, 40, 32, 32)
    assert all(np.array_equal(a, b) for a, b in zip(truth.factor_values, dsprites.factor_values(), strict=True))
    factors = truth.sample_factors(2000, np.random.default_rng(derived_seed(1)))
    assert factors.dtype == np.int64 and factors.shape == (2000, 5)
    assert all(set(factors[:, f].tolist()) == set(range(size)) for f, size in enumerate((3, 6, 40)))
    assert (factors.max(0) < np.array(dsprites.FACTOR_SIZES)).all() and factors.min() >= 0
    observed = truth.observations(factors[:64])
    assert observed.shape == (64, 1, 64, 64) and observed.dtype == torch.float32
    assert torch.equal(observed[:, 0], _images(bits, factors[:64]))
    with pytest.raises(ValueError):
        truth.observations(np.array([[3, 0, 0, 0, 0]]))
    # the same seed gives the same splits, another seed others
    again = data.load(DataConfig("dsprites", data_dir=str(root), val_size=100, train_size=1000))
    assert torch.equal(again.test.factors, ds.test.factors) and len(again.val) == 100 and len(again.train) == 1000
    other = data.load(DataConfig("dsprites", data_dir=str(root), data_seed=1, train_size=10))
    assert not torch.equal(other.test.factors, ds.test.factors)


# --- the original file -------------------------------------------------------------------------------

SMALL = (3, 2, 3, 2, 2)  # a grid small enough to write in a test


def _write_npz(path, sizes=SMALL, **changes):
    """An archive in the original's layout for the grid ``sizes``, with ``changes`` replacing its arrays."""
    n = math.prod(sizes)
    classes = np.stack(np.unravel_index(np.arange(n), sizes), 1)
    values = np.stack([v[classes[:, f]] for f, v in enumerate(dsprites.factor_values(sizes))], 1)
    arrays = {
        "imgs": np.unpackbits(dsprites.render(sizes), axis=1).reshape(n, 64, 64),
        "latents_values": np.concatenate([np.ones((n, 1)), values], 1),
        "latents_classes": np.concatenate([np.zeros((n, 1), dtype=np.int64), classes], 1),
        "metadata": np.array("dSprites"),
    }
    arrays.update(changes)
    np.savez_compressed(path, **{k: v for k, v in arrays.items() if v is not None})
    return arrays


def test_the_original_file_is_read_block_by_block_as_bits(tmp_path):
    path = tmp_path / dsprites.ORIGINAL
    arrays = _write_npz(path)
    bits = dsprites.read_npz(path, SMALL)
    assert np.array_equal(np.unpackbits(bits, axis=1).reshape(-1, 64, 64), arrays["imgs"])


def test_the_original_file_is_preferred_to_rendering(tmp_path, monkeypatch):
    (tmp_path / "dsprites").mkdir()
    path = tmp_path / "dsprites" / dsprites.ORIGINAL
    _write_npz(path)
    monkeypatch.setattr(dsprites, "render", lambda *a, **k: pytest.fail("rendered despite the original file"))
    assert dsprites.locate(tmp_path) == (path, tmp_path / "dsprites" / dsprites.CACHE)
    # this small file does not hold the real grid: refused with its name and what was expected
    with pytest.raises(DataError, match=r"dsprites_ndarray.*\.npz: latents_values has shape \(72, 6\).*737280"):
        data.load(DataConfig("dsprites", data_dir=str(tmp_path)))


def _grey(arrays):
    imgs = arrays["imgs"].copy()
    imgs[5, 3, 3] = 255
    return imgs


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"imgs": np.zeros((72, 32, 32), dtype=np.uint8)}, r"imgs is uint8 of shape \(72, 32, 32\)"),
        ({"imgs": np.zeros((72, 64, 64), dtype=np.float32)}, r"imgs is float32"),
        ({"latents_classes": None}, r"no latents_classes in the archive"),
        ({"latents_values": np.zeros((72, 5))}, r"latents_values has shape \(72, 5\)"),
        ("scale", r"the scale values are not \[0\.5 1\. \]"),
        ("order", r"latents_classes are not the grid in order"),
        ("color", r"the color factor takes more than one value"),
        ("grey", r"imgs holds the pixel value 255"),
    ],
)
def test_a_mismatched_original_file_is_refused_with_its_name_and_what_was_expected(tmp_path, changes, words):
    path = tmp_path / dsprites.ORIGINAL
    arrays = _write_npz(tmp_path / "good.npz")
    if changes == "scale":
        values = arrays["latents_values"].copy()
        values[:, 2] *= 2
        changes = {"latents_values": values}
    elif changes == "order":
        changes = {"latents_classes": arrays["latents_classes"][::-1].copy()}
    elif changes == "color":
        values = arrays["latents_values"].copy()
        values[0, 0] = 2
        changes = {"latents_values": values}
    elif changes == "grey":
        changes = {"imgs": _grey(arrays)}
    _write_npz(path, **changes)
    with pytest.raises(DataError, match=rf"{dsprites.ORIGINAL}: {words}.*expected the dSprites archive"):
        dsprites.read_npz(path, SMALL)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not really a zip", b"\x93NUMPY garbage"])
def test_a_corrupt_original_file_is_refused_with_its_name(tmp_path, content):
    path = tmp_path / dsprites.ORIGINAL
    path.write_bytes(content)
    with pytest.raises(DataError, match=rf"{dsprites.ORIGINAL}: cannot be read as \.npz.*remove it to render"):
        dsprites.read_npz(path, SMALL)


def test_a_cache_that_cannot_be_written_is_refused_with_the_folder(tmp_path, monkeypatch):
    (tmp_path / "dsprites").write_text("a file where the cache folder goes\n")
    monkeypatch.setattr(dsprites, "render", lambda: np.zeros((2, 512), dtype=np.uint8))
    with pytest.raises(DataError, match=r"cannot cache the rendered dSprites grid in .*dsprites.*--data-dir"):
        dsprites.grid_bits(tmp_path)
