"""Improved precision and recall of a generative model (Kynkäänniemi et al. 2019, "Improved Precision and Recall
Metric for Assessing Generative Models", Sec. 2).

Each set of features is taken as a sample of a manifold, estimated as the union of balls around its points, each
ball's radius the distance from its point to the k-th nearest other point of the same set (the point itself
excluded; k = 3 as in the paper):

    manifold(Φ) = ∪_{φ ∈ Φ} B(φ, NN_k(φ, Φ)),
    precision = share of the fake points inside manifold(Φ_real)   (how many samples look real),
    recall    = share of the real points inside manifold(Φ_fake)   (how much of the data the samples cover).

A fake point on a real one is inside the real manifold, so two identical sets score exactly 1 and 1; a model that
draws only some of the classes keeps its precision and loses recall; noise on the samples costs precision. Both
scores depend on k, on the number of points and on the features' dimension: two samples of 10,000 points of one
isotropic 128-D Gaussian score about 0.5 and 0.5, two halves of scikit-learn's digits (64 pixels, 898 points)
about 0.9 and 0.9. Compare scores at equal counts, and beside those of real images against real images.

Distances are computed in float64 in blocks of ``batch_size`` rows, as ‖a‖² + ‖b‖² − 2 a·b on features centred on
the pooled mean (one matrix product a block); memory grows as batch_size × n, about 250 MB for 1,000 × 10,000.
Comparisons are between squared distances, and a pair within rounding (10⁻¹⁰ of ‖a‖² + ‖b‖²) of a radius counts as
inside, so that a repeated point is inside its copy's zero-radius ball.
"""

import numbers

import torch

from pvae.measures.quality._arrays import as_features, same_width

# squared distances from the expansion carry rounding of about f·eps·(‖a‖² + ‖b‖²); f up to ~10⁵ stays below it
_ROUNDING = 1e-10


def precision_recall(real, fake, k: int = 3, batch_size: int = 1000) -> dict:
    """Precision and recall of ``fake`` against ``real`` with k-nearest-neighbour manifolds (module docstring).

    :param real: features ``(n, f)`` of real images, n ≥ k + 1.
    :param fake: features ``(m, f)`` of generated images, from the same network, m ≥ k + 1.
    :param k: the neighbour whose distance is a ball's radius.
    :param batch_size: rows of a block of distances (memory ~ 3 × 8 × batch_size × max(n, m) bytes).
    :returns: ``precision`` and ``recall`` (in [0, 1]), ``k``, and the counts ``real`` and ``fake``.
    :raises ValueError: for widths that differ, fewer than k + 1 rows, non-finite values, or k or batch_size < 1.
    """
    for name, value in (("k", k), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(
                f"precision_recall: {name} must be a positive integer, got {value!r} (the default is "
                f"{3 if name == 'k' else 1000})"
            )
    k, batch_size = int(k), int(batch_size)
    real_array = as_features(real, "real features", min_points=1)
    fake_array = as_features(fake, "fake features", min_points=1)
    same_width(real_array, fake_array)
    for name, array in (("real", real_array), ("fake", fake_array)):
        if len(array) < k + 1:
            raise ValueError(
                f"{len(array)} {name} points are too few for k={k}: a point's radius is the distance to its k-th "
                f"nearest other point, so pass at least k + 1 = {k + 1} points or a smaller k"
            )
    precision, recall = _compute_precision_recall(
        torch.from_numpy(real_array), torch.from_numpy(fake_array), k, batch_size
    )
    return {"precision": precision, "recall": recall, "k": k, "real": len(real_array), "fake": len(fake_array)}


def _compute_precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int, batch_size: int) -> tuple[float, float]:
    """Precision and recall from float64 features ``(n, f)`` and ``(m, f)``, n, m ≥ k + 1."""
    # distances do not change under a shift; centring shrinks the norms, and with them the rounding
    center = torch.cat([real, fake]).mean(0)
    real, fake = real - center, fake - center
    real_radii = _knn_radii(real, k, batch_size)
    fake_radii = _knn_radii(fake, k, batch_size)
    precision = _inside(fake, real, real_radii, batch_size).double().mean()
    recall = _inside(real, fake, fake_radii, batch_size).double().mean()
    return float(precision), float(recall)


def _squared_distances(a: torch.Tensor, b: torch.Tensor, a_sq: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    """‖a_i − b_j‖² ``(len(a), len(b))`` from the rows and their squared norms."""
    return torch.addmm(a_sq[:, None] + b_sq[None, :], a, b.T, alpha=-2.0).clamp_min_(0.0)


def _knn_radii(points: torch.Tensor, k: int, batch_size: int) -> torch.Tensor:
    """The squared distance ``(n,)`` from each point to its k-th nearest other point."""
    norms = (points**2).sum(1)
    radii = torch.empty(len(points), dtype=points.dtype)
    for start in range(0, len(points), batch_size):
        stop = min(start + batch_size, len(points))
        block = _squared_distances(points[start:stop], points, norms[start:stop], norms)  # (block, n)
        rows = torch.arange(stop - start)
        block[rows, rows + start] = torch.inf  # the point itself is no neighbour
        # topk: 7 times faster than kthvalue on a (1000, 10000) block
        radii[start:stop] = block.topk(k, dim=1, largest=False).values[:, -1]
    return radii


def _inside(queries: torch.Tensor, points: torch.Tensor, radii: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Whether each query ``(q,)`` lies in some ball around ``points`` with the squared ``radii``."""
    query_norms, point_norms = (queries**2).sum(1), (points**2).sum(1)
    inside = torch.empty(len(queries), dtype=torch.bool)
    for start in range(0, len(queries), batch_size):
        stop = min(start + batch_size, len(queries))
        block = _squared_distances(queries[start:stop], points, query_norms[start:stop], point_norms)
        slack = (query_norms[start:stop, None] + point_norms[None, :]).mul_(_ROUNDING)  # (block, n)
        inside[start:stop] = (block.sub_(radii[None, :]) <= slack).any(1)
    return inside
