"""Figures of a disentanglement study (``pvae disentangle``): how much each latent dimension tells about
each ground-truth factor. The traversals of a run are drawn by :func:`pvae.plots.run.plot_traversals`.
"""

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def plot_mutual_information(
    matrix: np.ndarray,
    factor_names: Sequence[str],
    entropies: np.ndarray | None = None,
    dims: Sequence[int] | None = None,
) -> Figure:
    """Heatmap of the mutual information I(v_k; z_j) between factors (rows) and latent dimensions
    (columns), each cell annotated with its value.

    With ``entropies``, each row is divided by its factor's entropy H(v_k), so a cell reads as the
    fraction of the factor's information that the dimension holds (1 for a dimension that determines
    the factor; MIG, Chen et al. 2018, is the gap between a row's two largest such fractions).

    :param matrix: ``(F, d)`` mutual information in nats, e.g. from
        ``pvae.measures.disentangle.mutual_information_matrix``.
    :param factor_names: the ``F`` factors' names, in the rows' order.
    :param entropies: ``(F,)`` entropy of each factor in nats, all positive; None draws the MI in nats.
    :param dims: the ``d`` latent dimensions the columns are, for their labels (None: 0 … d−1), e.g. a
        selection of the active ones.
    :raises ValueError: when the names, entropies or dimensions do not match the matrix's shape, or an
        entropy is not positive.
    """
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2:
        raise ValueError(f"the mutual-information matrix must be (factors, dims), got shape {matrix.shape}")
    num_factors, num_dims = matrix.shape
    if len(factor_names) != num_factors:
        raise ValueError(f"{len(factor_names)} factor names for {num_factors} rows: give one name per factor")
    dims = list(range(num_dims)) if dims is None else list(dims)
    if len(dims) != num_dims:
        raise ValueError(f"{len(dims)} dimension labels for {num_dims} columns: give one per column")
    label = "I(factor; z_j), nats"
    if entropies is not None:
        entropies = np.asarray(entropies, dtype=float)
        if entropies.shape != (num_factors,) or not (entropies > 0).all():
            raise ValueError(
                f"entropies must be {num_factors} positive numbers (nats), one per factor, got {entropies.tolist()}"
            )
        matrix = matrix / entropies[:, None]
        label = "I(factor; z_j) / H(factor)"
    fig, ax = plt.subplots(figsize=(0.6 * num_dims + 2.4, 0.5 * num_factors + 1.4))
    top = 1.0 if entropies is not None else max(float(matrix.max()), 1e-12)
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=top, aspect="auto")
    for (k, j), value in np.ndenumerate(matrix):
        # light text on the dark low end of viridis, dark text on its bright high end
        ax.text(j, k, f"{value:.2f}", ha="center", va="center", fontsize=8, color="w" if value < 0.6 * top else "k")
    ax.set_xticks(range(num_dims), [f"z{d}" for d in dims])
    ax.set_yticks(range(num_factors), list(factor_names))
    ax.set_xlabel("latent dimension")
    ax.set_title("mutual information between factors and latent dimensions")
    fig.colorbar(image, ax=ax, label=label)
    fig.tight_layout()
    return fig
