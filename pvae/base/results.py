"""A command's result beside its run: what it records of the model it measured (:func:`measured`), whether it
is stale (:func:`is_stale`: the run was trained further since), where an earlier result with other settings goes
(:func:`keep_earlier_results`), and a run's settings as the run tables show them (:func:`flatten`).
"""

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pvae.base.files import record_written

if TYPE_CHECKING:
    from pvae.base.runs import Run


def measured(run: "Run") -> dict[str, Any]:
    """What a result records of the model it measured: ``{"model_id": ...}`` of the checkpoint read."""
    return {"model_id": run.model_id}


#: The files that hold a command's result in its folder (diagnose, disentangle, quality, compare-elbos).
RESULT_FILES = ("diagnostics.json", "disentanglement.json", "quality.json", "results.json")


def keep_earlier_results(folder: Path, settings: dict, defaults: dict, model_id: str | None) -> Path | None:
    """Move the result in ``folder`` aside when a new one is about to replace it, unless the new one makes it
    pointless: an earlier result of the same model (``model_id``) made with other settings goes to
    ``folder-SETTINGS`` (its settings that differ from the defaults: ``quality-seed3``), where the run's pages
    still find it; a result of the same settings (the same numbers again) or of another model (stale) is
    replaced.

    :param folder: the results folder of the command (``RUN/quality``).
    :param settings: the new result's settings; ``defaults``: the commands' defaults.
    :param model_id: the model the new result measures.
    :returns: where the earlier result went, or None where it stays to be replaced.
    """
    recorded = next((json_object(folder / name) for name in RESULT_FILES if (folder / name).is_file()), None)
    if recorded is None or is_stale(recorded, model_id):
        return None
    earlier = recorded.get("command_settings")
    if earlier == settings:
        return None
    if isinstance(earlier, dict):
        parts = [f"{k.replace('_', '')}{_short(v)}" for k, v in earlier.items() if defaults.get(k, v) != v]
        suffix = "-".join(parts) or "defaults"
        if len(suffix) > 60:
            suffix = "settings" + hashlib.sha256(suffix.encode()).hexdigest()[:10]
    else:
        suffix = "earlier"  # made before results recorded their settings
    target, count = folder.with_name(f"{folder.name}-{suffix}"), 1
    while target.exists():
        count += 1
        target = folder.with_name(f"{folder.name}-{suffix}-{count}")
    folder.rename(target)
    for path in target.rglob("*"):
        if path.is_file():
            record_written(path)  # still pvae's: --overwrite deletes it with the run
    return target


def _short(value) -> str:
    text = (
        ",".join(map(str, value))
        if isinstance(value, list)
        else f"{value:g}"
        if isinstance(value, float)
        else str(value)
    )
    return re.sub(r"[^\w.,=+-]+", "_", text)


def json_object(path: Path) -> dict:
    """A JSON file as a dict, or {} where it is missing, unreadable or not an object (said elsewhere)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def stale_entries(summary: dict, current: str | None) -> list[str]:
    """The entries of a ``summary.json`` that measured another model than the run's checkpoint now holds:
    those with a ``model_id`` of another model, and (beside a checkpoint with an id) results without one
    (an evaluation's ``elbo``).

    :param summary: the summary.
    :param current: the id of the run's checkpoint (:meth:`Run.current_model_id`).
    """
    return [
        key
        for key, value in summary.items()
        if isinstance(value, dict) and ("model_id" in value or "elbo" in value) and is_stale(value, current)
    ]


def is_stale(result: dict, current: str | None) -> bool:
    """Whether ``result`` measured another model than the run's checkpoint now holds (``current``: its
    :meth:`Run.current_model_id`): the run was trained further or again since. A result without an id
    beside a checkpoint with one was made before checkpoints had ids, hence of an earlier model.

    :param result: a result's JSON (its ``model_id``, if any).
    :param current: the id of the run's checkpoint.
    """
    if current is None:
        return False  # a checkpoint without an id (or none): nothing to compare with
    return result.get("model_id") != current


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """A nested configuration (``config.json``) as dotted names: ``{"train": {"beta": 4}}`` →
    ``{"train.beta": 4}``; lists become comma-separated text (``[512, 256]`` → ``"512,256"``).

    :param config: the nested settings.
    :param prefix: put before every name (the names of the enclosing settings).
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        elif isinstance(value, list | tuple):
            flat[f"{prefix}{key}"] = ",".join(map(str, value))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
