import gzip
import hashlib

import numpy as np
import pytest
import torch

from pvae import data
from pvae.data import DataConfig, DataError, read_idx, write_idx
from tests.conftest import derived_seed


def _write_mnist_like(folder, n_train=30, n_test=10, gz=True):
    """Four small IDX files in the layout of MNIST; returns the arrays written."""
    rng = np.random.default_rng(derived_seed(0))
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        write_idx(folder / (stem + (".gz" if gz else "")), array)
    return arrays


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_idx_round_trip(tmp_path, name):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / name, array)
    assert np.array_equal(read_idx(tmp_path / name), array)


def test_idx_header_is_the_published_format(tmp_path):
    write_idx(tmp_path / "labels", np.array([7, 2, 1], dtype=np.uint8))
    raw = (tmp_path / "labels").read_bytes()
    assert raw == bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1])  # magic 0x00000801, count 3, data


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "bad magic number"),
        (bytes([1, 0, 8, 1, 0, 0, 0, 1, 5]), "bad magic number"),
        (bytes([0, 0, 0x0D, 1, 0, 0, 0, 1, 5]), "type code 0x0d is not supported"),
        (bytes([0, 0, 8, 3, 0, 0, 0, 2]), "truncated IDX header"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 4, 5, 6]), "wrong size: 10 bytes .* needs 12"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 1, 5, 6]), "wrong size"),
    ],
)
def test_corrupt_idx_is_refused_with_the_file_name(tmp_path, content, message):
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_gzip_is_refused_with_the_file_name(tmp_path):
    path = tmp_path / "images.gz"
    write_idx(path, np.zeros((5, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DataError, match="cannot be read as gzip") as info:
        read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_dataset_loads_from_data_dir(tmp_path, gz):
    arrays = _write_mnist_like(tmp_path / "mnist", gz=gz)
    ds = data.load(DataConfig("mnist", data_dir=str(tmp_path), binarize="none", val_size=5, download=False))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (25, 5, 10)
    assert ds.x_shape == (1, 28, 28)
    # The official test split is kept in order, scaled to [0, 1].
    assert torch.equal(ds.test.x[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).float() / 255)
    assert torch.equal(ds.test.y, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())
    # Train and validation partition the official training split.
    both = torch.cat([ds.train.x, ds.val.x])[:, 0].flatten(1)
    expected = torch.from_numpy(arrays["train-images-idx3-ubyte"]).float().flatten(1) / 255
    assert sorted(map(tuple, both.tolist())) == sorted(map(tuple, expected.tolist()))


def test_labels_that_do_not_match_images_are_refused(tmp_path):
    _write_mnist_like(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3, dtype=np.uint8))
    with pytest.raises(DataError, match="do not match 3 labels"):
        data.load(DataConfig("mnist", data_dir=str(tmp_path), val_size=5, download=False))


def _local_mirror(monkeypatch, tmp_path, corrupt=False):
    mirror = tmp_path / "mirror"
    _write_mnist_like(mirror)
    if corrupt:
        (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"not what was published"))
    spec = data.IDX_DATASETS["mnist"]
    files = {}
    for role, (name, _) in spec.files.items():
        digest = hashlib.md5((mirror / name).read_bytes()).hexdigest()
        files[role] = (name, digest if not (corrupt and "t10k-labels" in name) else "0" * 32)
    patched = data.IDXSpec(files=files, mirrors=("file:///nonexistent/", mirror.as_uri() + "/"))
    monkeypatch.setitem(data.IDX_DATASETS, "mnist", patched)
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_download_falls_through_mirrors_and_verifies_checksums(monkeypatch, tmp_path):
    _local_mirror(monkeypatch, tmp_path)
    target = tmp_path / "data"
    ds = data.load(DataConfig("mnist", data_dir=str(target), val_size=5))
    assert len(ds.test) == 10
    assert sorted(p.name for p in (target / "mnist").iterdir()) == sorted(
        n for n, _ in data.IDX_DATASETS["mnist"].files.values()
    )


