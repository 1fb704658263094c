"""The IDX reader and the search for a dataset's files (:mod:`pvae.data.idx`)."""

import gzip
import hashlib

import numpy as np
import pytest

from pvae import data
from pvae.data import DataConfig, idx
from pvae.data.idx import DataError, read_idx, write_idx


def write_mnist_like(folder, n_train=30, n_test=10, gz=True, seed=0):
    """Four small IDX files in the layout of MNIST; returns the arrays written."""
    rng = np.random.default_rng(seed)
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


def _local_mirror(monkeypatch, tmp_path, corrupt=False):
    mirror = tmp_path / "mirror"
    write_mnist_like(mirror)
    if corrupt:
        (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"not what was published"))
    spec = idx.IDX_DATASETS["mnist"]
    files = {}
    for role, (name, _) in spec.files.items():
        digest = hashlib.md5((mirror / name).read_bytes()).hexdigest()
        files[role] = (name, digest if not (corrupt and "t10k-labels" in name) else "0" * 32)
    patched = idx.IDXSpec(files=files, mirrors=("file:///nonexistent/", mirror.as_uri() + "/"))
    monkeypatch.setitem(idx.IDX_DATASETS, "mnist", patched)
    monkeypatch.delenv(idx.DATA_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_download_falls_through_mirrors_and_verifies_checksums(monkeypatch, tmp_path):
    _local_mirror(monkeypatch, tmp_path)
    target = tmp_path / "data"
    target.mkdir()
    ds = data.load(DataConfig("mnist", data_dir=str(target), val_size=5))
    assert len(ds.test) == 10
    assert sorted(p.name for p in (target / "mnist").iterdir()) == sorted(
        n for n, _ in idx.IDX_DATASETS["mnist"].files.values()
    )


def test_failed_checksum_keeps_nothing_and_says_so(monkeypatch, tmp_path):
    _local_mirror(monkeypatch, tmp_path, corrupt=True)
    target = tmp_path / "data"
    target.mkdir()
    with pytest.raises(DataError, match="checksum failed"):
        data.load(DataConfig("mnist", data_dir=str(target), val_size=5))
    assert not (target / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()
    assert not [p for p in (target / "mnist").iterdir() if p.name.endswith(".tmp")]


def _system_copy(monkeypatch, tmp_path):
    """Fashion-MNIST's system folder moved under ``tmp_path``, holding a whole copy; HOME and
    ``$PVAE_DATA`` point nowhere. Returns the arrays of the system copy."""
    spec = idx.IDX_DATASETS["fashion-mnist"]
    system = tmp_path / "sys"
    monkeypatch.setitem(idx.IDX_DATASETS, "fashion-mnist", idx.IDXSpec(spec.files, spec.mirrors, (system,), spec.hint))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(idx.DATA_ENV, raising=False)
    return write_mnist_like(system, seed=1)


def test_without_data_dir_the_system_copy_is_found(monkeypatch, tmp_path):
    arrays = _system_copy(monkeypatch, tmp_path)
    paths = idx.locate_idx("fashion-mnist", allow_download=False)
    assert paths["test_labels"] == tmp_path / "sys" / "t10k-labels-idx1-ubyte.gz"
    assert np.array_equal(read_idx(paths["test_images"]), arrays["t10k-images-idx3-ubyte"])


def test_missing_dataset_says_where_it_looked_and_how_to_get_it(monkeypatch, tmp_path):
    spec = idx.IDX_DATASETS["fashion-mnist"]
    monkeypatch.setitem(
        idx.IDX_DATASETS, "fashion-mnist", idx.IDXSpec(spec.files, spec.mirrors, (tmp_path / "sys",), spec.hint)
    )
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(idx.DATA_ENV, str(tmp_path / "env"))
    with pytest.raises(DataError) as info:
        idx.locate_idx("fashion-mnist", allow_download=False)
    message = str(info.value)
    assert str(tmp_path / "env") in message and str(tmp_path / "sys") in message
    assert "apt-get install dataset-fashion-mnist" in message and "--data-dir" in message


def test_a_data_dir_that_does_not_exist_is_refused_not_replaced(monkeypatch, tmp_path):
    _system_copy(monkeypatch, tmp_path)
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="does not exist; create it") as info:
        idx.locate_idx("fashion-mnist", missing)
    assert str(missing) in str(info.value)
    assert not missing.exists()  # nothing was created or downloaded


def test_a_data_dir_that_is_a_file_is_refused(monkeypatch, tmp_path):
    _system_copy(monkeypatch, tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(b"not a folder")
    with pytest.raises(DataError, match="is a file, not a folder") as info:
        idx.locate_idx("fashion-mnist", path)
    assert str(path) in str(info.value)


def test_an_empty_data_dir_names_every_missing_file_and_ignores_the_system_copy(monkeypatch, tmp_path):
    _system_copy(monkeypatch, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as info:
        idx.locate_idx("fashion-mnist", empty, allow_download=False)
    message = str(info.value)
    names = [n for n, _ in idx.IDX_DATASETS["fashion-mnist"].files.values()]
    for folder in (empty, empty / "fashion-mnist"):
        assert f"{folder}: missing {', '.join(names)}" in message
    assert str(tmp_path / "sys") not in message and "downloads are off" in message
    assert "drop --data-dir" in message


def test_a_partial_data_dir_names_only_the_missing_files(monkeypatch, tmp_path):
    _system_copy(monkeypatch, tmp_path)
    mine = tmp_path / "mine"
    write_mnist_like(mine)
    (mine / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as info:
        idx.locate_idx("fashion-mnist", mine, allow_download=False)
    assert f"{mine}: missing t10k-labels-idx1-ubyte.gz\n" in str(info.value)


def test_a_data_dir_with_the_files_is_read_and_not_the_system_copy(monkeypatch, tmp_path):
    system_arrays = _system_copy(monkeypatch, tmp_path)
    mine = write_mnist_like(tmp_path / "mine" / "fashion-mnist", seed=2)
    paths = idx.locate_idx("fashion-mnist", tmp_path / "mine", allow_download=False)
    images = read_idx(paths["train_images"])
    assert np.array_equal(images, mine["train-images-idx3-ubyte"])
    assert not np.array_equal(images, system_arrays["train-images-idx3-ubyte"])


def test_a_failed_download_into_an_empty_data_dir_says_what_is_missing_where(monkeypatch, tmp_path):
    _system_copy(monkeypatch, tmp_path)
    spec = idx.IDX_DATASETS["fashion-mnist"]
    offline = idx.IDXSpec(spec.files, ("file:///nonexistent/",), spec.system_dirs, spec.hint)
    monkeypatch.setitem(idx.IDX_DATASETS, "fashion-mnist", offline)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as info:
        idx.locate_idx("fashion-mnist", empty)
    message = str(info.value)
    assert "download failed: no mirror served train-images-idx3-ubyte.gz" in message
    assert f"{empty}: missing train-images-idx3-ubyte.gz" in message
    assert not [p for p in (empty / "fashion-mnist").iterdir()]  # nothing half-written is left


def test_load_passes_the_data_dir_check_through(monkeypatch, tmp_path):
    _system_copy(monkeypatch, tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        data.load(DataConfig("fashion-mnist", data_dir=str(tmp_path / "nowhere")))
