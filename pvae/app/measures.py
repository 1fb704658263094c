"""The commands that read a trained run and measure or draw it: ``evaluate``, ``plot``, ``sample``,
``compare-elbos``, ``diagnose``, ``disentangle``, ``quality`` and ``encode``.

Each takes the run directory, its command's frozen config and a :class:`pvae.base.device.DeviceConfig`, checks
everything it can before the run is read, says where it computes and what a long pass will cost, and writes its
results into ``RUN/NAME`` (or the config's ``out``) with the ``model_id`` of the model measured, so that a
result never outlives its model. A command imports the measures it runs when it runs.
"""

import sys
import time
from dataclasses import replace
from pathlib import Path

from pvae.base.device import DeviceConfig

from .common import (
    check_out,
    device_of,
    given,
    measured,
    open_run,
    progress,
    rank_device,
    results_folder,
    save_figures,
    say_device,
    say_estimate,
    short_name,
    write_results,
)


def evaluate(run, config=None, device=None) -> dict:
    """``pvae evaluate``: the ELBO, its terms and the importance-sampled log p(x) of a run's split, kept in its
    ``summary.json``; under torchrun the ranks share the datapoints.

    :param run: a run directory.
    :param config: a :class:`pvae.measures.evaluate.EvaluateConfig` (default: its defaults).
    :param device: a :class:`pvae.base.device.DeviceConfig`.
    :returns: the numbers (rank 0; ``{}`` on the other ranks).
    """
    from pvae.base import distributed
    from pvae.measures.evaluate import EvaluateConfig

    config, device = given(config, EvaluateConfig), given(device, DeviceConfig, "device")
    where = rank_device(device)
    distributed.setup(where)  # under torchrun the ranks share the datapoints (no-op otherwise)
    result = evaluate_run(run, config, where, say=device.device)
    distributed.shutdown()
    return result


def plot(run, device=None) -> list[Path]:
    """``pvae plot``: the figures of a run, written into ``RUN/figures``.

    :param run: a run directory.
    :param device: a :class:`pvae.base.device.DeviceConfig`.
    :returns: the figures written.
    """
    device = given(device, DeviceConfig, "device")
    return plot_run(run, device_of(device), say=device.device)


def sample(run, config=None, device=None) -> Path:
    """``pvae sample``: images (or rows) drawn from a trained model's prior, of one class if it has labels.

    :param run: a run directory.
    :param config: a :class:`pvae.measures.evaluate.SampleConfig`.
    :param device: a :class:`pvae.base.device.DeviceConfig`.
    :returns: the figure written.
    """
    from pvae.measures.evaluate import SampleConfig

    config, device = given(config, SampleConfig), given(device, DeviceConfig, "device")
    return sample_run(run, config, device_of(device), say=device.device)


def evaluation_suffix(config, own: dict | None) -> str:
    """'' for an evaluation with the settings of the run's own (training's, ``own``: its ``samples`` and
    ``seed``; the defaults for a run that did not record them), else ``_K100_seed3`` ...: an evaluation with
    other settings is kept beside the run's, never over it."""
    from pvae.measures.evaluate import EvaluateConfig

    default = EvaluateConfig()
    own = own or {"samples": default.samples, "seed": default.seed}
    parts = []
    if config.samples != own.get("samples"):
        parts.append(f"K{config.samples}")
    if config.seed != own.get("seed"):
        parts.append(f"seed{config.seed}")
    return "".join(f"_{p}" for p in parts)


def evaluate_run(path, config, device="cpu", say: str | None = None, dataset=None) -> dict:
    from pvae.base import distributed
    from pvae.base.runs import check_writable
    from pvae.data import evaluation_split
    from pvae.engine.config import restore
    from pvae.engine.ranks import current
    from pvae.measures.evaluate import check_finite, describe, estimate_seconds
    from pvae.measures.evaluate import evaluate as bounds_of

    run, run_config, dataset, model, guide = restore(path, device, dataset)
    rank0 = distributed.is_main()
    if rank0:
        say_device(say, device)
    check_writable(run.path, "the run directory")  # summary.json is written after the work
    part = evaluation_split(dataset, run_config.data, config.split)
    x, y = part.datapoints(config.points), part.y[: config.points]  # read a batch at a time where lazy
    say_estimate("evaluate", estimate_seconds(model, guide, x, y, config.samples), len(x), config.samples, rank0)
    tic = time.perf_counter()
    # under torchrun the ranks share the datapoints and rank 0 gathers them; otherwise one process, as always
    result = bounds_of(
        model, guide, x, y, num_samples=config.samples, batch_size=config.batch_size, ranks=current(), seed=config.seed
    )
    if not rank0:
        return {}
    result["seconds"] = time.perf_counter() - tic
    check_finite(result, config.split)  # before the summary keeps it
    partial = len(x) < len(part)
    result["datapoints"] = f"{'first' if partial else 'all'} {len(x)} of the {config.split} split"
    result["binarization"] = run_config.data.binarization_of(config.split)
    result["model_id"] = run.model_id  # the model measured: a later training of the run makes this result stale
    # the split's entry holds the run's own settings (training's); other settings go under their own key
    key = (f"{config.split}_first{len(x)}" if partial else config.split) + evaluation_suffix(
        config, run.summary().get("evaluation")
    )
    run.update_summary(**{key: result})
    print(f"{config.split}: {describe(result)} [{result['datapoints']}]")
    return result


