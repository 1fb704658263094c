"""The processes that compute together: one, or the ranks torchrun started, behind one object.

What differs between a single process and ``torchrun --nproc-per-node N`` lives here, so that training
(:func:`pvae.engine.train.fit`) and evaluation (:func:`pvae.engine.bounds.evaluate`) read the same either way:

* which part of a batch, or of the datapoints scored, this rank takes (:meth:`Ranks.part`, :meth:`Ranks.share`);
* the random streams of a training epoch (:meth:`Ranks.epoch`) and of a shared evaluation (:meth:`Ranks.seed`);
* the gradient step (:meth:`Ranks.step`): each rank's gradient averaged across the ranks after every backward;
* what rank 0 gathers (:meth:`Ranks.gather`) or decides for all (:meth:`Ranks.from_first`);
* which rank writes (:attr:`Ranks.writes`).

:class:`Ranks` is the single process, rank 0 of 1, bit for bit what it always was; :class:`Torchrun` is one
rank of torchrun's process group (:mod:`pvae.base.distributed`). :func:`current` gives this process's.

pvae does not wrap its loss in ``DistributedDataParallel``: DDP averages the gradients of its own ``forward``
only, and the estimators that train through Pyro's ``loss_and_grads`` (``graph``, ``renyi``, ``iwae``) call
``backward`` themselves, outside any forward of a wrapper. :meth:`Torchrun.step` averages every gradient
explicitly instead (:func:`pvae.base.distributed.average_gradients`), which holds for every estimator alike.
"""

from collections.abc import Callable
from typing import TypeVar

import pyro
import torch

from pvae.base import distributed
from pvae.engine.objectives import backward

T = TypeVar("T")

#: A gradient step of one process on a batch: ``step(loss_fn, optimizer, *args)`` → the loss per datapoint.
Step = Callable[..., torch.Tensor]


