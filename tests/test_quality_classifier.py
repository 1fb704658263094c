"""The feature spaces of the sample-quality scores: the per-dataset classifier and the optional Inception.

The classifier is trained on the bundled 8×8 digits for a few epochs (seconds); its accuracy floors were measured
(10 epochs, training seeds 0, 1, 2: test accuracy 0.994, 0.989, 0.992; 5-nearest-neighbour accuracy of its features
0.986, 0.992, 0.992) and set a little below. Inception is never the real file: a small scripted module
with its call signature stands in for it.
"""

import os
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.neighbors import KNeighborsClassifier

from pvae import data
from pvae.measures.quality import classifier as classifier_module
from pvae.measures.quality.classifier import (
    FeatureClassifier,
    classifier_path,
    embed,
    load_classifier,
    predict,
    train_classifier,
)
from pvae.measures.quality.inception import (
    INCEPTION_DIM,
    INCEPTION_ENV,
    INCEPTION_FILE,
    INCEPTION_URL,
    inception_features,
    inception_locations,
    load_inception,
)
from tests.conftest import derived_seed, make_dataset

EPOCHS = 10


@pytest.fixture(scope="module")
def digits():
    return data.load(data.DataConfig("digits", binarize="none"))


@pytest.fixture(scope="module")
def trained(digits):
    return train_classifier(digits, epochs=EPOCHS, progress=False)


def test_digits_classifier_reaches_its_accuracy_and_records_how(trained, digits):
    info = trained.info
    assert info["test_accuracy"] > 0.98  # measured 0.994
    assert info["epochs"] == EPOCHS and info["seed"] == 0 and info["dataset"] == "digits"
    assert info["train_size"] == len(digits.train) == 1257 and info["seconds"] > 0
    probabilities = predict(trained, digits.test.images())
    assert info["test_accuracy"] == (probabilities.argmax(1) == digits.test.y).double().mean().item()
    torch.testing.assert_close(probabilities.sum(1), torch.ones(len(probabilities)))


def test_features_separate_the_classes(trained, digits):
    train_features = embed(trained, digits.train.images()).numpy()
    test_features = embed(trained, digits.test.images()).numpy()
    assert train_features.shape == (len(digits.train), 128) and train_features.min() >= 0  # after the ReLU
    knn = KNeighborsClassifier(5).fit(train_features, digits.train.y.numpy())
    assert knn.score(test_features, digits.test.y.numpy()) > 0.97  # measured 0.986


def test_embed_and_predict_in_batches_equal_one_pass(trained, digits):
    images = digits.test.images()[:101]
    torch.testing.assert_close(embed(trained, images, batch_size=7), embed(trained, images, batch_size=500))
    torch.testing.assert_close(predict(trained, images, batch_size=10), predict(trained, images, batch_size=101))
    assert embed(trained, images[:0]).shape == (0, 128) and predict(trained, images[:0]).shape == (0, 10)
    trained.train()
    features = embed(trained, images)
    assert trained.training  # the caller's mode comes back
    trained.eval()
    torch.testing.assert_close(features, trained.features(images).detach())


def test_training_is_deterministic_for_a_seed(digits):
    small = replace(digits, train=digits.train.subset(slice(0, 300)))
    first, again, other = (train_classifier(small, epochs=1, seed=s, progress=False) for s in (3, 3, 4))
    for name, value in first.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name
    assert not torch.equal(first.dense.weight, other.dense.weight)


def test_large_training_splits_train_on_a_seeded_subset(digits, monkeypatch):
    monkeypatch.setattr(classifier_module, "MAX_TRAIN", 200)
    first, again = (train_classifier(digits, epochs=1, seed=5, progress=False) for _ in range(2))
    assert first.info["train_size"] == 200 and torch.equal(first.dense.weight, again.dense.weight)


def test_default_epochs_aim_at_3000_steps_within_bounds():
    assert classifier_module.default_epochs(55_000) == 7  # Fashion-MNIST: 430 steps an epoch
    assert classifier_module.default_epochs(60_000) == 6  # dSprites' subset
    assert classifier_module.default_epochs(1257) == 30  # digits: capped
    assert classifier_module.default_epochs(10**7) == 2


