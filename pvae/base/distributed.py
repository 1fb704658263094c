"""More than one process: ``torchrun --nproc-per-node N -m pvae train ...``.

torchrun starts N copies of the command and tells each, through the environment (``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``), which rank it is. :func:`setup` joins the
process group (gloo on the CPU, NCCL on CUDA GPUs); without torchrun every function here is a no-op
and a run is the single process it always was, bit for bit.

What training and evaluation do differently under torchrun (which part of a batch a rank takes, how its
gradients are averaged, who writes) is :mod:`pvae.engine.ranks`, built on the collectives here.
"""

import os
import sys
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist

#: The environment torchrun sets for each process it starts.
TORCHRUN_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


def under_torchrun() -> bool:
    """Whether this process was started by torchrun (``WORLD_SIZE`` and ``RANK`` in the environment)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def active() -> bool:
    """Whether this process belongs to an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank, 0 to :func:`world_size` − 1 (0 without a process group)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """The number of processes training together (1 without a process group)."""
    return dist.get_world_size() if active() else 1


def planned_world_size() -> int:
    """The number of processes torchrun started (``WORLD_SIZE``; 1 without torchrun), known before
    the process group is joined."""
    return int(os.environ["WORLD_SIZE"]) if under_torchrun() else 1


def is_main() -> bool:
    """Whether this process is rank 0, the one that writes files and prints."""
    return rank() == 0


def local_rank() -> int:
    """This process's number on its own machine (torchrun's ``LOCAL_RANK``; 0 without torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def device_for_rank(name: str, device: torch.device) -> torch.device:
    """The device this rank computes on: under torchrun, ``--device auto`` or ``cuda`` (no number)
    on a machine with GPUs means GPU ``LOCAL_RANK``, one GPU per process; any other choice stands.

    :param name: what ``--device`` said.
    :param device: what :func:`pvae.base.device.resolve_device` made of it.
    :raises ValueError: if this machine has fewer GPUs than processes on it.
    """
    if not under_torchrun() or device.type != "cuda" or name not in ("auto", "cuda"):
        return device
    index, count = local_rank(), torch.cuda.device_count()
    if index >= count:
        raise ValueError(
            f"torchrun started process {index} on this machine, which has {count} CUDA device(s): give "
            f"--nproc-per-node {count} or fewer, or --device cpu"
        )
    return torch.device("cuda", index)


def setup(device: torch.device) -> bool:
    """Join torchrun's process group, once: gloo for the CPU, NCCL for CUDA devices.

    :param device: the device this rank computes on (its type picks the backend).
    :returns: whether a process group is active (False without torchrun).
    """
    if not under_torchrun() or active():
        return active()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def shutdown() -> None:
    """Leave the process group (a no-op without one)."""
    if active():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here (a no-op without a process group)."""
    if active():
        dist.barrier()


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers of ``module`` to every rank, in place (a no-op without a
    process group).

    :param module: the same module on every rank (the loss, which holds model and guide).
    """
    if active():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def broadcast_object(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a picklable object; what the others pass is ignored); without a
    process group, ``value`` itself.

    :param value: what rank 0 sends.
    """
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_object(value: Any) -> list[Any] | None:
    """Every rank's ``value`` on rank 0, in rank order (the others get None); without a process
    group, ``[value]``.

    :param value: a picklable object (tensors travel on the host).
    """
    if not active():
        return [value]
    if dist.get_backend() == "nccl":  # NCCL has no gather of objects: every rank receives them all
        everyone: list[Any] = [None] * world_size()
        dist.all_gather_object(everyone, value)
        return everyone if is_main() else None
    everyone = [None] * world_size() if is_main() else None
    dist.gather_object(value, everyone, dst=0)
    return everyone


def check_batch_size(batch_size: int, ranks: int | None = None) -> None:
    """Refuse a global batch that cannot give every rank a datapoint.

    :param batch_size: ``--batch-size``, the global batch, split across the ranks.
    :param ranks: the number of processes (default: :func:`planned_world_size`, so that the batch is
        refused before the process group is joined).
    :raises ValueError: naming the smallest batch that works.
    """
    ranks = planned_world_size() if ranks is None else ranks
    if batch_size < ranks:
        raise ValueError(
            f"--batch-size {batch_size} is the global batch, split across the {ranks} processes, and gives some "
            f"of them no datapoint: give --batch-size {ranks} or more, or start fewer processes"
        )


def average_gradients(parameters: Iterable[torch.nn.Parameter], *extra: float) -> list[float]:
    """Average the gradients of ``parameters`` across ranks in place, in one all-reduce over a flat
    bucket; a parameter without a gradient on this rank counts as a zero gradient, and every
    parameter has one afterwards. A no-op without a process group.

    :param parameters: the parameters the optimizer steps, in the same order on every rank.
    :param extra: numbers averaged along with the gradients in the same message (the loss, a flag),
        so that every rank decides the same thing without a second round trip.
    :returns: the averages of ``extra``.
    """
    if not active():
        return list(extra)
    params = list(parameters)
    device = params[0].device if params else torch.device("cpu")
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    # (sum of parameter sizes + len(extra),): float32 like the parameters, on their device
    bucket = torch.cat([*(g.reshape(-1).float() for g in grads), torch.tensor(extra, device=device).float()])
    dist.all_reduce(bucket, op=dist.ReduceOp.SUM)
    bucket /= world_size()
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = bucket[offset : offset + n].view_as(g).to(g.dtype)
        offset += n
    return bucket[offset:].tolist()


#: What the process group says when a peer process is gone (gloo's TCP pairs, NCCL's watchdog, a store).
_LOST_PEER = ("connection closed by peer", "connection reset by peer", "broken pipe", "socket timeout", "nccl error")


def lost_a_rank(error: BaseException) -> bool:
    """Whether ``error`` is the process group's report that another rank is gone, rather than this rank's own
    failure: a ``DistBackendError`` or ``DistNetworkError``, or gloo's message of a closed connection.

    :param error: what a collective raised.
    """
    kinds = tuple(getattr(dist, name) for name in ("DistBackendError", "DistNetworkError") if hasattr(dist, name))
    if kinds and isinstance(error, kinds):
        return True
    return isinstance(error, RuntimeError) and any(phrase in str(error).lower() for phrase in _LOST_PEER)


def rank_seed(*parts: int) -> int:
    """A 63-bit seed from integers (run seed, rank, epoch), independent for every distinct tuple."""
    import numpy as np

    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def rank_from_environment() -> int:
    """This process's rank as torchrun set it (``RANK``; 0 without torchrun), known before the
    process group is joined and after it is left."""
    return int(os.environ.get("RANK", "0"))


def rank_prefix() -> str:
    """``"[rank R] "`` under torchrun, else ``""``: what a rank's messages start with."""
    return f"[rank {rank_from_environment()}] " if under_torchrun() else ""


def leave(status: int) -> int:
    """Under torchrun, end this process now with ``status`` (``os._exit``, after flushing its
    output), whether its command failed or succeeded. A rank that failed must not wait in a collective,
    nor in the process group's teardown, for ranks that will never answer; torchrun sees the status and
    stops the other ranks. A rank that succeeded has written and closed all it writes, and must not run
    the interpreter's own teardown: there torch's distributed objects can abort the process (``terminate
    called without an active exception``, SIGABRT) after its work is done, and torchrun would then stop the
    ranks still working (rank 0 drawing the figures after rank 1 had finished). Without torchrun, return
    ``status`` for the caller to exit with.

    :param status: the exit status.
    """
    if not under_torchrun():
        return status
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
