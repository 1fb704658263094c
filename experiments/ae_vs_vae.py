"""The seed's claims, measured: an autoencoder's latent space against a VAE's, and the blur of VAE samples.

Four pairs with the same networks (MLP encoder and decoder, one hidden layer) and latent size, trained
with the same budget and seeds: a plain autoencoder (Delta guide, beta 0), the VAE (beta 1), and the
beta-VAE at beta 0.5 and 2. For each run, in the features of the dataset's classifier
(:mod:`pvae.measures.quality`), against as many real test images:

* **prior samples**: Fréchet distance, precision and recall of decoder means at z ~ N(0, I), and — for
  every pair, the fair baseline for the autoencoder — at z from a Gaussian fitted to its training codes;
* **holes**: the share of prior draws that fall where no training code is near (nearest code farther
  than 99% of codes' nearest neighbours; 1% when the codes fill the prior), and for the VAEs the density
  version of ``pvae diagnose`` (q(z) below its own 1% quantile);
* **interpolation**: the images halfway between the codes of two test images (scored as the samples
  are), against the reconstructions of the endpoints; the mean pixel change per step along the path
  and its largest step over its mean (1 for an even path, large for a jump);
* **organisation**: the accuracy of a 5-nearest-neighbour classifier of test codes, fitted on codes of
  training images;
* **blur**: the share of spectral power above 0.25 cycles per pixel and the mean gradient magnitude of
  the data, the samples and the reconstructions.

Scores mean something only for models trained long enough to draw the data: at a few hundred steps a
VAE's posterior has collapsed and every sample is the same average image (digits needs its default 100
epochs). Compare every number with the floor printed under the table.

    python experiments/ae_vs_vae.py --data digits --out runs/ae-vs-vae-digits
    python experiments/ae_vs_vae.py --data fashion-mnist --epochs 10 --out runs/ae-vs-vae-fashion
"""

import functools
import json
import math
import sys
import time
from dataclasses import field, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import command_line  # noqa: E402

from pvae import data
from pvae.base import options  # noqa: E402
from pvae.base.files import atomic_write, save_figure, write_json  # noqa: E402
from pvae.base.runs import Run  # noqa: E402
from pvae.engine.config import PairConfig, RunConfig, build_pair  # noqa: E402
from pvae.engine.pair import traits  # noqa: E402
from pvae.engine.train import TrainConfig, fit  # noqa: E402
from pvae.measures.diagnostics import latent_usage  # noqa: E402
from pvae.measures.evaluate import project_2d  # noqa: E402
from pvae.measures.quality.classifier import load_classifier  # noqa: E402
from pvae.measures.quality.score import QualityConfig, Reference, codes_of, decode, fitted_gaussian, quality  # noqa: E402
from pvae.plots.run import plot_images  # noqa: E402

#: The pairs compared: name → (pair settings, training settings) that differ from the VAE's.
PAIRS = {
    "ae": ({"guide": "delta"}, {"beta": 0.0}),
    "vae": ({}, {}),
    "beta 0.5": ({}, {"beta": 0.5}),
    "beta 2": ({}, {"beta": 2.0}),
}
#: Training seeds of every pair by default.
SEEDS = (0, 1, 2)
#: The comparison's own defaults of pvae's settings: option → (default, as the help shows it); the epochs unset are
#: the dataset's own (:func:`pvae.data.default_epochs`).
DEFAULTS = {
    "epochs": (None, data.default_in_words("epochs")),
    "z_dim": (20, "20"),
    "hidden": ((400,), "400"),
}
#: Interpolation steps from one endpoint to the other (the middle one is scored).
STEPS = 11

