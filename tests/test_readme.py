"""The README is the front door: its Python example runs and CI runs its test command."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    test_command = next(line for b in blocks for line in b.splitlines() if "pytest" in line and "pip install" in line)
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command.replace(" -e", " --quiet -e").strip() in ci or test_command.strip() in ci, test_command


def test_readme_python_example_runs(tmp_path, monkeypatch):
    (code,) = re.findall(r"```python\n(.*?)```", README, re.S)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    # Twenty epochs on digits: about -29 nats of ELBO, and log p(x) above it.
    scores = namespace["scores"]
    assert -35 < scores["elbo"] < scores["log_px"] < -20
    assert (tmp_path / "samples.png").read_bytes().startswith(b"\x89PNG")