class Ranks:
    """A single process: rank 0 of 1. It takes every batch whole, steps alone, draws from its one random
    stream, keeps what it computes and writes the run."""

    #: The number of processes computing together.
    world: int = 1
    #: This process's rank, 0 to :attr:`world` − 1.
    rank: int = 0

    @property
    def writes(self) -> bool:
        """Whether this rank writes: the run's files, its metrics, the lines a user reads (rank 0 alone)."""
        return self.rank == 0

    def join(self, loss_fn: torch.nn.Module, batch_size: int) -> None:
        """Start training alike on every rank: refuse a global batch that gives a rank no datapoint, and give
        every rank rank 0's parameters. Nothing to do for one process.

        :param loss_fn: the loss module (it holds model and guide).
        :param batch_size: the global batch, split across the ranks.
        """

    def epoch(self, seed: int, epoch: int) -> tuple[torch.Generator | None, int | None]:
        """Reseed this rank's own stream (draws of z, dynamic binarization) for a training epoch, and return
        the generator of the epoch's batch order and the seed of what every rank draws alike in it (its
        validation). One process: ``(None, None)``, its one stream goes on from epoch to epoch.

        :param seed: the run's seed.
        :param epoch: the epoch, from 0.
        """
        return None, None

    def part(self, n: int) -> slice:
        """This rank's contiguous part of ``n`` items: all of them for one process.

        :param n: the items shared (datapoints of a batch, or of a split scored).
        """
        return slice(0, n)

    def share(self, *tensors: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        """This rank's part (:meth:`part`) of each tensor, along the first dimension; None stays None.

        :param tensors: the same batch's tensors (``x``, ``y``), with as many rows each.
        """
        return tensors

    def step(
        self,
        step: Step,
        loss_fn: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        args: tuple[torch.Tensor, ...],
        batch_size: int,
        spent: Callable[[], bool],
    ) -> tuple[torch.Tensor, bool]:
        """One gradient step on a global batch of ``batch_size`` datapoints, of which ``args`` are this rank's
        share (:meth:`share`; ``()`` for an empty one). One process takes ``step`` (:func:`pvae.engine.train.step`).

        :param step: the step of one process on a whole batch.
        :param loss_fn: the loss module.
        :param optimizer: steps every parameter of ``loss_fn``.
        :param args: this rank's share: ``x``, or ``x, y``.
        :param batch_size: datapoints in the global batch.
        :param spent: whether this rank's time is spent (asked once, when the step's result can carry it).
        :returns: the loss of the global batch in nats per datapoint, and whether training stops after this
            step (some rank's time is spent); the same on every rank.
        """
        loss = step(loss_fn, optimizer, *args)
        return loss, spent()

    def scoring(self, n: int) -> "Ranks":
        """The ranks that score ``n`` datapoints together (:func:`pvae.engine.bounds.evaluate`): all of them, or rank 0
        alone where there are fewer datapoints than ranks.

        :param n: the datapoints scored.
        """
        return self

    def seed(self, seed: int) -> None:
        """Seed this rank's draws of a shared evaluation from ``seed``: one process, with ``seed`` itself.

        :param seed: the evaluation's seed.
        """
        pyro.set_rng_seed(seed)

    def gather(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        """Every rank's per-datapoint ``values`` concatenated on rank 0 in rank order, the parts of
        :meth:`part` in order (the other ranks get None): one process keeps its own.

        :param values: name → tensor ``(n,)`` of this rank's part, on the host.
        """
        return values

    def from_first(self, make: Callable[[], T]) -> T:
        """``make()`` computed on rank 0 alone and sent to every rank (a picklable value).

        :param make: what rank 0 computes.
        """
        return make()


class Torchrun(Ranks):
    """One rank of torchrun's process group (:func:`pvae.base.distributed.setup` joined it).

    Every rank draws the same batch order in an epoch (seeded with the run's seed and the epoch) and takes
    its contiguous part of every batch, the first ``n % world`` ranks one datapoint more; z and dynamic
    binarization draw from the rank's own stream, reseeded at every epoch from (seed, rank, epoch), so that a
    resumed run repeats the uninterrupted one without the other ranks' random states in its checkpoint.

    :param rank: this process's rank.
    :param world: the number of ranks.
    """

    def __init__(self, rank: int, world: int):
        self.rank, self.world = rank, world

    def join(self, loss_fn: torch.nn.Module, batch_size: int) -> None:
        distributed.check_batch_size(batch_size, self.world)
        distributed.broadcast_parameters(loss_fn)  # the same seed gave the same ones; this makes sure

    def epoch(self, seed: int, epoch: int) -> tuple[torch.Generator | None, int | None]:
        alike = distributed.rank_seed(seed, epoch)
        pyro.set_rng_seed(distributed.rank_seed(seed, self.rank, epoch) % 2**32)
        return torch.Generator().manual_seed(alike), alike

    def part(self, n: int) -> slice:
        size, more = divmod(n, self.world)  # as tensor_split: the first `more` ranks one item more
        start = self.rank * size + min(self.rank, more)
        return slice(start, start + size + (self.rank < more))

    def share(self, *tensors: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        part = self.part(len(next(t for t in tensors if t is not None)))
        return tuple(None if t is None else t[part] for t in tensors)

    def step(
        self,
        step: Step,
        loss_fn: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        args: tuple[torch.Tensor, ...],
        batch_size: int,
        spent: Callable[[], bool],
    ) -> tuple[torch.Tensor, bool]:
        """Every rank's step together: each scales its summed gradient by world/``batch_size``, and the
        average across ranks (:func:`pvae.base.distributed.average_gradients`, which carries the loss and the wish
        to stop in the same message) is the gradient of the loss per datapoint of the whole batch, as one
        process would compute it on the union of the shares with the same draws. ``step`` is not taken."""
        stop = spent()  # before the step, so that its all-reduce tells every rank
        optimizer.zero_grad(set_to_none=True)
        world = self.world
        local = float(backward(loss_fn, *args, scale=world / batch_size)) * world / batch_size if args else 0.0
        params = [p for group in optimizer.param_groups for p in group["params"]]
        loss, stops = distributed.average_gradients(params, local, float(stop))
        optimizer.step()
        return torch.tensor(loss), stops > 0

    def scoring(self, n: int) -> Ranks:
        return self if n >= self.world else _FirstAlone(self.rank)

    def seed(self, seed: int) -> None:
        pyro.set_rng_seed(distributed.rank_seed(seed, self.rank) % 2**32)

    def gather(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        parts = distributed.gather_object(values)
        if parts is None:
            return None
        return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}

    def from_first(self, make: Callable[[], T]) -> T:
        return distributed.broadcast_object(make() if self.rank == 0 else None)


class _FirstAlone(Ranks):
    """Torchrun's ranks where rank 0 does the work alone (too few items to give each rank one): it scores
    every item with the draws one process would make; the others score none and get nothing."""

    def __init__(self, rank: int):
        self.rank = rank

    def part(self, n: int) -> slice:
        return slice(0, n if self.rank == 0 else 0)

    def gather(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        return values if self.rank == 0 else None


#: The single process.
ONE = Ranks()


def current() -> Ranks:
    """The ranks this process computes with: :class:`Torchrun` in a process group of two ranks or more,
    else the single process (:data:`ONE`)."""
    world = distributed.world_size()
    return Torchrun(distributed.rank(), world) if world > 1 else ONE
