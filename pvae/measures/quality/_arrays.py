"""What the sample-quality metrics check of their inputs: feature arrays ``(n, f)`` and images ``(n, C, H, W)``."""

import numpy as np
import torch


def as_features(features, name: str, *, min_points: int = 1) -> np.ndarray:
    """``features`` as a finite float64 array ``(n, f)``, refused with the fix when it is not one.

    :param features: an array or tensor ``(n, f)``: one row of features per image.
    :param name: what the caller calls it, for the message.
    :param min_points: the fewest rows the caller can work with.
    :raises ValueError: for another shape, too few rows, or a NaN or infinity.
    """
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu()
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(
            f"{name} must be a 2-D array (n, f) of features, one row per image, got shape {array.shape}; "
            f"reshape a single feature with features.reshape(-1, 1), flatten images with features.reshape(n, -1)"
        )
    if len(array) < min_points:
        raise ValueError(f"{name} has {len(array)} rows; pass at least {min_points} (one row of features per image)")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array).all(axis=1)).sum())
        raise ValueError(
            f"{name} holds NaN or infinite values in {bad} of its {len(array)} rows; drop those rows "
            f"(features[np.isfinite(features).all(1)]) or find where the model or embedding overflowed"
        )
    return array


def same_width(real: np.ndarray, fake: np.ndarray) -> None:
    """Refuse two feature arrays of different widths (features of different networks or layers)."""
    if real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"real features have {real.shape[1]} columns and fake features {fake.shape[1]}: embed both sets of "
            f"images with the same network and layer"
        )


def as_images(images, name: str = "images") -> torch.Tensor:
    """``images`` as a finite floating-point tensor ``(n, C, H, W)`` on the CPU with H, W ≥ 2, refused with the fix
    otherwise; its dtype is kept (the callers convert chunk by chunk, to bound memory).

    :param images: a tensor or array ``(n, C, H, W)`` of pixels in [0, 1] (floating point or boolean).
    :param name: what the caller calls it, for the message.
    :raises ValueError: for another shape, integer pixels, or a NaN or infinity.
    """
    if not isinstance(images, torch.Tensor):
        images = torch.as_tensor(np.asarray(images))
    if images.ndim != 4:
        hint = (
            "add the channel axis with images.unsqueeze(1)"
            if images.ndim == 3
            else "add the batch and channel axes with images[None, None]"
            if images.ndim == 2
            else "reshape them to (n, C, H, W)"
        )
        raise ValueError(f"{name} must be 4-D (n, C, H, W), got shape {tuple(images.shape)}; {hint}")
    n, c, h, w = images.shape
    if n == 0 or c == 0 or h < 2 or w < 2:
        raise ValueError(
            f"{name} of shape {tuple(images.shape)}: pass at least one image (n ≥ 1, C ≥ 1) of at least 2 × 2 "
            f"pixels (n, C, H, W)"
        )
    if images.dtype == torch.bool:
        images = images.to(torch.float32)
    if not images.is_floating_point():
        raise ValueError(
            f"{name} have integer pixels ({images.dtype}); pass grey levels in [0, 1], e.g. images.float() / 255"
        )
    images = images.detach().cpu()
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} hold NaN or infinite pixels; clamp or drop them (pixels in [0, 1])")
    return images
