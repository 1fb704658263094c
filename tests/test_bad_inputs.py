"""Every bad input a new user tried: each ends with exit status 2 and one message that names the problem
and the fix, before any work where possible, and no file of the user's changes.

One parametrized test holds the whole list. Each case runs ``pvae.cli.main(argv)`` in-process in its
own folder: ``run/`` is a copy of a tiny trained run (digits, one epoch) with the user's ``notes.txt``
in it, ``user/`` holds a user's files (model files, a plain file, folders). Every file there is hashed
before and after: a refused command changes none and writes none (Python's ``__pycache__`` aside), a
command that succeeds keeps the user's files it names.

The memory a machine has is fixed at 16 GB here, so the refusals of sizes that cannot fit do not
depend on the machine that runs the tests.
"""

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from pvae.cli import main
from pvae.data.dsprites import ORIGINAL

AVAILABLE = 16 * 10**9  # bytes of memory the tests pretend the machine has

# Small settings every `train` case starts from (a case's own flags come after, so they win).
TRAIN = ["train", "--epochs", "1", "--hidden", "16", "--z-dim", "4", "--samples", "10", "--no-progress"]


@dataclass
class Case:
    """One bad input.

    :param id: the test id.
    :param argv: the command line; ``{run}`` is the trained run's copy, ``{user}`` the user's folder.
    :param words: what the message must contain (case-insensitive).
    :param status: the exit status expected.
    :param prepare: called with the case's folder before the command runs (breaks a file, writes one).
    :param keep: for a command that succeeds, the user's files (relative paths) that must stay unchanged.
    :param check: called with the case's folder after the command, for what else must hold.
    :param patch: called with ``monkeypatch`` before the command (simulates what argv cannot).
    :param absent: what the message must not contain (case-insensitive): a misleading word it used to hold.
    """

    id: str
    argv: list[str]
    words: tuple[str, ...] = ()
    status: int = 2
    prepare: Callable[[Path], None] | None = None
    keep: tuple[str, ...] = ()
    check: Callable[[Path], None] | None = None
    patch: Callable[[pytest.MonkeyPatch], None] | None = None
    absent: tuple[str, ...] = ()
    needs_run: bool = field(init=False)

    def __post_init__(self):
        self.needs_run = any("{run}" in a for a in self.argv) or self.prepare is not None


# --- ways to break a run --------------------------------------------------------------------------


def _write(relative: str, content: bytes | str) -> Callable[[Path], None]:
    def prepare(root: Path) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)

    return prepare


def _empty_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """``$PVAE_DATA`` at an empty folder: no cached classifier, no Inception weights, nothing of the user's."""
    import tempfile

    monkeypatch.setenv("PVAE_DATA", tempfile.mkdtemp(prefix="pvae-empty-"))
    monkeypatch.delenv("PVAE_INCEPTION", raising=False)


def _no_classifier_trained() -> None:
    """Refused before work: no feature classifier was trained into ``$PVAE_DATA``."""
    assert not (Path(os.environ["PVAE_DATA"]) / "classifiers").exists()


def _npz(relative: str, **arrays) -> Callable[[Path], None]:
    def prepare(root: Path) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **arrays)

    return prepare


def _truncate(relative: str, fraction: float = 0.5) -> Callable[[Path], None]:
    def prepare(root: Path) -> None:
        path = root / relative
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])

    return prepare


def _remove(relative: str) -> Callable[[Path], None]:
    return lambda root: (root / relative).unlink()