#: Columns of the table: key of a row → (header, format).
COLUMNS = {
    "prior_fd": ("FD, N(0, I)", ".2f"),
    "prior_precision": ("precision, N(0, I)", ".2f"),
    "prior_recall": ("recall, N(0, I)", ".2f"),
    "fitted_fd": ("FD, fitted Gaussian", ".2f"),
    "fitted_precision": ("precision, fitted", ".2f"),
    "fitted_recall": ("recall, fitted", ".2f"),
    "holes": ("prior in holes", ".1%"),
    "midpoint_fd": ("FD, midpoints", ".2f"),
    "endpoint_fd": ("FD, endpoints", ".2f"),
    "step_jump": ("largest step / mean", ".2f"),
    "knn_accuracy": ("5-NN accuracy", ".1%"),
    "prior_hf": ("HF power, samples", ".2%"),
    "reconstruction_hf": ("HF power, recon.", ".2%"),
}


@options.config
class AeVsVae:
    """Which pairs are compared, and with which training seeds.

    :param seeds: training seeds of every pair.
    :param pairs: the pairs compared.
    """

    seeds: tuple[int, ...] | None = field(
        default=None, metadata={**options.words("SEED"), **options.default_is(" ".join(map(str, SEEDS)))}
    )
    pairs: tuple[str, ...] | None = field(
        default=None, metadata={**options.words("PAIR"), **options.choices(tuple(PAIRS)), **options.default_is("all")}
    )

    def __post_init__(self):
        if self.seeds is None:
            object.__setattr__(self, "seeds", SEEDS)
        if self.pairs is None:
            object.__setattr__(self, "pairs", tuple(PAIRS))
        options.require(
            self, "seeds", all(0 <= s <= options.MAX_SEED for s in self.seeds), f"integers from 0 to {options.MAX_SEED}"
        )


@torch.no_grad()
def interpolation(model, guide, reference: Reference, batch_size: int, generator: torch.Generator) -> dict:
    """Images halfway between the codes of random pairs of test images, scored against the real images,
    and how evenly the decoded path changes.

    :returns: the midpoints' scores (``midpoint_*``), ``step_change`` (mean absolute pixel change per step)
        and ``step_jump`` (each path's largest step over its mean step, averaged over paths).
    """
    images = reference.images
    partner = torch.randperm(len(images), generator=generator)
    codes = codes_of(guide, images, None, batch_size)  # (n, z_dim)
    t = torch.linspace(0, 1, STEPS, dtype=codes.dtype)
    changes, jumps, middle = [], [], None
    mid = STEPS // 2
    paths = []
    for i in range(0, len(images), batch_size):
        z0, z1 = codes[i : i + batch_size], codes[partner[i : i + batch_size]]
        line = (1 - t)[:, None, None] * z0 + t[:, None, None] * z1  # (steps, b, z_dim)
        path = decode(model, line.reshape(-1, line.shape[-1]), None, 10 * batch_size)
        path = path.reshape(STEPS, len(z0), *path.shape[1:])  # (steps, b, C, H, W)
        step = (path[1:] - path[:-1]).abs().flatten(2).mean(-1)  # (steps − 1, b)
        changes.append(step.mean(0))
        jumps.append(step.max(0).values / step.mean(0).clamp_min(1e-12))
        paths.append(path[mid])
        if middle is None:
            middle = path[:, :10]  # (steps, 10, C, H, W): the first ten paths, for the figure
    midpoints = torch.cat(paths)
    scores = reference.score(midpoints)
    return {
        **{f"midpoint_{k}": v for k, v in scores.items() if isinstance(v, float)},
        "step_change": float(torch.cat(changes).mean()),
        "step_jump": float(torch.cat(jumps).mean()),
        "paths": middle,
    }


@torch.no_grad()
def knn_accuracy(guide, train: data.Split, test: data.Split, batch_size: int, n_train: int = 10_000) -> float:
    """Test accuracy of a 5-nearest-neighbour classifier of posterior means, fitted on training images'."""
    fit_codes = codes_of(guide, train.images(slice(n_train)), None, batch_size).numpy()
    test_codes = codes_of(guide, test.images(), None, batch_size).numpy()
    knn = KNeighborsClassifier(n_neighbors=5).fit(fit_codes, train.y[:n_train].numpy())
    return float(knn.score(test_codes, test.y.numpy()))