def sample_run(path, config, device="cpu", say: str | None = None) -> Path:
    import math

    import numpy as np
    import torch

    from pvae.base.files import atomic_write, save_figure
    from pvae.base.runs import check_writable
    from pvae.engine.config import restore
    from pvae.measures.evaluate import sample_prior
    from pvae.measures.memory import check_allocation
    from pvae.plots.run import FeatureView, grey_map, plot_feature_rows, plot_images

    if config.out:
        check_writable(config.out, "--out", file=True)
    run, _, dataset, model, _ = restore(path, device)
    say_device(say, device)
    prior = model.prior((1,))
    z_numel = prior.batch_shape.numel() * prior.event_shape.numel()
    numbers = config.n * (math.prod(dataset.x_shape) + z_numel)  # z and the decoder's means, then the figure's
    what = f"-n {config.n} draws of {'×'.join(map(str, dataset.x_shape))} datapoints"
    check_allocation(3 * 4 * numbers, what, "lower -n", device)
    label = class_index(config.label, dataset)
    if not config.out:
        check_writable(run.path / "figures", "the run directory")
    y = None if label is None else torch.full((config.n,), label, dtype=torch.long)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        images = sample_prior(model, config.n, y)
    title = "decoder means at samples from the prior" + ("" if label is None else f", class {config.label}")
    target = config.path(run.figures)
    if dataset.is_image:
        save_figure(plot_images(images, 10, title, cmap=grey_map(dataset)), target)
    else:  # vectors: a heat map of the draws, and the draws themselves in the data's units
        draws = dataset.unstandardize(images)
        save_figure(plot_feature_rows(draws, FeatureView.of(dataset), title + ", in the data's units"), target)
        values = target.with_suffix(".npy")
        atomic_write(values, lambda handle: np.save(handle, draws.numpy()))
        print(f"the draws as an array ({config.n}, {draws.shape[1]}) in {values}")
    print(f"{config.n} samples{'' if label is None else f' of class {config.label}'} in {target}")
    return target


def class_index(label: str | None, dataset) -> int | None:
    """The index of the class ``--label`` names (its index, or its name where the classes have names)."""
    if label is None:
        return None
    names = list(dataset.classes or ())
    if label in names:
        return names.index(label)
    if label.isdigit():
        return int(label)  # its range is checked against the model's classes
    known = (
        f"one of {', '.join(names[:20])}{' ...' if len(names) > 20 else ''}, or its index" if names else "a class index"
    )
    raise ValueError(f"--label {label} names no class of {dataset.name}: give {known} 0..{dataset.num_classes - 1}")


def plot_run(path, device="cpu", say: str | None = None, dataset=None) -> list[Path]:
    import torch

    from pvae.base.runs import check_writable
    from pvae.engine.config import restore
    from pvae.measures.diagnostics import latent_usage
    from pvae.plots.run import TRAVERSAL_POINTS, run_figures

    run, _, dataset, model, guide = restore(path, device, dataset)
    say_device(say, device)
    check_writable(run.path / "figures", "the run directory")
    test, usage = dataset.test, None
    if len(test) >= 2:  # the traversals follow the dimensions the test points use
        with torch.random.fork_rng():  # drawing them leaves the caller's random stream as it was
            x, y = test.images(slice(TRAVERSAL_POINTS)), test.y[:TRAVERSAL_POINTS]
            usage = latent_usage(model, guide, x, y, prior_draws=1000)
    written = save_figures(run_figures(model, guide, dataset, run.metrics(), usage=usage), run.figures)
    print(f"figures: {', '.join(p.name for p in written)} in {run.figures}")
    if not run.metrics():
        print(f"no curves.png: {run.path / 'metrics.jsonl'} records no epoch")
    return written


