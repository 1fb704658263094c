"""Every diagnostic at once (:func:`diagnose`): each part seeded alike and timed, the parts that do not
apply to a pair said with their reason, and the results as JSON-ready numbers.
"""

import math
import time
from collections.abc import Callable
from dataclasses import asdict

import numpy as np
import pyro
import torch

from pvae.base import az, distributed
from pvae.base.device import module_device, to_device
from pvae.engine.pair import traits
from pvae.measures.diagnostics.config import DiagnoseConfig
from pvae.measures.diagnostics.gaps import gap_decomposition
from pvae.measures.diagnostics.importance import importance_diagnostics
from pvae.measures.diagnostics.joint import NotApplicable, guide_draws, rows_of
from pvae.measures.diagnostics.latent import latent_usage
from pvae.measures.diagnostics.nuts import compare_to_reference, nuts_reference, reference_check


def diagnose(
    model,
    guide,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    config: DiagnoseConfig = DiagnoseConfig(),  # noqa: B008 (frozen: one shared default is safe)
    progress: Callable[[str], None] | None = None,
) -> tuple[dict, object | None]:
    """Run the four diagnostics on the first datapoints of ``x``.

    :param x: datapoints ``(N, ...)``; the first ``config.points`` go to the importance
        diagnostics and the gaps, the first ``config.nuts_points`` to NUTS, the first
        ``config.latent_points`` to the latent-space statistics.
    :param y: labels, for pairs that observe them.
    :param progress: called with the name of each part as it starts.
    :returns: ``(results, idata)``: a JSON-ready dict (settings, one entry per part, and
        ``not_applicable``: part → reason), and the ``InferenceData`` of the NUTS and guide
        draws (``None`` when NUTS did not run). Under torchrun the ranks share the NUTS chains
        (:func:`pvae.measures.diagnostics.nuts.nuts_reference`) and rank 0 runs the rest; the other ranks return
        ``(None, None)``.
    """
    say = progress or (lambda _: None)
    device = module_device(model)
    x, y = to_device(x, device), to_device(y, device)  # datapoints may come from the host
    was_training = (model.training, guide.training)
    model.eval()
    guide.eval()
    try:
        if distributed.rank() != 0:  # under torchrun: this rank's NUTS chains, gathered by rank 0
            if config.nuts_points and not traits(model, guide).point_estimate:
                try:
                    _configured_nuts(model, x, y, config)
                except NotApplicable:  # rank 0 finds the same and says so
                    pass
            return None, None
        return _diagnose(model, guide, x, y, config, say)
    finally:
        model.train(was_training[0])
        guide.train(was_training[1])


def _diagnose(model, guide, x, y, config: DiagnoseConfig, say: Callable[[str], None]) -> tuple[dict, object | None]:
    results: dict = {"settings": asdict(config), "not_applicable": {}}
    point_mass = traits(model, guide).point_estimate
    xs, ys = x[: config.points], rows_of(y, 0, config.points)

    def part(name: str, run: Callable[[], dict]) -> None:
        if point_mass and name != "latent":
            results["not_applicable"][name] = "the guide is a point mass: q(z|x) has no density to compare"
            return
        say(name)
        pyro.set_rng_seed(config.seed)
        tic = time.perf_counter()
        try:
            results[name] = run()
            results[name]["seconds"] = time.perf_counter() - tic
            if "not_applicable" in results[name]:
                results["not_applicable"][name] = results[name].pop("not_applicable")
        except NotApplicable as reason:
            results["not_applicable"][name] = str(reason)

    part("importance", lambda: _importance_summary(importance_diagnostics(model, guide, xs, ys, config.khat_samples)))
    idata = None

    def reference() -> dict:
        nonlocal idata
        summary, idata = _reference_summary(model, guide, x, y, config, say)
        return summary

    if config.nuts_points:
        part("nuts", reference)
    part("gaps", lambda: _gaps_summary(gap_decomposition(model, guide, xs, ys, config)))
    part(
        "latent",
        lambda: _latent_summary(
            latent_usage(
                model, guide, x[: config.latent_points], rows_of(y, 0, config.latent_points), config.active_threshold
            )
        ),
    )
    return results, idata