def run_cell(
    name: str, seed: int, out: Path, scoring: QualityConfig, base: RunConfig, dataset, grey, classifier, reference
) -> dict:
    """Train (or reuse) one pair at one seed and measure it; the row is kept in the run's summary.

    :param out: the results folder; the run is ``OUT/<name>-seed<seed>``.
    :param scoring: how the samples are scored (its seed is the cell's).
    :param reference: gives the real test images embedded once for every cell (:class:`Reference`).
    """
    pair_settings, train_settings = PAIRS[name]
    config = replace(
        base, pair=replace(base.pair, **pair_settings), train=replace(base.train, seed=seed, **train_settings)
    )
    path = out / f"{name.replace(' ', '')}-seed{seed}"
    summary = path / "summary.json"
    if summary.exists() and "ae_vs_vae" in json.loads(summary.read_text()):
        print(f"{path.name}: done", flush=True)
        return json.loads(summary.read_text())["ae_vs_vae"]
    torch.manual_seed(seed)
    model, guide = build_pair(config.pair, dataset.x_shape, dataset.num_classes)
    run = Run.create(path, config.to_dict(), overwrite=True)
    tic = time.perf_counter()
    fit(model, guide, dataset, config.train, run=run, progress=False)
    seconds = time.perf_counter() - tic
    model.eval(), guide.eval()
    q = quality(model, guide, grey, classifier, replace(scoring, seed=seed), reference=reference())
    inter = interpolation(model, guide, reference(), 500, torch.Generator().manual_seed(seed))
    row = {"pair": name, "seed": seed, "train_seconds": seconds}
    for set_name, prefix in (("prior", "prior"), ("fitted prior", "fitted"), ("reconstructions", "reconstruction")):
        scores = q["sets"][set_name]
        row.update({f"{prefix}_{k}": scores[k] for k in ("fd", "precision", "recall", "confidence", "coverage")})
        row[f"{prefix}_hf"] = scores["high_frequency_fraction"]
        row[f"{prefix}_gradient"] = scores["gradient_magnitude"]
    row["endpoint_fd"] = row["reconstruction_fd"]
    row["data_hf"] = q["data"]["high_frequency_fraction"]
    row["data_gradient"] = q["data"]["gradient_magnitude"]
    row["draws_hf"] = q["sets"]["likelihood draws"]["high_frequency_fraction"]
    row["reference_fd"] = q["reference"]["fd"]
    row["holes"] = q["prior_holes"]
    if not traits(model, guide).point_estimate:
        usage = latent_usage(model, guide, grey.test.images(slice(2000)), prior_draws=2000)
        row["holes_density"] = usage.get("prior_holes")
    row.update({k: v for k, v in inter.items() if k != "paths"})
    row["knn_accuracy"] = knn_accuracy(guide, grey.train, grey.test, 500)
    figures = _cell_figures(model, guide, grey, inter["paths"], seed)
    for fig_name, fig in figures.items():
        save_figure(fig, path / "figures" / f"{fig_name}.png")
    run.update_summary(ae_vs_vae=row)
    print(f"{path.name}: " + ", ".join(f"{k} {row[k]:.3g}" for k in COLUMNS if row.get(k) is not None), flush=True)
    return row


@torch.no_grad()
def _cell_figures(model, guide, grey, paths: torch.Tensor, seed: int) -> dict:
    """The run's interpolation paths, latent map and samples from both priors (for the side-by-side figures)."""
    torch.manual_seed(seed)
    fitted = fitted_gaussian(codes_of(guide, grey.train.images(slice(5000)), None, 500, draw=True))
    samples = torch.cat(
        [
            decode(model, model.prior((30,)).sample(), None, 500),
            decode(model, fitted.sample((30,)).float(), None, 500),
        ]
    )
    return {
        "interpolations": plot_images(paths.transpose(0, 1).reshape(-1, *paths.shape[2:]), STEPS, "interpolations"),
        "prior_samples": plot_images(samples, 10, "N(0, I) (3 rows), fitted Gaussian (3 rows)"),
    }


