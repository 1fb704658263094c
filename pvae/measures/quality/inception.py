"""The standard FID's feature network, Inception-v3, where a user has its weights; never required.

The Fréchet Inception Distance (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a
Local Nash Equilibrium") compares the 2048-wide pool features of Inception-v3 (Szegedy et al. 2016, "Rethinking the
Inception Architecture for Computer Vision") with the weights of TensorFlow's 2015-12-05 release. StyleGAN2-ADA
(Karras et al. 2020) and clean-fid (Parmar et al. 2022, "On Aliased Resizing and Surprising Subtleties in GAN
Evaluation") ship those weights as a TorchScript file, :data:`INCEPTION_FILE`, that runs without TensorFlow or
torchvision. Called as ``net(x, return_features=True)`` on RGB images ``x`` ``(n, 3, H, W)`` with values 0–255
(StyleGAN2-ADA feeds uint8), it resizes them to 299×299 itself, scales them to [-1, 1] and returns ``(n, 2048)``.

pvae downloads nothing here: the file is looked for where :func:`inception_locations` says. Inception's ImageNet
features mean little for 28×28 grey images; the offline feature space is :mod:`pvae.measures.quality.classifier`.
"""

import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from pvae.data.idx import default_data_dir

#: Environment variable naming the TorchScript Inception file (or a folder holding it).
INCEPTION_ENV = "PVAE_INCEPTION"
#: The file's name, as StyleGAN2-ADA and clean-fid publish it.
INCEPTION_FILE = "inception-2015-12-05.pt"
#: Where it is published.
INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
#: The input side the network was trained at.
INCEPTION_SIZE = 299
#: Width of its pool features.
INCEPTION_DIM = 2048


def inception_locations(path: str | os.PathLike | None = None) -> list[Path]:
    """Where :func:`load_inception` looks for the file, in order: ``path``, ``$PVAE_INCEPTION``, and
    :data:`INCEPTION_FILE` in the default data directory (:func:`pvae.data.idx.default_data_dir`).

    A folder among them stands for :data:`INCEPTION_FILE` inside it.

    :param path: a file (or folder) the caller names, or None.
    """
    places = [Path(path)] if path is not None else []
    if os.environ.get(INCEPTION_ENV):
        places.append(Path(os.environ[INCEPTION_ENV]))
    places.append(default_data_dir() / INCEPTION_FILE)
    return list(dict.fromkeys(place / INCEPTION_FILE if place.is_dir() else place for place in places))


def load_inception(path: str | os.PathLike | None = None) -> torch.jit.ScriptModule:
    """The TorchScript Inception-v3 of StyleGAN2-ADA / clean-fid, loaded on the CPU in eval mode.

    :param path: the file (or a folder holding it); else the other :func:`inception_locations`.
    :raises ValueError: when no location holds the file (listing them and where to get it), or the file found is
        not a TorchScript module.
    """
    places = inception_locations(path)
    found = next((place for place in places if place.is_file()), None)
    if found is None:
        where = "; ".join(str(place) for place in places)
        raise ValueError(
            f"the standard FID needs Inception-v3's TorchScript weights ({INCEPTION_FILE}); looked in {where}: "
            f"download it from {INCEPTION_URL} on a machine with network access and put it at one of those paths "
            f"(or point ${INCEPTION_ENV} at it); the classifier features need no download"
        )
    try:
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; the published weights are TorchScript
            warnings.filterwarnings("ignore", message=".*torch.jit.load. is deprecated", category=DeprecationWarning)
            net = torch.jit.load(str(found), map_location="cpu")
    except Exception as error:  # torch raises RuntimeError, ValueError ... for a file that is no TorchScript archive
        first = (str(error).splitlines() or [type(error).__name__])[0][:80]
        raise ValueError(
            f"{found} is not a TorchScript module ({first}): download {INCEPTION_FILE} again from {INCEPTION_URL}"
        ) from None
    return net.eval()


@torch.no_grad()
def inception_features(net: torch.nn.Module, images: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    """Inception's pool features ``(n, 2048)`` of images ``(n, C, H, W)`` in [0, 1], grey (C = 1) or RGB (C = 3).

    Each batch is resized to 299×299 (bilinear, the network's training size), grey repeated into three channels,
    quantized to uint8 0–255 as an image file would be, and passed as ``net(x, return_features=True)``.

    :param net: the network of :func:`load_inception` (or any module with that call).
    :param images: the images, on any device (moved to the network's a batch at a time); values outside [0, 1]
        are clipped.
    :param batch_size: images per forward pass (a 299×299 batch of 100 takes about 100 MB).
    :raises ValueError: for images that are not ``(n, 1 or 3, H, W)``, or a bad ``batch_size``.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"Inception features need images (n, 1 or 3, H, W), got shape {tuple(images.shape)}: "
            "reshape flat images to (n, C, H, W)"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    parameter = next(net.parameters(), None)
    device = images.device if parameter is None else parameter.device
    parts = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device).float().clamp(0, 1)
        x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        x = (x * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()  # (b, 3, 299, 299)
        parts.append(net(x, return_features=True).reshape(len(x), -1).float())
    return torch.cat(parts) if parts else torch.zeros(0, INCEPTION_DIM, device=device)
