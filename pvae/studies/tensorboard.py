"""TensorBoard event files of a training run: ``pvae train --tensorboard``.

Under ``RUN/tensorboard/`` (so that ``tensorboard --logdir runs/`` compares every run below ``runs/``), at
the global step (gradient steps since the run began):

* ``train/*`` and ``val/*``: every field of each ``metrics.jsonl`` row, after each epoch (``train_loss`` is
  ``train/loss``, ``val_elbo`` is ``val/elbo``; ``epoch``, ``steps``, ``beta``, ``seconds`` are ``train/*``);
* ``train/step_loss``: the loss of one batch, every ``--tensorboard-every`` steps;
* ``kl_per_dim/zJ``: E_x KL(q(z_j|x) ‖ p(z_j)) on the validation split, in closed form, after each epoch,
  for a Gaussian q(z|x) and a diagonal Gaussian prior (:func:`kl_per_dimension`);
* ``images/reconstructions`` (validation images above their reconstructions) and ``images/prior_samples``
  (decoder means at the same prior draws each time), every ``--tensorboard-images`` epochs and after the last;
  for vector data ``(N, D)``, the figures ``figures/reconstructions`` and ``figures/prior_samples`` of
  :mod:`pvae.plots.run` instead (:func:`~pvae.plots.run.feature_reconstruction_figure`,
  :func:`~pvae.plots.run.feature_samples_figure`: the features in the data's units), at the same epochs;
* the run's settings as hparams with its final test numbers (``test/*``), for TensorBoard's HParams view.

The ``tensorboard`` package is an optional extra (``pip install "pvae[tensorboard]"``), imported only when a
log is opened. Logging draws nothing from the training run's random streams: a run trains the same with and
without it.
"""

import math
from dataclasses import field
from pathlib import Path

import torch

from pvae.base import options
from pvae.base.device import module_device, to_device
from pvae.base.files import record_written
from pvae.base.results import flatten
from pvae.base.rng import rng_state, set_rng_state
from pvae.data import Dataset
from pvae.engine.pair import traits
from pvae.measures.diagnostics import NotApplicable, diagonal_prior, local_family
from pvae.measures.evaluate import reconstruct, sample_prior

#: The folder of a run that holds its event files (:meth:`pvae.base.runs.Run.own_files` counts them as pvae's).
FOLDER = "tensorboard"
#: What installs the optional package.
INSTALL = 'pip install "pvae[tensorboard]"'


@options.config
class TensorBoardConfig:
    """What ``pvae train`` writes for TensorBoard, in ``RUN/tensorboard/``.

    :param tensorboard: write TensorBoard event files: the metrics of every epoch, the training loss, KL per
        latent dimension, reconstructions and prior samples, and the settings with the final test numbers as
        hparams (needs the optional package: pip install "pvae[tensorboard]").
    :param tensorboard_every: with --tensorboard, log the loss of one batch every this many steps (each read
        waits for the device).
    :param tensorboard_images: with --tensorboard, log reconstructions and prior samples every this many
        epochs, and after the last.
    """

    # None: not given, so that one given without --tensorboard is refused; with --tensorboard it becomes 50 or 5
    tensorboard: bool = False
    tensorboard_every: int | None = field(default=None, metadata=options.default_is("50"))
    tensorboard_images: int | None = field(default=None, metadata=options.default_is("5"))

    def __post_init__(self):
        options.positive(self, "tensorboard_every", "tensorboard_images")
        for name, default in (("tensorboard_every", 50), ("tensorboard_images", 5)):
            if not self.tensorboard and getattr(self, name) is not None:
                raise ValueError(f"{options.flag(name)} applies with --tensorboard: add --tensorboard or drop it")
            if self.tensorboard and getattr(self, name) is None:
                object.__setattr__(self, name, default)


def check_available() -> None:
    """Refuse ``--tensorboard`` before any work where the optional package is missing.

    :raises ValueError: naming the fix.
    """
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ValueError(f"--tensorboard needs the tensorboard package: {INSTALL}") from None