def aggregate(rows: list[dict]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """Per pair, per numeric column: (mean, sd over seeds, count)."""
    out: dict = {}
    for name in PAIRS:
        group = [r for r in rows if r["pair"] == name]
        if not group:
            continue
        keys = {k for r in group for k, v in r.items() if isinstance(v, float)}
        out[name] = {}
        for key in sorted(keys):
            values = np.array([r[key] for r in group if r.get(key) is not None], dtype=float)
            if len(values):
                sd = float(values.std(ddof=1)) if len(values) > 1 else math.nan
                out[name][key] = (float(values.mean()), sd, len(values))
    return out


def table(summary: dict, header: str) -> str:
    """The Markdown table of mean ± sd over seeds."""
    lines = [header, "", "| pair | " + " | ".join(h for h, _ in COLUMNS.values()) + " |"]
    lines.append("| --- |" + " --- |" * len(COLUMNS))
    for name, cols in summary.items():
        cells = []
        for key, (_, spec) in COLUMNS.items():
            if key not in cols:
                cells.append("—")
                continue
            mean, sd, _ = cols[key]
            sd_text = "" if math.isnan(sd) else f" ± {format(sd, spec)}"
            cells.append(f"{format(mean, spec)}{sd_text}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@torch.no_grad()
def side_by_side(out: Path, grey, seed: int) -> dict[str, plt.Figure]:
    """The AE's and the VAE's latent maps (test codes, PCA, coloured by class) and prior samples, side by side."""
    from pvae.engine.config import restore

    maps, axes_titles, samples = [], [], []
    for name in ("ae", "vae"):
        path = out / f"{name}-seed{seed}"
        if not (path / "checkpoint.pt").exists():
            return {}
        _, _, _, model, guide = restore(path)
        n = min(2000, len(grey.test))
        codes = codes_of(guide, grey.test.images(slice(n)), None, 500)
        points, what = project_2d(codes)
        maps.append((points, grey.test.y[:n]))
        axes_titles.append(f"{name}: {what}")
        torch.manual_seed(seed)
        fitted = fitted_gaussian(codes_of(guide, grey.train.images(slice(5000)), None, 500, draw=True))
        samples.append(decode(model, model.prior((20,)).sample(), None, 500))
        samples.append(decode(model, fitted.sample((20,)).float(), None, 500))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, (points, labels), title in zip(axes, maps, axes_titles, strict=True):
        scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=4, alpha=0.7)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(scatter, ax=axes, label="class", ticks=range(10))
    grid = plot_images(
        torch.cat(samples),
        10,
        "decoder means at z from N(0, I) and from a Gaussian fitted to q(z)",
        ["AE N(0,I)", "", "AE fitted", "", "VAE N(0,I)", "", "VAE fitted", ""],
    )
    return {"latent_maps": fig, "prior_samples": grid}


def settings(argv=None) -> tuple[RunConfig, AeVsVae, QualityConfig, Path, dict]:
    """The comparison's settings from its command line ``argv``, refused as a wrong option is.

    :returns: ``(base, compared, scoring, out, recorded)``: the VAE's run settings, which each pair's replace (its
        seed the cell's); the pairs and seeds; how the samples are scored; the results folder; and the options as
        results.json records them (``args``: the epochs as given, one hidden width as a number).
    """
    parser = command_line.parser(__doc__)
    options.add_options(parser, data.DataConfig, only=("data", "data_dir", "train_size"))
    options.add_options(parser, TrainConfig, only=("epochs",), defaults=DEFAULTS)
    options.add_options(parser, PairConfig, only=("z_dim", "hidden"), defaults=DEFAULTS)
    options.add_options(parser, AeVsVae)
    options.add_options(parser, QualityConfig, only=("samples",))
    options.add_options(parser, command_line.Results, defaults={"out": ("runs/ae-vs-vae", "runs/ae-vs-vae")})
    args = parser.parse_args(argv)
    data_config, pair, compared, results_folder = command_line.configs(
        parser, args, data.DataConfig, PairConfig, AeVsVae, command_line.Results
    )
    with command_line.refusals(parser):
        if data_config.is_user_data:  # the scores need the feature classifier and the classes of a built-in dataset
            raise ValueError(
                f"--data {data_config.data!r}: the comparison runs on a built-in dataset, one of "
                f"{', '.join(data.DATASETS)}"
            )
        epochs = args.epochs if args.epochs is not None else data.default_epochs(data_config)
        scoring = QualityConfig(samples=args.samples)
    (train,) = command_line.configs(parser, args, TrainConfig, epochs=epochs)
    recorded = {
        "data": data_config.data,
        "data_dir": data_config.data_dir,
        "epochs": args.epochs,
        "z_dim": pair.z_dim,
        "hidden": pair.hidden[0] if len(pair.hidden) == 1 else list(pair.hidden),  # one width: as a number
        "seeds": list(compared.seeds),
        "pairs": list(compared.pairs),
        "samples": scoring.samples,
        "train_size": data_config.train_size,
        "out": results_folder.out,
    }
    base = RunConfig(data=data_config, pair=pair, train=train)
    return base, compared, scoring, Path(results_folder.out), recorded


def main(argv=None) -> dict:
    """Train and measure every pair at every seed the command line ``argv`` asks for (finished cells are read
    back); write OUT/results.json, OUT/results.md and the figures.

    :returns: per pair, per numeric column: (mean, sd over seeds, count) (:func:`aggregate`).
    """
    base, compared, scoring, out, recorded = settings(argv)
    dataset = data.load(base.data)
    grey_config = replace(base.data, binarize="none", train_size=None)
    grey = data.load(grey_config)
    classifier = load_classifier(grey_config)
    print(f"classifier features: test accuracy {classifier.info.get('test_accuracy', float('nan')):.3f}", flush=True)
    n = min(scoring.samples, len(grey.test))
    # the real side of every score, embedded once, and only when a cell is measured
    reference = functools.cache(lambda: Reference(classifier, grey.test.images(slice(n)), grey.test.y[:n]))
    rows = [
        run_cell(name, seed, out, scoring, base, dataset, grey, classifier, reference)
        for name in compared.pairs
        for seed in compared.seeds
    ]
    summary = aggregate(rows)
    header = (
        f"{base.data.data}, {base.train.epochs} epochs, z={base.pair.z_dim}, hidden {recorded['hidden']}, "
        f"seeds {recorded['seeds']}; {n} images a set; "
        + ("mean ± sd over seeds" if len(compared.seeds) > 1 else "one seed")
    )
    text = table(summary, header)
    floor = [r["reference_fd"] for r in rows]
    text += (
        f"\n\nReal training images against as many test images (the floor at this size): FD {np.mean(floor):.2f}. "
        f"HF power of the test images: {rows[0]['data_hf']:.2%}. Features: a classifier with test accuracy "
        f"{classifier.info.get('test_accuracy', float('nan')):.1%}."
    )
    write_json(out / "results.json", {"args": recorded, "rows": rows, "summary": summary})
    atomic_write(out / "results.md", lambda handle: handle.write((text + "\n").encode()))
    for name, fig in side_by_side(out, grey, compared.seeds[0]).items():
        save_figure(fig, out / "figures" / f"{name}.png")
    print(text, flush=True)
    return summary


if __name__ == "__main__":
    main()
    sys.exit(0)
