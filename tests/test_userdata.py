"""The user's own data: every format read to the same numbers, the kind found, the likelihood that follows,
standardized tables scored in nats of the data as given, and one clear line for each bad input."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pvae import cli, data
from pvae.data import DataConfig, DataError, from_arrays
from pvae.data.userdata import NpyRows, checksum, find_kind, smallest_exact
from pvae.engine.compatibility import check_compatible
from pvae.engine.config import PairConfig, build_pair
from pvae.engine.pair import traits

pd = pytest.importorskip("pandas")


def _wine():
    from sklearn.datasets import load_wine

    return load_wine(as_frame=True).frame


def _digit_counts() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().data.astype(np.int64)  # (1797, 64), counts out of 16


# --------------------------------------------------------------------------------------------
# Kinds and storage


@pytest.mark.parametrize(
    "values, kind",
    [
        (np.array([[0, 1], [1, 1], [0, 0]]), "binary"),
        (np.array([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]), "binary"),
        (np.array([[0, 3], [16, 1], [2, 0]]), "counts"),
        (np.array([[0.0, 0.5], [1.0, 0.25], [0.75, 0.0]]), "levels"),
        (np.array([[0.0, 2.5], [1.0, 0.25], [0.75, 0.0]]), "real"),
        (np.array([[-1, 2], [3, 4], [5, 6]]), "real"),  # negative integers are not counts
    ],
)
def test_the_kind_is_the_narrowest_that_holds_every_value(values, kind):
    assert find_kind(values) == kind
    assert from_arrays(np.concatenate([values, values])).kind == kind  # six rows: two per split


def test_counts_are_stored_in_the_smallest_exact_dtype():
    assert smallest_exact(np.array([[0, 255]])).dtype == np.uint8
    assert smallest_exact(np.array([[0, 256]])).dtype == np.uint16
    assert smallest_exact(np.array([[-3, 100]])).dtype == np.int8
    assert smallest_exact(np.array([[0.5, 1.25]])).dtype == np.float32  # exact in float32
    assert smallest_exact(np.array([[0.1, 1.0]])).dtype == np.float64  # 0.1 is not
    digits = from_arrays(_digit_counts())
    assert digits.train.data.dtype == torch.uint8 and digits.kind == "counts"
    rows = digits.train.images(slice(5))
    assert rows.dtype == torch.float32 and float(rows.max()) <= 16


def test_a_kind_may_be_widened_but_not_narrowed():
    counts = _digit_counts()[:50]
    assert from_arrays(counts, kind="real").standardized
    with pytest.raises(
        DataError, match="holds data that are counts .* cannot be read as binary; choose one of counts, real"
    ):
        from_arrays(counts, kind="binary")


# --------------------------------------------------------------------------------------------
# Every format gives the same numbers


def _save_all(tmp_path: Path, x: np.ndarray, y: np.ndarray) -> dict[str, tuple[Path, dict]]:
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])]).assign(label=y)
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_csv(tmp_path / "t.tsv", index=False, sep="\t")
    frame.to_parquet(tmp_path / "t.parquet")
    np.save(tmp_path / "t.npy", x)
    np.savez(tmp_path / "t.npz", x=x, y=y)
    torch.save({"x": torch.from_numpy(x), "y": torch.from_numpy(y)}, tmp_path / "t.pt")
    table = {"label_column": "label"}
    return {
        "csv": (tmp_path / "t.csv", table),
        "tsv": (tmp_path / "t.tsv", table),
        "parquet": (tmp_path / "t.parquet", table),
        "npy": (tmp_path / "t.npy", {}),
        "npz": (tmp_path / "t.npz", {}),
        "pt": (tmp_path / "t.pt", {}),
    }


@pytest.mark.parametrize("kind", ["counts", "real"])
def test_every_file_format_gives_the_same_splits_and_numbers(tmp_path, kind):
    rng = np.random.default_rng(4)
    x = rng.poisson(3.0, size=(60, 5)) if kind == "counts" else rng.normal(2.0, 3.0, size=(60, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=60)
    reference = from_arrays(x, y)
    for fmt, (path, options) in _save_all(tmp_path, x, y).items():
        ds = data.load(DataConfig(str(path), **options))
        assert ds.kind == kind and ds.x_shape == (5,), fmt
        for name in ("train", "val", "test"):
            got, want = ds.split(name), reference.split(name)
            if fmt in ("csv", "tsv"):  # text: float32 values come back to their printed precision
                assert torch.allclose(got.raw(), want.raw(), rtol=1e-6, atol=0), (fmt, name)
            else:
                assert torch.equal(got.raw(), want.raw()), (fmt, name)
            assert torch.allclose(got.images(), want.images(), atol=1e-6), (fmt, name)
            if fmt != "npy":  # a bare array has no labels
                assert torch.equal(got.y, want.y), (fmt, name)
        assert ds.has_labels == (fmt != "npy") and ds.source["sha256"] == checksum(path)


def test_a_npy_file_is_read_a_batch_of_rows_at_a_time_never_whole(tmp_path):
    x = np.random.default_rng(0).random((500, 1, 6, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    ds = data.load(DataConfig(str(tmp_path / "x.npy")))
    assert ds.train.lazy and isinstance(ds.train.data, NpyRows) and ds.train.nbytes == 0
    index = torch.tensor([3, 0, 7])
    rows = ds.train.index[index].numpy()
    assert np.array_equal(ds.train.images(index).numpy(), x[rows])
    # channels last (N, H, W, C) reads as (N, C, H, W), still mapped
    np.save(tmp_path / "hwc.npy", np.moveaxis(x, 1, -1).repeat(3, axis=-1))
    rgb = data.load(DataConfig(str(tmp_path / "hwc.npy")))
    assert rgb.x_shape == (3, 6, 6) and rgb.train.lazy


def test_training_and_evaluation_read_a_npy_a_batch_at_a_time(tmp_path, monkeypatch):
    from pvae.engine.train import TrainConfig, fit
    from pvae.measures.evaluate import evaluate

    x = (np.random.default_rng(0).random((3000, 1, 4, 4)) < 0.3).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    ds = data.load(DataConfig(str(tmp_path / "x.npy")))
    assert ds.kind == "binary" and ds.train.lazy
    largest = []
    read = NpyRows.__getitem__

    def counting(self, index):
        rows = read(self, index)
        largest.append(len(rows))
        return rows

    monkeypatch.setattr(NpyRows, "__getitem__", counting)
    model, guide = build_pair(PairConfig(z_dim=2, hidden=(8,)), ds.x_shape, dataset=ds)
    fit(model, guide, ds, TrainConfig(epochs=1, batch_size=64, jit="off"), progress=False)
    scores = evaluate(model, guide, ds.test.datapoints(), ds.test.y, num_samples=5, batch_size=100)
    # batches of training (64), of validation (up to 1000) and of evaluation (100), never a split whole
    assert max(largest) <= 1000 < len(ds.train) and len(largest) > len(ds.train) / 64
    assert scores["n"] == len(ds.test) == 300 and scores["elbo"] < 0


def test_split_column_and_fractions(tmp_path):
    frame = _wine()
    frame["part"] = np.where(np.arange(len(frame)) % 5 == 0, "test", "train")
    frame.to_csv(tmp_path / "w.csv", index=False)
    ds = data.load(DataConfig(str(tmp_path / "w.csv"), label_column="target", split_column="part", val_size=0.25))
    assert len(ds.test) == (np.arange(len(frame)) % 5 == 0).sum() == 36
    assert len(ds.val) == round(0.25 * 142) and len(ds.train) == 142 - len(ds.val)
    assert ds.x_shape == (13,) and ds.features[0] == "alcohol" and ds.num_classes == 3


# --------------------------------------------------------------------------------------------
# Image folders


def _png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_an_image_folder_gives_classes_grey_and_colour(tmp_path):
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, size=(6, 5, 4), dtype=np.uint8)
    for i, image in enumerate(grey):
        _png(tmp_path / "grey" / ("cat" if i < 3 else "dog") / f"{i}.png", image)
    ds = data.load(DataConfig(str(tmp_path / "grey"), val_size=2, test_size=2))
    assert ds.x_shape == (1, 5, 4) and ds.classes == ("cat", "dog") and ds.num_classes == 2 and ds.kind == "levels"
    every = torch.cat([ds.train.raw(), ds.val.raw(), ds.test.raw()])
    labels = torch.cat([ds.train.y, ds.val.y, ds.test.y])
    for image, label in zip(every, labels, strict=True):  # each image is one of the files, with its folder's class
        matches = [i for i in range(6) if np.allclose(image[0].numpy(), grey[i] / 255)]
        assert len(matches) == 1 and label == (0 if matches[0] < 3 else 1)
    colour = rng.integers(0, 256, size=(6, 3, 3, 3), dtype=np.uint8)
    for i, image in enumerate(colour):
        _png(tmp_path / "rgb" / f"{i}.png", image)
    rgb = data.load(DataConfig(str(tmp_path / "rgb"), val_size=2, test_size=2))
    assert rgb.x_shape == (3, 3, 3) and not rgb.has_labels
    pixels = torch.cat([rgb.train.raw(), rgb.val.raw(), rgb.test.raw()]) * 255
    assert sorted(map(tuple, pixels.reshape(6, -1).round().int().tolist())) == sorted(
        map(tuple, torch.from_numpy(colour).permute(0, 3, 1, 2).reshape(6, -1).int().tolist())
    )


def test_mixed_sizes_are_refused_unless_resized(tmp_path):
    _png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "b.png", np.zeros((6, 5), np.uint8))
    for name in "cdefg":
        _png(tmp_path / f"{name}.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match=r"images of different sizes \(a.png is 4×4, b.png is 6×5\); give --image-size"):
        data.load(DataConfig(str(tmp_path)))
    assert data.load(DataConfig(str(tmp_path), image_size=(8, 8), val_size=2, test_size=2)).x_shape == (1, 8, 8)


def test_images_beside_class_folders_are_refused_not_left_out(tmp_path):
    for i in range(4):
        _png(tmp_path / "cells" / ("a" if i % 2 else "b") / f"{i}.png", np.full((4, 4), 10 * i, np.uint8))
    for name in ("loose1.png", "loose2.png", "loose3.png"):
        _png(tmp_path / "cells" / name, np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError) as refused:
        data.load(DataConfig(str(tmp_path / "cells"), val_size=2, test_size=2))
    message = str(refused.value)
    assert "holds 3 image(s) at its top level" in message and "class folders a, b" in message
    assert "move the loose images into a class folder, or point --data at a folder of only images" in message
    assert "\n" not in message
    # a subfolder without images is no class: the images beside it are read, unlabelled
    (tmp_path / "flat" / "notes").mkdir(parents=True)
    for i in range(8):
        _png(tmp_path / "flat" / f"{i}.png", np.full((4, 4), 20 * i, np.uint8))
    flat = data.load(DataConfig(str(tmp_path / "flat"), val_size=2, test_size=2))
    assert not flat.has_labels and len(flat.train) + len(flat.val) + len(flat.test) == 8


@pytest.mark.parametrize("pixels", ["levels", "black and white", "zeros and ones"])
def test_image_bytes_are_scanned_once_with_the_same_results(pixels, monkeypatch):
    """from_arrays finds the kind of uint8 images and whether they are levels out of 255 in one pass over
    them, with what the separate passes found: levels out of 255, 0/255 bits, or 0/1 bytes (bits, no levels)."""
    from pvae.data import userdata

    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, size=(40, 1, 5, 6), dtype=np.uint8)
    expected_kind, expected = "levels", x / 255.0
    if pixels != "levels":
        bits = rng.random((40, 1, 5, 6)) < 0.5
        x = bits.astype(np.uint8) * (255 if pixels == "black and white" else 1)
        expected_kind, expected = "binary", bits.astype(np.float64)
    passes = []

    def counted(values, chunk=userdata.CHUNK_ROWS):
        passes.append(values)
        yield from _row_chunks(values, chunk)

    _row_chunks = userdata.row_chunks
    monkeypatch.setattr(userdata, "row_chunks", counted)
    ds = from_arrays(x, name="images")
    assert len(passes) == 1  # one scan of the bytes
    assert ds.kind == expected_kind and ds.is_user_data
    rows = torch.cat([ds.train.origin, ds.val.origin, ds.test.origin])
    every = torch.cat([ds.train.raw(), ds.val.raw(), ds.test.raw()])
    assert torch.equal(every, torch.from_numpy(expected[rows.numpy()]))
    if pixels == "levels":
        assert ds.train.levels == 255 and ds.train.data.dtype == torch.uint8
    else:  # packed bits
        assert ds.train.is_binary
    assert userdata.byte_kind(x, 255) == (expected_kind, None if pixels == "zeros and ones" else 255)


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist (apt-get install)")
def test_fashion_mnist_written_as_a_png_folder_reads_as_the_idx_files(tmp_path):
    from pvae.data.idx import locate_idx, read_idx

    paths = locate_idx("fashion-mnist", str(FASHION), allow_download=False)
    images, labels = read_idx(paths["test_images"])[:300], read_idx(paths["test_labels"])[:300]
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        _png(tmp_path / f"class{label}" / f"{i:05d}.png", image)
    ds = data.load(DataConfig(str(tmp_path), val_size=2, test_size=2, data_seed=3))
    # the folder's order is class, then file name; each split holds rows of it
    order = sorted(range(300), key=lambda i: (labels[i], i))
    for split in (ds.train, ds.val, ds.test):
        rows = [order[int(r)] for r in split.index] if split.index is not None else None
        if rows is None:  # stored in memory: the split's rows are a subset taken in the drawn order
            whole = torch.from_numpy(images.astype(np.float64) / 255).unsqueeze(1)
            matches = [int(((whole - img).abs().amax(dim=(1, 2, 3)) == 0).nonzero()[0]) for img in split.raw()]
            rows = matches
        assert torch.equal(split.raw(), torch.from_numpy(images[rows].astype(np.float64) / 255).unsqueeze(1))
        assert split.y.tolist() == [int(labels[r]) for r in rows]
        assert split.levels == 255  # stored as the IDX reader stores them: bytes out of 255


# --------------------------------------------------------------------------------------------
# AnnData


def test_an_h5ad_keeps_its_sparse_counts_sparse_and_reads_labels_from_obs(tmp_path):
    anndata = pytest.importorskip("anndata")
    from scipy import sparse

    counts = np.random.default_rng(2).poisson(0.3, size=(80, 30))
    cells = pd.DataFrame({"type": np.where(np.arange(80) % 2, "T cell", "B cell")}, index=[f"c{i}" for i in range(80)])
    adata = anndata.AnnData(sparse.csr_matrix(counts.astype(np.float32)), obs=cells)
    adata.layers["raw"] = sparse.csr_matrix(counts * 2)
    adata.write_h5ad(tmp_path / "cells.h5ad")
    ds = data.load(DataConfig(str(tmp_path / "cells.h5ad"), label_column="type"))
    assert ds.kind == "counts" and ds.train.lazy and hasattr(ds.train.data, "nnz")
    assert ds.classes == ("B cell", "T cell") and ds.train.nbytes < counts.nbytes
    rows = ds.train.index[:7].numpy()
    assert np.array_equal(ds.train.images(slice(7)).numpy(), counts[rows])
    assert torch.equal(ds.train.y[:7], torch.from_numpy(rows % 2))
    layer = data.load(DataConfig(str(tmp_path / "cells.h5ad"), layer="raw"))
    assert np.array_equal(layer.train.images(slice(7)).numpy(), 2 * counts[layer.train.index[:7].numpy()])
    with pytest.raises(DataError, match="--layer spliced: cells.h5ad has the layers raw"):
        data.load(DataConfig(str(tmp_path / "cells.h5ad"), layer="spliced"))


# --------------------------------------------------------------------------------------------
# Likelihoods follow the kind; numbers are in nats of the data as given


def test_the_likelihood_must_hold_the_kind_found():
    ds = from_arrays(_digit_counts()[:200])
    model, guide = build_pair(PairConfig(z_dim=2, hidden=(8,), likelihood="bernoulli"), ds.x_shape, dataset=ds)
    with pytest.raises(ValueError, match="--likelihood bernoulli holds binary data, but these data are counts"):
        check_compatible(traits(model, guide), ds)
    model, _ = build_pair(PairConfig(z_dim=2, hidden=(8,), likelihood="binomial"), ds.x_shape, dataset=ds)
    assert model.likelihood.trials == 16  # sklearn's digits are counts out of 16
    real = from_arrays(np.random.default_rng(0).normal(size=(50, 4)))
    model, guide = build_pair(PairConfig(z_dim=2, hidden=(8,), likelihood="poisson"), real.x_shape, dataset=real)
    with pytest.raises(ValueError, match="--likelihood poisson holds .*, but these data are real"):
        check_compatible(traits(model, guide), real)


def test_counts_in_the_thousands_start_at_their_mean_and_train():
    """Encoders read counts on a log1p scale and the decoder starts at the data's mean, with the negative
    binomial's θ from the moments: Poisson(1000) counts train where a decoder starting at mean 1 overflowed."""
    from pvae.engine.train import TrainConfig, fit
    from pvae.measures.evaluate import decode_mean

    counts = np.random.default_rng(0).poisson(1000, size=(300, 6))
    ds = from_arrays(counts)
    nb, guide = build_pair(PairConfig(z_dim=2, hidden=(16,), likelihood="negative-binomial"), ds.x_shape, dataset=ds)
    mean = ds.train.raw().mean(0).float()
    assert torch.allclose(nb.decoder[-1].bias[:6].detach(), mean.log())  # the decoder's output bias: log of the mean
    start = decode_mean(nb, torch.zeros(1, 2))[0]  # the hidden layer's random weights move it by a factor or so
    assert ((start / mean).log().abs() < 1.5).all()
    assert float(nb.likelihood.log_theta.detach().exp().min()) > 100  # Poisson-like data: θ far above the mean's 1
    assert all(m.log1p_input for m in guide.modules() if hasattr(m, "log1p_input"))
    fit(nb, guide, ds, TrainConfig(epochs=30, batch_size=64, jit="off"), progress=False)
    from pvae.measures.evaluate import evaluate

    scores = evaluate(nb, guide, ds.test.images(), None, num_samples=20)
    entropy = 6 * 0.5 * np.log(2 * np.pi * np.e * 1000)  # a Poisson(1000)'s entropy, 4.87 nats a count
    assert -entropy - 15 < scores["log_px"] < -entropy + 3