def _edit_config(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def prepare(root: Path) -> None:
        path = root / "run" / "config.json"
        config = json.loads(path.read_text())
        change(config)
        path.write_text(json.dumps(config))

    return prepare


def _nan_weights(root: Path) -> None:
    path = root / "run" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    for tensor in state["model"].values():
        if tensor.is_floating_point():
            tensor.fill_(float("nan"))
    torch.save(state, path)


def _stale_temporary(root: Path) -> None:
    for relative in ("run/.checkpoint.pt.k2j4x_9a.tmp", "run/figures/.samples.png.0a1b2c3d.tmp"):
        path = root / relative
        path.write_bytes(b"half a file")
        old = time.time() - 3600
        os.utime(path, (old, old))


def _gone(*relatives: str) -> Callable[[Path], None]:
    def check(root: Path) -> None:
        for relative in relatives:
            assert not (root / relative).exists(), f"{relative} is still there"

    return check


def _each(*prepares: Callable[[Path], None]) -> Callable[[Path], None]:
    def prepare(root: Path) -> None:
        for one in prepares:
            one(root)

    return prepare


def _reran(root: Path) -> None:
    run = root / "run"
    assert (run / "checkpoint.pt").is_file() and (run / "summary.json").is_file()
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 1


def _failed_before_checkpoint(root: Path) -> None:
    for name in ("checkpoint.pt", "metrics.jsonl", "summary.json"):
        (root / "run" / name).unlink()
    shutil.rmtree(root / "run" / "figures")


def _read_only(relative: str) -> Callable[[Path], None]:
    def prepare(root: Path) -> None:
        (root / relative).mkdir(parents=True, exist_ok=True)
        (root / relative).chmod(0o555)

    return prepare


def _no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def _two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def _gpu_rng_states(root: Path) -> None:
    """The checkpoint as a GPU run writes it: the CUDA generators' states beside the CPU's."""
    path = root / "run" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    state["rng"]["cuda"] = [torch.zeros(16, dtype=torch.uint8)]
    torch.save(state, path)


def _interrupt_after_first_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    from pvae.base.runs import Run

    save = Run.save_checkpoint

    def save_then_interrupt(self, state):
        save(self, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(Run, "save_checkpoint", save_then_interrupt)


def _image_folder_with_loose_images(root: Path) -> None:
    """Grey PNGs in two class folders, and two more beside them."""
    from PIL import Image

    for relative in ("cells/a/0.png", "cells/a/1.png", "cells/b/2.png", "cells/b/3.png", "cells/x.png", "cells/y.png"):
        path = root / "user" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((4, 4), 50, np.uint8)).save(path)


def _measurement_as_labels(root: Path) -> None:
    """A table of 178 rows whose label column holds 150 whole numbers, stored as floats: a measurement."""
    rng = np.random.default_rng(0)
    label = np.repeat(np.arange(150.0), [29] + [1] * 149)
    rows = "".join(f"{a:.3f},{b:.3f},{c:.1f}\n" for a, b, c in zip(*rng.normal(size=(2, 178)), label, strict=True))
    (root / "user" / "table.csv").write_text("a,b,level\n" + rows)


USER_FILES = {
    "syntax_error.py": "import torch\n\n\nclass Broken(torch.nn.Module:\n    pass\n",
    "plain.py": "class Plain:\n    pass\n\n\ndef make_model(x_shape):\n    return None\n\n\nWIDTH = 3\n",
    "raises.py": "import torch\n\nraise RuntimeError('this file needs a GPU')\n",
    "no_z.py": '''import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule


class NoZ(PyroModule):
    """A model whose latent site is called "w"."""

    def __init__(self, x_shape, z_dim=20, **options):
        super().__init__()
        self.x_shape, self.z_dim = tuple(x_shape), z_dim
        self.decoder = torch.nn.Linear(z_dim, 64)

    def prior(self, batch_shape):
        return dist.Normal(torch.zeros(self.z_dim), 1.0).expand([*batch_shape, self.z_dim]).to_event(1)

    def decode(self, w, y=None):
        return dist.Bernoulli(logits=self.decoder(w)).to_event(1)

    def forward(self, x, y=None):
        with pyro.plate("data", x.shape[0]):
            w = pyro.sample("w", dist.Normal(x.new_zeros(x.shape[0], self.z_dim), 1.0).to_event(1))
            logits = self.decoder(w)
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x.reshape(x.shape[0], -1))
''',
    "notes.txt": "a user's file\n",
}


# --- the list -------------------------------------------------------------------------------------

READERS = {  # every command that reads a run, with small settings
    "evaluate": ["evaluate", "{run}", "--samples", "5", "--points", "20"],
    "plot": ["plot", "{run}"],
    "sample": ["sample", "{run}", "-n", "4", "--out", "{user}/s.png"],
    "diagnose": ["diagnose", "{run}", "--points", "4", "--khat-samples", "100", "--nuts-points", "0",
                 "--samples", "20", "--latent-points", "20", "--out", "{user}/d"],
    "compare-elbos": ["compare-elbos", "{run}", "--estimators", "trace", "--particles", "1", "--points", "5",
                      "--repeats", "2", "--grad-points", "2", "--grad-repeats", "2", "--cost-steps", "1",
                      "--no-jit", "--out", "{user}/c"],
    "resume": TRAIN + ["--out", "{run}", "--resume", "--epochs", "2"],
}  # fmt: skip

CASES: list[Case] = []

# A broken checkpoint.pt, for every command that reads one.
for command, argv in READERS.items():
    CASES += [
        Case(f"{command}-checkpoint-zero-bytes", argv, ("checkpoint.pt", "empty", "--overwrite"),
             prepare=_write("run/checkpoint.pt", b"")),
        Case(f"{command}-checkpoint-truncated", argv, ("checkpoint.pt", "truncated", "--overwrite"),
             prepare=_truncate("run/checkpoint.pt")),
        Case(f"{command}-checkpoint-garbage", argv, ("checkpoint.pt", "corrupt", "copy"),
             prepare=_write("run/checkpoint.pt", b"\x89PNG this is not a checkpoint")),
        Case(f"{command}-config-garbage", argv, ("config.json", "not a readable configuration", "--overwrite"),
             prepare=_write("run/config.json", '{"data": {"name": "digits"')),
    ]  # fmt: skip

CASES += [
    # The rest of a run directory.
    Case("evaluate-config-empty", READERS["evaluate"], ("config.json", "empty"), prepare=_write("run/config.json", "")),
    Case("plot-config-not-an-object", ["plot", "{run}"], ("config.json", "json object"),
         prepare=_write("run/config.json", "[1, 2, 3]")),
    Case("evaluate-config-unknown-key", READERS["evaluate"], ("config.json", "unknown keys", "wdith"),
         prepare=_edit_config(lambda c: c["pair"].update(wdith=3))),
    Case("evaluate-config-binary", READERS["evaluate"], ("config.json", "not a text file"),
         prepare=_write("run/config.json", b"\xff\xfe\x00garbage")),
    Case("evaluate-checkpoint-of-another-pair", READERS["evaluate"],
         ("does not fit", "config.json", "in the model", "in the checkpoint", "in the pair", "more difference",
          "--overwrite"), prepare=_edit_config(lambda c: c["pair"].update(hidden=[32]))),
    Case("evaluate-config-wrong-type", READERS["evaluate"], ("config.json", 'pair.z_dim is "two"', "not an integer"),
         prepare=_edit_config(lambda c: c["pair"].update(z_dim="two"))),
    Case("evaluate-config-section-not-an-object", READERS["evaluate"],
         ("config.json", "config section 'train' is [1, 2], not an object"),
         prepare=_edit_config(lambda c: c.update(train=[1, 2]))),
    Case("plot-metrics-row-without-a-field", ["plot", "{run}"], ("metrics.jsonl", "line 1", "has no train_loss"),
         prepare=_write("run/metrics.jsonl", '{"epoch": 1, "val_elbo": -40.0}\n')),
    Case("plot-metrics-corrupt", ["plot", "{run}"], ("metrics.jsonl", "line 1", "--overwrite"),
         prepare=_write("run/metrics.jsonl", '{"epoch": 1, "train_lo')),
    Case("resume-metrics-corrupt", READERS["resume"], ("metrics.jsonl", "not json"),
         prepare=_write("run/metrics.jsonl", "not json\n")),
    Case("evaluate-summary-corrupt", READERS["evaluate"], ("summary.json", "not a readable summary"),
         prepare=_write("run/summary.json", "{")),
    Case("evaluate-no-checkpoint", READERS["evaluate"], ("no checkpoint.pt", "did not finish an epoch"),
         prepare=_each(_remove("run/checkpoint.pt"), _remove("run/metrics.jsonl"))),
    Case("evaluate-checkpoint-deleted-after-epochs", READERS["evaluate"],
         ("no checkpoint.pt, though its metrics.jsonl records 1 epoch", "deleted or moved", "put it back",
          "--overwrite"), prepare=_remove("run/checkpoint.pt")),
    Case("evaluate-missing-run", ["evaluate", "{user}/nothing"],
         ("nothing does not exist", "not a run directory", "pvae train --out")),
    Case("plot-run-is-a-file", ["plot", "{user}/notes.txt"], ("is a file", "not a run directory")),
    Case("diagnose-folder-without-run", ["diagnose", "{user}"], ("not a run directory",)),
    Case("resume-without-run", TRAIN + ["--out", "{user}/fresh", "--resume"], ("not a run directory",)),
    Case("resume-with-other-settings", READERS["resume"] + ["--z-dim", "5"], ("--resume continues the run", "z_dim")),
    Case("stale-temporary-files-removed", READERS["evaluate"], status=0, prepare=_stale_temporary,
         keep=("run/notes.txt", "run/checkpoint.pt"),
         check=_gone("run/.checkpoint.pt.k2j4x_9a.tmp", "run/figures/.samples.png.0a1b2c3d.tmp")),
    # Where results go.
    Case("train-out-is-a-file", TRAIN + ["--out", "{user}/notes.txt"], ("--out", "is a file", "choose a folder")),
    Case("train-out-under-a-file", TRAIN + ["--out", "{user}/notes.txt/run"], ("lies under", "which is a file")),
    Case("train-out-read-only", TRAIN + ["--out", "{user}/locked/run"], ("read-only", "--out"),
         prepare=_read_only("user/locked")),
    Case("train-out-not-a-run", TRAIN + ["--out", "{user}"], ("holds no run", "choose another --out")),
    Case("train-over-a-run", TRAIN + ["--out", "{run}"], ("already holds a run", "--overwrite")),
    Case("train-over-an-interrupted-run", TRAIN + ["--out", "{run}"],
         ("holds a run that stopped before its end: --resume continues it", "--overwrite replaces it"),
         prepare=lambda root: (root / "run" / "summary.json").unlink()),
    Case("train-out-empty", TRAIN + ["--out", ""], ("--out '' names no folder",)),
    Case("resume-with-other-data", TRAIN + ["--out", "{run}", "--resume", "--data", "mnist", "--no-download"],
         ("--resume continues the run in", "trained on digits: --data mnist is other data")),
    Case("digits-data-dir-a-file", TRAIN + ["--data-dir", "{user}/notes.txt", "--out", "{user}/r"],
         ("--data-dir must be a folder, not a file",)),
    Case("quality-out-a-file-before-reading", ["quality", "{run}", "--out", "{user}/notes.txt"],
         ("--out", "notes.txt is a file, not a folder")),
    Case("diagnose-out-is-a-file", READERS["diagnose"][:-1] + ["{user}/notes.txt"], ("--out", "is a file")),
    Case("compare-out-under-a-file", READERS["compare-elbos"][:-1] + ["{user}/notes.txt/c"], ("lies under",)),
    Case("sample-out-under-a-file", ["sample", "{run}", "--out", "{user}/notes.txt/s.png"], ("lies under",)),
    Case("sample-out-is-a-folder", ["sample", "{run}", "--out", "{user}"], ("is a folder", "file")),
    Case("diagnose-run-read-only", READERS["diagnose"][:-2], ("read-only", "results folder"),
         prepare=lambda root: (root / "run").chmod(0o555)),
    Case("evaluate-run-read-only", READERS["evaluate"], ("read-only", "run directory"),
         prepare=lambda root: (root / "run").chmod(0o555)),
    Case("plot-figures-read-only", ["plot", "{run}"], ("read-only", "run directory"),
         prepare=lambda root: (root / "run" / "figures").chmod(0o555)),
    Case("overwrite-keeps-the-users-files", TRAIN + ["--out", "{run}", "--overwrite"], status=0,
         keep=("run/notes.txt", "run/figures/my-sketch.pdf", "run/figures/my_plot.png", "run/figures/mine/keep.png",
               "run/quality/my-notes.json"),
         prepare=_each(_write("run/figures/my-sketch.pdf", "%PDF"), _write("run/figures/my_plot.png", b"\x89PNG"),
                       _write("run/figures/mine/keep.png", b"\x89PNG"), _write("run/quality/my-notes.json", "{}")),
         check=_reran),
    Case("overwrite-checks-the-tensorboard-folder-before-deleting",
         TRAIN + ["--out", "{run}", "--overwrite", "--tensorboard"],
         ("the run's folder", "tensorboard is a file, not a folder"),
         keep=("run/checkpoint.pt", "run/summary.json", "run/tensorboard"), prepare=_write("run/tensorboard", "mine")),
    Case("rerun-after-failure-before-first-checkpoint", TRAIN + ["--out", "{run}"], status=0,
         prepare=_failed_before_checkpoint, keep=("run/notes.txt",), check=_reran),
    Case("sample-keeps-the-trained-samples", ["sample", "{run}", "-n", "4"], status=0,
         keep=("run/figures/samples.png",)),
    # A user's model file.
    Case("model-file-syntax-error", TRAIN + ["--model", "{user}/syntax_error.py:Broken", "--out", "{user}/r"],
         ("syntax_error.py", "line 4", "fix the syntax error")),
    Case("model-not-a-class", TRAIN + ["--model", "{user}/plain.py:make_model", "--out", "{user}/r"],
         ("a function, not a class", "torch.nn.Module")),
    Case("model-not-a-module", TRAIN + ["--model", "{user}/plain.py:Plain", "--out", "{user}/r"],
         ("not a torch.nn.Module", "PyroModule")),
    Case("guide-not-a-module", TRAIN + ["--guide", "{user}/plain.py:WIDTH", "--out", "{user}/r"],
         ("guide", "an int, not a class", "torch.nn.Module")),
    Case("model-class-missing", TRAIN + ["--model", "{user}/plain.py:VAE", "--out", "{user}/r"],
         ("has no 'VAE'", "Plain")),
    Case("model-file-missing", TRAIN + ["--model", "{user}/nofile.py:VAE", "--out", "{user}/r"], ("no python file",)),
    Case("model-file-raises", TRAIN + ["--model", "{user}/raises.py:M", "--out", "{user}/r"],
         ("raised RuntimeError", "needs a GPU", "fix the file")),
    Case("model-module-missing", TRAIN + ["--model", "no_such_package.models:VAE", "--out", "{user}/r"],
         ("no_such_package",)),
    Case("model-unknown", TRAIN + ["--model", "vea", "--out", "{user}/r"], ("unknown model", "vae")),
    Case("guide-unknown", TRAIN + ["--guide", "gausian", "--out", "{user}/r"], ("unknown guide", "gaussian")),
    Case("model-without-z-site", TRAIN + ["--model", "{user}/no_z.py:NoZ", "--out", "{user}/r"],
         ("no latent site 'z'", "['w']")),
    Case("guide-does-not-fit-model", TRAIN + ["--guide", "m2", "--out", "{user}/r"], ("m2", "guide")),
    # Sizes that cannot work or cannot fit.
    Case("hidden-negative", TRAIN + ["--hidden", "-5", "--out", "{user}/r"], ("--hidden", "-5")),
    Case("hidden-zero", TRAIN + ["--hidden", "0", "--out", "{user}/r"], ("--hidden", "0")),
    Case("hidden-empty-width", TRAIN + ["--hidden", "400,,200", "--out", "{user}/r"], ("--hidden", "400,,200")),
    Case("hidden-not-a-number", TRAIN + ["--hidden", "wide", "--out", "{user}/r"], ("--hidden", "wide")),
    Case("hidden-too-large", TRAIN + ["--hidden", "100000000", "--out", "{user}/r"],
         ("parameters", "GB", "16.0 GB available", "lower --hidden")),
    Case("z-dim-too-large", TRAIN + ["--z-dim", "100000", "--samples", "1000", "--out", "{user}/r"],
         ("log p(x)", "GB", "lower --samples or --z-dim")),
    Case("particles-too-many", TRAIN + ["--hidden", "400", "--particles", "100000", "--out", "{user}/r"],
         ("training step needs about", "GB", "16.0 GB available", "lower --particles or --batch-size")),
    Case("z-dim-zero", TRAIN + ["--z-dim", "0", "--out", "{user}/r"], ("--z-dim", "positive")),
    Case("particles-zero", TRAIN + ["--particles", "0", "--out", "{user}/r"], ("--particles", "positive")),
    Case("batch-size-negative", TRAIN + ["--batch-size", "-1", "--out", "{user}/r"], ("--batch-size", "positive")),
    Case("epochs-zero", TRAIN + ["--epochs", "0", "--out", "{user}/r"], ("--epochs", "positive")),
    Case("lr-zero", TRAIN + ["--lr", "0", "--out", "{user}/r"], ("--lr", "positive")),
    Case("lr-nan", TRAIN + ["--lr", "nan", "--out", "{user}/r"], ("--lr", "nan")),
    # A mistyped flag, or an abbreviation argparse would otherwise take for another flag.
    Case("flag-with-underscore", TRAIN + ["--z_dim", "5", "--out", "{user}/r"], ("no option --z_dim", "--z-dim")),
    Case("flag-abbreviated", TRAIN + ["--epoch", "1", "--out", "{user}/r"], ("no option --epoch", "--epochs")),
    Case("evaluate-flag-unknown", ["evaluate", "{run}", "--iwae-samples", "10"], ("no option --iwae-samples",)),
    Case("seed-negative", TRAIN + ["--seed", "-1", "--out", "{user}/r"], ("--seed", "-1", "4294967295")),
    Case("data-seed-too-large", TRAIN + ["--data-seed", "4294967296", "--out", "{user}/r"], ("--data-seed",)),
    Case("val-size-too-large", TRAIN + ["--val-size", "5000", "--out", "{user}/r"], ("--val-size", "5000", "1436")),
    Case("flows-negative", TRAIN + ["--guide", "iaf", "--flows", "-1", "--out", "{user}/r"], ("--flows", "-1")),
    Case("flows-without-flow-guide", TRAIN + ["--flows", "2", "--out", "{user}/r"], ("--flows",)),
    Case("samples-zero", TRAIN + ["--samples", "0", "--out", "{user}/r"], ("--samples", "positive")),
    # Numbers that are not numbers, or not allowed.
    Case("beta-nan", TRAIN + ["--beta", "nan", "--out", "{user}/r"], ("--beta", "nan")),
    Case("beta-inf", TRAIN + ["--beta", "inf", "--out", "{user}/r"], ("--beta", "inf")),
    Case("beta-negative", TRAIN + ["--beta", "-1", "--out", "{user}/r"], ("beta", "-1")),
    Case("alpha-nan", TRAIN + ["--elbo", "renyi", "--alpha", "nan", "--out", "{user}/r"], ("--alpha", "nan")),
    Case("alpha-negative", TRAIN + ["--elbo", "renyi", "--alpha", "-3", "--out", "{user}/r"], ("--alpha", "-3")),
    Case("alpha-one", TRAIN + ["--elbo", "renyi", "--alpha", "1", "--out", "{user}/r"], ("alpha", "1")),
    Case("tcvae-two-layer", TRAIN + ["--model", "two-layer", "--elbo", "tcvae", "--out", "{user}/r"],
         ("tcvae", "latent sites", "--elbo trace")),
    Case("tcvae-fullrank-guide", TRAIN + ["--guide", "fullrank", "--elbo", "tcvae", "--beta", "4", "--out", "{user}/r"],
         ("tcvae", "diagonal normal", "multivariatenormal", "--guide gaussian")),
    Case("labels-below-classes", TRAIN + ["--model", "m2", "--labels", "5", "--out", "{user}/r"],
         ("--labels", "10")),
    Case("labels-zero", TRAIN + ["--model", "m2", "--labels", "0", "--out", "{user}/r"], ("--labels", "positive")),
    Case("beta-schedule-from-zero", TRAIN + ["--beta", "0", "--beta-schedule", "linear", "--out", "{user}/r"],
         ("--beta-schedule",)),
    Case("ae-with-a-guide", TRAIN + ["--model", "ae", "--guide", "gaussian", "--out", "{user}/r"],
         ("--model ae means --guide delta",)),
    # Names that do not exist.
    Case("data-unknown", TRAIN + ["--data", "cifar", "--out", "{user}/r"], ("--data 'cifar' is not one of", "a file")),
    Case("elbo-unknown", TRAIN + ["--elbo", "elbow", "--out", "{user}/r"], ("--elbo", "invalid choice")),
    Case("likelihood-unknown", TRAIN + ["--likelihood", "laplace", "--out", "{user}/r"],
         ("unknown likelihood", "bernoulli")),
    Case("net-unknown", TRAIN + ["--net", "resnet", "--out", "{user}/r"], ("unknown net", "mlp")),
    Case("net-burgess-on-8x8-images", TRAIN + ["--net", "burgess", "--out", "{user}/r"],
         ("burgess", "multiples of 16", "(1, 8, 8)", "--net conv")),
    Case("binarize-unknown", TRAIN + ["--binarize", "maybe", "--out", "{user}/r"], ("--binarize", "invalid choice")),
    Case("command-unknown", ["trian"], ("invalid choice", "train")),
    Case("option-unknown", TRAIN + ["--epoch", "3x", "--out", "{user}/r"], ("--epoch",)),
    # Where the data come from.
    Case("data-dir-missing", TRAIN + ["--data", "fashion-mnist", "--data-dir", "{user}/none", "--out", "{user}/r"],
         ("--data-dir", "none")),
    Case("data-dir-empty", TRAIN + ["--data", "fashion-mnist", "--data-dir", "{user}/empty", "--out", "{user}/r"],
         ("--data-dir", "empty"), prepare=lambda root: (root / "user" / "empty").mkdir()),
    Case("data-dir-a-file", TRAIN + ["--data", "fashion-mnist", "--data-dir", "{user}/notes.txt", "--out", "{user}/r"],
         ("--data-dir", "notes.txt")),
    Case("dsprites-npz-corrupt", TRAIN + ["--data", "dsprites", "--data-dir", "{user}/ds", "--out", "{user}/r"],
         (ORIGINAL, "cannot be read as .npz", "expected the dsprites archive"),
         prepare=_write(f"user/ds/{ORIGINAL}", b"PK\x03\x04 half a download")),
    Case("dsprites-npz-mismatched", TRAIN + ["--data", "dsprites", "--data-dir", "{user}/ds", "--out", "{user}/r"],
         (ORIGINAL, "imgs", "latents_values has shape (10, 6)", "(737280, 6)"),
         prepare=_npz(f"user/ds/dsprites/{ORIGINAL}", imgs=np.zeros((10, 64, 64), np.uint8),
                      latents_values=np.zeros((10, 6)), latents_classes=np.zeros((10, 6), np.int64))),
    Case("image-folder-with-loose-images", TRAIN + ["--data", "{user}/cells", "--out", "{user}/r"],
         ("holds 2 image(s) at its top level", "class folders a, b", "move the loose images into a class folder",
          "point --data at a folder of only images"), prepare=_image_folder_with_loose_images),
    Case("label-column-a-measurement", TRAIN + ["--data", "{user}/table.csv", "--label-column", "level",
                                                "--out", "{user}/r"],
         ("150 distinct values in 178 rows", "not classes", "--factor-columns level", "--drop-columns level"),
         prepare=_measurement_as_labels),
    Case("train-size-zero", TRAIN + ["--train-size", "0", "--out", "{user}/r"], ("--train-size", "positive")),
    Case("train-size-whole-split", TRAIN + ["--train-size", "1257", "--out", "{user}/r"],
         ("--train-size", "between 1 and 1256", "training split has 1257")),
    # disentangle: data without factors, names and options that do not exist.
    Case("disentangle-no-factors", ["disentangle", "{run}"], ("digits", "no ground-truth factors", "--data dsprites")),
    Case("disentangle-metric-unknown", ["disentangle", "{run}", "--metrics", "mig,mgi"],
         ("--metrics", "mgi", "beta_vae, factor_vae, mig, dci, sap, modularity")),
    Case("disentangle-metric-option-unknown", ["disentangle", "{run}", "--metric-options", "dci.n_estimator=20"],
         ("dci has no option 'n_estimator'", "n_estimators")),
    Case("disentangle-metric-option-malformed", ["disentangle", "{run}", "--metric-options", "n_estimators=20"],
         ("metric.option=value", "dci.n_estimators=20")),
    Case("disentangle-metric-option-zero", ["disentangle", "{run}", "--metric-options", "mig.num_train=0"],
         ("num_train", "positive")),
    Case("disentangle-representation-unknown", ["disentangle", "{run}", "--representation", "mode"],
         ("--representation", "invalid choice", "sample")),
    # disentangle: a metric named twice, options of a metric not computed or given twice, sizes too small to measure.
    Case("disentangle-metric-twice", ["disentangle", "{run}", "--metrics", "mig,dci,mig"],
         ("--metrics names mig twice", "give each once", "--metrics mig,dci")),
    Case("disentangle-metric-twice-in-two-flags", ["disentangle", "{run}", "--metrics", "mig", "--metrics", "mig"],
         ("--metrics names mig twice",)),
    Case("disentangle-metric-option-of-a-metric-not-computed",
         ["disentangle", "{run}", "--metrics", "mig", "--metric-options", "dci.n_estimators=20"],
         ("dci.n_estimators=20", "dci is not among --metrics (mig)", "add dci to --metrics or drop the option")),
    Case("disentangle-metric-option-twice", ["disentangle", "{run}", "--metric-options",
                                             "mig.num_train=100,mig.num_train=200"],
         ("sets mig.num_train twice", "mig.num_train=100", "mig.num_train=200", "give it once")),
    Case("disentangle-metric-option-twice-in-two-flags", ["disentangle", "{run}", "--metric-options",
                                                          "mig.num_train=100", "--metric-options", "mig.num_train=200"],
         ("sets mig.num_train twice", "give it once")),
    Case("disentangle-num-eval-one", ["disentangle", "{run}", "--num-eval", "1"],
         ("--num-eval 1", "beta_vae needs num_eval ≥ 2", "0 or 1", "give --num-eval 2 or more")),
    Case("disentangle-num-train-one", ["disentangle", "{run}", "--metrics", "mig", "--num-train", "1"],
         ("--num-train 1", "mig needs num_train ≥ 2", "give --num-train 2 or more")),
    Case("disentangle-factor-vae-batch-of-one", ["disentangle", "{run}", "--metric-options", "factor_vae.batch_size=1"],
         ("factor_vae.batch_size=1", "factor_vae needs batch_size ≥ 2", "give factor_vae.batch_size=2 or more")),
    Case("disentangle-modularity-one-test-point", ["disentangle", "{run}", "--metric-options", "modularity.num_test=1"],
         ("modularity needs num_test ≥ 2", "roc auc")),
    # sweep: an option the grid names twice, in one --grid or two, however spelt.
    Case("sweep-grid-option-twice", ["sweep", "{user}/s", "--grid", "beta=1,2", "beta=3", "--", "--epochs", "1"],
         ("--grid names beta twice", "beta=1,2 and beta=3", "every cell would take the last value",
          "--grid beta=1,2,3")),
    Case("sweep-grid-option-twice-spelt-two-ways", ["sweep", "{user}/s", "--grid", "z-dim=2", "--grid", "z_dim=3",
                                                    "--", "--epochs", "1"],
         ("--grid names z_dim twice", "z-dim=2 and z_dim=3", "--grid z-dim=2,3")),
    # sweep: a train option given before -- says where it goes
    Case("sweep-train-option-before-the-separator", ["sweep", "{user}/s", "--grid", "beta=1,4", "--epochs", "5"],
         ("--epochs is an option of pvae train", "after --", "-- --epochs"), check=_gone("user/s")),
    # sweep: what this machine cannot run is refused before sweep.json is written (a corrected command then runs);
    # the folder is OUT, as the usage calls it.
    Case("sweep-device-absent", ["sweep", "{user}/s", "--grid", "beta=1,2", "--", "--device", "cuda", "--epochs", "1"],
         ("--device cuda", "no cuda device here", "--device cpu or auto"), absent=("cell beta",), patch=_no_gpu,
         check=_gone("user/s")),
    Case("sweep-data-absent", ["sweep", "{user}/s", "--grid", "beta=1,2", "--", "--data", "mnist", "--no-download",
                               "--epochs", "1"],
         ("'mnist' not found", "downloads are off", "to get it"), patch=_empty_data_dir, check=_gone("user/s")),
    Case("sweep-data-dir-absent-in-one-cell", ["sweep", "{user}/s", "--cells", "data-dir={user}/nowhere",
                                               "data-dir={user}", "--", "--data", "kmnist", "--epochs", "1"],
         ("cell data_dir=", "nowhere", "does not exist"), check=_gone("user/s")),
    Case("sweep-out-is-a-file", ["sweep", "{user}/notes.txt", "--grid", "beta=1,2", "--", "--epochs", "1"],
         ("out", "notes.txt is a file, not a folder"), absent=("--out",)),
    # runs: two outputs to one file.
    Case("runs-csv-and-markdown-one-file", ["runs", "{run}", "--csv", "{user}/same.out", "--markdown",
                                            "{user}/./same.out"],
         ("--csv", "--markdown", "name one file", "give each its own file")),
    # runs, report: a folder where a file is meant; the file suggested is one the command takes.
    Case("runs-csv-is-a-folder", ["runs", "{run}", "--csv", "{user}"], ("--csv", "is a folder", "/runs.csv"),
         absent=("out.png",)),
    Case("runs-markdown-is-a-folder", ["runs", "{run}", "--markdown", "{user}/"], ("--markdown", "/runs.md")),
    Case("report-out-is-a-folder", ["report", "{run}", "--out", "{user}/"], ("--out", "user/report.html"),
         absent=("/.html",)),
    Case("report-out-is-a-folder-without-slash", ["report", "{run}", "--out", "{user}"], ("user/report.html",)),
    Case("evaluate-a-sweep-folder", ["evaluate", "{user}/s"], ("holds a sweep, not a run directory", "pvae runs"),
         prepare=lambda root: (root / "user" / "s" / ".sweep").mkdir(parents=True)),
    Case("sweep-list-with-workers", ["sweep", "{user}/s", "--list", "--workers", "2"], ("--list", "drop --workers")),
    Case("report-out-is-not-html", ["report", "{run}", "--out", "{user}/page.txt"], ("e.g. ", "user/page.html"),
         absent=("page.txt.html",)),
    Case("encode-npy-with-draws", ["encode", "{run}", "--draws", "2", "--out", "{user}/codes.npy"],
         ("--out", "codes.npy", "holds the means alone", "user/codes.npz", "leave --draws out")),
    Case("compare-train-seconds-without-training", ["compare-elbos", "{run}", "--train-seconds", "5"],
         ("--train-seconds 5", "--train-epochs 0", "add --train-epochs N")),
    # quality: sizes, the cutoff, a classifier it may not train, the standard FID's weights.
    Case("quality-samples-zero", ["quality", "{run}", "--samples", "0"], ("--samples", "positive")),
    Case("quality-cutoff-nyquist", ["quality", "{run}", "--cutoff", "0.5"], ("cutoff", "0.5", "nyquist")),
    Case("quality-neighbours-above-samples", ["quality", "{run}", "--samples", "50", "--neighbours", "100"],
         ("--neighbours 100", "each set holds 50", "raise --samples or lower --neighbours"), patch=_empty_data_dir,
         check=lambda root: _no_classifier_trained()),
    Case("quality-no-classifier", ["quality", "{run}", "--no-train-classifier"],
         ("no classifier for digits", "--no-train-classifier"), patch=_empty_data_dir),
    Case("quality-inception-missing", ["quality", "{run}", "--inception", "{user}/inception.pt"],
         ("inception.pt", "inception-2015-12-05.pt", "PVAE_INCEPTION"), patch=_empty_data_dir),
    Case("quality-inception-not-torchscript", ["quality", "{run}", "--inception", "{user}/notes.txt"],
         ("notes.txt", "not a TorchScript module"), patch=_empty_data_dir),
    # Every other command's own options.
    Case("evaluate-nan-weights", READERS["evaluate"], ("checkpoint.pt", "nan", "--lr"), prepare=_nan_weights),
    Case("evaluate-samples-zero", ["evaluate", "{run}", "--samples", "0"], ("--samples", "positive")),
    Case("evaluate-points-zero", ["evaluate", "{run}", "--points", "0"], ("--points", "positive")),
    Case("evaluate-points-one", ["evaluate", "{run}", "--points", "1"],
         ("--points must be at least 2", "standard error", "leave --points out", "not 1")),
    Case("evaluate-split-unknown", ["evaluate", "{run}", "--split", "validation"], ("--split", "invalid choice")),
    Case("sample-n-zero", ["sample", "{run}", "-n", "0"], ("-n", "positive")),
    Case("encode-draws-too-many", ["encode", "{run}", "--draws", "1000000000"],
         ("--draws 1000000000 asks for 1797 rows × 1000000000 draws × 4 dimensions of z", "GB of codes",
          "16.0 GB available", "lower --draws")),
    # What a size option would cost is estimated before it is spent (the machine is said to have 16 GB).
    Case("sample-n-beyond-memory", ["sample", "{run}", "-n", "1000000000"],
         ("-n 1000000000 draws of 1×8×8 datapoints need about", "GB", "16.0 GB available", "lower -n")),
    Case("compare-particles-beyond-memory", ["compare-elbos", "{run}", "--particles", "1,100000000"],
         ("a training step needs about", "× 100000000 particles", "16.0 GB available",
          "lower --particles or --cost-batch")),
    Case("sample-label-of-unconditional-model", ["sample", "{run}", "--label", "3"],
         ("does not condition on labels", "--label")),
    Case("compare-estimator-unknown", ["compare-elbos", "{run}", "--estimators", "trace,iwea"],
         ("--estimators", "iwea", "not one of")),
    Case("compare-particles-zero", ["compare-elbos", "{run}", "--particles", "0,5"], ("--particles", "positive")),
    Case("compare-particles-garbage", ["compare-elbos", "{run}", "--particles", "1,,x"], ("--particles", "1,,x")),
    Case("compare-alpha-one", ["compare-elbos", "{run}", "--alpha", "1"], ("--alpha", "--estimators trace"),
         absent=("--elbo",)),  # an option compare-elbos lacks
    Case("diagnose-khat-samples-zero", ["diagnose", "{run}", "--khat-samples", "0"],
         ("--khat-samples", "at least 100")),
    Case("diagnose-chains-zero", ["diagnose", "{run}", "--chains", "0"], ("--chains", "positive")),
    Case("diagnose-points-negative", ["diagnose", "{run}", "--points", "-4"], ("--points", "positive")),
    Case("diagnose-max-r-hat-below-one", ["diagnose", "{run}", "--max-r-hat", "0.5"],
         ("--max-r-hat must be above 1", "1.01", "not 0.5")),
    Case("tensorboard-every-without-tensorboard", TRAIN + ["--tensorboard-every", "5", "--out", "{user}/r"],
         ("--tensorboard-every applies with --tensorboard", "add --tensorboard or drop it")),
    # --device: a device the machine lacks, for every command (torch.cuda patched: no GPU, whatever the machine).
    Case("device-cuda-absent", TRAIN + ["--device", "cuda", "--out", "{user}/r"],
         ("--device cuda", "no cuda device here", "this machine has: cpu", "--device cpu or auto"), patch=_no_gpu),
    Case("device-cuda-n-absent", ["evaluate", "{run}", "--device", "cuda:1"],
         ("--device cuda:1", "no cuda device here", "this machine has: cpu"), patch=_no_gpu),
    Case("device-mps-absent", ["sample", "{run}", "--device", "mps"],
         ("--device mps", "no mps device here", "this machine has: cpu"), patch=_no_gpu),
    Case("device-gpu-number-too-high", ["plot", "{run}", "--device", "cuda:2"],
         ("--device cuda:2", "2 cuda device(s)", "cuda:0, cuda:1"), patch=_two_gpus),
    Case("device-name-unknown", ["diagnose", "{run}", "--device", "gpu"],
         ("--device must be one of auto, cpu, cuda, cuda:n", "not gpu")),
    Case("device-absent-compare", ["compare-elbos", "{run}", "--device", "cuda"], ("no cuda device",), patch=_no_gpu),
    Case("device-absent-disentangle", ["disentangle", "{run}", "--device", "cuda"], ("no cuda device",),
         patch=_no_gpu),
    Case("device-absent-quality", ["quality", "{run}", "--device", "cuda"], ("no cuda device",), patch=_no_gpu),
    # A checkpoint written on a GPU (its CUDA generators' states beside the CPU's) resumes on the CPU.
    Case("gpu-checkpoint-resumes-on-the-cpu",
         TRAIN + ["--out", "{run}", "--epochs", "2", "--resume", "--device", "cpu"], status=0,
         prepare=_gpu_rng_states, patch=_no_gpu, keep=("run/notes.txt",)),
    # Ctrl-C while training.
    Case("ctrl-c-during-training", TRAIN + ["--epochs", "2", "--out", "{user}/r"],
         ("interrupted after epoch 1", "--resume"), status=130, patch=_interrupt_after_first_checkpoint),
]  # fmt: skip


def _params():
    for case in CASES:
        yield pytest.param(case, id=case.id)


def _tree(root: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every file under ``root``."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny trained run: digits, one epoch, 16 hidden units, 4 latent dimensions."""
    out = tmp_path_factory.mktemp("trained") / "run"
    status = main(TRAIN + ["--out", str(out)])
    assert status == 0 and (out / "checkpoint.pt").is_file()
    return out


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """A case's folder with ``user/`` holding the user's files."""
    user = tmp_path / "user"
    user.mkdir()
    for name, text in USER_FILES.items():
        (user / name).write_text(text)
    monkeypatch.chdir(tmp_path)  # a command without --out writes under runs/ here, never elsewhere
    return tmp_path


def _permission_bits_bind(root: Path) -> bool:
    """Whether a folder without write permission is read-only to this process (not to the superuser,
    unless it runs without the capability to override them)."""
    probe = root / "probe"
    probe.mkdir(mode=0o555)
    try:
        return not os.access(probe, os.W_OK)
    finally:
        probe.rmdir()


def _make_writable(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o755)


@pytest.mark.parametrize("case", list(_params()))
def test_bad_input(case: Case, workspace: Path, request, monkeypatch, capsys):
    """The command exits with ``case.status`` and one message with ``case.words``; no user file changes."""
    if "read-only" in case.words and not _permission_bits_bind(workspace):
        pytest.skip("permission bits do not bind this user (the superuser): no folder is read-only to it")
    if case.needs_run:
        trained = request.getfixturevalue("trained")
        shutil.copytree(trained, workspace / "run")
        (workspace / "run" / "notes.txt").write_text("my notes on this run\n")
    if case.prepare is not None:
        case.prepare(workspace)
    import pvae.measures.memory

    monkeypatch.setattr(pvae.measures.memory, "available_memory", lambda device="cpu": AVAILABLE)
    if case.patch is not None:
        case.patch(monkeypatch)
    argv = [a.format(run=workspace / "run", user=workspace / "user") for a in case.argv]
    capsys.readouterr()  # what the fixtures printed (the trained run's banner) is not the command's
    before = _tree(workspace)
    try:
        try:
            status = main(argv)
        except SystemExit as exit_:  # argparse exits by itself
            status = exit_.code
        except BaseException as error:  # a traceback, a KeyboardInterrupt: what a user must never see
            pytest.fail(f"{argv[0]} raised {type(error).__name__}: {error}")
    finally:
        _make_writable(workspace)
    after = _tree(workspace)
    err = capsys.readouterr().err
    assert status == case.status, f"exit status {status}, expected {case.status}; stderr: {err[-600:]}"
    if case.status == 130:  # Ctrl-C: one line that says what was kept and how to go on, no traceback
        assert "Traceback" not in err and "error:" not in err, err[-600:]
        line = next(line for line in err.splitlines() if "interrupted" in line).lower()
        for word in case.words:
            assert word.lower() in line, f"{word!r} not in: {line}"
    elif case.status != 0:
        assert err.count("error:") == 1, f"not one error line: {err[-600:]}"
        lines = err.strip().splitlines()  # the error comes first, or after train's banner: no usage, no traceback
        first = next(i for i, line in enumerate(lines) if "error:" in line)
        assert first <= 1 and "usage:" not in err and "Traceback" not in err, err[-600:]
        message = err[err.index("error:") :].lower()
        for word in case.words:
            assert word.lower() in message, f"{word!r} not in: {message}"
        for word in case.absent:
            assert word.lower() not in message, f"{word!r} in: {message}"
        assert after == before, "a refused command changed or wrote files: " + ", ".join(
            sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        )
    for relative in case.keep:
        assert after.get(relative) == before.get(relative) and relative in before, f"{relative} changed or was lost"
    if case.check is not None:
        case.check(workspace)


def test_the_list_holds_every_case():
    """At least 60 cases, each id once."""
    ids = [case.id for case in CASES]
    assert len(ids) >= 60 and len(ids) == len(set(ids))


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="for the superuser, with setpriv")
def test_read_only_cases_run_without_the_superusers_override():
    """Permission bits do not bind the superuser (CI runs as root), so the read-only cases above skip
    there: run them again in a process that drops the capabilities that override the bits."""
    import subprocess
    import sys

    drop = "-dac_override,-dac_read_search"
    command = ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", sys.executable, "-m", "pytest"]
    command += [__file__, "-q", "-p", "no:cacheprovider", "-k", "read-only"]
    out = subprocess.run(command, capture_output=True, text=True)
    assert out.returncode == 0 and "4 passed" in out.stdout, out.stdout[-2000:]
