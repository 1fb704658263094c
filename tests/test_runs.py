import json

import pytest
import torch

from pvae.files import atomic_write, write_json
from pvae.runs import Run, RunError


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"elbo": -90.0})

    def crash(handle):
        handle.write(b'{"elbo": -8')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert json.loads(path.read_text()) == {"elbo": -90.0}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary file left behind


def test_written_files_get_the_usual_mode_not_mkstemps_0600(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        write_json(tmp_path / "config.json", {})
    finally:
        os.umask(mask)
    assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o644


def test_an_existing_run_is_not_overwritten_unless_asked(tmp_path):
    run = Run.create(tmp_path / "run", {"a": 1})
    run.update_summary(test={"elbo": -1.0})
    with pytest.raises(RunError, match="already holds a run; pass --overwrite"):
        Run.create(tmp_path / "run", {"a": 2})
    assert Run.open(tmp_path / "run").config == {"a": 1}
    Run.create(tmp_path / "run", {"a": 2}, overwrite=True)
    assert Run.open(tmp_path / "run").config == {"a": 2}
    assert Run(tmp_path / "run").summary() == {}


def test_a_non_run_folder_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not empty and holds no run"):
        Run.create(tmp_path, {})
    with pytest.raises(RunError, match="not empty and holds no run"):
        Run.create(tmp_path, {}, overwrite=True)  # --overwrite replaces runs, never other folders
    with pytest.raises(RunError, match="not a run directory"):
        Run.open(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_summary_updates_keep_other_keys(tmp_path):
    run = Run.create(tmp_path / "r", {})
    run.update_summary(train={"epochs": 3})
    run.update_summary(test={"elbo": -25.0})
    assert run.summary() == {"train": {"epochs": 3}, "test": {"elbo": -25.0}}
    run.write_metrics([{"epoch": 1}, {"epoch": 2}])
    assert run.metrics() == [{"epoch": 1}, {"epoch": 2}]


def test_checkpoints_from_before_encoders_were_wrapped_still_load():
    from pvae.guides.gaussian import GaussianGuide

    guide = GaussianGuide((1, 8, 8), z_dim=3, hidden=(16,))
    old = {k.replace("encoder.net.", "encoder."): v.clone() for k, v in guide.state_dict().items()}
    assert "encoder.0.weight" in old
    fresh = GaussianGuide((1, 8, 8), z_dim=3, hidden=(16,))
    fresh.load_state_dict(old)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), guide.state_dict().values(), strict=True))
