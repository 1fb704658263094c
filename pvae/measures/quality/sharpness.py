"""How sharp images are: the share of their power at high spatial frequencies, and their mean gradient magnitude.

A VAE's decoded means are blurry because a mean averages over what the posterior and the likelihood leave
uncertain, as any prediction under a pixel-wise loss averages the images it cannot tell apart (Dosovitskiy & Brox
2016, "Generating Images with Perceptual Similarity Metrics based on Deep Networks"; Zhao et al. 2017, "Towards
Deeper Understanding of Variational Autoencoding Models"); blur removes power at high spatial frequencies first.
Both measures compare images of one size with each other (data, reconstructions, samples); neither is an
absolute score.

- **The radially averaged power spectrum** (van der Schaaf & van Hateren 1996, "Modelling the power spectra of
  natural images"; used for generated images by Durall et al. 2020, "Watch your Up-Convolution"): the power
  ``|F(u, v)|²`` of the 2-D discrete Fourier transform of each mean-removed image (its zero-frequency coefficient set
  to 0), averaged over images and channels, then over rings of equal radial frequency ρ = √(u² + v²) in cycles
  per pixel. Rings are 1 / max(H, W) wide, each reported at the mean ρ of its frequencies; the ring at 0 (the
  mean) is left out, and the spectrum is normalised to sum 1 to compare shapes. Nyquist is ρ = 0.5 along an axis;
  the corners of the frequency square reach √2 / 2 (a checkerboard lies there, at Nyquist along both axes).
- **The high-frequency fraction**: the share of the total (mean-removed) power at ρ > ``cutoff``, summed over the
  2-D frequencies, not over the ring averages. Images without any variation have no power: fraction 0.
- **The gradient magnitude**: the mean over images, channels and pixels of √(∂x² + ∂y²), with forward
  differences ∂x = I[i, j+1] − I[i, j], ∂y = I[i+1, j] − I[i, j] on the (H − 1) × (W − 1) pixels that have both,
  in grey levels per pixel (it scales with contrast, so compare images in [0, 1]).

Images are processed in chunks of 500 in float64.
"""

import numbers

import numpy as np
import torch

from pvae.measures.quality._arrays import as_images

_CHUNK = 500
# non-zero-frequency power below this share of the zero-frequency power is rounding of a constant image
_NO_POWER = 1e-24


def radial_spectrum(images) -> tuple[np.ndarray, np.ndarray]:
    """The radially averaged power spectrum of mean-removed images (module docstring).

    :param images: ``(n, C, H, W)`` pixels in [0, 1].
    :returns: the ring frequencies ``(r,)`` in cycles per pixel (increasing, > 0) and the ring-averaged power
        ``(r,)``, normalised to sum 1 (all zeros for images without any variation).
    :raises ValueError: for images that are not 4-D, smaller than 2 × 2, or not finite.
    """
    return _radial_average(_mean_power(as_images(images)))


def high_frequency_fraction(images, cutoff: float = 0.25) -> float:
    """The share of the mean-removed images' power at radial frequencies above ``cutoff`` (module docstring).

    :param images: ``(n, C, H, W)`` pixels in [0, 1].
    :param cutoff: in cycles per pixel, in (0, 0.5) (0.5 is Nyquist).
    :returns: the fraction in [0, 1]; 0 for images without any variation.
    :raises ValueError: for a cutoff outside (0, 0.5), or images that are not 4-D, smaller than 2 × 2, or not finite.
    """
    cutoff = _check_cutoff(cutoff)
    return _high_fraction(_mean_power(as_images(images)), cutoff)


def gradient_magnitude(images) -> float:
    """The mean of √(∂x² + ∂y²) over images, channels and pixels, with forward differences (module docstring).

    :param images: ``(n, C, H, W)`` pixels in [0, 1].
    :returns: the mean gradient magnitude in grey levels per pixel; 0 for constant images.
    :raises ValueError: for images that are not 4-D, smaller than 2 × 2, or not finite.
    """
    return _gradient_magnitude(as_images(images))