@torch.no_grad()
def kl_per_dimension(
    model: torch.nn.Module, guide: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, batch_size=1000
) -> torch.Tensor:
    """E_x KL(q(z_j|x) ‖ p(z_j)) for each latent dimension j, ``(z_dim,)``, in closed form: the KL of each
    marginal of q(z|x) to the prior's, averaged over ``x``. For a diagonal q(z|x) the sum over j is
    E_x KL(q(z|x) ‖ p(z)), which the validation KL of ``metrics.jsonl`` estimates with one draw of z.

    :param x: datapoints ``(N, ...)``, on the host or the pair's device.
    :param y: their labels, for pairs that read them.
    :param batch_size: datapoints per pass of the guide.
    :raises NotApplicable: unless q(z|x) is a Gaussian over ``"z"`` alone and p(z) a diagonal Gaussian.
    """
    device = module_device(guide)
    prior = diagonal_prior(model, x, y)
    total = torch.zeros(prior.loc.shape, device=device)
    for start in range(0, len(x), batch_size):
        xb = to_device(x[start : start + batch_size], device)
        yb = None if y is None else to_device(y[start : start + batch_size], device)
        q = local_family(guide, model, xb, yb)
        marginals = torch.distributions.Normal(q.mean, q.variance.sqrt())  # (batch, z_dim)
        total += torch.distributions.kl_divergence(marginals, prior).sum(0)
    return (total / len(x)).cpu()


def image_grid(images: torch.Tensor, columns: int) -> torch.Tensor:
    """Tile ``(N, C, H, W)`` images, ``columns`` per row, into one ``(C, rows·(H + 1) − 1, columns·(W + 1) − 1)``
    image with 1-pixel grey gaps; values clipped to [0, 1]."""
    n, c, h, w = images.shape
    rows = math.ceil(n / columns)
    canvas = torch.full((c, rows * (h + 1) - 1, columns * (w + 1) - 1), 0.5)
    for i, image in enumerate(images.clamp(0, 1)):
        r, col = divmod(i, columns)
        canvas[:, r * (h + 1) : r * (h + 1) + h, col * (w + 1) : col * (w + 1) + w] = image
    return canvas


