"""``pvae train --tensorboard``: the event files are read back with TensorBoard's own reader and their numbers
compared with the run's ``metrics.jsonl``, ``summary.json`` and checkpoint."""

import io
import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from pvae import cli, data
from pvae.base.runs import Run
from pvae.engine.config import PairConfig, build_pair, restore
from pvae.engine.train import TrainConfig, fit
from pvae.measures.diagnostics import latent_usage
from pvae.measures.evaluate import evaluate, reconstruct, sample_prior
from pvae.studies.tensorboard import TensorBoardConfig, TensorBoardLog, image_grid, reconstruction_grid
from tests.conftest import derived_seed, on_test_device, with_test_device

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData  # noqa: E402

EVERY = 3  # --tensorboard-every of the runs here


def train(out, *extra: str) -> int:
    """A tiny digits run (10 steps per epoch) on the test device."""
    argv = ["train", "--data", "digits", "--hidden", "16", "--z-dim", "2", "--samples", "5", "--no-progress"]
    return cli.main(with_test_device([*argv, "--seed", str(derived_seed(0)), "--out", str(out), *extra]))


def events(run) -> EventAccumulator:
    """Every scalar and image of ``RUN/tensorboard``, as TensorBoard reads them (purges included)."""
    accumulator = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def scalars(accumulator: EventAccumulator, tag: str) -> dict[int, float]:
    return {e.step: e.value for e in accumulator.Scalars(tag)}


def metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    out = tmp_path_factory.mktemp("tb") / "run"
    code = train(out, "--epochs", "2", "--tensorboard", "--tensorboard-every", str(EVERY), "--tensorboard-images", "1")
    assert code == 0
    return out


def test_every_metrics_field_is_a_scalar_at_the_step_its_epoch_ended(board):
    rows, accumulator = metrics(board), events(board)
    ends = np.cumsum([row["steps"] for row in rows]).tolist()  # 10, 20
    names = {"train_loss": "train/loss", "val_elbo": "val/elbo", "val_kl": "val/kl", "epoch": "train/epoch"}
    for key in rows[0]:
        tag = names.get(key, key.replace("val_", "val/") if key.startswith("val_") else f"train/{key}")
        logged = scalars(accumulator, tag)
        assert list(logged) == ends, tag
        for row, step in zip(rows, ends, strict=True):
            assert logged[step] == pytest.approx(np.float32(row[key]), rel=1e-6, abs=1e-6), (tag, step)


def test_the_train_loss_is_logged_every_n_steps(board):
    total = sum(row["steps"] for row in metrics(board))
    logged = scalars(events(board), "train/step_loss")
    assert list(logged) == list(range(EVERY, total + 1, EVERY)) and len(logged) == total // EVERY
    # one batch's loss, nats per digit: an untrained digits VAE starts near 44 and one epoch does not halve it
    assert all(20 < value < 60 for value in logged.values())


def test_images_are_the_reconstructions_and_prior_samples_of_the_final_pair(board):
    accumulator = events(board)
    ends = np.cumsum([row["steps"] for row in metrics(board)]).tolist()
    _, config, dataset, model, guide = restore(board, "cpu")
    x, y = dataset.val.images(slice(16)), dataset.val.y[:16]
    with torch.random.fork_rng():
        torch.manual_seed(0)  # the log's seed: the same prior draws at every epoch
        samples = sample_prior(model, 16)
    expected = {
        "images/reconstructions": reconstruction_grid(x, reconstruct(model, guide, x, y), 8),  # (1, 35, 71)
        "images/prior_samples": image_grid(samples, 8),  # (1, 17, 71)
    }
    assert expected["images/reconstructions"].shape == (1, 4 * 9 - 1, 8 * 9 - 1)
    for tag, grid in expected.items():
        logged = accumulator.Images(tag)
        assert [e.step for e in logged] == ends  # --tensorboard-images 1: after each epoch
        last = logged[-1]
        assert (last.height, last.width) == grid.shape[1:]
        pixels = np.asarray(Image.open(io.BytesIO(last.encoded_image_string)).convert("L"), dtype=np.float64) / 255
        # the pair in the checkpoint is the one the last epoch logged; PNG keeps 8 bits per pixel
        assert np.abs(pixels - grid[0].numpy()).max() <= 1 / 255 + 1e-6, tag