def compare(run, config=None, device=None) -> Path:
    """``pvae compare-elbos``: the estimators the pair can use compared on its test data (bounds, gradient
    signal-to-noise, cost, and with ``train_epochs`` the result of training with each), written to
    ``config.out`` or ``RUN/elbos``.

    :param run: a run directory.
    :param config: a :class:`pvae.measures.compare.CompareConfig`; its ``estimators`` ``None``: every one the pair can
        use.
    :param device: a :class:`pvae.base.device.DeviceConfig`.
    :returns: the results folder.
    """
    import pyro

    from pvae.base.files import atomic_write, write_json
    from pvae.data import evaluation_split
    from pvae.engine.compatibility import applicable_estimators
    from pvae.engine.config import build_pair, restore
    from pvae.engine.pair import traits
    from pvae.measures.compare import CompareConfig, compare_estimators, results_markdown
    from pvae.measures.memory import check_step_memory
    from pvae.plots.comparison import comparison_figures

    # checked before the run is read: the names, once the pair is known, are those it can use
    config, device = given(config, CompareConfig), given(device, DeviceConfig, "device")
    named = config.estimators
    settings = replace(config, estimators=named or CompareConfig().estimators)
    name, device = device.device, device_of(device)
    check_out(settings.out)
    run, config, dataset, model, guide = restore(run, device)
    say_device(name, device)
    out, record = results_folder(settings.out, run, "elbos", settings)
    batch = max(settings.points, settings.grad_points, settings.cost_batch)  # the largest batch a step holds
    sizes = {settings.points: "--points", settings.grad_points: "--grad-points", settings.cost_batch: "--cost-batch"}
    check_step_memory(
        config.pair,
        dataset.x_shape,
        dataset.num_classes,
        batch,
        max(settings.particles),
        device,
        settings.samples if settings.train_epochs else None,
        batch_option=sizes[batch],
    )
    reasons = applicable_estimators(traits(model, guide), dataset, config.train)
    names = named or tuple(n for n, why in reasons.items() if why is True)
    for name in names:
        if reasons[name] is not True:
            raise ValueError(f"--estimators {name}: {reasons[name]}")
    if not names:
        raise ValueError(f"no estimator applies to this pair: {next(iter(reasons.values()))}")
    settings = replace(settings, estimators=names)
    test = evaluation_split(dataset, config.data, "test")

    def build():
        model, guide = build_pair(config.pair, dataset.x_shape, dataset.num_classes, dataset=dataset)
        return model.to(device), guide.to(device)

    pyro.set_rng_seed(settings.seed)
    head = slice(max(settings.points, settings.grad_points, settings.test_points))  # all compare reads
    x = test.images(head).to(device)
    y = None if test.y is None else test.y[head].to(device)
    results = compare_estimators(
        model, guide, dataset, x, settings, build, config.train, test_y=y, only_usable=not named
    )
    results.update(run=str(run.path), **record)
    pair = f"{short_name(config.pair.model)}/{short_name(config.pair.guide)}"
    write_results(out, record)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results)
    text = results_markdown(results, f"ELBO estimators: {pair} on {config.data.data}")
    atomic_write(out / "results.md", lambda handle: handle.write(text.encode()))
    save_figures(comparison_figures(results), out / "figures")
    print(f"results in {out}: results.json, results.md, figures/")
    return out


