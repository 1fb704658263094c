"""What a command will cost, estimated before it is spent: the memory of a training step (and of any
other allocation whose size an option sets), and the time of long passes.

A width of ``--hidden 100000000`` asks the constructor for 34 GB of weights, ``--particles 100000``
asks each step for tens of GB of activations, and ``--z-dim 100000`` asks the final log p(x)
(1000 draws of z for 100 datapoints at once) for tens of GB; without a check the first is slow to
fail and the others are killed by the kernel with no message. :func:`check_step_memory` builds the
pair on PyTorch's ``meta`` device (shapes without storage), counts what a step holds and refuses,
with the numbers, a step that does not fit in what the machine has available.

What a step holds:

- parameters: each weight, its gradient and Adam's two moments, :data:`PARAMETER_COPIES` copies;
- activations: every ``Linear``/``Conv`` output for each of ``batch × particles`` draws (an upper
  bound: an encoder runs once per datapoint, not per particle), times :data:`ACTIVATION_FACTOR` for
  the tensors beside them (activations, samples, log-densities per pixel or dimension, gradients);
- the importance-sampled log p(x) after training: the same per draw, for the chunk of draws
  :func:`pvae.measures.evaluate.sample_chunks` gives 100 datapoints, without gradients.

What a step did cost, measured: :func:`peak_bytes` (CUDA's own counters on a GPU, :class:`PeakMemory` on
the CPU), which ``pvae compare-elbos`` reports per estimator.
"""

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from pvae.measures.evaluate import sample_chunks

#: Copies of each parameter a step holds: the weight, its gradient, Adam's first and second moments.
PARAMETER_COPIES = 4
#: Bytes held per byte of layer output. The peak resident memory a pass adds over its layers' outputs,
#: measured on the MLP VAE of ``digits``: 1.4–2.0 for a training step (trace, meanfield, iwae, dreg;
#: 200–2000 particles), 0.9 (z_dim 20) to 2.5 (z_dim 2000) for the log p(x) of 100 datapoints, K = 100–500.
ACTIVATION_FACTOR = 2.5
#: Datapoints per pass of the log p(x) that training ends with.
EVALUATION_BATCH = 100


@dataclass(frozen=True)
class StepMemory:
    """An estimate of a training step's memory, in bytes.

    :param parameters: the parameters, their gradients and the optimizer's state.
    :param activations: what a training step's forward pass keeps for the backward pass.
    :param evaluation: what a pass of the final log p(x) holds (0 when not asked).
    """

    parameters: int
    activations: int
    evaluation: int = 0

    @property
    def total(self) -> int:
        """The peak: the parameters beside the larger of a step's and an evaluation's tensors."""
        return self.parameters + max(self.activations, self.evaluation)


def estimate_step_memory(
    pair_config,
    x_shape: tuple[int, ...],
    num_classes: int,
    batch_size: int,
    particles: int,
    samples: int | None = None,
) -> StepMemory | None:
    """Estimate the memory of one training step of the pair ``pair_config`` builds, allocating none.

    :param pair_config: a :class:`pvae.engine.config.PairConfig`.
    :param x_shape: the shape of one datapoint, ``(C, H, W)``.
    :param num_classes: classes of the labels.
    :param batch_size: datapoints per step.
    :param particles: draws of z per datapoint (``--particles``).
    :param samples: K of the log p(x) computed after training (``--samples``); ``None``: none.
    :returns: the estimate, or ``None`` when the pair cannot be built without storage (a constructor
        that reads a tensor's value); the check is skipped then.
    """
    from pvae.engine.config import build_pair

    try:
        with torch.device("meta"):
            model, guide = build_pair(pair_config, tuple(x_shape), num_classes, check=False)
    except (RuntimeError, NotImplementedError):
        return None
    modules = (model, guide)
    parameter_bytes = sum(p.numel() * p.element_size() for m in modules for p in m.parameters())
    per_draw = sum(_output_numbers(layer, x_shape) for m in modules for layer in m.modules())
    activations = int(batch_size * particles * per_draw * 4 * ACTIVATION_FACTOR)  # float32
    evaluation = 0
    if samples:
        batch = torch.empty((EVALUATION_BATCH, *x_shape), device="meta")  # shapes only, no storage
        chunk = sample_chunks(batch, samples)[0]  # the draws of z evaluation takes at once
        evaluation = int(EVALUATION_BATCH * chunk * per_draw * 4 * ACTIVATION_FACTOR)
    return StepMemory(PARAMETER_COPIES * parameter_bytes, activations, evaluation)


def _output_numbers(layer: torch.nn.Module, x_shape: tuple[int, ...]) -> int:
    """Numbers a layer outputs per datapoint; a convolution's output is bounded by its channels
    times the data's pixels (stride and padding only make it smaller)."""
    if isinstance(layer, torch.nn.Linear):
        return layer.out_features
    if isinstance(layer, torch.nn.modules.conv._ConvNd):
        return layer.out_channels * math.prod(x_shape[1:])
    return 0