@pytest.mark.statistical
def test_any_image_shape_trains():
    """A shape whose first block strides (short side over 32) and an odd 3-channel one: bright left half against
    bright right half."""
    generator = torch.Generator().manual_seed(derived_seed(0))
    for shape in [(1, 36, 52), (3, 13, 17)]:
        y = torch.randint(0, 2, (400,), generator=generator)
        x = 0.3 * torch.rand(400, *shape, generator=generator)
        half = shape[2] // 2
        x[y == 0, ..., :half] += 0.5
        x[y == 1, ..., half:] += 0.5
        dataset = make_dataset(x, y, val=50, test=100)
        net = train_classifier(dataset, epochs=5, seed=derived_seed(1), batch_size=32, progress=False)
        assert net.x_shape == shape and net.info["test_accuracy"] == 1.0


def test_cache_trains_once_and_round_trips_bit_for_bit(tmp_path, monkeypatch, digits):
    calls = []
    real = classifier_module.train_classifier

    def quick(dataset, **options):
        calls.append(dataset)
        return real(dataset, epochs=2, **options)

    monkeypatch.setattr(classifier_module, "train_classifier", quick)
    config = data.DataConfig("digits", data_dir=str(tmp_path), binarize="dynamic", labels=50, train_size=300)
    first = load_classifier(config, progress=False)
    assert len(calls) == 1 and calls[0].binarize == "none" and len(calls[0].train) == 1257  # whole, grey, labelled
    assert calls[0].train.fully_labelled
    path = classifier_path(config)
    assert path.is_file() and path.parent == tmp_path / "classifiers" and path.name.startswith("digits-seed0-")
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    second = load_classifier(config, progress=False)
    assert len(calls) == 1  # read, not retrained
    assert not second.training and second.info == first.info and second.info["data_seed"] == 0
    images = digits.test.images()
    assert torch.equal(embed(first, images), embed(second, images))
    assert load_classifier(config, train=False).info == first.info


def test_cache_key_follows_what_changes_the_classifier(tmp_path):
    base = data.DataConfig("fashion-mnist", data_dir=str(tmp_path))
    same = [replace(base, binarize="none"), replace(base, labels=100), replace(base, train_size=10), base]
    assert {classifier_path(c) for c in same} == {classifier_path(base)}
    other = [replace(base, val_size=100), replace(base, data_seed=1), replace(base, data="mnist")]
    assert len({classifier_path(c) for c in [base, *other]}) == 4


def test_default_location_is_the_data_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("PVAE_DATA", str(tmp_path))
    assert classifier_path(data.DataConfig("digits")).parent == tmp_path / "classifiers"


def test_the_classifier_of_a_users_folder_is_cached_apart_from_the_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("PVAE_DATA", str(tmp_path / "cache"))
    config = data.DataConfig(str(tmp_path / "images"), checksum="ab" * 32)
    path = classifier_path(config)
    assert path.parent == tmp_path / "cache" / "classifiers" and path.name.startswith("images-abababababab-seed0-")
    assert classifier_path(replace(config, checksum="cd" * 32)) != path  # other contents, another classifier


def test_missing_cache_without_training_says_how(tmp_path):
    config = data.DataConfig("digits", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="load_classifier") as error:
        load_classifier(config, train=False)
    assert str(classifier_path(config)) in str(error.value)


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "other settings", "not a classifier"])
def test_a_damaged_cache_is_refused_with_its_path(tmp_path, trained, damage):
    config = data.DataConfig("digits", data_dir=str(tmp_path))
    path = classifier_path(config)
    classifier_module._save(trained, path, classifier_module._cache_fields(config))
    whole = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(whole[: len(whole) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(1000))
    elif damage == "other settings":
        classifier_module._save(trained, path, classifier_module._cache_fields(replace(config, val_size=7)))
    else:
        torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="delete it") as error:
        load_classifier(config, train=False)
    assert str(path) in str(error.value)


def test_bad_inputs_name_the_fix(trained, digits):
    binary = data.load(data.DataConfig("digits", binarize="static"))
    with pytest.raises(ValueError, match="binarize='none'"):
        train_classifier(binary, epochs=1, progress=False)
    with pytest.raises(ValueError, match="without labels"):
        train_classifier(data.load(data.DataConfig("digits", binarize="none", labels=50)), epochs=1, progress=False)
    with pytest.raises(ValueError, match="positive"):
        train_classifier(digits, epochs=0, progress=False)
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        embed(trained, torch.zeros(5, 8, 8))
    with pytest.raises(ValueError, match="classifier of the dataset"):
        predict(trained, torch.zeros(5, 1, 28, 28))
    with pytest.raises(ValueError, match="x_shape"):
        FeatureClassifier((8, 8), 10)
    with pytest.raises(ValueError, match="at least 2 classes"):
        FeatureClassifier((1, 8, 8), 1)


