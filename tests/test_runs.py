import json
import os
import time

import pytest
import torch

from pvae.base.files import atomic_write, write_json
from pvae.base.runs import Run, RunError, check_writable


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
    rows = [{"epoch": 1, "train_loss": 30.0}, {"epoch": 2, "train_loss": 29.5, "val_elbo": -29.0}]
    run.write_metrics(rows)
    assert run.metrics() == rows


def test_checkpoints_from_before_encoders_were_wrapped_still_load():
    from pvae.guides.gaussian import GaussianGuide

    guide = GaussianGuide((1, 8, 8), z_dim=3, hidden=(16,))
    old = {k.replace("encoder.net.", "encoder."): v.clone() for k, v in guide.state_dict().items()}
    assert "encoder.0.weight" in old
    fresh = GaussianGuide((1, 8, 8), z_dim=3, hidden=(16,))
    fresh.load_state_dict(old)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), guide.state_dict().values(), strict=True))


def test_overwrite_deletes_the_files_pvae_recorded_and_nothing_else(tmp_path):
    from pvae.base.files import atomic_write, write_json

    run = Run.create(tmp_path / "run", {"a": 1})
    run.save_checkpoint({"model": {}, "guide": {}})
    run.update_summary(test={"elbo": -1.0})
    atomic_write(run.figures / "curves.png", lambda handle: handle.write(b"png"))
    write_json(run.path / "quality" / "quality.json", {"fd": 1.0})  # a result of the model about to be replaced
    atomic_write(run.path / "diagnostics" / "figures" / "k_hat.png", lambda handle: handle.write(b"png"))
    # the user's own, beside pvae's, with pvae's suffixes and in pvae's folders
    (run.figures / "my_plot.png").write_bytes(b"mine")
    (run.figures / "mine").mkdir()
    (run.figures / "mine" / "keep.png").write_bytes(b"mine")
    (run.path / "quality" / "notes.json").write_text("{}")
    (run.path / "notes.txt").write_text("mine")
    (run.path / "scripts").mkdir()
    (run.path / "scripts" / "plot.py").write_text("print(1)")
    assert sorted(str(p.relative_to(run.path)) for p in run.own_files()) == [
        ".pvae-files", "checkpoint.pt", "config.json", "diagnostics/figures/k_hat.png", "figures/curves.png",
        "quality/quality.json", "summary.json",
    ]  # fmt: skip
    again = Run.create(tmp_path / "run", {"a": 2}, overwrite=True)
    left = sorted(str(p.relative_to(run.path)) for p in run.path.rglob("*") if p.is_file())
    assert left == [
        ".pvae-files", "config.json", "figures/mine/keep.png", "figures/my_plot.png", "notes.txt", "quality/notes.json",
        "scripts/plot.py",
    ]  # fmt: skip
    assert not (run.path / "diagnostics").exists()  # emptied of pvae's files, so removed
    assert (run.path / "notes.txt").read_text() == "mine" and Run.open(run.path).config == {"a": 2}
    assert again.left == [] and [p.name for p in again.own_files()] == ["config.json", ".pvae-files"]


def test_overwrite_of_a_run_without_a_manifest_deletes_only_the_files_every_run_has(tmp_path):
    run = Run.create(tmp_path / "run", {"data": {}, "pair": {}, "train": {}})
    run.save_checkpoint({"model": {}, "guide": {}})
    (run.path / ".pvae-files").unlink()  # as a run written before runs kept one
    (run.figures / "curves.png").write_bytes(b"png")
    (run.figures / "my_plot.png").write_bytes(b"mine")
    again = Run.create(tmp_path / "run", {"data": {}, "pair": {}, "train": {}}, overwrite=True)
    assert [str(p.relative_to(run.path)) for p in again.left] == ["figures/curves.png", "figures/my_plot.png"]
    assert (run.figures / "my_plot.png").read_bytes() == b"mine" and not (run.path / "checkpoint.pt").exists()