def test_kl_per_dimension_is_the_closed_form_kl_of_the_final_pair_on_the_validation_split(board):
    accumulator = events(board)
    rows = metrics(board)
    last = sum(row["steps"] for row in rows)
    logged = torch.tensor([scalars(accumulator, f"kl_per_dim/z{j}")[last] for j in range(2)])
    assert (logged >= 0).all()
    # the same E_x KL(q(z_j|x) ‖ p(z_j)) computed by latent_usage, for the checkpoint's pair on the same points
    _, _, dataset, model, guide = restore(board, "cpu")
    usage = latent_usage(model, guide, dataset.val.images(), dataset.val.y, prior_draws=10)
    assert logged.numpy() == pytest.approx(usage["kl_per_dim"].numpy(), rel=1e-5, abs=1e-7)
    # val_kl estimates the sum with one draw of z per datapoint: equal within 4 standard errors of that estimate
    draws = evaluate(model, guide, dataset.val.images(), dataset.val.y, num_samples=1, per_datapoint=True)
    error = float(draws["per_datapoint"]["kl"].std()) / len(dataset.val) ** 0.5
    assert float(logged.sum()) == pytest.approx(rows[-1]["val_kl"], abs=4 * error + 1e-6)


def test_hparams_hold_the_settings_and_the_final_test_numbers(board):
    accumulator = events(board)
    content = accumulator.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    config = json.loads((board / "config.json").read_text())
    assert start.hparams["train.beta"].number_value == config["train"]["beta"] == 1.0
    assert start.hparams["pair.z_dim"].number_value == 2
    assert start.hparams["data.data"].string_value == "digits"
    assert start.hparams["train.seed"].number_value == derived_seed(0)
    assert {m.name.tag for m in experiment.metric_infos} >= {"test/elbo", "test/log_px", "test/kl", "val/elbo"}
    test = json.loads((board / "summary.json").read_text())["test"]
    last = sum(row["steps"] for row in metrics(board))
    for key in ("elbo", "log_px", "kl", "reconstruction"):
        assert scalars(accumulator, f"test/{key}") == {last: pytest.approx(np.float32(test[key]), rel=1e-6)}


def test_a_resumed_run_continues_the_steps_and_hides_what_an_interrupted_session_logged(tmp_path):
    out = tmp_path / "run"
    assert train(out, "--epochs", "1", "--tensorboard", "--tensorboard-every", str(EVERY)) == 0
    first = metrics(out)[0]["steps"]
    # what a session killed during epoch 2, before its checkpoint, would have left
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(out / "tensorboard")) as stale:
        for step in range(first + 1, first + 8):
            stale.add_scalar("train/step_loss", 1e6, step)
        stale.add_scalar("train/loss", 1e6, 2 * first)
    assert train(out, "--epochs", "3", "--resume", "--tensorboard", "--tensorboard-every", str(EVERY)) == 0
    rows, accumulator = metrics(out), events(out)
    total = sum(row["steps"] for row in rows)
    steps = scalars(accumulator, "train/step_loss")
    assert list(steps) == list(range(EVERY, total + 1, EVERY))  # each once, in order, none missing
    assert max(steps.values()) < 1e3  # the stale points are hidden
    assert scalars(accumulator, "train/loss") == {
        end: pytest.approx(np.float32(row["train_loss"]), rel=1e-6)
        for end, row in zip(np.cumsum([r["steps"] for r in rows]).tolist(), rows, strict=True)
    }


def test_overwrite_deletes_the_old_event_files(board, tmp_path):
    from pvae.base.files import written

    events = sorted((board / "tensorboard").glob("events.out.tfevents.*"))
    assert events and set(events) <= set(written(board))  # training recorded the files it wrote
    run = Run.create(tmp_path / "run", {"a": 1})
    run.save_checkpoint({"model": {}, "guide": {}})
    folder = run.path / "tensorboard"
    folder.mkdir()
    log = TensorBoardLog(folder, None, TensorBoardConfig(tensorboard=True))
    log.writer().add_scalar("x", 1.0, 1)
    log.close()
    (folder / "notes.txt").write_text("mine")
    (folder / "events.out.tfevents.1700000000.theirs.1.0").write_bytes(b"a colleague's, copied in")
    Run.create(run.path, {"a": 2}, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["events.out.tfevents.1700000000.theirs.1.0", "notes.txt"]


class Recorder:
    """A log that keeps what fit tells it, before passing it on to a TensorBoard log."""

    def __init__(self, inner):
        self.inner, self.losses, self.epochs = inner, {}, []

    def step(self, step, loss):
        self.losses[step] = float(loss)
        self.inner.step(step, loss)

    def epoch(self, step, row, model, guide, last):
        self.epochs.append((step, row))
        self.inner.epoch(step, row, model, guide, last)


@pytest.fixture(scope="module")
def digits():
    return data.load(data.DataConfig("digits"))


def _pair(dataset):
    torch.manual_seed(derived_seed(1))
    return on_test_device(*build_pair(PairConfig(z_dim=2, hidden=(16,)), dataset.x_shape))


def test_fit_tells_the_log_every_step_and_the_log_leaves_training_as_it_was(digits, tmp_path):
    config = TrainConfig(epochs=2, batch_size=128, seed=derived_seed(2))
    plain = fit(*_pair(digits), digits, config, progress=False)
    log = TensorBoardLog(tmp_path / "tb", digits, TensorBoardConfig(True, EVERY, 1))
    recorder = Recorder(log)
    logged = fit(*_pair(digits), digits, config, progress=False, log=recorder)
    log.close()
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in plain]
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in logged] == strip  # the same draws, bit for bit
    total = sum(row["steps"] for row in logged)
    assert list(recorder.losses) == list(range(1, total + 1))
    assert recorder.epochs == [(10, logged[0]), (20, logged[1])]
    # train_loss averages the batches' losses weighted by their sizes (nine of 128, one of 105 in 1257)
    sizes = [128] * 9 + [len(digits.train) - 9 * 128]
    for epoch, row in enumerate(logged):
        batch = [recorder.losses[10 * epoch + i + 1] for i in range(10)]
        assert np.dot(batch, sizes) / sum(sizes) == pytest.approx(row["train_loss"], rel=1e-5)
    accumulator = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    accumulator.Reload()
    on_disk = scalars(accumulator, "train/step_loss")
    assert on_disk == {s: pytest.approx(recorder.losses[s], rel=1e-6) for s in range(EVERY, total + 1, EVERY)}


