import numpy as np
import pytest
import torch

from pvae import data
from pvae.data import DataConfig, DataError
from pvae.idx import write_idx
from tests.conftest import derived_seed
from tests.test_idx import write_mnist_like


@pytest.mark.parametrize("gz", [True, False])
def test_idx_dataset_loads_from_data_dir(tmp_path, gz):
    arrays = write_mnist_like(tmp_path / "mnist", gz=gz)
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
    write_mnist_like(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3, dtype=np.uint8))
    with pytest.raises(DataError, match="do not match 3 labels"):
        data.load(DataConfig("mnist", data_dir=str(tmp_path), val_size=5, download=False))


def test_unknown_names_list_the_choices():
    with pytest.raises(DataError, match="--data 'cifar' is not one of digits, mnist, fashion-mnist"):
        DataConfig("cifar")
    with pytest.raises(DataError, match="--binarize 'always' is not one of dynamic, static, none"):
        DataConfig(binarize="always")
    with pytest.raises(DataError, match="--labels must be a positive number, not 0"):
        DataConfig(labels=0)


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
    other = data.load(DataConfig("digits", binarize="none", data_seed=1))
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
    assert not torch.equal(data.load(DataConfig("digits", labels=53, data_seed=1)).train.labelled, kept)
    with pytest.raises(DataError, match="--labels must be between 1 and"):
        data.load(DataConfig("digits", labels=5000))
    with pytest.raises(DataError, match="--labels 9 leaves some of the 10 classes without a labelled datapoint"):
        data.load(DataConfig("digits", labels=9))


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