def test_the_linear_pair_at_the_ppca_optimum_scores_a_table_as_sklearn_in_nats_of_the_raw_data():
    """pPCA's maximum-likelihood fit of the standardized wine table (Tipping & Bishop's closed form, as
    scikit-learn's PCA computes it) scores the test rows as ``PCA.score`` plus the Jacobian −Σ log sd, which
    is the log-density of the raw rows under the implied Gaussian."""
    from scipy.stats import multivariate_normal
    from sklearn.decomposition import PCA

    frame = _wine()
    ds = from_arrays(frame.drop(columns="target").to_numpy(), frame["target"].to_numpy())
    train, test = ds.train.images().double().numpy(), ds.test.images().double().numpy()
    k = 3
    pca = PCA(n_components=k).fit(train)
    model, _ = build_pair(PairConfig("linear", z_dim=k), ds.x_shape, dataset=ds)
    model.double()
    sigma2 = pca.noise_variance_
    weight = pca.components_.T * np.sqrt(pca.explained_variance_ - sigma2)  # (D, k): W = U (Λ − σ² I)^½
    with torch.no_grad():
        model.decoder[0].weight.copy_(torch.from_numpy(weight))
        model.decoder[0].bias.copy_(torch.from_numpy(pca.mean_))
        model.likelihood.log_scale.fill_(0.5 * np.log(sigma2))
    ours = model.log_marginal(torch.from_numpy(test)).mean().item()
    jacobian = -float(ds.train.scale.double().log().sum())
    assert ours == pytest.approx(pca.score(test) + jacobian, abs=1e-6)
    # the same number straight from the raw rows: N(loc + sd·mean, sd·C·sd)
    loc, sd = ds.train.loc.double().numpy(), ds.train.scale.double().numpy()
    cov = pca.get_covariance() * np.outer(sd, sd)
    raw = ds.test.raw().numpy()
    assert ours == pytest.approx(multivariate_normal(loc + sd * pca.mean_, cov).logpdf(raw).mean(), abs=1e-6)


