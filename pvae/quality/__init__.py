"""Sample quality: how close generated images come to real ones, and how sharp they are.

One file per measure, each a public function on arrays and a pure private core: the Fréchet distance between
Gaussians fitted to two sets of features (:mod:`~pvae.quality.frechet`, Heusel et al. 2017), precision and recall
with k-nearest-neighbour manifolds (:mod:`~pvae.quality.precision_recall`, Kynkäänniemi et al. 2019), and the
sharpness of images from their power spectrum and gradients (:mod:`~pvae.quality.sharpness`). The features are
any network's; each docstring states the math and cites the paper.
"""

from pvae.quality.frechet import compute_frechet, frechet_distance, gaussian_moments
from pvae.quality.precision_recall import precision_recall
from pvae.quality.sharpness import gradient_magnitude, high_frequency_fraction, radial_spectrum, sharpness

__all__ = [
    "compute_frechet",
    "frechet_distance",
    "gaussian_moments",
    "gradient_magnitude",
    "high_frequency_fraction",
    "precision_recall",
    "radial_spectrum",
    "sharpness",
]
