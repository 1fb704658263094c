"""``pvae encode``'s outputs (:mod:`pvae.measures.encode`): the names of its table columns, and its refusal of codes
that cannot fit in memory, made before any is computed."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_wine

import pvae.measures.memory
from pvae.data import from_arrays
from pvae.engine.config import PairConfig, build_pair
from pvae.measures import encode as enc
from pvae.measures.encode import Rows, check_encode_memory, column_names, encode, write_codes
from tests.conftest import derived_seed

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def wine():
    table = load_wine()
    return from_arrays(table.data, table.target, features=tuple(table.feature_names), name="wine")


def _pair(dataset, z_dim: int = 3):
    torch.manual_seed(derived_seed(1))
    config = PairConfig(model="vae", z_dim=z_dim, hidden=(8,), likelihood="gaussian-per-pixel")
    return build_pair(config, dataset.x_shape, dataset.num_classes, dataset=dataset)


def test_latent_dimensions_are_named_z0_z1_as_python_indexes_them():
    assert column_names("mean", (3,)) == ["mean_z0", "mean_z1", "mean_z2"]
    assert column_names("sd", (2,)) == ["sd_z0", "sd_z1"]
    assert column_names("draws", (2, 3)) == ["draw0_z0", "draw0_z1", "draw0_z2", "draw1_z0", "draw1_z1", "draw1_z2"]
    assert column_names("reconstruction", (2,), ("ash", "hue")) == ["reconstruction_ash", "reconstruction_hue"]
    assert column_names("reconstruction", (1, 2, 2)) == [f"reconstruction_{j}" for j in range(4)]


def test_a_table_of_codes_names_each_column_after_its_dimension(wine, tmp_path):
    model, guide = _pair(wine)
    x = wine.test.images()
    rows = Rows(x, wine.test.y, [str(i) for i in range(len(x))], None, wine.features)
    codes = encode(model, guide, x)
    codes["reconstruction"] = wine.unstandardize(model.decode(codes["mean"]).mean.detach())
    write_codes(tmp_path / "codes.csv", codes, rows, None)
    table = pd.read_csv(tmp_path / "codes.csv")
    latent = ["mean_z0", "mean_z1", "mean_z2", "sd_z0", "sd_z1", "sd_z2"]
    assert list(table.columns) == ["row", "label", *latent, *[f"reconstruction_{f}" for f in wine.features]]
    # each column is its dimension: mean_zj is column j of the means (0-based)
    for j in range(3):
        assert table[f"mean_z{j}"].to_numpy() == pytest.approx(codes["mean"][:, j].numpy(), abs=1e-6)
        assert table[f"sd_z{j}"].to_numpy() == pytest.approx(codes["sd"][:, j].numpy(), abs=1e-6)
    torch.manual_seed(derived_seed(2))
    draws = encode(model, guide, x[:4], draws=2)
    write_codes(tmp_path / "draws.csv", draws, Rows(x[:4], None, list("abcd"), None), None)
    table = pd.read_csv(tmp_path / "draws.csv")
    assert list(table.columns)[1:] == [f"draw{k}_z{j}" for k in range(2) for j in range(3)]
    assert table["draw1_z2"].to_numpy() == pytest.approx(draws["draws"][:, 1, 2].numpy(), abs=1e-6)


def test_codes_larger_than_memory_are_refused_with_the_estimate_and_the_fix():
    gb = 10**9
    # 178 rows × 10^9 draws × 2 dimensions of float32: 1424 GB, held twice while gathered
    with pytest.raises(ValueError) as refused:
        check_encode_memory(178, 2, draws=10**9, available=16 * gb)
    message = str(refused.value)
    assert "--draws 1000000000 asks for 178 rows × 1000000000 draws × 2 dimensions of z: 1424.0 GB of codes" in message
    assert "16.0 GB available" in message and "lower --draws" in message and "\n" not in message
    # what fits passes, and the estimate is the codes' bytes
    assert check_encode_memory(178, 2, draws=1000, available=16 * gb) == 178 * 1000 * 2 * 4
    assert check_encode_memory(178, 2, available=16 * gb) == 178 * 2 * 2 * 4  # a mean and an sd
    with pytest.raises(ValueError, match="mean and sd of 10000000000 rows × 20 dimensions .* encode part of the rows"):
        check_encode_memory(10**10, 20, available=16 * gb)


def test_encode_refuses_before_it_draws_anything(wine, monkeypatch):
    model, guide = _pair(wine, z_dim=2)
    x = wine.test.images()

    def never(*args, **kwargs):
        raise AssertionError("the guide ran before the memory was checked")

    monkeypatch.setattr(pvae.measures.memory, "available_memory", lambda device="cpu": 10**6)  # 1 MB
    monkeypatch.setattr(enc, "_codes", never)
    with pytest.raises(ValueError, match=r"--draws 10000 asks for 18 rows × 10000 draws × 2 dimensions of z: 1.4 MB"):
        encode(model, guide, x, draws=10_000)
    monkeypatch.undo()
    torch.manual_seed(derived_seed(3))
    assert encode(model, guide, x, draws=10)["draws"].shape == (len(x), 10, 2)
    assert np.isfinite(encode(model, guide, x)["mean"].numpy()).all()