def test_failed_checksum_keeps_nothing_and_says_so(monkeypatch, tmp_path):
    _local_mirror(monkeypatch, tmp_path, corrupt=True)
    target = tmp_path / "data"
    with pytest.raises(DataError, match="checksum failed"):
        data.load(DataConfig("mnist", data_dir=str(target), val_size=5))
    assert not (target / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()
    assert not [p for p in (target / "mnist").iterdir() if p.name.endswith(".tmp")]


def test_missing_dataset_says_where_it_looked_and_how_to_get_it(monkeypatch, tmp_path):
    spec = data.IDX_DATASETS["fashion-mnist"]
    monkeypatch.setitem(
        data.IDX_DATASETS, "fashion-mnist", data.IDXSpec(spec.files, spec.mirrors, (tmp_path / "sys",), spec.hint)
    )
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    with pytest.raises(DataError) as info:
        data.load(DataConfig("fashion-mnist", data_dir=str(tmp_path / "mine"), download=False))
    message = str(info.value)
    assert str(tmp_path / "mine") in message and str(tmp_path / "sys") in message
    assert "apt-get install dataset-fashion-mnist" in message and "--data-dir" in message


def test_unknown_names_list_the_choices():
    with pytest.raises(DataError, match="unknown dataset 'cifar'.*fashion-mnist"):
        data.load(DataConfig("cifar"))
    with pytest.raises(DataError, match="unknown binarization 'always'.*dynamic"):
        data.load(DataConfig(binarize="always"))


def test_digits_splits_are_disjoint_fixed_and_complete():
    ds = data.load(DataConfig("digits", binarize="none"))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (1257, 180, 360)
    assert ds.x_shape == (1, 8, 8) and ds.num_classes == 10
    assert float(ds.train.x.min()) == 0.0 and float(ds.train.x.max()) == 1.0
    rows = [
        tuple(r) for s in (ds.train, ds.val, ds.test) for r in torch.cat([s.x.flatten(1), s.y[:, None]], 1).tolist()
    ]
    from sklearn.datasets import load_digits

    bunch = load_digits()
    everything = [tuple(r) for r in np.concatenate([bunch.data / 16, bunch.target[:, None]], 1).tolist()]
    assert sorted(rows) == sorted(everything)
    again = data.load(DataConfig("digits", binarize="none"))
    assert torch.equal(again.test.x, ds.test.x)
    other = data.load(DataConfig("digits", binarize="none", seed=1))
    assert not torch.equal(other.test.x, ds.test.x)


def test_binarization_modes():
    grey = data.load(DataConfig("digits", binarize="none"))
    dynamic = data.load(DataConfig("digits", binarize="dynamic"))
    static = data.load(DataConfig("digits", binarize="static"))
    assert torch.equal(dynamic.train.x, grey.train.x)  # binarized per batch by the trainer
    for split in (dynamic.val, dynamic.test, static.train, static.test):
        assert set(split.x.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(static.test.x, dynamic.test.x)  # the same fixed-seed draw
    # A binarized pixel is 1 with probability equal to its grey level.
    assert abs(float(static.train.x.mean()) - float(grey.train.x.mean())) < 0.005


def test_batches_visit_every_datapoint_once():
    ds = data.load(DataConfig("digits"))
    seen = torch.cat(
        [x.flatten(1) for x, _ in data.batches(ds.train, 100, torch.Generator().manual_seed(derived_seed(0)))]
    )
    assert len(seen) == len(ds.train)
    # The same rows, each once (sorting rows lexicographically compares them as multisets).
    assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, ds.train.x.flatten(1).tolist()))
    sizes = [len(x) for x, _ in data.batches(ds.train, 100)]
    assert sizes == [100] * 12 + [57]


def test_kept_labels_are_balanced_fixed_and_true():
    full = data.load(DataConfig("digits"))
    ds = data.load(DataConfig("digits", labels=53))
    kept = ds.train.labelled
    assert int(kept.sum()) == 53
    counts = torch.bincount(ds.train.y[kept], minlength=10)
    assert counts.tolist() == [6, 6, 6] + [5] * 7  # 53 = 10·5 + 3: the first three classes get one more
    assert torch.equal(ds.train.y[kept], full.train.y[kept])  # kept labels are the true ones
    assert torch.equal(ds.train.x, full.train.x) and torch.equal(ds.test.y, full.test.y)
    assert torch.equal(data.load(DataConfig("digits", labels=53)).train.y, ds.train.y)
    assert not torch.equal(data.load(DataConfig("digits", labels=53, seed=1)).train.labelled, kept)
    with pytest.raises(DataError, match="--labels must be between 1 and"):
        data.load(DataConfig("digits", labels=5000))


def test_semi_supervised_batches_pair_every_unlabelled_batch_with_labels():
    ds = data.load(DataConfig("digits", labels=30))
    out = list(data.semi_supervised_batches(ds.train, 100, torch.Generator().manual_seed(derived_seed(0))))
    unlabelled = [x for x, y in out if y is None]
    labelled = [(x, y) for x, y in out if y is not None]
    assert [y is None for _, y in out] == [True, False] * 13  # 1227 unlabelled in batches of 100
    seen = torch.cat([x.flatten(1) for x in unlabelled])
    rows = ds.train.x[~ds.train.labelled].flatten(1)
    assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, rows.tolist()))  # each once
    assert all(len(x) == 30 and (y != data.MISSING).all() for x, y in labelled)
    # every labelled batch is the 30 labelled datapoints, in a new order
    index = {tuple(r): int(c) for r, c in zip(ds.train.x.flatten(1).tolist(), ds.train.y.tolist(), strict=True)}
    for x, y in labelled:
        assert [index[tuple(r)] for r in x.flatten(1).tolist()] == y.tolist()
        assert sorted(y.tolist()) == sorted(ds.train.y[ds.train.labelled].tolist())
    with pytest.raises(DataError, match="labelled and unlabelled"):
        next(data.semi_supervised_batches(data.load(DataConfig("digits")).train, 100))