# Inception ---------------------------------------------------------------------------------------------------


class _FakeInception(torch.nn.Module):
    """Inception's call signature: uint8 (n, 3, 299, 299) → (n, 2048): the grey level pooled on a 16×64 grid
    (1024) and the red-blue difference on the same grid (1024)."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.shape[1] != 3 or x.shape[2] != 299 or x.shape[3] != 299:
            raise RuntimeError("expected uint8 (n, 3, 299, 299)")
        if not return_features:
            raise RuntimeError("expected return_features=True")
        x = x.float()
        grey = F.adaptive_avg_pool2d(x.mean(1, keepdim=True), [16, 64]).flatten(1)
        difference = F.adaptive_avg_pool2d((x[:, :1] - x[:, 2:]).abs(), [16, 64]).flatten(1)
        return torch.cat([grey, difference], 1)


@pytest.fixture
def fake_file(tmp_path):
    path = tmp_path / "nets" / INCEPTION_FILE
    path.parent.mkdir()
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; the published weights are TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(_FakeInception()), str(path))
    return path


def test_missing_inception_lists_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("PVAE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv(INCEPTION_ENV, str(tmp_path / "env.pt"))
    with pytest.raises(ValueError) as error:
        load_inception(tmp_path / "given.pt")
    message = str(error.value)
    for place in [tmp_path / "given.pt", tmp_path / "env.pt", tmp_path / "data" / INCEPTION_FILE]:
        assert str(place) in message
    assert INCEPTION_URL in message and INCEPTION_ENV in message
    assert inception_locations(tmp_path / "given.pt") == [
        tmp_path / "given.pt",
        tmp_path / "env.pt",
        tmp_path / "data" / INCEPTION_FILE,
    ]


def test_inception_is_found_by_path_folder_environment_and_data_directory(fake_file, monkeypatch, tmp_path):
    monkeypatch.setenv("PVAE_DATA", str(tmp_path / "empty"))
    monkeypatch.delenv(INCEPTION_ENV, raising=False)
    images = torch.full((2, 1, 8, 8), 0.5)
    reference = inception_features(load_inception(fake_file), images)
    assert torch.equal(inception_features(load_inception(fake_file.parent), images), reference)
    monkeypatch.setenv(INCEPTION_ENV, str(fake_file.parent))
    assert torch.equal(inception_features(load_inception(), images), reference)
    monkeypatch.delenv(INCEPTION_ENV)
    monkeypatch.setenv("PVAE_DATA", str(fake_file.parent))
    assert torch.equal(inception_features(load_inception(), images), reference)


def test_a_file_that_is_not_torchscript_is_refused(tmp_path):
    path = tmp_path / INCEPTION_FILE
    path.write_bytes(b"not a network")
    with pytest.raises(ValueError, match="not a TorchScript module") as error:
        load_inception(path)
    assert str(path) in str(error.value) and INCEPTION_URL in str(error.value)


def test_inception_features_resize_and_quantize_grey_images(fake_file):
    net = load_inception(fake_file)
    constant = torch.full((3, 1, 28, 28), 0.4)
    features = inception_features(net, constant)
    assert features.shape == (3, INCEPTION_DIM) and features.dtype == torch.float32
    assert torch.equal(features[:, :1024], torch.full((3, 1024), 102.0))  # 0.4 · 255 everywhere
    assert torch.equal(features[:, 1024:], torch.zeros(3, 1024))  # grey: the three channels are equal
    step = torch.zeros(1, 1, 28, 28)
    step[..., 14:] = 1.0  # dark left half, white right half
    grid = inception_features(net, step)[0, :1024].reshape(16, 64)
    # columns 0–13 fill output pixels 0–143 exactly, 14–27 pixels 155–298 (bilinear, half-pixel centres)
    assert torch.equal(grid[:, :30], torch.zeros(16, 30)) and torch.equal(grid[:, 34:], torch.full((16, 30), 255.0))
    assert torch.all(grid[:, 1:] >= grid[:, :-1])  # a monotone edge in between
    np.testing.assert_allclose(grid.mean().item(), 127.5, atol=0.5)  # the edge sits at the centre


def test_inception_features_batch_and_keep_colour(fake_file):
    net = load_inception(fake_file)
    generator = torch.Generator().manual_seed(0)
    colour = torch.rand(5, 3, 10, 12, generator=generator)
    together = inception_features(net, colour, batch_size=5)
    torch.testing.assert_close(inception_features(net, colour, batch_size=2), together)
    assert together[:, 1024:].mean() > 10  # red and blue differ, and the difference arrives
    assert torch.equal(inception_features(net, colour.clamp(0, 1) + 2.0)[:, :1024], torch.full((5, 1024), 255.0))
    with pytest.raises(ValueError, match=r"\(n, 1 or 3, H, W\)"):
        inception_features(net, torch.zeros(4, 28, 28))
    with pytest.raises(ValueError, match=r"\(n, 1 or 3, H, W\)"):
        inception_features(net, torch.zeros(4, 2, 28, 28))


# ---- vectors: the user's labelled tables and counts ----


@pytest.fixture(scope="module")
def wine():
    from sklearn.datasets import load_wine

    bunch = load_wine()
    return data.from_arrays(bunch.data, bunch.target, test_size=0.3, data_seed=derived_seed(3), name="wine")


def test_a_table_trains_a_dense_classifier_whose_features_separate_its_classes(wine):
    net = train_classifier(wine, seed=derived_seed(4), progress=False)
    assert net.x_shape == (13,) and not net.log1p_input and isinstance(net.body[0], torch.nn.Linear)
    # standardized wine is nearly linearly separable: logistic regression scores about 0.97 on 53 test rows
    assert net.info["test_accuracy"] > 0.85 and net.info["train_size"] == len(wine.train)
    assert net.info["epochs"] == classifier_module.VECTOR_EPOCH_RANGE[1]  # 125 rows: an epoch is one step
    features = embed(net, wine.test.images())
    assert features.shape == (len(wine.test), classifier_module.FEATURE_DIM)
    knn = KNeighborsClassifier(5).fit(embed(net, wine.train.images()).numpy(), wine.train.y.numpy())
    assert knn.score(features.numpy(), wine.test.y.numpy()) > 0.85


def test_counts_are_read_through_log1p(tmp_path):
    from sklearn.datasets import load_digits

    bunch = load_digits()  # 8×8 grey levels 0..16 as 64 counts a row
    counts = data.from_arrays(bunch.data.astype(np.int64), bunch.target, data_seed=derived_seed(5))
    assert counts.model_kind == "counts"
    net = train_classifier(counts, epochs=20, seed=derived_seed(6), progress=False)
    assert net.log1p_input and net.info["test_accuracy"] > 0.9  # measured 0.97-0.98
    x = counts.test.images(slice(5))
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net.features(x), net.dense(net.body(x.log1p())).relu())
        assert not torch.allclose(net.features(x), net.dense(net.body(x)).relu())
    # the cache keeps how the classifier reads its input
    path = tmp_path / "c.pt"
    classifier_module._save(net, path, {"k": 1})
    again = classifier_module._read(path, {"k": 1})
    assert again.log1p_input and torch.equal(embed(again, x), embed(net, x))


def test_a_classifier_needs_labels():
    unlabelled = data.from_arrays(np.random.default_rng(0).normal(size=(100, 4)))
    with pytest.raises(ValueError, match="no labels.*--label-column"):
        train_classifier(unlabelled, progress=False)
    with pytest.raises(ValueError, match=r"images \(C, H, W\) or vectors \(D,\)"):
        FeatureClassifier((4, 4), 3)


def test_a_classifier_cached_before_vectors_still_loads(tmp_path, trained):
    path = tmp_path / "old.pt"
    classifier_module._save(trained, path, {"k": 1})
    state = torch.load(path, weights_only=True)
    del state["log1p_input"]  # as the version before the vector classifier wrote it
    torch.save(state, path)
    old = classifier_module._read(path, {"k": 1})
    assert not old.log1p_input and torch.equal(old.head.weight, trained.head.weight)