def _stats(values: torch.Tensor) -> dict:
    values = values.double()
    return {
        "mean": float(values.mean()),
        "se": float(values.std() / len(values) ** 0.5) if len(values) > 1 else math.nan,
        "median": float(values.median()),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def _importance_summary(d: dict) -> dict:
    k = d["k_hat"]
    return {
        "k_hat": _stats(k),
        "fraction_k_above_0.5": float((k > 0.5).double().mean()),
        "fraction_k_above_0.7": float((k > 0.7).double().mean()),
        "ess_fraction": _stats(d["ess"]),
        "ess_raw_fraction": _stats(d["ess_raw"]),
        "worst": [int(i) for i in torch.argsort(k, descending=True)],
        "per_datapoint": {key: value.tolist() for key, value in d.items()},
    }


def _configured_nuts(model, x, y, config: DiagnoseConfig, say: Callable[[str], None] | None = None):
    """:func:`pvae.measures.diagnostics.nuts.nuts_reference` on the first ``config.nuts_points`` datapoints, with the
    config's chains, warm-up, draws and seed (each chain seeds itself: no generator state leaks in); ``say`` hears
    each chain start."""
    n = config.nuts_points
    return nuts_reference(
        model, x[:n], rows_of(y, 0, n), config.chains, config.nuts_warmup, config.nuts_draws, config.seed, say
    )


def _reference_summary(model, guide, x, y, config: DiagnoseConfig, say=None) -> tuple[dict, object]:
    xm, ym = x[: config.nuts_points], rows_of(y, 0, config.nuts_points)
    draws, stats = _configured_nuts(model, x, y, config, say)
    # seeded apart from the chains (seed + chain each): the same draws of q whichever ranks ran which chains
    pyro.set_rng_seed(config.seed + config.chains)
    q = guide_draws(guide, model, xm, ym, config.chains * config.nuts_draws, draws)
    q = {n: v.cpu().numpy() for n, v in q.items()}
    dims = {n: ["datapoint", *_event_dims(n, v.ndim - 3)] for n, v in draws.items()}
    idata = az.inference_data(
        nuts=draws,
        guide={n: v[None] for n, v in q.items()},
        sample_stats={"diverging": stats["diverging"]},
        observed={"x": xm.reshape(len(xm), -1).cpu().numpy()},
        dims=dims,
    )
    converged, check = reference_check(draws, stats, config)
    summary = {
        "datapoints": len(xm),
        "converged": converged,
        "convergence": check,
        "step_size": stats["step_size"].tolist(),
    }
    if not converged:
        summary["comparison"] = None
        summary["refused"] = (
            "NUTS did not converge (" + "; ".join(check["reasons"]) + "): no comparison is reported; "
            "run more --nuts-draws or --nuts-warmup, or fewer --nuts-points"
        )
        return summary, idata
    comparison = compare_to_reference(draws, q, config.coverage)
    summary["comparison"] = {
        name: {
            "median_abs_mean_error": float(np.median(np.abs(c["mean_error"]))),
            "max_abs_mean_error": float(np.max(np.abs(c["mean_error"]))),
            "median_sd_ratio": float(np.median(c["sd_ratio"])),
            "min_sd_ratio": float(np.min(c["sd_ratio"])),
            "max_sd_ratio": float(np.max(c["sd_ratio"])),
            "mean_coverage": float(np.mean(c["coverage"])),
            "per_dimension": {key: value.tolist() for key, value in c.items()},
        }
        for name, c in comparison.items()
    }
    return summary, idata


def _event_dims(name: str, count: int) -> list[str]:
    return [f"{name}_dim"] if count == 1 else [f"{name}_dim_{i}" for i in range(count)]


def _gaps_summary(d: dict) -> dict:
    keys = (
        "log_px",
        "log_px_se",
        "log_px_k_hat",
        "local_elbo",
        "local_elbo_se",
        "amortized_elbo",
        "amortized_elbo_se",
        "approximation_gap",
        "amortization_gap",
    )
    return {
        **{key: _stats(d[key]) for key in keys},
        "optimization": d["optimization"],
        "per_datapoint": {key: d[key].tolist() for key in keys},
    }


def _latent_summary(d: dict) -> dict:
    return {key: value.tolist() if isinstance(value, torch.Tensor) else value for key, value in d.items()}