def diagnose(run, config=None, device=None) -> Path:
    """``pvae diagnose``: how good q(z|x) is (PSIS k̂, NUTS against the guide, the gaps, posterior collapse),
    written to ``config.out`` or ``RUN/diagnostics``; under torchrun the ranks share the NUTS chains.

    :param run: a run directory.
    :param config: a :class:`pvae.measures.diagnostics.DiagnoseConfig`.
    :param device: a :class:`pvae.base.device.DeviceConfig`.
    :returns: the results folder.
    """
    from pvae.base import az, distributed
    from pvae.base.device import module_device
    from pvae.base.files import write_json
    from pvae.data import evaluation_split
    from pvae.measures.diagnostics import DiagnoseConfig, describe_diagnostics
    from pvae.measures.diagnostics import diagnose as diagnose_pair
    from pvae.measures.evaluate import estimate_seconds, reconstruct
    from pvae.plots.diagnostics import diagnostic_figures
    from pvae.plots.run import grey_map

    config, device = given(config, DiagnoseConfig), given(device, DeviceConfig, "device")
    check_out(config.out)
    run, run_config, dataset, model, guide = open_run(run, device)
    rank0 = distributed.rank_from_environment() == 0
    out, record = results_folder(config.out, run, "diagnostics", config)
    part = evaluation_split(dataset, run_config.data, config.split)
    tic = time.perf_counter()
    head = slice(max(config.points, config.nuts_points, config.latent_points))  # diagnose reads no further
    x = part.images(slice(config.points))
    passes = (("Pareto k̂", config.khat_samples, "--khat-samples"), ("the gaps' log p(x)", config.samples, "--samples"))
    for what, k, option in passes:
        seconds = estimate_seconds(model, guide, x, part.y[: len(x)], k)
        say_estimate(f"diagnose: {what}", seconds, len(x), k, rank0, f"{option}, --points")
    # under torchrun the ranks share the NUTS chains, rank 0 runs the rest and writes (no-op otherwise)
    distributed.setup(module_device(model))
    results, idata = diagnose_pair(
        model,
        guide,
        part.images(head),
        part.y[head],
        config,
        progress=progress("diagnose"),
    )
    distributed.shutdown()
    if not rank0:
        return out
    results.update(
        **measured(run, run_config, record),  # a later training of the run makes this result stale
        split=config.split,
        binarization=run_config.data.binarization_of(config.split),
        seconds=time.perf_counter() - tic,
    )
    write_results(out, record)
    write_json(out / "diagnostics.json", results)
    if idata is not None:
        az.save_netcdf(idata, out / "posterior.nc")
    worst = None
    if "importance" in results and len(part.x_shape) == 3:  # images: the worst datapoints beside their reconstructions
        order = results["importance"]["worst"][:10]
        k_hat = results["importance"]["per_datapoint"]["k_hat"]
        x = part.images(order)
        worst = (x, reconstruct(model, guide, x, part.y[order]), [k_hat[i] for i in order])
    save_figures(diagnostic_figures(results, idata, worst, grey_map(dataset)), out / "figures")
    print(describe_diagnostics(results))
    print(f"results in {out}: diagnostics.json{', posterior.nc' if idata is not None else ''}, figures/")
    return out


def disentangle(run, config=None, device=None) -> Path:
    """``pvae disentangle``: the codes scored against the data's ground-truth factors, written to
    ``config.out`` or ``RUN/disentanglement``.

    :param run: a run directory of data with factors.
    :param config: a :class:`pvae.measures.disentangle.score.DisentangleConfig`.
    :param device: a :class:`pvae.base.device.DeviceConfig`.
    :returns: the results folder.
    """
    import numpy as np
    import pyro

    from pvae.base.files import write_json
    from pvae.data import WITH_FACTORS, DataError
    from pvae.measures.diagnostics import latent_usage
    from pvae.measures.disentangle.score import DisentangleConfig, describe, score
    from pvae.measures.memory import check_allocation
    from pvae.plots.disentangle import plot_mutual_information
    from pvae.plots.run import traversal_figure

    config, device = given(config, DisentangleConfig), given(device, DeviceConfig, "device")
    check_out(config.out)
    run, run_config, dataset, model, guide = open_run(run, device)
    if dataset.ground_truth is None and run_config.data.is_user_data:
        raise DataError(
            f"{run.path} was trained on your own data without factors: name the columns that hold them with "
            "--factor-columns A,B (or give an .npz a 'factors' array) and train again"
        )
    if dataset.ground_truth is None:
        raise DataError(
            f"{run.path} was trained on {run_config.data.data}, which has no ground-truth factors; disentangle "
            f"scores runs on data that have them ({', '.join(WITH_FACTORS)}), e.g. pvae train --data dsprites "
            "--net burgess --hidden 256 --z-dim 10"
        )
    out, record = results_folder(config.out, run, "disentanglement", config)
    points, ground_truth = config.largest_draw(), dataset.ground_truth
    prior = model.prior((1,))
    width = prior.batch_shape.numel() * prior.event_shape.numel() + len(ground_truth.factor_sizes)
    what = f"the scores' {points} grid points at once (their factors and codes)"
    check_allocation(2 * 8 * points * width, what, "lower --num-train, --num-eval, --mi-points")  # on the host
    pyro.set_rng_seed(config.seed)  # sampled codes
    tic = time.perf_counter()
    results = score(model, guide, dataset.ground_truth, config, progress=progress("disentangle"))
    test = dataset.test.images(slice(1000)), dataset.test.y[:1000]
    usage = latent_usage(model, guide, *test, prior_draws=1000)  # KL per dimension and active units
    results["latent"] = {
        "kl_per_dim": usage["kl_per_dim"].tolist() if "kl_per_dim" in usage else None,
        "active": usage["active"],
        "points": len(test[0]),
    }
    results.update(
        **measured(run, run_config, record),  # a later training of the run makes this result stale
        seconds_total=time.perf_counter() - tic,
    )
    write_results(out, record)
    write_json(out / "disentanglement.json", results)
    information = results["mutual_information"]
    figures = {
        "mutual_information": plot_mutual_information(
            np.array(information["matrix"]), results["factor_names"], np.array(information["entropies"])
        ),
        "traversals": traversal_figure(model, guide, *test, usage=usage, dataset=dataset),
    }
    save_figures(figures, out / "figures")
    print(describe(results))
    print(f"results in {out}: disentanglement.json, figures/")
    return out