def test_each_checkpoint_names_its_model_and_a_result_of_another_is_stale(tmp_path):
    from pvae.base.results import is_stale, measured

    run = Run.create(tmp_path / "run", {})
    first = run.save_checkpoint({"model": {}, "guide": {}})
    reader = Run.open(run.path)
    reader.load_checkpoint()
    result = measured(reader)
    assert result == {"model_id": first} and reader.current_model_id() == first and not is_stale(result, first)
    second = run.save_checkpoint({"model": {}, "guide": {}})  # trained further (--resume)
    assert second != first and Run.open(run.path).current_model_id() == second
    assert is_stale(result, second) and is_stale({}, second)  # a result made before checkpoints had ids
    assert not is_stale({}, None)  # a checkpoint of an older pvae: nothing to compare with


def test_a_run_that_failed_before_its_first_checkpoint_is_reused_without_overwrite(tmp_path):
    Run.create(tmp_path / "run", {"a": 1})  # then the first epoch failed
    (tmp_path / "run" / "notes.txt").write_text("mine")
    assert Run.create(tmp_path / "run", {"a": 2}).config == {"a": 2}
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


def test_orphaned_temporary_files_are_removed_and_live_ones_kept(tmp_path):
    run = Run.create(tmp_path / "run", {})
    stale, live = run.path / ".checkpoint.pt.ab12_xyz.tmp", run.figures / ".curves.png.0123abcd.tmp"
    foreign = [run.path / "data.tmp", run.path / ".notes.tmp", run.path / ".a.b.tmp"]
    for path in [stale, live, *foreign]:
        path.write_bytes(b"x")
    os.utime(stale, (time.time() - 3600,) * 2)
    Run.open(run.path)  # a reader: another process may be writing `live` right now
    assert not stale.exists() and live.exists()
    Run.open(run.path, writing=True)  # train --resume: no other writer, every pvae temporary file is an orphan
    assert not live.exists() and all(p.exists() for p in foreign)


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("checkpoint.pt", b"", "checkpoint.pt is not a readable checkpoint (empty (0 bytes)"),
        ("checkpoint.pt", b"PK\x03\x04 half a zip", "checkpoint.pt is not a readable checkpoint (truncated or corrupt"),
        ("checkpoint.pt", None, "checkpoint.pt is not a pvae checkpoint"),
        ("config.json", b'{"a": ', "config.json is not a readable configuration (line 1"),
        ("config.json", b"", "config.json is not a readable configuration (empty)"),
        ("config.json", b"3", "config.json is not a run configuration"),
        ("metrics.jsonl", b'{"epoch": 1}\n{"epo', "metrics.jsonl, line 2, is not JSON"),
        ("summary.json", b"[]", "summary.json is not a summary"),
        # an entry that is not a stage's numbers (h): named, with the value found
        ("summary.json", b'{"test": "oops"}', "summary.json is not a summary pvae wrote: its entry 'test' is \"oops\""),
        # an epoch's row without its fields (j): the line, the field and what it should be
        (
            "metrics.jsonl",
            b'{"epoch": 1, "train_loss": 3.0}\n{"epoch": 2}\n',
            "metrics.jsonl, line 2, has no train_loss",
        ),
        ("metrics.jsonl", b'{"epoch": "one", "train_loss": 3.0}\n', 'line 1, has epoch "one", not an epoch\'s number'),
        ("metrics.jsonl", b"[1, 2]\n", "metrics.jsonl, line 1, is [1, 2], not an epoch's row"),
    ],
)
def test_a_broken_file_of_a_run_is_named_with_the_fix(tmp_path, name, content, words):
    run = Run.create(tmp_path / "run", {})
    if content is None:
        torch.save([1, 2, 3], run.path / name)
    else:
        (run.path / name).write_bytes(content)
    with pytest.raises(RunError) as caught:
        {"checkpoint.pt": run.load_checkpoint, "config.json": lambda: run.config,
         "metrics.jsonl": run.metrics, "summary.json": run.summary}[name]()  # fmt: skip
    assert words in str(caught.value) and "train again with --overwrite, or restore the file from a copy" in str(
        caught.value
    )


