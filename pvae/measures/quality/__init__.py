"""Sample quality: how close generated images come to real ones, and how sharp they are (``pvae quality``).

The feature space works offline: a small classifier trained once per dataset on its grey-level training
split and cached beside the data (:mod:`~pvae.measures.quality.classifier`); the standard Inception-v3 of the FID
is used only where its weights are given (:mod:`~pvae.measures.quality.inception`). One file per measure, each a
public function on arrays and a pure private core: the Fréchet distance between Gaussians fitted to two
sets of features (:mod:`~pvae.measures.quality.frechet`, Heusel et al. 2017), precision and recall with
k-nearest-neighbour manifolds (:mod:`~pvae.measures.quality.precision_recall`, Kynkäänniemi et al. 2019), and the
sharpness of images from their power spectrum and gradients (:mod:`~pvae.measures.quality.sharpness`).
:mod:`~pvae.measures.quality.score` scores a trained pair's images with them.
"""

from pvae.measures.quality.classifier import (
    FeatureClassifier,
    classifier_path,
    embed,
    load_classifier,
    predict,
    train_classifier,
)
from pvae.measures.quality.frechet import compute_frechet, frechet_distance, gaussian_moments
from pvae.measures.quality.inception import INCEPTION_ENV, inception_features, inception_locations, load_inception
from pvae.measures.quality.precision_recall import precision_recall
from pvae.measures.quality.sharpness import gradient_magnitude, high_frequency_fraction, radial_spectrum, sharpness

__all__ = [
    "INCEPTION_ENV",
    "FeatureClassifier",
    "classifier_path",
    "compute_frechet",
    "embed",
    "frechet_distance",
    "gaussian_moments",
    "gradient_magnitude",
    "high_frequency_fraction",
    "inception_features",
    "inception_locations",
    "load_classifier",
    "load_inception",
    "precision_recall",
    "predict",
    "radial_spectrum",
    "sharpness",
    "train_classifier",
]