def quality(run, config=None, ppc=None, device=None) -> Path:
    """``pvae quality``: samples scored against the test data in a classifier's features (images), or
    posterior predictive checks (other data), written to ``config.out`` or ``RUN/quality``.

    :param run: a run directory.
    :param config: a :class:`pvae.measures.quality.score.QualityConfig`.
    :param ppc: a :class:`pvae.measures.quality.ppc.PPCConfig` (data that are not images); its ``rows`` and ``seed``
        follow ``config``'s ``samples`` and ``seed``.
    :param device: a :class:`pvae.base.device.DeviceConfig`.
    :returns: the results folder.
    """
    from pvae.base.files import write_json
    from pvae.measures.quality.ppc import PPCConfig
    from pvae.measures.quality.score import QualityConfig, describe, spectra
    from pvae.measures.quality.score import quality as score_quality
    from pvae.plots.quality import plot_likelihood_draws, plot_spectra
    from pvae.plots.run import grey_map

    config, device = given(config, QualityConfig), given(device, DeviceConfig, "device")
    ppc = replace(given(ppc, PPCConfig, "ppc"), rows=config.samples, seed=config.seed)
    check_out(config.out)
    run, run_config, dataset, model, guide = open_run(run, device)
    own = replace(ppc, rows=PPCConfig.rows, seed=PPCConfig.seed)  # those two follow --samples and --seed
    out, record = results_folder(config.out, run, "quality", config, *([] if dataset.is_image else [own]))
    if not dataset.is_image:
        return posterior_predictive(run, run_config, dataset, model, guide, config, ppc, out, record)
    inception = None
    if config.inception is not None:
        from pvae.measures.quality.inception import load_inception

        inception = load_inception(None if config.inception == "auto" else config.inception)  # fails before work
    grey, classifier = feature_classifier(run_config, dataset, config)
    tic = time.perf_counter()
    results = score_quality(model, guide, grey, classifier, config, inception, progress("quality"))
    images = results.pop("images")
    results.update(
        **measured(run, run_config, record),  # a later training of the run makes this result stale
        seconds_total=time.perf_counter() - tic,
    )
    write_results(out, record)
    write_json(out / "quality.json", results)
    figures = {
        "spectra": plot_spectra(spectra(results), config.cutoff),
        "likelihood_draws": plot_likelihood_draws(
            images["data"], images["prior"], images["likelihood draws"], cmap=grey_map(grey)
        ),
    }
    save_figures(figures, out / "figures")
    print(describe(results))
    for what, why in results["notes"].items():
        print(f"not applicable: {what}: {why}")
    print(f"results in {out}: quality.json, figures/")
    return out


def feature_classifier(run_config, dataset, config):
    """The run's data as the classifier reads them (grey levels, every label) and its feature classifier,
    loaded from the cache or trained (``config.train_classifier``)."""
    from pvae import data
    from pvae.base.runs import check_writable
    from pvae.measures.quality.classifier import classifier_path, load_classifier
    from pvae.measures.quality.score import check_sizes

    grey_config = replace(run_config.data, binarize="none", labels=None, train_size=None)
    grey = dataset if grey_config == run_config.data else data.load(grey_config)
    check_sizes(config, len(grey.test))  # before a classifier is trained for nothing
    cache = classifier_path(grey_config)
    if config.train_classifier and not cache.is_file():  # one trained is kept there: check before training it
        check_writable(cache.parent, "the classifier cache (in --data-dir, or $PVAE_DATA)")
    try:
        classifier = load_classifier(grey_config, train=config.train_classifier, progress=config.progress)
    except ValueError as error:
        if config.train_classifier or "no classifier" not in str(error):
            raise
        raise ValueError(f"{error}, or drop --no-train-classifier and pvae quality trains it") from None
    accuracy = classifier.info.get("test_accuracy", float("nan"))
    what = "images" if grey.is_image else "rows"
    print(f"quality: features of a classifier of {grey.name} {what} (test accuracy {accuracy:.3f})", file=sys.stderr)
    return grey, classifier


