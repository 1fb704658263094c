import numpy as np
import pytest
import torch

from pvae import data
from pvae.data import DataConfig, DataError
from pvae.data.idx import write_idx
from tests.conftest import derived_seed
from tests.test_idx import write_mnist_like


@pytest.mark.parametrize("gz", [True, False])
def test_idx_dataset_loads_from_data_dir(tmp_path, gz):
    arrays = write_mnist_like(tmp_path / "mnist", gz=gz)
    ds = data.load(DataConfig("mnist", data_dir=str(tmp_path), binarize="none", val_size=5, download=False))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (25, 5, 10)
    assert ds.x_shape == (1, 28, 28)
    # The official test split is kept in order, scaled to [0, 1].
    assert torch.equal(ds.test.images()[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).float() / 255)
    assert torch.equal(ds.test.y, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())
    # Train and validation partition the official training split.
    both = torch.cat([ds.train.images(), ds.val.images()])[:, 0].flatten(1)
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
    assert float(ds.train.images().min()) == 0.0 and float(ds.train.images().max()) == 1.0
    rows = [
        tuple(r)
        for s in (ds.train, ds.val, ds.test)
        for r in torch.cat([s.images().flatten(1), s.y[:, None]], 1).tolist()
    ]
    from sklearn.datasets import load_digits

    bunch = load_digits()
    everything = [tuple(r) for r in np.concatenate([bunch.data / 16, bunch.target[:, None]], 1).tolist()]
    assert sorted(rows) == sorted(everything)
    again = data.load(DataConfig("digits", binarize="none"))
    assert torch.equal(again.test.images(), ds.test.images())
    other = data.load(DataConfig("digits", binarize="none", data_seed=1))
    assert not torch.equal(other.test.images(), ds.test.images())


def test_binarization_modes():
    grey = data.load(DataConfig("digits", binarize="none"))
    dynamic = data.load(DataConfig("digits", binarize="dynamic"))
    static = data.load(DataConfig("digits", binarize="static"))
    assert torch.equal(dynamic.train.images(), grey.train.images())  # binarized per batch by the trainer
    for split in (dynamic.val, dynamic.test, static.train, static.test):
        assert set(split.images().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(static.test.images(), dynamic.test.images())  # the same fixed-seed draw
    # A binarized pixel is 1 with probability equal to its grey level.
    assert abs(float(static.train.images().mean()) - float(grey.train.images().mean())) < 0.005


def test_batches_visit_every_datapoint_once():
    ds = data.load(DataConfig("digits"))
    seen = torch.cat(
        [x.flatten(1) for x, _ in data.batches(ds.train, 100, torch.Generator().manual_seed(derived_seed(0)))]
    )
    assert len(seen) == len(ds.train)
    # The same rows, each once (sorting rows lexicographically compares them as multisets).
    assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, ds.train.images().flatten(1).tolist()))
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
    assert torch.equal(ds.train.images(), full.train.images()) and torch.equal(ds.test.y, full.test.y)
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
    rows = ds.train.images(~ds.train.labelled).flatten(1)
    assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, rows.tolist()))  # each once
    assert all(len(x) == 30 and (y != data.MISSING).all() for x, y in labelled)
    # every labelled batch is the 30 labelled datapoints, in a new order
    index = {tuple(r): int(c) for r, c in zip(ds.train.images().flatten(1).tolist(), ds.train.y.tolist(), strict=True)}
    for x, y in labelled:
        assert [index[tuple(r)] for r in x.flatten(1).tolist()] == y.tolist()
        assert sorted(y.tolist()) == sorted(ds.train.y[ds.train.labelled].tolist())
    with pytest.raises(DataError, match="labelled and unlabelled"):
        next(data.semi_supervised_batches(data.load(DataConfig("digits")).train, 100))