# --------------------------------------------------------------------------------------------
# The command line on a table: train records the file, every command reads it, a changed file is refused


@pytest.fixture(scope="module")
def wine_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("wine")
    _wine().to_csv(root / "wine.csv", index=False)
    out = root / "run"
    argv = ["train", "--data", str(root / "wine.csv"), "--label-column", "target", "--epochs", "20", "--z-dim", "2"]
    assert cli.main([*argv, "--samples", "20", "--no-progress", "--out", str(out), "--device", "cpu"]) == 0
    return out


def test_a_run_on_a_table_records_the_file_and_its_kind(wine_run, tmp_path):
    config = json.loads((wine_run / "config.json").read_text())["data"]
    assert Path(config["data"]).is_absolute() and config["kind"] == "real" and len(config["checksum"]) == 64
    assert json.loads((wine_run / "config.json").read_text())["pair"]["likelihood"] == "gaussian-per-pixel"
    # every number in nats of the table as given: the same pair scored on the standardized rows without
    # the Jacobian is higher by exactly Σ log sd (the same draws: the same seed)
    from pvae.engine.config import restore
    from pvae.measures.evaluate import evaluate

    _, _, dataset, model, guide = restore(wine_run)
    x, y = dataset.test.images(), dataset.test.y
    torch.manual_seed(5)
    raw_units = evaluate(model, guide, x, y, num_samples=50)
    model.likelihood.set_data_scale(None)
    torch.manual_seed(5)
    standardized = evaluate(model, guide, x, y, num_samples=50)
    shift = float(dataset.train.scale.double().log().sum())
    assert shift > 1  # proline's sd is about 300
    for key in ("elbo", "log_px", "reconstruction"):
        assert raw_units[key] == pytest.approx(standardized[key] - shift, abs=1e-4), key
    assert raw_units["kl"] == pytest.approx(standardized["kl"], abs=1e-6)
    cwd = os.getcwd()
    try:  # the absolute path finds the data from any folder
        os.chdir(tmp_path)
        assert cli.main(["evaluate", str(wine_run), "--samples", "10", "--device", "cpu"]) == 0
    finally:
        os.chdir(cwd)


