"""Codes out of a trained pair: q(z|x)'s mean and standard deviation (or draws) for every row of a file.

``pvae encode RUN`` encodes the run's own data, in the file's row order, with each row's split; ``--data
PATH`` encodes a new file with the same columns and kind (a table with other columns, images of another
size, or counts where the run had binary data are refused, naming the difference). ``--reconstruct`` adds
the decoder's mean at the code: the data denoised, in their own units. The codes go to ``.npz`` (every
array), ``.csv``/``.parquet`` (one row per datapoint), ``.npy`` (the means alone) or ``.h5ad`` (a copy of
the input AnnData with ``obsm["X_pvae"]`` and ``obsm["X_pvae_sd"]``, as scvi-tools writes ``X_scVI``).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyro
import torch
from pyro import poutine

from pvae.base import options
from pvae.base.device import module_device, to_device
from pvae.base.sites import Z
from pvae.data import WIDER_KINDS, DataConfig, DataError, Dataset, binarize, evaluation_split
from pvae.engine.pair import traits
from pvae.measures import memory
from pvae.measures.evaluate import decode_mean, pair_args, posterior_moments

#: Suffixes ``--out`` may have.
OUT_SUFFIXES = (".npz", ".npy", ".csv", ".parquet", ".h5ad")
#: Draws of z that estimate the mean and sd of a q(z|x) without a closed form (a flow).
MONTE_CARLO_DRAWS = 256
#: Bytes of one number of the codes (float32).
_NUMBER_BYTES = 4


@options.config
class EncodeConfig:
    """What ``pvae encode`` writes.

    :param data: a file with the run's columns and kind to encode instead of the run's own data.
    :param draws: write N draws of z per row instead of q(z|x)'s mean and sd (0: mean and sd).
    :param reconstruct: also write the decoder's mean at each row's code, in the data's own units.
    :param batch_size: rows encoded at once.
    :param seed: seed of the draws.
    :param out: .npz, .npy (the means only), .csv, .parquet or .h5ad.
    """

    data: str | None = None
    draws: int = 0
    reconstruct: bool = False
    batch_size: int = 1000
    seed: int = 0
    out: str | None = None

    def __post_init__(self):
        options.positive(self, "draws", zero=True)
        options.positive(self, "batch_size")
        options.seed(self, "seed")
        if self.out is not None:
            suffix = Path(self.out).suffix.lower()
            options.require(self, "out", suffix in OUT_SUFFIXES, f"a file ending in {', '.join(OUT_SUFFIXES)}")
            if suffix == ".npy" and self.draws:
                raise ValueError(
                    f"--out {self.out}: a .npy file holds the means alone, and --draws {self.draws} adds draws: write "
                    f"{Path(self.out).with_suffix('.npz')}, or leave --draws out"
                )


@dataclass
class Rows:
    """The rows to encode, as the model sees them.

    :param x: ``(N, ...)`` float32 on the host (standardized where the run standardizes).
    :param y: labels ``(N,)`` or ``None``.
    :param names: each row's name (a table's row number, a file's name, an ``obs_name``).
    :param split: each row's split in the run (``None`` for a new file).
    :param features: the features' names (a table's columns), or ``None``.
    """

    x: torch.Tensor
    y: torch.Tensor | None
    names: list[str]
    split: list[str] | None
    features: tuple[str, ...] | None = None


def run_rows(dataset: Dataset, data_config: DataConfig) -> Rows:
    """Every row of a run's data, as evaluation sees them: the file's rows in order for the user's own
    data, the built-in splits one after another otherwise."""
    if not data_config.is_user_data:
        parts = [evaluation_split(dataset, data_config, name) for name in ("train", "val", "test")]
        x = torch.cat([p.images() for p in parts])
        names = [f"{name}{i}" for name, p in zip(("train", "val", "test"), parts, strict=True) for i in range(len(p))]
        split = [name for name, p in zip(("train", "val", "test"), parts, strict=True) for _ in range(len(p))]
        return Rows(x, torch.cat([p.y for p in parts]), names, split)
    rows = file_rows(dataset, data_config, data_config.data)
    membership = np.empty(len(rows.x), dtype=object)
    for name in ("train", "val", "test"):
        for index in _rows_of(dataset.split(name)):
            membership[index] = name
    rows.split = [str(m) for m in membership]
    return rows


def _rows_of(split) -> list[int]:
    """The file rows a split of the user's data holds."""
    return split.origin.tolist()