def test_grey_levels_round_trip_exactly_and_take_a_byte_a_pixel():
    pixels = torch.randint(0, 256, (7, 1, 4, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    split = data.Split.from_levels(pixels, 255, torch.arange(7))
    assert torch.equal(split.images(), pixels.float() / 255)  # the division the float storage made
    assert split.images().dtype == torch.float32 and split.nbytes == 7 * 20
    index = torch.tensor([6, 0, 3])
    assert torch.equal(split.images(index), pixels[index].float() / 255)
    assert torch.equal(split.images(slice(2)), pixels[:2].float() / 255)
    kept = split.subset(index)
    assert torch.equal(kept.images(), split.images(index)) and torch.equal(kept.y, index)
    sixteen = data.Split.from_levels(torch.arange(17, dtype=torch.uint8).reshape(1, 1, 1, 17), 16, torch.zeros(1))
    assert sixteen.images().flatten().tolist() == [k / 16 for k in range(17)]  # exact: 16 is a power of two


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 3, 5), (2, 7, 9)])
def test_bits_round_trip_exactly_and_take_a_bit_a_pixel(shape):
    images = torch.randint(0, 2, (11, *shape), generator=torch.Generator().manual_seed(2)).float()
    split = data.Split.from_bits(images, torch.arange(11))
    pixels = int(np.prod(shape))
    assert split.is_binary and split.x_shape == shape and split.nbytes == 11 * -(-pixels // 8)
    assert torch.equal(split.images(), images)
    index = torch.tensor([10, 2, 2, 5])
    assert torch.equal(split.images(index), images[index]) and torch.equal(split.images(slice(3, 6)), images[3:6])
    # flattened pixel order, first pixel in the high bit: the first byte holds pixels 0..7
    first = images[0].flatten()[:8].tolist()
    assert int(split.data[0, 0]) == sum(int(b) << (7 - k) for k, b in enumerate(first))


def test_float_storage_keeps_data_on_no_grid():
    x = torch.rand(5, 3, generator=torch.Generator().manual_seed(3))
    split = data.Split(x, torch.zeros(5, dtype=torch.long))
    assert torch.equal(split.images(), x) and torch.equal(split.images(torch.tensor([4, 1])), x[[4, 1]])
    assert split.x_shape == (3,) and not split.is_binary
    counts = data.Split(torch.tensor([[0, 3, 255], [7, 1, 2]], dtype=torch.uint8), torch.zeros(2))
    assert counts.images().dtype == torch.float32 and counts.images()[0].tolist() == [0.0, 3.0, 255.0]


def test_binarized_splits_are_stored_as_bits_and_grey_ones_as_bytes():
    dynamic = data.load(DataConfig("digits", binarize="dynamic"))
    assert dynamic.train.levels == 16 and dynamic.train.nbytes == len(dynamic.train) * 64
    for split in (dynamic.val, dynamic.test):
        assert split.is_binary and split.nbytes == len(split) * 64 // 8
    train = data.evaluation_split(dynamic, DataConfig("digits", binarize="dynamic"), "train")
    assert train.is_binary and len(train) == len(dynamic.train)


@pytest.mark.statistical
def test_dynamic_binarization_draws_every_batch_afresh():
    ds = data.load(DataConfig("digits", binarize="dynamic"))
    x, _ = next(data.batches(ds.train, 500, torch.Generator().manual_seed(derived_seed(0))))
    assert x.dtype == torch.float32 and len(set(x.unique().tolist())) > 2  # grey levels reach the trainer
    first, second = ds.training_batch(x), ds.training_batch(x)
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    grey = (x > 0) & (x < 1)  # 500 images have thousands of grey pixels: the two draws differ on some
    assert bool((first != second)[grey].any()) and bool((first == second)[~grey].all())
    assert abs(float(first.mean()) - float(x.mean())) < 0.02  # P(pixel = 1) is its grey level


def test_train_size_keeps_a_fixed_subset_of_the_training_split():
    full = data.load(DataConfig("digits"))
    small = data.load(DataConfig("digits", train_size=100))
    assert len(small.train) == 100 and torch.equal(small.val.images(), full.val.images())
    rows = {tuple(r) for r in full.train.images().flatten(1).tolist()}
    assert all(tuple(r) in rows for r in small.train.images().flatten(1).tolist())
    assert torch.equal(data.load(DataConfig("digits", train_size=100)).train.images(), small.train.images())
    other = data.load(DataConfig("digits", train_size=100, data_seed=1))
    assert not torch.equal(other.train.images(), small.train.images())
    assert len(data.load(DataConfig("digits", train_size=100, labels=20)).train.labelled.nonzero()) == 20


@pytest.mark.parametrize("size", [1257, 5000])
def test_train_size_of_the_whole_split_or_more_is_refused_with_the_size(size):
    with pytest.raises(DataError, match=r"--train-size must be between 1 and 1256: the training split has 1257"):
        data.load(DataConfig("digits", train_size=size))


def test_each_built_in_dataset_declares_its_defaults():
    epochs = {name: data.default_epochs(DataConfig(name)) for name in data.DATASETS}
    assert epochs == {"digits": 100, "mnist": 10, "fashion-mnist": 10, "kmnist": 10, "dsprites": 10}
    assert {name: declared.val_size for name, declared in data.BUILT_IN.items()} == {
        "digits": 180,
        "mnist": 5000,
        "fashion-mnist": 5000,
        "kmnist": 5000,
        "dsprites": 5000,
    }
    assert data.WITH_FACTORS == ("dsprites",)
    assert data.default_in_words("epochs") == "100 for digits, 10 otherwise"
    assert data.default_in_words("val_size") == "180 for digits, 5000 otherwise"
    digits = data.load(DataConfig("digits"))
    assert len(digits.val) == data.BUILT_IN["digits"].val_size
    assert data.default_epochs(digits) == 100  # a loaded built-in dataset reads the same declaration


@pytest.mark.parametrize(("batch_size", "epochs"), [(128, 286), (1, 10), (810, 500), (100, 223)])
def test_your_own_data_train_about_2000_steps_by_default(batch_size, epochs):
    """810 training rows of 1000 (10% test, then 10% validation): ceil(2000 / steps a pass), 10 to 500."""
    rows = data.from_arrays(np.random.default_rng(0).normal(size=(1000, 3)))
    assert len(rows.train) == 810
    assert data.default_epochs(rows, batch_size) == epochs


def test_default_epochs_of_your_own_data_need_the_data_loaded_and_a_batch_size(tmp_path):
    path = tmp_path / "table.csv"
    with pytest.raises(ValueError, match="follow from their size and the batch size"):
        data.default_epochs(DataConfig(str(path)))
    with pytest.raises(ValueError, match="pass the loaded dataset"):
        data.default_epochs(data.from_arrays(np.zeros((30, 2))))


def test_a_split_and_its_bits_are_the_same_objects_from_pvae_data():
    from pvae.data import split

    assert (data.Split, data.unpack_bits, data.LazyImages, data.MISSING) == (
        split.Split,
        split.unpack_bits,
        split.LazyImages,
        split.MISSING,
    )
