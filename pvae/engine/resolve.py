"""A pair's names from what was given: the ``--model`` preset, the model's defaults, file paths made absolute.

:func:`resolve_pair` turns the names ``pvae train`` is given into the model, guide, estimator and beta it
trains; :func:`absolute` makes a ``file.py:Class`` name independent of the working directory.
"""

from pathlib import Path

from pvae.engine.pair import model_defaults
from pvae.models import MODELS, PRESETS, get_model


def resolve_pair(
    model: str, guide: str | None = None, elbo: str | None = None, beta: float | None = None
) -> tuple[str, str, str, float]:
    """``(model, guide, elbo, beta)`` from what was given, the ``--model`` preset and the model's defaults.

    :param model: a name of ``pvae.models.MODELS``, a preset of ``pvae.models.PRESETS`` (``"ae"``),
        ``"module:ClassName"`` or ``"path/to/file.py:ClassName"``.
    :param guide: the guide's name; ``None``: the preset's, else the model's ``default_guide``.
    :param elbo: the estimator's name; ``None``: the preset's, else the model's ``default_elbo``.
    :param beta: ``None``: the preset's, else 1 (its value is :class:`pvae.engine.trainconfig.TrainConfig`'s to check).
    :returns: model and guide names (a file path made absolute, so the run restores from anywhere),
        the estimator and beta.
    :raises ValueError: for an unknown model, or a setting that contradicts the preset it was given with.
    """
    if model not in MODELS and model not in PRESETS and ":" not in model:
        raise ValueError(
            f"unknown model {model!r}; choose one of {sorted(MODELS)}, the preset "
            f"{' or '.join(sorted(PRESETS))}, or give module:ClassName"
        )
    preset = PRESETS.get(model, {"model": model})
    for key, given in (("guide", guide), ("beta", beta), ("elbo", elbo)):
        if key in preset and given is not None and given != preset[key]:
            raise ValueError(
                f"--model {model} means --{key} {preset[key]}; drop --{key} {given}, or name the model itself"
            )
    default_guide, default_elbo, _ = model_defaults(get_model(preset["model"]))
    guide = guide or preset.get("guide") or default_guide
    elbo = elbo or preset.get("elbo") or default_elbo
    beta = beta if beta is not None else preset.get("beta", 1.0)
    return absolute(preset["model"]), absolute(guide), elbo, beta


def absolute(name: str) -> str:
    """``path/to/file.py:Class`` with an absolute path, so that a run can be restored from anywhere;
    any other name unchanged.

    :param name: a registry name, ``"module:ClassName"`` or ``"file.py:ClassName"``.
    """
    module, sep, attr = name.rpartition(":")
    return f"{Path(module).resolve()}{sep}{attr}" if sep and module.endswith(".py") else name


__all__ = ["absolute", "resolve_pair"]
