"""Sample quality: a feature space that works offline (a per-dataset classifier) and the standard Inception."""

from pvae.quality.classifier import (
    FeatureClassifier,
    classifier_path,
    embed,
    load_classifier,
    predict,
    train_classifier,
)
from pvae.quality.inception import INCEPTION_ENV, inception_features, inception_locations, load_inception

__all__ = [
    "INCEPTION_ENV",
    "FeatureClassifier",
    "classifier_path",
    "embed",
    "inception_features",
    "inception_locations",
    "load_classifier",
    "load_inception",
    "predict",
    "train_classifier",
]