def sharpness(images, cutoff: float = 0.25) -> dict:
    """Every sharpness measure of a set of images, the Fourier transforms taken once.

    :param images: ``(n, C, H, W)`` pixels in [0, 1].
    :param cutoff: the high-frequency fraction's cutoff in cycles per pixel, in (0, 0.5).
    :returns: ``high_frequency_fraction`` and ``gradient_magnitude`` (floats), ``frequencies`` and ``spectrum``
        (lists of floats, :func:`radial_spectrum`), and ``cutoff``.
    :raises ValueError: for a cutoff outside (0, 0.5), or images that are not 4-D, smaller than 2 × 2, or not finite.
    """
    cutoff = _check_cutoff(cutoff)
    images = as_images(images)
    power = _mean_power(images)
    frequencies, spectrum = _radial_average(power)
    return {
        "high_frequency_fraction": _high_fraction(power, cutoff),
        "gradient_magnitude": _gradient_magnitude(images),
        "frequencies": frequencies.tolist(),
        "spectrum": spectrum.tolist(),
        "cutoff": cutoff,
    }


def _check_cutoff(cutoff) -> float:
    """``cutoff`` as a float in (0, 0.5), refused with the fix otherwise."""
    if isinstance(cutoff, bool) or not isinstance(cutoff, numbers.Real) or not 0.0 < cutoff < 0.5:
        raise ValueError(
            f"cutoff={cutoff!r} must be a radial frequency in cycles per pixel between 0 and 0.5 (Nyquist), e.g. 0.25"
        )
    return float(cutoff)


def _mean_power(images: torch.Tensor) -> torch.Tensor:
    """``|F|²`` of the mean-removed images averaged over images and channels, ``(H, W)`` float64 (FFT layout)."""
    n, c, h, w = images.shape
    total = torch.zeros(h, w, dtype=torch.float64)
    for start in range(0, n, _CHUNK):
        chunk = images[start : start + _CHUNK].to(torch.float64)
        total += torch.fft.fft2(chunk).abs().square().sum((0, 1))  # (H, W)
    power = total / (n * c)
    mean_power = power[0, 0].item()
    power[0, 0] = 0.0  # removing the mean zeroes the zero-frequency coefficient, and only it
    if power.sum() <= _NO_POWER * mean_power:
        power.zero_()
    return power


def _frequencies(h: int, w: int) -> torch.Tensor:
    """The radial frequency ``(H, W)`` in cycles per pixel of each coefficient of an H × W transform."""
    fy = torch.fft.fftfreq(h, dtype=torch.float64)
    fx = torch.fft.fftfreq(w, dtype=torch.float64)
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def _radial_average(power: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Ring frequencies and ring-averaged power, normalised, from ``power`` ``(H, W)``."""
    radius = _frequencies(*power.shape).flatten()
    rings = torch.round(radius * max(power.shape)).long()
    counts = torch.bincount(rings)
    present = counts > 0
    present[0] = False  # the zero frequency alone: the removed mean
    frequencies = torch.bincount(rings, weights=radius)[present] / counts[present]
    spectrum = torch.bincount(rings, weights=power.flatten())[present] / counts[present]
    total = spectrum.sum()
    if total > 0:
        spectrum = spectrum / total
    return frequencies.numpy(), spectrum.numpy()


def _high_fraction(power: torch.Tensor, cutoff: float) -> float:
    """The share of ``power`` ``(H, W)`` at radial frequencies above ``cutoff``."""
    total = power.sum()
    if total <= 0:
        return 0.0
    return float(power[_frequencies(*power.shape) > cutoff].sum() / total)


def _gradient_magnitude(images: torch.Tensor) -> float:
    """Mean √(∂x² + ∂y²) of ``images`` ``(n, C, H, W)`` over the (H − 1) × (W − 1) pixels with both differences."""
    n, c, h, w = images.shape
    total = 0.0
    for start in range(0, n, _CHUNK):
        chunk = images[start : start + _CHUNK].to(torch.float64)
        dx = chunk[..., :-1, 1:] - chunk[..., :-1, :-1]  # (n, C, H - 1, W - 1)
        dy = chunk[..., 1:, :-1] - chunk[..., :-1, :-1]
        total += torch.sqrt(dx**2 + dy**2).sum().item()
    return total / (n * c * (h - 1) * (w - 1))