def file_rows(dataset: Dataset, data_config: DataConfig, path: str) -> Rows:
    """The rows of ``path`` read as the run read its data, checked against it and standardized with its
    training statistics.

    :raises DataError: for a file whose features, datapoint shape or kind differ from the run's.
    """
    from pvae.data import userdata

    arrays = userdata.read(path, data_config)
    x = arrays.x
    if dataset.features is not None and arrays.features != dataset.features:
        missing = [f for f in dataset.features if f not in (arrays.features or ())]
        extra = [f for f in (arrays.features or ()) if f not in dataset.features]
        raise DataError(
            f"{path} has other columns than the run's data: missing {missing[:5] or 'none'}, extra "
            f"{extra[:5] or 'none'}{'' if missing or extra else ' (the same columns in another order: reorder them)'}"
        )
    if tuple(x.shape[1:]) != tuple(dataset.x_shape):
        raise DataError(
            f"{path} holds datapoints of shape {tuple(x.shape[1:])}; the run was trained on {dataset.x_shape}"
        )
    found = userdata.find_kind(x, path, arrays.levels)
    if dataset.kind not in WIDER_KINDS[found]:
        raise DataError(
            f"{path} holds {userdata.KIND_WORDS[found]}, the run's data were {dataset.kind}: it cannot encode them"
        )
    chunks = []
    for _, part in userdata.row_chunks(x):
        part = torch.from_numpy(part).reshape(len(part), *dataset.x_shape)
        if arrays.levels is not None:
            part = part / arrays.levels
        chunks.append(part.float())
    values = torch.cat(chunks)
    if dataset.standardized:
        values = (values - dataset.train.loc) / dataset.train.scale
    if dataset.binarize != "none":  # as evaluation binarizes: once, with a fixed seed
        values = binarize(values, torch.Generator().manual_seed(data_config.data_seed + 2))
    y = None if arrays.y is None else torch.from_numpy(arrays.y)
    names = list(arrays.rows) if arrays.rows is not None else [str(i) for i in range(len(values))]
    return Rows(values, y, names, None, arrays.features)


@torch.no_grad()
def encode(
    model: torch.nn.Module,
    guide: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    draws: int = 0,
    batch_size: int = 1000,
) -> dict[str, torch.Tensor]:
    """q(z|x) of every row of ``x``, a batch at a time, once :func:`check_encode_memory` has found room for them.

    :returns: ``{"mean": (N, d), "sd": (N, d)}`` — the closed form where q(z|x) has one (a diagonal or
        full-rank Gaussian), else estimated from :data:`MONTE_CARLO_DRAWS` draws; with ``draws``,
        ``{"draws": (N, draws, d)}`` instead. On the host.
    :raises ValueError: for codes that would not fit in the memory available, before any is computed.
    """
    pair = traits(model, guide)
    device = module_device(guide)
    if pair.z_dim is not None:
        check_encode_memory(len(x), pair.z_dim, draws, batch_size, device)
    out: dict[str, list] = {}
    for start in range(0, len(x), batch_size):
        xb = to_device(x[start : start + batch_size], device)
        yb = None if y is None else to_device(y[start : start + batch_size], device)
        args = pair_args(pair, xb, yb)
        for key, value in _codes(guide, args, draws).items():
            out.setdefault(key, []).append(value.cpu())
    return {key: torch.cat(values) for key, values in out.items()}


def check_encode_memory(
    rows: int,
    z_dim: int,
    draws: int = 0,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
    available: int | None = None,
) -> int:
    """Refuse codes that need more memory than there is, before any is computed.

    The codes are ``rows × draws × z_dim`` float32 numbers with ``draws`` (``rows × 2 × z_dim``, a mean and
    an sd, without), on the host, where they are held twice while the batches are joined; a batch draws
    ``batch × draws × z_dim`` numbers (``batch ×`` :data:`MONTE_CARLO_DRAWS` ``× z_dim`` for a q(z|x) whose
    moments are estimated) on ``device``.

    :param rows: rows to encode.
    :param z_dim: dimension of z.
    :param draws: draws of z per row (0: the mean and sd).
    :param batch_size: rows encoded at once.
    :param device: where the guide runs.
    :param available: bytes available on the host (default: :func:`pvae.measures.memory.available_memory`).
    :returns: the bytes the codes need on the host (the estimate).
    :raises ValueError: naming the estimate, what is available and the fix.
    """
    device, gb = torch.device(device), memory.format_bytes
    rows_at_once, batch_draws = min(batch_size, rows), draws or MONTE_CARLO_DRAWS
    codes = rows * (draws or 2) * z_dim * _NUMBER_BYTES
    batch = rows_at_once * batch_draws * z_dim * _NUMBER_BYTES
    host = 2 * codes + (batch if device.type == "cpu" else 0)  # the batches and the array they are joined into
    if available is None:
        available = memory.available_memory("cpu")
    if available is not None and host > available:
        if draws:
            what = f"--draws {draws} asks for {rows} rows × {draws} draws × {z_dim} dimensions of z"
            fix = "lower --draws (--draws 0 writes q(z|x)'s mean and sd), or encode part of the rows (--data PART)"
        else:
            what = f"q(z|x)'s mean and sd of {rows} rows × {z_dim} dimensions of z"
            fix = "encode part of the rows (--data PART)"
        raise ValueError(
            f"{what}: {gb(codes)} of codes, about {gb(host)} while they are gathered; this machine has "
            f"{gb(available)} available: {fix}"
        )
    on_device = memory.available_memory(device) if device.type != "cpu" else None
    if on_device is not None and 2 * batch > on_device:
        raise ValueError(
            f"a batch of {rows_at_once} rows × {batch_draws} draws × {z_dim} dimensions of z needs about "
            f"{gb(2 * batch)}, {device} has {gb(on_device)} free: lower --batch-size{' or --draws' if draws else ''}"
        )
    return codes