def reconstruction_grid(x: torch.Tensor, x_rec: torch.Tensor, columns: int) -> torch.Tensor:
    """Rows of images above rows of their reconstructions, ``columns`` each (:func:`image_grid`)."""
    n = (len(x) // columns) * columns
    pairs = torch.stack([x[:n].view(-1, columns, *x.shape[1:]), x_rec[:n].view(-1, columns, *x.shape[1:])], 1)
    return image_grid(pairs.reshape(-1, *x.shape[1:]), columns)


def scalar_name(key: str) -> str:
    """The tag of a ``metrics.jsonl`` field: ``val_elbo`` → ``val/elbo``, ``train_loss`` → ``train/loss``;
    the fields of the training epoch itself (``epoch``, ``steps``, ``beta``, ``seconds``) → ``train/KEY``."""
    split, _, rest = key.partition("_")
    return f"{split}/{rest}" if split in ("train", "val") and rest else f"train/{key}"


def hparam_values(config: dict) -> dict:
    """A run's nested settings (``config.json``) as flat hparams: ``{"train.beta": 4.0, ...}``, as
    :func:`pvae.base.results.flatten` names them; unset (``None``) settings are left out, as the HParams view takes
    numbers, text and booleans."""
    return {name: value for name, value in flatten(config).items() if value is not None}


#: The test numbers (keys of ``summary.json``'s test entry) that the HParams view compares, as ``test/KEY``.
TEST_METRICS = ("elbo", "log_px", "reconstruction", "kl", "accuracy")


class TensorBoardLog:
    """What :func:`pvae.engine.train.fit` calls to log a run for TensorBoard (``fit(..., log=...)``): :meth:`step`
    after each gradient step, :meth:`epoch` after each epoch's validation; :meth:`finish` once the test
    numbers are known. The writer opens at the first call; on a resumed run it hides what an interrupted
    session logged past the checkpoint (TensorBoard's ``purge_step``), so that no step is shown twice.

    :param path: the folder of the event files (``RUN/tensorboard``).
    :param dataset: the run's data: its first validation images are reconstructed, its validation split
        gives the KL per dimension.
    :param config: how often to log.
    :param say: called with a line a user should read (when the KL per dimension does not apply).
    :param images: how many validation images and prior samples are shown.
    :param seed: the seed of the prior draws shown (the same draws at every epoch).
    """

    def __init__(
        self,
        path: str | Path,
        dataset: Dataset,
        config: TensorBoardConfig,
        say=None,
        images: int = 16,
        seed: int = 0,
    ):
        self.path, self.dataset, self.config, self.say = Path(path), dataset, config, say
        self.images, self.seed = images, seed
        self.kl_applies = True
        self._writer = None

    def writer(self, first_step: int | None = None):
        """The ``SummaryWriter``, opened on first use; ``first_step``: the first step this session logs
        (everything an earlier session logged from it on is hidden)."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.path.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(log_dir=str(self.path), purge_step=first_step)
            self._record()
        return self._writer

    def _record(self) -> None:
        """Record the event files in the run's manifest: pvae wrote them (``--overwrite`` may delete them)."""
        for path in self.path.rglob("events.out.tfevents.*"):
            record_written(path, stat=False)  # the writer appends to it after this

    def step(self, step: int, loss: torch.Tensor) -> None:
        """After gradient step ``step`` (1 for the run's first): the batch's loss, every
        ``config.tensorboard_every`` steps (only then is it read from the device)."""
        writer = self.writer(first_step=step)
        if step % self.config.tensorboard_every == 0:
            writer.add_scalar("train/step_loss", float(loss), step)

    def epoch(self, step: int, row: dict, model: torch.nn.Module, guide: torch.nn.Module, last: bool = False) -> None:
        """After an epoch that ended at global step ``step``: the fields of its ``metrics.jsonl`` ``row``, the
        KL per dimension and, every ``config.tensorboard_images`` epochs and after the ``last`` (the run's
        epochs reached, or its ``--max-seconds`` spent), the images; the random streams of training are left
        as they were."""
        writer = self.writer(first_step=step)
        for key, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                writer.add_scalar(scalar_name(key), value, step)
        state, modes = rng_state(), (model.training, guide.training)
        model.eval()
        guide.eval()
        try:
            self._kl(writer, step, model, guide)
            epoch = row["epoch"]
            if epoch % self.config.tensorboard_images == 0 or last:
                show = self._images if self.dataset.is_image else self._figures
                show(writer, step, model, guide)
        finally:
            model.train(modes[0])
            guide.train(modes[1])
            set_rng_state(state)
        writer.flush()  # what the checkpoint holds is on disk with it

    def _kl(self, writer, step: int, model, guide) -> None:
        if not self.kl_applies:
            return
        val = self.dataset.val
        try:
            kl = kl_per_dimension(model, guide, val.images(), val.y if traits(model, guide).takes_labels() else None)
        except NotApplicable as reason:
            self.kl_applies = False
            if self.say is not None:
                self.say(f"tensorboard: no KL per latent dimension: {reason}")
            return
        width = len(str(len(kl) - 1))  # z07 before z10: TensorBoard sorts tags as text
        for j, value in enumerate(kl.tolist()):
            writer.add_scalar(f"kl_per_dim/z{j:0{width}d}", value, step)

    def _images(self, writer, step: int, model, guide) -> None:
        val, pair = self.dataset.val, traits(model, guide)
        n = min(self.images, len(val))
        columns = min(8, n)
        x, y = val.images(slice(n)), val.y[:n]
        pairs = reconstruction_grid(x, reconstruct(model, guide, x, y), columns)
        writer.add_image("images/reconstructions", pairs, step)
        torch.manual_seed(self.seed)  # the same prior draws at every epoch (the caller restores the stream)
        labels = torch.arange(self.images) % pair.num_classes if pair.decodes_labels else None
        writer.add_image("images/prior_samples", image_grid(sample_prior(model, self.images, labels), columns), step)

    def _figures(self, writer, step: int, model, guide) -> None:
        """Vector data: the figures of their reconstructions and prior samples, rendered."""
        from pvae.plots.run import feature_reconstruction_figure, feature_samples_figure

        pair = traits(model, guide)
        rows = min(6, self.images, len(self.dataset.val))  # one small panel each
        writer.add_figure(
            "figures/reconstructions", feature_reconstruction_figure(model, guide, self.dataset, "val", rows), step
        )
        torch.manual_seed(self.seed)  # the same prior draws at every epoch (the caller restores the stream)
        labels = torch.arange(self.images) % pair.num_classes if pair.decodes_labels else None
        writer.add_figure(
            "figures/prior_samples", feature_samples_figure(model, self.dataset, self.images, labels), step
        )

    def finish(self, step: int, settings: dict, test: dict) -> None:
        """Write the run's settings as hparams with its test numbers (``test/KEY`` scalars at ``step``, the
        last training step), then close the files.

        :param settings: the run's configuration (``config.json``).
        :param test: the test evaluation (``summary.json``'s entry).
        """
        from torch.utils.tensorboard.summary import hparams

        writer = self.writer()
        metrics = {f"test/{key}": float(test[key]) for key in TEST_METRICS if isinstance(test.get(key), (int, float))}
        for name in ("val/elbo", "val/objective"):  # compared too, where the last epoch logged them
            metrics.setdefault(name, None)
        experiment, start, end = hparams(hparam_values(settings), metrics)
        for summary in (experiment, start, end):
            writer.file_writer.add_summary(summary, step)
        for name, value in metrics.items():
            if value is not None:
                writer.add_scalar(name, value, step)
        self.close()

    def close(self) -> None:
        """Flush and close the event files (a later call opens new ones)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._record()