def test_a_place_that_cannot_be_written_is_refused(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="is a file, not a folder"):
        check_writable(tmp_path / "file")
    with pytest.raises(RunError, match="lies under .*file, which is a file"):
        check_writable(tmp_path / "file" / "run")
    with pytest.raises(RunError, match="is a folder: give the name of a file"):
        check_writable(tmp_path, file=True)
    # the file suggested is one the option takes (e): runs' tables, a report page
    with pytest.raises(RunError, match=r"--csv .* is a folder: give the name of a file to write, e.g. .*/runs\.csv$"):
        check_writable(tmp_path, "--csv", file=True)
    with pytest.raises(RunError, match=r"e\.g\. .*/runs\.md$"):
        check_writable(tmp_path, "--markdown", file=True)
    with pytest.raises(RunError, match=r"e\.g\. .*/report\.html$"):
        check_writable(tmp_path, "--out", file=True, example="report.html")
    check_writable(tmp_path / "new" / "deeper")  # created later: its nearest existing parent is writable
    # Permission bits do not bind the superuser; os.access is what the check asks.
    monkeypatch.setattr(os, "access", lambda path, mode: str(path) != str(tmp_path))
    with pytest.raises(RunError, match=r"--out .*new/run: .* is read-only"):
        check_writable(tmp_path / "new" / "run")
    with pytest.raises(RunError, match="is read-only"):
        Run.create(tmp_path / "run", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # refused before anything was written


def test_overwrite_never_follows_a_link_out_of_the_run(tmp_path):
    mine = tmp_path / "my-figures"
    mine.mkdir()
    (mine / "figure.png").write_bytes(b"mine")
    (mine / "empty").mkdir()
    run = Run.create(tmp_path / "run", {})
    run.save_checkpoint({"model": {}, "guide": {}})
    (run.figures / "linked").symlink_to(mine)
    (run.path / "elbos").symlink_to(mine)
    Run.create(tmp_path / "run", {}, overwrite=True)
    assert (mine / "figure.png").read_bytes() == b"mine" and (mine / "empty").is_dir()


def test_a_folder_that_is_not_a_run_is_never_cleaned(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    lookalike = tmp_path / ".draft.txt.abcd1234.tmp"
    lookalike.write_text("mine too")
    with pytest.raises(RunError, match="holds no run"):
        Run.create(tmp_path, {})
    assert lookalike.read_text() == "mine too"
    (tmp_path / "notes.txt").unlink()
    lookalike.unlink()
    (tmp_path / ".config.json.x1y2z3w4.tmp").write_text("{")  # the first write of config.json, interrupted
    assert Run.create(tmp_path, {"a": 1}).config == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".pvae-files", "config.json"]


def test_the_temporary_names_cleaned_are_those_atomic_path_makes(tmp_path):
    """The cleanup recognises exactly what an interrupted write leaves: the name atomic_path gave it."""
    from pvae.base.files import TEMPORARY, atomic_path

    for name in ("checkpoint.pt", "metrics.jsonl", "figures.png", "a.b.c"):
        with atomic_path(tmp_path / name) as tmp:
            assert TEMPORARY.match(tmp.name), tmp.name
            tmp.write_text("x")
    assert not TEMPORARY.match("notes.tmp") and not TEMPORARY.match(".notes.tmp")


class _RunsCode:
    """What an attacker adds to a checkpoint: unpickling it calls ``os.system``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from pvae import cli

    out = tmp_path_factory.mktemp("safe") / "run"
    argv = ["train", "--epochs", "1", "--z-dim", "2", "--hidden", "16", "--samples", "5", "--no-progress"]
    assert cli.main([*argv, "--out", str(out), "--device", "cpu"]) == 0
    return out


def _copy_run(run, tmp_path):
    import shutil

    return shutil.copytree(run, tmp_path / "run")


def test_the_rng_state_survives_a_weights_only_round_trip(tmp_path):
    import random

    import numpy as np

    from pvae.base.rng import rng_state, set_rng_state

    np.random.normal(size=3)  # a cached Gaussian in NumPy's state too
    torch.save({"rng": rng_state()}, tmp_path / "state.pt")
    first = (torch.rand(4), np.random.normal(size=4), [random.random() for _ in range(4)], random.gauss(0, 1))
    set_rng_state(torch.load(tmp_path / "state.pt", weights_only=True)["rng"])
    again = (torch.rand(4), np.random.normal(size=4), [random.random() for _ in range(4)], random.gauss(0, 1))
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert first[2:] == again[2:]


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tiny_run, tmp_path, capsys):
    from pvae import cli

    run = _copy_run(tiny_run, tmp_path)
    marker = tmp_path / "ran"
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    torch.save({**state, "extra": _RunsCode(marker)}, run / "checkpoint.pt")
    for argv in (["evaluate", str(run), "--samples", "5", "--device", "cpu"], ["upgrade", str(run)]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "system" in err and "no pvae checkpoint holds" in err, err
        assert not marker.exists()  # nothing ran, whatever command opened the run
    with pytest.raises(RunError, match="Do not use this run"):
        Run.open(run).load_checkpoint()
    assert not marker.exists()


def test_an_old_checkpoint_is_converted_once_explicitly_and_then_gives_the_same_numbers(tiny_run, tmp_path, capsys):
    import random

    import numpy as np

    from pvae import cli

    run = _copy_run(tiny_run, tmp_path)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert cli.main(["evaluate", str(run), "--samples", "5", "--device", "cpu"]) == 0
    before = json.loads((run / "summary.json").read_text())["test"]
    # the form pvae 0.1 wrote: NumPy's state tuple with its array, Python's nested tuples
    np.random.seed(3)
    random.seed(3)
    old_rng = {**state["rng"], "numpy": np.random.get_state(), "python": random.getstate()}
    torch.save({**state, "rng": old_rng}, run / "checkpoint.pt")
    assert cli.main(["evaluate", str(run), "--samples", "5", "--device", "cpu"]) == 2
    assert f"convert it once with `pvae upgrade {run}`" in capsys.readouterr().err
    assert cli.main(["upgrade", str(run)]) == 0
    assert "rewritten in the current form" in capsys.readouterr().out
    converted = torch.load(run / "checkpoint.pt", weights_only=True)  # readable without any allow-list
    for part in ("model", "guide"):
        assert all(torch.equal(converted[part][k], v) for k, v in state[part].items())
    from pvae.base.rng import set_rng_state

    set_rng_state(converted["rng"])
    draws = (np.random.random(3), random.random())
    np.random.seed(3)
    random.seed(3)
    assert np.array_equal(draws[0], np.random.random(3)) and draws[1] == random.random()
    assert cli.main(["upgrade", str(run)]) == 0
    assert "already in the current form: nothing written" in capsys.readouterr().out
    assert cli.main(["evaluate", str(run), "--samples", "5", "--device", "cpu"]) == 0
    after = json.loads((run / "summary.json").read_text())["test"]
    assert {k: v for k, v in after.items() if k != "seconds"} == {k: v for k, v in before.items() if k != "seconds"}


def test_an_earlier_result_of_the_same_model_with_other_settings_is_moved_aside_never_replaced(tmp_path):
    from pvae.base.files import write_json, written
    from pvae.base.results import keep_earlier_results

    run = Run.create(tmp_path / "run", {})
    model = run.save_checkpoint({"model": {}, "guide": {}})
    folder = run.path / "quality"
    defaults = {"samples": 10000, "seed": 0}
    write_json(folder / "quality.json", {"model_id": model, "command_settings": {"samples": 10000, "seed": 3}})
    # the same settings again, or nothing there: replaced in place
    assert keep_earlier_results(folder, {"samples": 10000, "seed": 3}, defaults, model) is None
    assert keep_earlier_results(run.path / "elbos", {"seed": 1}, defaults, model) is None
    kept = keep_earlier_results(folder, {"samples": 500, "seed": 0}, defaults, model)
    assert kept == run.path / "quality-seed3" and not folder.exists()
    assert json.loads((kept / "quality.json").read_text())["command_settings"]["seed"] == 3
    assert kept / "quality.json" in written(run.path)  # still pvae's, deleted with the run on --overwrite
    # a second earlier result of the same settings goes beside the first
    write_json(folder / "quality.json", {"model_id": model, "command_settings": {"samples": 10000, "seed": 3}})
    assert keep_earlier_results(folder, {"samples": 1, "seed": 0}, defaults, model) == run.path / "quality-seed3-2"
    # a result of another model of the run (trained since) is stale: replaced, not kept
    write_json(folder / "quality.json", {"model_id": "an earlier one", "command_settings": {"seed": 5}})
    assert keep_earlier_results(folder, {"samples": 1, "seed": 0}, defaults, model) is None
    # one made before results recorded their settings, of a checkpoint without an id
    write_json(folder / "quality.json", {"fd": 1.0})
    assert keep_earlier_results(folder, {"seed": 0}, defaults, None) == run.path / "quality-earlier"


def test_a_missing_checkpoint_says_whether_no_epoch_finished_or_it_was_deleted(tmp_path):
    """No checkpoint.pt: before the first epoch ended (train again), or after epochs that metrics.jsonl records
    (the file was deleted or moved: put it back, or train again with --overwrite)."""
    run = Run.create(tmp_path / "run", {})
    with pytest.raises(RunError, match="has no checkpoint.pt: its training did not finish an epoch; train it again"):
        run.load_checkpoint()
    run.write_metrics([{"epoch": 1, "train_loss": 30.0}, {"epoch": 2, "train_loss": 29.0}])
    with pytest.raises(RunError) as caught:
        run.load_checkpoint()
    message = str(caught.value)
    assert "has no checkpoint.pt, though its metrics.jsonl records 2 epochs" in message
    assert "deleted or moved since; put it back" in message and "--overwrite" in message
    assert "did not finish an epoch" not in message


def test_a_folder_with_a_config_json_of_the_users_is_not_a_run(tmp_path):
    (tmp_path / "p" / "figures").mkdir(parents=True)
    (tmp_path / "p" / "config.json").write_text('{"my": 1}')
    (tmp_path / "p" / "figures" / "curves.png").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(RunError, match="holds a config.json that is not a pvae run's; choose another --out"):
            Run.create(tmp_path / "p", {"a": 1}, overwrite=overwrite)
    assert (tmp_path / "p" / "config.json").read_text() == '{"my": 1}'
    assert (tmp_path / "p" / "figures" / "curves.png").read_text() == "mine"


def test_a_file_pvae_wrote_and_someone_edited_since_is_never_written_over(tmp_path):
    from pvae.base.files import NotWritten, atomic_write, write_json, written

    run = Run.create(tmp_path / "run", {"a": 1})
    run.save_checkpoint({"model": {}, "guide": {}})
    write_json(run.path / "codes.json", {"z": [0.1]})
    write_json(run.path / "quality" / "quality.json", {"fd": 1.0})
    with open(run.path / "codes.json", "a") as handle:  # annotated by hand
        handle.write("// checked by hand\n")
    assert written(run.path, changed=True) == [run.path / "codes.json"]
    assert run.path / "codes.json" not in run.own_files()
    with pytest.raises(RunError, match=r"1 file\(s\) pvae wrote were edited since \(codes.json\): --overwrite would"):
        Run.create(tmp_path / "run", {"a": 2}, overwrite=True)
    assert (run.path / "checkpoint.pt").exists() and (run.path / "quality" / "quality.json").exists()  # nothing gone
    with pytest.raises(NotWritten, match="codes.json was edited since pvae wrote it: it is not written over"):
        write_json(run.path / "codes.json", {"z": [0.2]})
    (run.path / "mine.png").write_bytes(b"mine")
    with pytest.raises(NotWritten, match="mine.png is a file of yours, not one pvae wrote"):
        atomic_write(run.path / "mine.png", lambda handle: handle.write(b"pvae's"))
    assert (run.path / "mine.png").read_bytes() == b"mine"
    (run.path / "codes.json").rename(tmp_path / "codes.json")  # moved out, as the message says
    Run.create(tmp_path / "run", {"a": 2}, overwrite=True)
    assert not (run.path / "quality").exists() and (run.path / "mine.png").read_bytes() == b"mine"


def test_a_config_flattens_to_dotted_names_with_lists_as_text():
    from pvae.base.results import flatten

    config = {"data": {"data": "digits", "val_size": None}, "pair": {"hidden": [512, 256], "z_dim": 2}, "top": 1}
    assert flatten(config) == {
        "data.data": "digits",
        "data.val_size": None,
        "pair.hidden": "512,256",
        "pair.z_dim": 2,
        "top": 1,
    }


@pytest.mark.parametrize("text", ['{"error": "ValueError: --lr must be positive", "index": 3}', '{"err', "[1]"])
def test_a_failed_cells_error_record_is_read_beside_its_run_directory(tmp_path, text):
    """A sweep records a failed cell in ``.sweep/NAME.error.json`` beside the cells; a record that does not read
    still says the cell failed."""
    from pvae.base.failures import error_record, failed_cells, recorded_error
    from pvae.studies import sweep

    run = tmp_path / "beta=4"
    assert error_record(run) == tmp_path / ".sweep" / "beta=4.error.json" == sweep.error_record(run)
    assert recorded_error(run) is None and failed_cells(tmp_path) == []
    error_record(run).parent.mkdir()
    error_record(run).write_text(text)
    expected = "ValueError: --lr must be positive" if text.startswith('{"error"') else None
    unreadable = f"failed (its error record {error_record(run)} is unreadable)"
    assert recorded_error(run) == (expected or unreadable) == sweep.recorded_error(run)
    assert failed_cells(tmp_path) == [run] == sweep.failed_cells(tmp_path)  # its directory need not exist


def test_a_write_killed_between_its_record_and_its_rename_leaves_a_file_pvae_still_owns(tmp_path):
    """An atomic write records the new content before it renames the file into place: a process killed between
    the two leaves the previous content, which pvae wrote and may write over; an edit is still refused."""
    from pvae.base.files import NotWritten, check_ours, record_written, start_manifest, written

    start_manifest(tmp_path)
    target = tmp_path / "metrics.jsonl"
    atomic_write(target, lambda handle: handle.write(b'{"epoch": 1}\n'))
    pending = tmp_path / ".metrics.jsonl.killed.tmp"
    pending.write_bytes(b'{"epoch": 1}\n{"epoch": 2}\n')
    record_written(target, content=pending)  # the kill lands here: recorded, never renamed
    check_ours(target)  # the first epoch's file, pvae's own
    assert written(tmp_path, changed=True) == []
    atomic_write(target, lambda handle: handle.write(b'{"epoch": 1}\n{"epoch": 2}\n'))  # the run goes on
    assert written(tmp_path, changed=False) == [target]
    target.write_bytes(b"edited by hand\n")
    with pytest.raises(NotWritten, match="metrics.jsonl was edited since pvae wrote it"):
        check_ours(target)
