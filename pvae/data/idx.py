"""IDX files (the format of MNIST and its kin): reading, writing, finding and downloading them.

A dataset's four files (train and test images and labels) are looked for in one folder. Given
``data_dir`` (``--data-dir``), only that folder is used, directly or in a subfolder named after the
dataset, and a download goes there; without it, ``$PVAE_DATA``, ``~/.cache/pvae`` and the
dataset's system folders are searched. Downloads come from the canonical mirrors and are checked
against the published MD5 sums before they are kept.
"""

import gzip
import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pvae.base.files import atomic_write

#: Where the Debian package ``dataset-fashion-mnist`` installs the real Fashion-MNIST.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
#: Environment variable naming a directory of datasets.
DATA_ENV = "PVAE_DATA"


class DataError(ValueError):
    """A dataset is missing, corrupt or does not fit the request."""


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file of unsigned bytes (plain or gzipped) into an array.

    The format: two zero bytes, the type code ``0x08`` (unsigned byte), the number of
    dimensions, one big-endian 32-bit size per dimension, then the data.

    :raises DataError: naming the file when it is truncated, corrupt or not an IDX file.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: cannot be read as {'gzip' if path.suffix == '.gz' else 'IDX'}: {error}") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: bad magic number {raw[:4].hex() or '(empty file)'}: not an IDX file")
    if raw[2] != 0x08:
        raise DataError(f"{path}: IDX type code 0x{raw[2]:02x} is not supported; pvae reads unsigned bytes (0x08)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes for {ndim} dimensions)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(
            f"{path}: wrong size: {len(raw)} bytes where the header's shape {shape} needs {expected}"
            " (the file is truncated or corrupt; delete it and fetch it again)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write an array of unsigned bytes as an IDX file (gzipped when ``path`` ends in ``.gz``)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as handle:
        handle.write(header + array.tobytes())


@dataclass(frozen=True)
class IDXSpec:
    """Where an IDX dataset comes from.

    :param files: role (``train_images``, ``train_labels``, ``test_images``, ``test_labels``) →
        (file name, MD5 of the file as the mirrors serve it).
    :param mirrors: base URLs tried in order.
    :param system_dirs: directories where a system package installs the files.
    :param hint: how to get the files, shown when none are found.
    """

    files: dict[str, tuple[str, str]]
    mirrors: tuple[str, ...]
    system_dirs: tuple[Path, ...] = ()
    hint: str = ""


def _mnist_files(md5: tuple[str, str, str, str]) -> dict[str, tuple[str, str]]:
    names = (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    )
    roles = ("train_images", "train_labels", "test_images", "test_labels")
    return {role: (name, digest) for role, name, digest in zip(roles, names, md5, strict=True)}


#: The 28×28 IDX datasets.
IDX_DATASETS: dict[str, IDXSpec] = {
    "mnist": IDXSpec(
        files=_mnist_files(
            (
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "9fb629c4189551a2d022fa330f9573f3",
                "ec29112dd5afa0611ce80d1b7f02629c",
            )
        ),
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    ),
    "fashion-mnist": IDXSpec(
        files=_mnist_files(
            (
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bef4ecab320f06d8554ea6380940ec79",
                "bb300cfdad3c16e7a12a480ee83cd310",
            )
        ),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        system_dirs=(DEBIAN_FASHION_MNIST,),
        hint="on Debian/Ubuntu: `apt-get install dataset-fashion-mnist`; or pass --data-dir",
    ),
    "kmnist": IDXSpec(
        files=_mnist_files(
            (
                "bdb82020997e1d708af4cf47b453dcf7",
                "e144d726b3acfaa3e44228e80efcd344",
                "5c965bf0a639b31b8f53240b1b52f4d7",
                "7320c461ea6c1c855c0b718fb2a4b134",
            )
        ),
        mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
    ),
}


def default_data_dir() -> Path:
    """``$PVAE_DATA`` if set, else ``~/.cache/pvae``: where downloads go without ``--data-dir``."""
    return Path(os.environ.get(DATA_ENV) or Path.home() / ".cache" / "pvae")


def search_dirs(name: str, system_dirs: tuple[Path, ...] = ()) -> list[Path]:
    """Where dataset ``name`` is looked for when no ``data_dir`` is given, in order:
    ``$PVAE_DATA`` and the default data directory, each directly and in a subfolder ``name``,
    then ``system_dirs``.

    :param name: the dataset's name.
    :param system_dirs: where a system package installs it.
    """
    roots = [Path(os.environ[DATA_ENV])] if os.environ.get(DATA_ENV) else []
    roots.append(default_data_dir())
    dirs = [d for root in roots for d in (root, root / name)]
    return list(dict.fromkeys([*dirs, *system_dirs]))


def _find(directory: Path, file_name: str) -> Path | None:
    """The file in ``directory``, gzipped as served or already unpacked."""
    for candidate in (directory / file_name, directory / file_name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def download(url: str, target: Path, md5: str) -> Path:
    """Fetch ``url`` to ``target``, verifying its MD5 before the file appears under its name.

    :raises DataError: when the checksum fails (nothing is left at ``target``).
    """

    def fetch(out) -> None:
        digest = hashlib.md5()
        with urllib.request.urlopen(url, timeout=60) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != md5:
            raise DataError(f"{url}: checksum failed (MD5 {digest.hexdigest()}, expected {md5}); the file was not kept")

    atomic_write(target, fetch)
    return target


def locate_idx(name: str, data_dir: str | os.PathLike | None = None, allow_download: bool = True) -> dict[str, Path]:
    """Find (or download) the four IDX files of dataset ``name``.

    With ``data_dir``, only ``data_dir`` and ``data_dir/name`` are searched, and a download goes
    into ``data_dir/name``; no other folder is used, so the files read are the ones asked for.
    Without it, ``$PVAE_DATA``, ``~/.cache/pvae`` (each directly and in a subfolder named after
    the dataset) and the dataset's system directories are searched in that order, and a download
    goes into the default data directory. A folder must hold all four files to be used; every
    downloaded file's MD5 is checked.

    :param name: a key of :data:`IDX_DATASETS`.
    :param data_dir: the folder of the files (``--data-dir``); it must exist.
    :param allow_download: whether missing files may be downloaded.
    :returns: role (``train_images``, ``train_labels``, ``test_images``, ``test_labels``) → file.
    :raises DataError: when ``data_dir`` is missing or a file, or the files are neither found nor
        downloaded; the message says where it looked, which files are missing and how to get them.
    """
    spec = IDX_DATASETS[name]
    if data_dir is not None:
        root = Path(data_dir)
        check_data_dir(root, name)
        searched, target_dir = [root, root / name], root / name
    else:
        searched, target_dir = search_dirs(name, spec.system_dirs), default_data_dir() / name
    for directory in searched:
        found = {role: _find(directory, file_name) for role, (file_name, _) in spec.files.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    error = None
    if allow_download:
        try:
            return {
                role: _find(target_dir, file_name) or _download_any(spec, file_name, target_dir / file_name, md5)
                for role, (file_name, md5) in spec.files.items()
            }
        except (OSError, DataError) as failure:
            error = failure
    raise DataError(_not_found(name, spec, searched, data_dir, allow_download, error))


def check_data_dir(root: Path, name: str, holds: str | None = None) -> None:
    """Refuse a ``--data-dir`` that is a file or does not exist, saying what to pass instead.

    :param root: the folder given.
    :param name: the dataset asked for.
    :param holds: what the folder should hold, in words (the IDX files by default, which pvae can
        download into it).
    :raises DataError: when ``root`` is not an existing folder.
    """
    what = holds or f"the {name} IDX files"
    if root.is_file():
        raise DataError(f"--data-dir {root} is a file, not a folder; pass the folder that holds {what}")
    if not root.is_dir():
        writes = f"pvae downloads {name} into it" if holds is None else f"pvae writes {name} into it"
        raise DataError(
            f"--data-dir {root} does not exist; create it ({writes}) or pass the folder that holds "
            + ("the IDX files" if holds is None else holds)
        )


def _not_found(
    name: str, spec: IDXSpec, searched: list[Path], data_dir, allow_download: bool, error: Exception | None
) -> str:
    """What is missing where, why no download filled the gap, and how to get the files."""
    names = [file_name for file_name, _ in spec.files.values()]
    if data_dir is not None:
        missing = {d: [n for n in names if _find(d, n) is None] for d in searched}
        where = "\n  ".join(f"{d}: missing {', '.join(m)}" for d, m in missing.items())
        how = f"put the four files in {searched[0]} (or {searched[1]}), or drop --data-dir to use the default folders"
    else:
        where = "\n  ".join(str(d) for d in searched)
        how = spec.hint or "pass --data-dir to a folder holding the four IDX files, or allow the download"
    tried = f"\ndownload failed: {error}" if error else ("" if allow_download else "\n(downloads are off)")
    return f"dataset {name!r} not found. Looked for {', '.join(names)} in:\n  {where}{tried}\nTo get it: {how}."


def _download_any(spec: IDXSpec, file_name: str, target: Path, md5: str) -> Path:
    last: Exception | None = None
    for mirror in spec.mirrors:
        try:
            return download(mirror + file_name, target, md5)
        except (OSError, DataError) as error:  # URLError is an OSError
            last = error
    raise DataError(f"no mirror served {file_name}: {last}")