def test_quality_and_sample_on_a_table(wine_run, tmp_path):
    out = tmp_path / "q"
    assert cli.main(["quality", str(wine_run), "--replicates", "20", "--out", str(out), "--device", "cpu"]) == 0
    ppc = json.loads((out / "quality.json").read_text())["posterior_predictive"]
    assert (
        ppc["replicates"] == 20 and ppc["rows"] == 18 and set(ppc["statistics"]) == {"mean", "variance", "correlation"}
    )
    assert len(ppc["statistics"]["mean"]["p_values"]) == 13 and (out / "figures" / "ppc.png").is_file()
    target = tmp_path / "draws.png"
    assert cli.main(["sample", str(wine_run), "-n", "7", "--out", str(target), "--device", "cpu"]) == 0
    assert cli.main(["sample", str(wine_run), "--out", str(tmp_path / "draws.jpg"), "--device", "cpu"]) == 2
    assert not (tmp_path / "draws.jpg").exists()  # a PNG is never written under another name
    draws = np.load(target.with_suffix(".npy"))
    assert draws.shape == (7, 13) and draws[:, -1].mean() > 100  # proline, in its own units (hundreds)


def test_a_changed_data_file_is_refused_with_the_fix(wine_run, tmp_path, capsys):
    run = Path(shutil.copytree(wine_run, tmp_path / "run"))
    config = json.loads((run / "config.json").read_text())
    changed = tmp_path / "wine.csv"
    _wine().iloc[:-1].to_csv(changed, index=False)
    config["data"]["data"] = str(changed)
    (run / "config.json").write_text(json.dumps(config))
    assert cli.main(["evaluate", str(run), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "has changed since the run was trained" in err and "restore the file" in err
    assert "last modified" in err and f"--data {changed} --out" in err  # when, and the command of a new run
    # in words: no SHA-256 in the message, short checksum prefixes at most
    digests = {checksum(changed), config["data"]["checksum"]}
    assert not any(digest[:12] in err for digest in digests), err
    assert all(digest[:8] in err for digest in digests) and len(err.strip().splitlines()) == 1
    changed.unlink()
    assert cli.main(["evaluate", str(run), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "the data this run was trained on" in err and "is missing: put it back" in err


def test_encode_writes_the_codes_of_every_row_in_file_order_with_its_split(wine_run, tmp_path, capsys):
    from pvae.engine.config import restore
    from pvae.measures.evaluate import decode_mean

    assert cli.main(["encode", str(wine_run), "--reconstruct", "--device", "cpu"]) == 0
    codes = np.load(wine_run / "encoded.npz")
    frame = _wine()
    assert codes["mean"].shape == (178, 2) and (codes["sd"] > 0).all()
    assert np.array_equal(codes["label"], frame["target"].to_numpy())  # the file's order and labels
    assert [int((codes["split"] == s).sum()) for s in ("train", "val", "test")] == [144, 16, 18]
    _, config, dataset, model, guide = restore(wine_run)
    raw = torch.from_numpy(frame.drop(columns="target").to_numpy())
    x = ((raw - dataset.train.loc) / dataset.train.scale).float()
    from pyro import poutine

    site = poutine.trace(guide).get_trace(x).nodes["z"]["fn"]
    assert np.allclose(codes["mean"], site.mean.detach().numpy(), atol=1e-6)
    assert np.allclose(codes["sd"], site.stddev.detach().numpy(), atol=1e-6)
    # the reconstruction is the decoder's mean in the table's own units
    expected = decode_mean(model, torch.from_numpy(codes["mean"])) * dataset.train.scale + dataset.train.loc
    assert np.allclose(codes["reconstruction"], expected.numpy(), atol=1e-4)
    # a new file with the same columns encodes as the same rows did
    data_file = Path(config.data.data)
    frame.iloc[[5, 0, 7]].to_csv(tmp_path / "new.csv", index=False)
    assert (
        cli.main(["encode", str(wine_run), "--data", str(tmp_path / "new.csv"), "--out", str(tmp_path / "c.csv")]) == 0
    )
    table = pd.read_csv(tmp_path / "c.csv")
    # latent dimensions named as the figures name them, 0-based: z0, z1
    assert [c for c in table.columns if c.startswith(("mean", "sd"))] == ["mean_z0", "mean_z1", "sd_z0", "sd_z1"]
    assert np.allclose(table[["mean_z0", "mean_z1"]].to_numpy(), codes["mean"][[5, 0, 7]], atol=1e-6)
    assert np.allclose(table[["sd_z0", "sd_z1"]].to_numpy(), codes["sd"][[5, 0, 7]], atol=1e-6)
    frame.drop(columns="ash").to_csv(tmp_path / "fewer.csv", index=False)
    capsys.readouterr()
    assert cli.main(["encode", str(wine_run), "--data", str(tmp_path / "fewer.csv"), "--device", "cpu"]) == 2
    assert "has other columns than the run's data: missing ['ash']" in capsys.readouterr().err
    assert cli.main(["encode", str(wine_run), "--out", str(tmp_path / "x.h5ad"), "--device", "cpu"]) == 2
    assert "an .h5ad output is a copy of the .h5ad the data came from" in capsys.readouterr().err
    assert data_file.is_file()


def test_disentangle_scores_the_factor_columns_of_a_table(tmp_path, capsys):
    """Two factors drive two features each (plus noise): MIG, DCI, SAP and modularity run on the rows' own
    factors; the beta-VAE and FactorVAE scores, which need every combination of factors, are left out of
    the default list where the rows lack some, and refused by name when asked for."""
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 4, 400), rng.integers(0, 3, 400)
    a[b == 2] = np.minimum(a[b == 2], 2)  # some combinations (a=3, b=2) never occur
    x = np.stack([a, a, b, b], 1) + 0.1 * rng.normal(size=(400, 4))
    frame = pd.DataFrame(x, columns=["a1", "a2", "b1", "b2"]).assign(fa=a, fb=[f"level{v}" for v in b])
    frame.to_csv(tmp_path / "f.csv", index=False)
    ds = data.load(DataConfig(str(tmp_path / "f.csv"), factor_columns=("fa", "fb")))
    truth = ds.ground_truth
    assert truth.factor_names == ("fa", "fb") and truth.factor_sizes == (4, 3) and not truth.complete
    rows = truth.sample_factors(50, np.random.default_rng(1))
    seen = {tuple(r) for r in np.stack([a, b], 1)}
    assert all(tuple(r) in seen for r in rows.tolist())
    observed = truth.observations(rows[:5])  # a row with exactly those factors, standardized
    raw = observed * ds.train.scale + ds.train.loc
    assert np.allclose(raw[:, 0].round().numpy(), rows[:5, 0], atol=0.5)
    with pytest.raises(ValueError, match=r"no row of the data has the factors \{'fa': 3, 'fb': 2\}"):
        truth.observations(np.array([[3, 2]]))
    out = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "f.csv"), "--factor-columns", "fa,fb", "--epochs", "30", "--z-dim", "2"]
    assert cli.main([*argv, "--samples", "10", "--no-progress", "--out", str(out), "--device", "cpu"]) == 0
    small = ["--num-train", "200", "--num-eval", "100", "--mi-points", "300", "--device", "cpu"]
    assert cli.main(["disentangle", str(out), *small]) == 0
    results = json.loads((out / "disentanglement" / "disentanglement.json").read_text())
    assert set(results["metrics"]) == {"mig", "dci", "sap", "modularity"}
    assert all(np.isfinite(v) for v in _numbers(results["metrics"]))
    capsys.readouterr()
    assert cli.main(["disentangle", str(out), "--metrics", "beta_vae", *small, "--out", str(tmp_path / "b")]) == 2
    assert "needs every combination of the factors in the data" in capsys.readouterr().err


def _numbers(value) -> list[float]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [value] if isinstance(value, float) else []


# --------------------------------------------------------------------------------------------
# Bad input: one clear line, nothing written


def _write(tmp_path: Path, name: str, content) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        content(path)
    return path


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


BAD = [
    ("missing.csv", None, {}, "no such file or folder"),
    ("x.xlsx", b"PK", {}, "pvae does not read .xlsx"),
    ("empty.csv", b"", {}, r"is empty \(0 bytes\)"),
    ("header.csv", "a,b\n", {}, "has a header but no rows"),
    ("one.csv", "a,b\n1,2\n", {}, "holds 1 datapoint"),
    ("nan.csv", "a,b\n1,2\n3,\n5,6\n", {}, r"row 2 \(counting data rows from 1\), column 'b' is nan"),
    ("text.csv", "a,name\n1,x\n2,y\n3,z\n", {}, "the columns name are not numbers; .* --drop-columns name"),
    ("huge.csv", "a,b\n1,2\n3,1e300\n5,6\n", {}, r"row 2 \(counting data rows from 1\), column 'b' is 1e\+300, beyond"),
    ("nan.npy", lambda p: np.save(p, np.where(np.eye(6, 3) > 0, np.nan, 1.0)[::-1].copy()), {}, r"x\[3, 2\] \(row 3"),
    ("huge.npy", lambda p: np.save(p, np.full((6, 2), 1e300)), {}, r"x\[0, 0\] .* beyond what a float32 holds"),
    ("ragged.csv", "a,b\n1,2\n3,4,5\n6,7\n", {}, "not a readable table: .*line 3"),
    ("nolabel.csv", "a,b\n1,2\n3,4\n5,6\n", {"label_column": "kind"}, "--label-column kind: .* no such column"),
    ("oneclass.csv", "a,k\n" + "".join(f"{i},x\n" for i in range(8)), {"label_column": "k"}, "every label is 'x'"),
    ("fraction.csv", "a,k\n" + "".join(f"{i},{i / 3}\n" for i in range(8)), {"label_column": "k"}, "holds fractions"),
    ("index.csv", ",a,b\n" + "".join(f"{i},{i},{2 * i}\n" for i in range(8)), {}, "pandas' saved index"),
    ("semicolon.csv", "a;b\n" + "".join(f"{i};{i}\n" for i in range(8)), {}, "seem separated by ';'"),
    ("semicolon-label.csv", "a;k\n" + "".join(f"{i};{i % 2}\n" for i in range(8)), {"label_column": "k"}, "by ';'"),
    (
        "twice.csv",
        "a,k\n" + "".join(f"{i},{i % 2}\n" for i in range(8)),
        {"label_column": "k", "drop_columns": ("k",)},
        "drops the column that another option names",
    ),
    ("short.npz", lambda p: np.savez(p, x=np.ones((5, 2)), y=np.ones(4)), {}, "y has 4 rows but x has 5"),
    ("flat.npy", lambda p: np.save(p, np.arange(6.0)), {}, r"is 1-D \(6 values\).*reshape it to \(6, 1\)"),
    ("objects.npy", lambda p: np.save(p, np.array([{"a": 1}, None]), allow_pickle=True), {}, "Python objects"),
    ("repeated.csv", "a,b,a\n" + "".join(f"{i},{i},{i}\n" for i in range(8)), {}, "'a' appears more than once"),
    ("noimages", lambda p: p.mkdir(), {}, "holds no images"),
    ("deep", lambda p: _png(p / "a.png", np.full((4, 4), 40000, np.uint16)), {}, "16-bit or float pixels"),
    ("alpha", lambda p: _png(p / "a.png", np.zeros((4, 4, 4), np.uint8)), {}, "has an alpha channel"),
    ("broken", lambda p: _write(p.mkdir() or p, "bad.png", b"not a png"), {}, "bad.png is not a readable image"),
    ("cols.npy", lambda p: np.save(p, np.ones((4, 2))), {"label_column": "y"}, "name columns of a table"),
    (  # a measurement as a label: wine's 178 rows, a column of whole-number floats with 150 distinct values
        "measured.csv",
        lambda p: _wine().assign(target=np.repeat(np.arange(150.0), [29] + [1] * 149)).to_csv(p, index=False),
        {"label_column": "target"},
        r"--label-column target holds 150 distinct values in 178 rows, 1.2 rows a class: a quantity, not classes "
        r".*--factor-columns target \(a ground truth\) or --drop-columns target",
    ),
    (
        "measured.npz",
        lambda p: np.savez(p, x=np.ones((40, 2)), y=np.arange(40)),
        {},
        "y holds 40 distinct values in 40 rows.*save it as 'factors'",
    ),
]


@pytest.mark.parametrize("name, content, options, message", BAD, ids=[b[0] for b in BAD])
def test_bad_data_gets_one_clear_line(tmp_path, name, content, options, message):
    path = tmp_path / name if content is None else _write(tmp_path, name, content)
    with pytest.raises(DataError, match=message):
        data.load(DataConfig(str(path), **options))


def test_labels_are_classes_unless_too_many_for_their_rows():
    """More than 20 classes need 5 rows a class on average; 20 classes or fewer always pass."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5000, 3))
    cell_types = rng.integers(0, 50, 5000)  # 50 cell types in 5,000 cells
    assert from_arrays(x, cell_types).num_classes == 50
    assert from_arrays(x[:25], np.arange(25) % 20).num_classes == 20  # 20 classes in 25 rows: few, but classes
    names = np.array([f"type{c:02d}" for c in cell_types[:500]])  # names: sorted into classes
    named = from_arrays(x[:500], names)
    assert named.classes == tuple(sorted(set(names))) and named.has_labels
    with pytest.raises(DataError, match="y holds 21 distinct values in 100 rows, 4.8 rows a class"):
        from_arrays(x[:100], np.arange(100) % 21)
    proline = _wine()["proline"].to_numpy()  # whole numbers as floats: 178 rows, 121 values
    with pytest.raises(DataError, match=r"121 distinct values in 178 rows.*pass it as factors \(a ground truth\)"):
        from_arrays(x[:178], proline)


def test_a_pt_file_that_would_run_code_is_refused_unread(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"x": torch.ones(4, 2), "extra": _RunsCode(marker)}, tmp_path / "evil.pt")
    with pytest.raises(DataError, match="not a file of tensors pvae reads without running code"):
        data.load(DataConfig(str(tmp_path / "evil.pt")))
    assert not marker.exists()


def test_bad_data_on_the_command_line_writes_nothing(tmp_path, capsys):
    (tmp_path / "nan.csv").write_text("a,b\n1,2\n3,\n5,6\n")
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(tmp_path / "nan.csv"), "--out", str(out), "--device", "cpu"]) == 2
    assert "column 'b' is nan" in capsys.readouterr().err and not out.exists()
    assert cli.main(["train", "--data", "digits", "--label-column", "x", "--out", str(out)]) == 2
    assert "--label-column applies to your own data" in capsys.readouterr().err


def test_sample_draws_a_class_by_its_name(tmp_path, capsys):
    table = _wine()
    table["target"] = np.array(["barolo", "grignolino", "barbera"])[table["target"]]
    table.to_csv(tmp_path / "wine.csv", index=False)
    out = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "wine.csv"), "--label-column", "target", "--model", "cvae"]
    assert cli.main([*argv, "--epochs", "2", "--samples", "5", "--no-progress", "--out", str(out)]) == 0
    # classes sorted by name: barbera 0, barolo 1, grignolino 2
    assert cli.main(["sample", str(out), "--label", "grignolino", "-n", "4", "--seed", "3"]) == 0
    by_name = np.load(out / "figures" / "samples-labelgrignolino-seed3-n4.npy")
    assert "4 samples of class grignolino" in capsys.readouterr().out
    assert cli.main(["sample", str(out), "--label", "2", "-n", "4", "--seed", "3"]) == 0
    np.testing.assert_array_equal(np.load(out / "figures" / "samples-label2-seed3-n4.npy"), by_name)
    assert cli.main(["sample", str(out), "--label", "nebbiolo"]) == 2
    err = capsys.readouterr().err
    assert (
        "--label nebbiolo names no class of wine.csv: give one of barbera, barolo, grignolino, or its index 0..2" in err
    )


def test_training_reads_and_hashes_the_users_file_once(tmp_path, monkeypatch):
    from pvae.data import userdata

    _wine().to_csv(tmp_path / "wine.csv", index=False)
    calls = {"checksum": 0, "read": 0}

    def counted(name):
        original = getattr(userdata, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(userdata, name, wrapper)

    counted("checksum"), counted("read")
    argv = ["train", "--data", str(tmp_path / "wine.csv"), "--epochs", "1", "--samples", "5", "--no-progress"]
    assert cli.main([*argv, "--out", str(tmp_path / "run")]) == 0
    assert calls == {"checksum": 1, "read": 1}


def test_a_label_or_an_identifier_left_among_the_features_is_said(tmp_path):
    table = _wine()
    table.insert(0, "sample_id", np.random.default_rng(0).permutation(len(table)) + 1000)
    table.to_csv(tmp_path / "wine.csv", index=False)
    notes = data.load(DataConfig(data=str(tmp_path / "wine.csv"))).notes
    assert "column 'target' (3 values) looks like a label, here a feature: --label-column target" in notes
    assert any(n.startswith("column 'sample_id' holds a different whole number in every row") for n in notes)
    assert not any("proline" in n for n in notes)  # whole numbers, some repeated: a measurement
    labelled = data.load(DataConfig(data=str(tmp_path / "wine.csv"), label_column="target")).notes
    assert not any("target" in n for n in labelled)