def test_without_the_package_tensorboard_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    loaded = [m for m in sys.modules if m == "tensorboard" or m.startswith(("tensorboard.", "torch.utils.tensorboard"))]
    for name in loaded:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard raises ImportError
    assert train(tmp_path / "run", "--epochs", "1", "--tensorboard") == 2
    err = capsys.readouterr().err
    assert 'pvae train: error: --tensorboard needs the tensorboard package: pip install "pvae[tensorboard]"' in err
    assert not (tmp_path / "run").exists()


def test_a_point_mass_guide_logs_no_kl_and_says_why(tmp_path, capsys):
    assert train(tmp_path / "run", "--model", "ae", "--epochs", "1", "--tensorboard") == 0
    accumulator = events(tmp_path / "run")
    assert not [t for t in accumulator.Tags()["scalars"] if t.startswith("kl_per_dim/")]
    assert "val/elbo" not in accumulator.Tags()["scalars"]  # None for a point mass: nothing to plot
    assert "tensorboard: no KL per latent dimension" in capsys.readouterr().err
    assert len(accumulator.Images("images/reconstructions")) == 1  # after the last epoch


@pytest.mark.parametrize("flag", ["--tensorboard-every", "--tensorboard-images"])
def test_bad_intervals_are_refused(tmp_path, capsys, flag):
    assert train(tmp_path / "run", "--epochs", "1", "--tensorboard", flag, "0") == 2
    assert f"{flag} must be a positive number" in capsys.readouterr().err


def test_vector_data_log_the_figures_of_their_features_in_place_of_images(tmp_path):
    """A table of real values: the reconstructions and prior samples are the figures of :mod:`pvae.plots.run`
    (in the data's units), rendered pixel for pixel as the final pair draws them."""
    from sklearn.datasets import load_wine
    from torch.utils.tensorboard._utils import figure_to_image

    from pvae.plots.run import feature_reconstruction_figure, feature_samples_figure

    table = load_wine()
    wine = data.from_arrays(table.data, table.target, features=tuple(table.feature_names), name="wine")
    torch.manual_seed(derived_seed(3))
    pair = build_pair(PairConfig(z_dim=2, hidden=(16,), likelihood="gaussian-per-pixel"), wine.x_shape, 3, dataset=wine)
    model, guide = on_test_device(*pair)
    log = TensorBoardLog(tmp_path / "tb", wine, TensorBoardConfig(True, EVERY, 1), images=8)
    rows = fit(model, guide, wine, TrainConfig(epochs=2, batch_size=64, seed=derived_seed(4)), progress=False, log=log)
    log.close()
    accumulator = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    accumulator.Reload()
    assert not [tag for tag in accumulator.Tags()["images"] if tag.startswith("images/")]
    model.eval()
    guide.eval()
    with torch.random.fork_rng():
        torch.manual_seed(0)  # the log's seed: the same prior draws at every epoch
        samples = feature_samples_figure(model, wine, 8)
    expected = {
        "figures/reconstructions": figure_to_image(feature_reconstruction_figure(model, guide, wine, "val", 6)),
        "figures/prior_samples": figure_to_image(samples),
    }
    ends = np.cumsum([row["steps"] for row in rows]).tolist()
    for tag, rendered in expected.items():
        logged = accumulator.Images(tag)
        assert [e.step for e in logged] == ends  # --tensorboard-images 1: after each epoch
        pixels = np.asarray(Image.open(io.BytesIO(logged[-1].encoded_image_string)).convert("RGB"))
        assert np.array_equal(pixels, np.moveaxis(rendered, 0, -1)), tag  # (H, W, 3), the last epoch's pair
