"""Where a command computes: ``--device auto|cpu|cuda|cuda:N|mps``, declared once for every command.

Model, guide, buffers and random draws live on the device; datasets stay compact on the host and
each batch moves there when it is used (:func:`to_device`). Checkpoints are read onto the host
(``map_location="cpu"``) and then moved, so a run trained on a GPU is read on a CPU and the reverse.
"""

import re

import torch

from pvae.base import options

#: What ``--device`` accepts, besides ``cuda:N``.
DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")


@options.config
class DeviceConfig:
    """Where a command computes.

    :param device: auto (a CUDA GPU if there is one, else Apple's MPS, else the CPU), cpu, cuda,
        cuda:N (the GPU numbered N) or mps.
    """

    device: str = "auto"

    def __post_init__(self):
        options.require(
            self,
            "device",
            self.device in DEVICE_NAMES or re.fullmatch(r"cuda:\d+", self.device) is not None,
            "one of auto, cpu, cuda, cuda:N (N a GPU's number) or mps",
        )


def available_devices() -> list[str]:
    """The devices this machine has, as ``--device`` spells them: ``cpu``, then each CUDA GPU, then ``mps``."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return names


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(name: str) -> torch.device:
    """The device ``--device name`` means on this machine.

    :param name: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (checked by :class:`DeviceConfig`).
    :returns: for ``auto``: the first CUDA GPU if there is one, else MPS if there is, else the CPU.
    :raises ValueError: for a device this machine does not have, naming those it has.
    """
    name = DeviceConfig(name).device
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    device = torch.device(name)
    here = ", ".join(available_devices())
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {name}: no CUDA device here (torch.cuda.is_available() is False); this machine has: "
                f"{here}; use --device cpu or auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0: {here}"
            )
    if device.type == "mps" and not _mps_available():
        raise ValueError(
            f"--device {name}: no MPS device here (torch.backends.mps.is_available() is False); this machine has: "
            f"{here}; use --device cpu or auto"
        )
    return device


def describe_device(name: str, device: torch.device) -> str:
    """Where a command computes, in words: ``cpu (auto: no GPU)``, ``cuda:0 (NVIDIA H100)``; each
    command prints it once (``train`` in its banner, the others as a line ``device: ...``).

    :param name: what ``--device`` said.
    :param device: what :func:`resolve_device` made of it.
    """
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        shown = f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    else:
        shown = str(device)
    if name != "auto":
        return shown
    why = {"cuda": "a CUDA GPU found", "mps": "no CUDA GPU, MPS found"}.get(device.type, "no GPU")
    return f"{shown} (auto: {why})"


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (or buffer); the CPU for a module that holds neither."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def to_device(x: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """``x`` on ``device`` (``None`` stays ``None``); a no-op where it is there already.

    A batch read from host memory is copied without blocking the host (``non_blocking``) when the
    host memory is pinned; otherwise the copy is synchronous, which is always correct.
    """
    return None if x is None else x.to(device, non_blocking=True)
