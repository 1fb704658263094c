"""The state of every random number generator a run draws from (torch's, each CUDA device's, NumPy's and
Python's), as a checkpoint holds it: tensors, numbers, strings, lists and dicts only, so that
``torch.load(..., weights_only=True)`` reads it back without running code.
"""

import random
from typing import Any

import numpy as np
import torch


def rng_state() -> dict[str, Any]:
    """The state of every random number generator training touches: the CPU's, and each CUDA
    device's once CUDA has been used (``cuda``, a list of byte tensors).

    Only tensors, numbers, strings, lists and dicts, so that ``torch.load(..., weights_only=True)``
    reads it back: NumPy's state as its key (a tensor) and fields, Python's as a list.
    """
    name, key, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": str(name),
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),  # uint32 words, exact in int64
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "internal": [int(word) for word in internal], "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned, as far as this machine goes: the CUDA states of a
    checkpoint written on a GPU are skipped where there is none (a run resumed on the CPU then draws
    other numbers than it would have on the GPU, as it would anyway), and so are those of GPUs this
    machine lacks."""
    torch.set_rng_state(state["torch"].cpu())  # a checkpoint is read with map_location; this stays on the CPU
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        for index, device_state in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state.cpu(), index)
    numpy, python = state["numpy"], state["python"]
    key = numpy["key"].numpy().astype(np.uint32)
    np.random.set_state((numpy["bit_generator"], key, numpy["pos"], numpy["has_gauss"], numpy["cached_gaussian"]))
    random.setstate((python["version"], tuple(python["internal"]), python["gauss_next"]))


def legacy_rng_state(state: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's RNG state as :func:`rng_state` writes it, from the form pvae 0.1 wrote (NumPy's
    state tuple with an array, Python's nested tuples)."""
    if isinstance(state.get("numpy"), dict):
        return state
    name, key, pos, has_gauss, cached = state["numpy"]
    version, internal, gauss_next = state["python"]
    return {
        **state,
        "numpy": {
            "bit_generator": str(name),
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "internal": [int(word) for word in internal], "gauss_next": gauss_next},
    }