def posterior_predictive(run, run_config, dataset, model, guide, config, ppc, out: Path, record: dict) -> Path:
    """``pvae quality`` on data that are not images: posterior predictive checks, and where the data have
    labels the classifier's scores of the model's rows."""
    from pvae.base.files import save_figure, write_json
    from pvae.measures.quality.ppc import posterior_predictive_check
    from pvae.measures.quality.score import describe
    from pvae.measures.quality.score import quality as score_quality
    from pvae.plots.quality import plot_ppc

    if config.inception is not None:
        raise ValueError("--inception scores images; this run's data are vectors: drop --inception")
    tic = time.perf_counter()
    results: dict = {"posterior_predictive": posterior_predictive_check(model, guide, dataset, ppc)}
    if not dataset.has_labels:
        results["classifier_skipped"] = (
            "the data have no labels (a table's --label-column, an .npz's y, an image folder's class folders give them)"
        )
    elif len(dataset.test) <= config.neighbours:
        results["classifier_skipped"] = (
            f"the test split holds {len(dataset.test)} rows, not more than --neighbours {config.neighbours}"
        )
    else:
        grey, classifier = feature_classifier(run_config, dataset, config)
        scores = score_quality(model, guide, grey, classifier, config, None, progress("quality"))
        scores.pop("images")
        results.update(scores)
    results.update(
        **measured(run, run_config, record),  # a later training of the run makes this result stale
        seconds_total=time.perf_counter() - tic,
    )
    write_results(out, record)
    write_json(out / "quality.json", results)
    save_figure(plot_ppc(results["posterior_predictive"]), out / "figures" / "ppc.png")
    print(describe(results))
    for what, why in results.get("notes", {}).items():
        print(f"not applicable: {what}: {why}")
    print(f"results in {out}: quality.json, figures/ppc.png")
    return out


def encode(run, config=None, device=None) -> Path:
    """``pvae encode``: q(z|x)'s mean and sd (or draws) of every row of the run's data, or of a new file with its
    columns, written to ``config.out`` or ``RUN/encoded.npz``.

    :param run: a run directory.
    :param config: a :class:`pvae.measures.encode.EncodeConfig`.
    :param device: a :class:`pvae.base.device.DeviceConfig`.
    :returns: the file written.
    """
    import pyro

    from pvae.base.runs import check_writable
    from pvae.measures.encode import EncodeConfig, file_rows, reconstruct, run_rows, write_codes
    from pvae.measures.encode import encode as encode_rows

    config, device = given(config, EncodeConfig), given(device, DeviceConfig, "device")
    if config.out:
        check_writable(config.out, "--out", file=True, example="encoded.npz")
    run, run_config, dataset, model, guide = open_run(run, device)
    target = Path(config.out) if config.out else run.path / "encoded.npz"
    if not config.out:
        check_writable(run.path, "the run directory")
    if config.data is not None:
        rows = file_rows(dataset, run_config.data, config.data)
        source = config.data
    else:
        rows = run_rows(dataset, run_config.data)
        source = run_config.data.data if run_config.data.is_user_data else None
    if target.suffix.lower() == ".h5ad" and (source is None or Path(source).suffix.lower() != ".h5ad"):
        raise ValueError(f"--out {target}: an .h5ad output is a copy of the .h5ad the data came from; choose .npz")
    pyro.set_rng_seed(config.seed)
    codes = encode_rows(model, guide, rows.x, rows.y, config.draws, config.batch_size)
    if config.reconstruct:
        mean = codes["mean"] if "mean" in codes else codes["draws"].mean(1)
        codes["reconstruction"] = reconstruct(model, dataset, mean, rows.y, config.batch_size)
    write_codes(target, codes, rows, source)
    what = f"{config.draws} draws of z" if config.draws else "q(z|x)'s mean and sd"
    extra = " and the decoder's means" if config.reconstruct else ""
    print(f"{what}{extra} of {len(rows.x)} rows in {target}")
    return target
