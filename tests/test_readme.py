"""The README is the front door: its Python examples run, CI runs its test command, and its links lead somewhere."""

import json
import re
import sys
from pathlib import Path

from tests.conftest import derived_seed

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PAIRS_GUIDE = ROOT / "docs" / "guides" / "pairs.md"


def test_ci_runs_the_readme_test_command():
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    test_command = next(line for b in blocks for line in b.splitlines() if "pytest" in line and "pip install" in line)
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command.replace(" -e", " --quiet -e").strip() in ci or test_command.strip() in ci, test_command


def test_readme_python_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    # Twenty epochs on digits: about -29 nats of ELBO, and log p(x) above it.
    scores = namespace["scores"]
    assert -35 < scores["elbo"] < scores["log_px"] < -20
    assert (tmp_path / "samples.png").read_bytes().startswith(b"\x89PNG")


def test_the_pairs_guide_trains_the_example_pair_from_python(monkeypatch):
    """The guide on writing a pair trains the example from Python, from the checkout's root."""
    from pvae.measures.evaluate import evaluate

    blocks = re.findall(r"```python\n(.*?)```", PAIRS_GUIDE.read_text(), re.S)
    (own_pair,) = [b for b in blocks if "from laplace_vae import" in b]
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the block puts examples/ on the path: undone after
    namespace: dict = {}
    exec(compile(own_pair, str(PAIRS_GUIDE), "exec"), namespace)
    scores = evaluate(namespace["model"], namespace["guide"], namespace["digits"].test.images(), num_samples=10)
    assert -40 < scores["elbo"] < -20


def test_readme_application_example_runs_as_the_commands_it_names(tmp_path, monkeypatch):
    """The application's functions write the run the commands write: the test split's numbers in summary.json,
    evaluate's own entry beside training's."""
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "from pvae.app" in b]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    summary = json.loads((tmp_path / "runs" / "python" / "summary.json").read_text())
    assert summary["training"]["epochs"] == 5 and summary["evaluation"]["samples"] == 1000  # train's own test log p(x)
    result = namespace["result"]
    assert summary["test_K200"]["log_px"] == result["log_px"] and result["elbo"] <= result["log_px"] < 0


def test_the_pairs_guide_shows_the_example_pair_from_its_file():
    """One copy: the guide includes examples/laplace_vae.py rather than pasting it."""
    (included,) = re.findall(r"^```\{literalinclude\} (\S+)$", PAIRS_GUIDE.read_text(), re.M)
    assert (PAIRS_GUIDE.parent / included).resolve() == ROOT / "examples" / "laplace_vae.py"


def test_readme_links_lead_to_files_that_exist():
    """Every relative link and image of the README names a file or folder of the checkout."""
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    local = [t for t in targets if "://" not in t and not t.startswith("mailto:")]
    assert len(local) >= 20, local  # the guides, the results, the reference and the picture
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
    assert "docs/guides/index.md" in local and "docs/results/index.md" in local


def test_readme_stays_short():
    assert len(README.splitlines()) <= 250


def test_example_pair_trains_from_the_command_line(tmp_path):
    import pyro
    import torch
    from pyro import poutine

    from pvae.cli import main
    from pvae.engine.config import restore
    from pvae.measures.evaluate import log_weights

    path = ROOT / "examples" / "laplace_vae.py"
    out = tmp_path / "laplace"
    args = ["--model", f"{path}:LaplaceVAE", "--guide", f"{path}:LaplaceGuide", "--z-dim", "8", "--hidden", "128"]
    assert main(["train", *args, "--epochs", "10", "--samples", "100", "--no-progress", "--out", str(out)]) == 0
    run, _, dataset, model, guide = restore(out)
    metrics = run.metrics()
    assert metrics[-1]["val_elbo"] > metrics[0]["val_elbo"] + 3
    test = run.summary()["test"]
    assert test["elbo"] < test["log_px"] < 0
    # the engine scores the pair with its own densities: a Laplace prior and a Laplace guide
    x = dataset.test.images(slice(20))
    torch.manual_seed(derived_seed(1))
    parts = log_weights(model, guide, x, num_samples=3)
    torch.manual_seed(derived_seed(1))
    with pyro.plate("particles", 3, dim=-2):  # the same draw, (3, 20, 8)
        z = poutine.trace(guide).get_trace(x).nodes["z"]["value"]
    laplace = torch.distributions.Laplace(0.0, 1.0)
    assert torch.allclose(parts["log_pz"], laplace.log_prob(z).sum(-1), atol=1e-4)