def available_memory(device: str | torch.device = "cpu") -> int | None:
    """Bytes a new allocation can get on ``device``: the GPU's free memory, or on a CPU the
    kernel's ``MemAvailable`` (Linux). ``None`` where it cannot be known.

    :param device: the device a step will run on.
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the kernel writes kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_step_memory(
    pair_config,
    x_shape: tuple[int, ...],
    num_classes: int,
    batch_size: int,
    particles: int,
    device: str | torch.device = "cpu",
    samples: int | None = None,
    available: int | None = None,
    batch_option: str = "--batch-size",
) -> StepMemory | None:
    """Refuse a training step that needs more memory than ``device`` has available.

    :param pair_config: a :class:`pvae.engine.config.PairConfig`.
    :param x_shape: the shape of one datapoint.
    :param num_classes: classes of the labels.
    :param batch_size: datapoints per step.
    :param particles: draws of z per datapoint.
    :param device: where the step will run.
    :param samples: K of the log p(x) computed after training; ``None``: none.
    :param available: bytes available (default: :func:`available_memory` of ``device``).
    :param batch_option: the option that sets ``batch_size``, for the message.
    :returns: the estimate (``None`` when it could not be made).
    :raises ValueError: naming the need, what is available and which options lower it.
    """
    need = estimate_step_memory(pair_config, x_shape, num_classes, batch_size, particles, samples)
    if available is None:
        available = available_memory(device)
    if need is None or available is None or need.total <= available:
        return need
    if need.parameters > available:
        fix = "lower --hidden or --z-dim"
        what = f"the parameters and their optimizer state alone need about {format_bytes(need.parameters)}"
    elif need.evaluation > need.activations:
        fix = "lower --samples or --z-dim"
        what = (
            f"the final log p(x) needs about {format_bytes(need.total)} ({format_bytes(need.evaluation)} for "
            f"{EVALUATION_BATCH} datapoints × {samples} samples of z at once)"
        )
    else:
        fix = f"lower --particles or {batch_option}" + (" (or --hidden)" if particles * batch_size <= 256 else "")
        what = (
            f"a training step needs about {format_bytes(need.total)} ({format_bytes(need.parameters)} of parameters "
            f"and optimizer state, {format_bytes(need.activations)} of activations for {batch_size} datapoints × "
            f"{particles} particles)"
        )
    where = "this machine" if torch.device(device).type == "cpu" else str(device)
    raise ValueError(f"{what}, {where} has {format_bytes(available)} available: {fix}")


def format_bytes(n: int) -> str:
    """``n`` bytes in words: ``1.2 GB`` from 0.1 GB up, else ``35.0 MB``.

    :param n: the bytes.
    """
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def check_allocation(need: int, what: str, fix: str, device: str | torch.device = "cpu", available: int | None = None):
    """Refuse an allocation an option sized beyond what ``device`` has available, before it is made.

    :param need: bytes the command would hold at once.
    :param what: what they are, in words naming the option (``-n 1000000000 draws of 1×8×8 images``).
    :param fix: the option to lower (``lower -n``).
    :param device: where they would be held.
    :param available: bytes available (default: :func:`available_memory` of ``device``).
    :raises ValueError: ``WHAT need about N GB, this machine has M GB available: FIX``.
    """
    available = available_memory(device) if available is None else available
    if available is not None and need > available:
        where = "this machine" if torch.device(device).type == "cpu" else str(device)
        raise ValueError(
            f"{what} need about {format_bytes(need)}, {where} has {format_bytes(available)} available: {fix}"
        )


def format_seconds(seconds: float) -> str:
    """A duration in words a person reads at a glance: ``45 s``, ``12 min``, ``3.5 h``, ``41 days``, ``9 years``.

    :param seconds: the duration.
    """
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size if unit in ("years", "days") else seconds >= size:
            value = seconds / size
            return f"{value:.1f} {unit}" if value < 10 else f"{value:,.0f} {unit}"
    return f"{seconds:.0f} s"


class PeakMemory(TorchDispatchMode):
    """Bytes of tensor storage allocated while active: the current total and its peak.

    Counts storages created by operations inside the context (activations, saved tensors,
    gradients, an optimizer's temporaries), each once, and frees them when they are garbage. An
    output that shares its storage with an input (an in-place update, a view, ``detach``) is not
    new memory, so tensors that existed before (parameters, optimizer state) are not counted.
    On CUDA, ``torch.cuda.max_memory_allocated`` measures the same thing without this bookkeeping.
    """

    def __init__(self):
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: set[int] = set()

    def _free(self, key: int, nbytes: int) -> None:
        self.current -= nbytes
        self._live.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {
            t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)
        }
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                storage = t.untyped_storage()
                key, nbytes = storage.data_ptr(), storage.nbytes()
                if nbytes and key not in self._live and key not in inputs:
                    self._live.add(key)
                    self.current += nbytes
                    weakref.finalize(storage, self._free, key, nbytes)
        self.peak = max(self.peak, self.current)
        return out


def peak_bytes(run: Callable[[], object], device: str | torch.device = "cpu") -> int:
    """Bytes that ``run()`` allocates at its peak beyond what was allocated before it.

    :param run: the work measured (one training step, say), called once.
    :param device: where it allocates: on CUDA, the allocator's own peak counter (of the current
        device); elsewhere, the storages :class:`PeakMemory` sees created on the host.
    """
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run()
        return torch.cuda.max_memory_allocated() - base
    with PeakMemory() as meter:
        run()
    return meter.peak