def _codes(guide, args: tuple, draws: int) -> dict[str, torch.Tensor]:
    if draws:
        with pyro.plate("draws", draws, dim=-2):
            value = poutine.trace(guide).get_trace(*args).nodes[Z]["value"]  # (draws, batch, d)
        return {"draws": value.transpose(0, 1)}
    mean, sd = posterior_moments(guide, *args, num_samples=MONTE_CARLO_DRAWS)
    return {"mean": mean, "sd": sd}


def reconstruct(model, dataset: Dataset, mean: torch.Tensor, y: torch.Tensor | None, batch_size: int) -> torch.Tensor:
    """The decoder's mean at each code, in the units of the data as given: ``(N, *x_shape)``."""
    label = traits(model).decodes_labels
    parts = [
        decode_mean(model, mean[i : i + batch_size], None if (y is None or not label) else y[i : i + batch_size])
        for i in range(0, len(mean), batch_size)
    ]
    return dataset.unstandardize(torch.cat(parts))


def column_names(key: str, shape: tuple[int, ...], features: tuple[str, ...] | None = None) -> list[str]:
    """The table columns of one array of :func:`encode`'s, in the order of its numbers flattened: latent
    dimensions are ``z0``, ``z1``, … (0-based, as Python indexes them and the figures name them), so the
    columns are ``mean_z0``, ``sd_z0``, ``draw0_z0``, ``draw0_z1``, …; a reconstruction's are
    ``reconstruction_`` and each feature's name (a table's columns) or number (0-based, in pixel order).

    :param key: ``mean``, ``sd``, ``draws`` or ``reconstruction``.
    :param shape: the array's shape past its rows: ``(d,)``, ``(draws, d)`` or the datapoints' shape.
    :param features: the features' names, for a reconstruction.
    """
    if key in ("mean", "sd"):
        return [f"{key}_z{j}" for j in range(shape[0])]
    if key == "draws":
        return [f"draw{k}_z{j}" for k in range(shape[0]) for j in range(shape[1])]
    size = int(np.prod(shape))
    names = features if features is not None and len(features) == size else range(size)
    return [f"{key}_{name}" for name in names]


def write_codes(path: Path, codes: dict[str, torch.Tensor], rows: Rows, source: str | None) -> None:
    """Write the codes (and reconstructions) of ``rows`` to ``path``, by its suffix, atomically.

    :param source: the ``.h5ad`` the rows came from (for an ``.h5ad`` output).
    :raises DataError: for an ``.h5ad`` output of data that did not come from one.
    """
    from pvae.base.files import atomic_write

    suffix = path.suffix.lower()
    arrays = {k: v.numpy() for k, v in codes.items()}
    columns = {"row": np.array(rows.names)}
    if rows.y is not None:
        columns["label"] = rows.y.numpy()
    if rows.split is not None:
        columns["split"] = np.array(rows.split)
    if suffix == ".npz":
        atomic_write(path, lambda handle: np.savez(handle, **arrays, **columns))
    elif suffix == ".npy":
        atomic_write(path, lambda handle: np.save(handle, arrays["mean"]))
    elif suffix in (".csv", ".parquet"):
        import pandas as pd

        for key, value in arrays.items():
            flat = value.reshape(len(value), -1)
            columns.update(dict(zip(column_names(key, value.shape[1:], rows.features), flat.T, strict=True)))
        table = pd.DataFrame(columns)  # at once: adding columns one by one fragments the frame
        if suffix == ".csv":
            atomic_write(path, lambda handle: handle.write(table.to_csv(index=False).encode()))
        else:
            atomic_write(path, lambda handle: table.to_parquet(handle))
    else:
        if source is None or Path(source).suffix.lower() != ".h5ad":
            raise DataError(f"--out {path}: an .h5ad output is a copy of the .h5ad the data came from; these did not")
        import anndata

        adata = anndata.read_h5ad(source)
        if "mean" in arrays:
            adata.obsm["X_pvae"], adata.obsm["X_pvae_sd"] = arrays["mean"], arrays["sd"]
        else:
            adata.obsm["X_pvae_draws"] = arrays["draws"].reshape(len(arrays["draws"]), -1)
        if "reconstruction" in arrays:
            adata.layers["pvae_reconstruction"] = arrays["reconstruction"].reshape(adata.shape)
        temporary = path.with_name(f".{path.name}.writing.h5ad")
        adata.write_h5ad(temporary)  # anndata writes to a path; the rename makes it whole or absent
        temporary.replace(path)
