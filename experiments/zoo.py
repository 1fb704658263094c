"""Every model/guide pair through the one trainer, on one dataset: bounds, cost, and what labels buy.

For each pair: the test ELBO and importance-sampled log p(x) (K samples) on the first
``--test-points`` test images, seconds per training epoch, and where it applies the CVAE's
conditional accuracy (a logistic regression trained on real training images recognises the
class asked for in generated samples) and M2's test accuracy with few labels; and the quality of its
prior samples (decoder means) against as many real test images in the features of the dataset's
classifier (``pvae quality``): Fréchet distance, precision, recall, and the share of spectral power
above 0.25 cycles per pixel (the data's is printed beside the table). Pairs are trained
with the same budget: ``--epochs``, ``--z-dim``, ``--hidden``, batch 128, Adam 1e-3.

    python experiments/zoo.py --data digits
    python experiments/zoo.py --data fashion-mnist --epochs 10 --test-points 1000
    python experiments/zoo.py --data digits --out runs/zoo-digits --only cvae   # rerun a row, keep the rest
"""

import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))
import command_line  # noqa: E402

from pvae import data
from pvae.base import options  # noqa: E402
from pvae.base.files import atomic_write, write_json  # noqa: E402
from pvae.base.runs import Run  # noqa: E402
from pvae.engine.config import PairConfig, RunConfig, build_pair  # noqa: E402
from pvae.engine.pair import traits  # noqa: E402
from pvae.engine.train import TrainConfig, fit  # noqa: E402
from pvae.measures.compare import CompareConfig  # noqa: E402
from pvae.measures.evaluate import evaluate, sample_prior  # noqa: E402
from pvae.measures.quality.classifier import load_classifier  # noqa: E402
from pvae.measures.quality.score import QualityConfig, quality  # noqa: E402
from pvae.measures.quality.sharpness import sharpness  # noqa: E402


@dataclass(frozen=True)
class Entry:
    """One row: a pair, the settings it differs by from the VAE, and a note for the table."""

    name: str
    pair: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    note: str = ""


ENTRIES = [
    Entry("vae", note="diagonal Gaussian guide"),
    Entry("ae", {"guide": "delta"}, {"beta": 0.0}, note="Delta guide, beta 0: reconstruction only"),
    Entry("beta-vae (β=4)", train={"beta": 4.0}, note="trained on reconstruction − 4·KL; scored on the ELBO"),
    Entry("vae, cyclical β", train={"beta_schedule": "cyclical"}, note="4 cycles, rising over half of each"),
    Entry("vae, iwae (K=5)", train={"elbo": "iwae", "particles": 5}, note="importance-weighted bound, 5 samples"),
    Entry("vae, dreg (K=5)", train={"elbo": "dreg", "particles": 5}, note="IWAE with doubly-reparameterized gradients"),
    Entry("full-rank guide", {"guide": "fullrank"}, note="Cholesky factor from the encoder"),
    Entry("iaf guide (2 flows)", {"guide": "iaf", "flows": 2}, note="conditional affine autoregressive"),
    Entry("two-layer", {"model": "two-layer", "guide": "two-layer"}, {"elbo": "trace"}, note="z2 → z1 → x"),
    Entry("conv vae", {"net": "conv"}, note="conv encoder and decoder"),
    Entry("cvae", {"model": "cvae", "guide": "conditional-gaussian"}, note="log p(x, y) = log p(x|y) − log 10"),
    Entry("m2, 100 labels", {"model": "m2", "guide": "m2"}, {"elbo": "enum"}, {"labels": 100}),
    Entry("m2, 1000 labels", {"model": "m2", "guide": "m2"}, {"elbo": "enum"}, {"labels": 1000}),
    Entry(
        "linear (pPCA)",
        {"model": "linear", "hidden": (), "likelihood": "gaussian"},
        data={"binarize": "none"},
        note="affine decoder and encoder, grey levels: a density, not comparable",
    ),
    Entry(
        "vae, Gaussian",
        {"likelihood": "gaussian"},
        data={"binarize": "none"},
        note="grey levels, one learned pixel scale: a density, not comparable",
    ),
    Entry(
        "vae, continuous Bernoulli",
        {"likelihood": "continuous-bernoulli"},
        data={"binarize": "none"},
        note="grey levels: a density, not comparable",
    ),
]


#: The zoo's own defaults of pvae's settings: option → (default, as the help shows it); the epochs unset are the
#: dataset's own (:func:`pvae.data.default_epochs`).
DEFAULTS = {
    "epochs": (None, data.default_in_words("epochs")),
    "z_dim": (20, "20"),
    "hidden": ((400,), "400"),
    "test_points": (10_000, "10000"),
}


@options.config
class Zoo:
    """Which rows of the zoo are run, and how many samples score their quality.

    :param only: names of the zoo's rows to run (``zoo.py`` keeps the other rows of a results.json of the same
        settings in OUT).
    :param quality_samples: prior samples scored against as many test images.
    """

    only: tuple[str, ...] = field(
        default=(),
        metadata={
            **options.words("ROW"),
            **options.choices(lambda: [e.name for e in ENTRIES]),
            **options.default_is("all"),
        },
    )
    quality_samples: int = QualityConfig.samples  # as many as ``pvae quality`` scores

    def __post_init__(self):
        options.positive(self, "quality_samples")


def _flat(x: torch.Tensor):
    return x.reshape(len(x), -1).numpy()


def conditional_accuracy(model, classifier, num_classes: int, per_class: int = 100) -> float:
    """Fraction of samples drawn for class k (decoder means) that ``classifier`` calls k."""
    y = torch.arange(num_classes).repeat_interleave(per_class)
    images = sample_prior(model, len(y), y)
    return float((torch.from_numpy(classifier.predict(_flat(images))) == y).float().mean())


def labelled_only_accuracy(dataset: data.Dataset, config: data.DataConfig) -> float:
    """Test accuracy of a logistic regression trained on the kept labels alone, on the images as the
    model sees them (binarized once where the model's are binarized)."""
    train = data.evaluation_split(dataset, config, "train")
    kept = train.labelled
    baseline = LogisticRegression(max_iter=1000).fit(_flat(train.images(kept)), train.y[kept].numpy())
    return float(baseline.score(_flat(dataset.test.images()), dataset.test.y.numpy()))


def run_entry(
    entry: Entry, base: RunConfig, scoring: CompareConfig, quality_samples: int, out: Path, classifier, features
) -> dict:
    """Train the pair of ``entry`` into ``OUT/<its name>`` and score it: one row of the table.

    :param base: the VAE's settings, which the entry's replace.
    :param scoring: the test points and the importance samples of its bounds.
    :param quality_samples: prior samples scored against as many test images.
    :param classifier: the logistic regression of real images that judges a conditional pair's samples.
    :param features: ``(grey levels of the data, the dataset's feature classifier)`` for the sample quality.
    """
    config = RunConfig(
        data=replace(base.data, **entry.data),
        pair=replace(base.pair, **entry.pair),
        train=replace(base.train, **entry.train),
    )
    dataset = data.load(config.data)
    torch.manual_seed(config.train.seed)
    model, guide = build_pair(config.pair, dataset.x_shape, dataset.num_classes)
    slug = "".join(c if c.isalnum() else "-" for c in entry.name).strip("-")
    run = Run.create(out / slug, config.to_dict(), overwrite=True)
    history = fit(model, guide, dataset, config.train, run=run, progress=False)
    test = dataset.test
    n = min(scoring.test_points, len(test))
    torch.manual_seed(0)
    scores = evaluate(model, guide, test.images(slice(n)), test.y[:n], num_samples=scoring.samples)
    row = {
        "pair": entry.name,
        "elbo": scores["elbo"],
        "log_px": scores["log_px"],
        "log_px_se": scores["log_px_se"],
        "reconstruction": scores["reconstruction"],
        "kl": scores["kl"],
        "seconds_per_epoch": sum(m["seconds"] for m in history) / len(history),
        "accuracy": scores.get("accuracy"),
        "note": entry.note,
    }
    grey, feature_classifier = features
    scored = quality(model, guide, grey, feature_classifier, QualityConfig(samples=quality_samples))
    prior = scored["sets"]["prior"]
    row.update(
        sample_fd=prior["fd"],
        sample_precision=prior["precision"],
        sample_recall=prior["recall"],
        sample_hf=prior["high_frequency_fraction"],
        sample_gradient=prior["gradient_magnitude"],
        sample_reference={k: scored["reference"][k] for k in ("fd", "precision", "recall")},
    )
    pair = traits(model, guide)
    if pair.labels == "observed":
        torch.manual_seed(0)
        row["conditional_accuracy"] = conditional_accuracy(model, classifier, dataset.num_classes)
    if pair.labels == "semi-supervised":
        row["baseline_accuracy"] = labelled_only_accuracy(dataset, config.data)
    run.update_summary(test=scores, row=row)
    print(_line(row), flush=True)
    return row


def _fmt(value, spec=".2f") -> str:
    return "—" if value is None else format(value, spec)


def _line(row: dict) -> str:
    extra = ""
    if row.get("accuracy") is not None:
        extra = f"test accuracy {row['accuracy']:.1%}"
        if row.get("baseline_accuracy") is not None:
            extra += f" (logistic regression on the same labels: {row['baseline_accuracy']:.1%})"
    if row.get("conditional_accuracy") is not None:
        extra = f"conditional accuracy {row['conditional_accuracy']:.1%}"
    return (
        f"| {row['pair']} | {_fmt(row['elbo'])} | {_fmt(row['log_px'])} | {_fmt(row['reconstruction'])} | "
        f"{_fmt(row.get('sample_fd'))} | {_fmt(row.get('sample_precision'))} | {_fmt(row.get('sample_recall'))} | "
        f"{_fmt(row.get('sample_hf'), '.2%')} | {row['seconds_per_epoch']:.2f} | {extra} | {row['note']} |"
    )


def settings(argv=None) -> tuple[RunConfig, CompareConfig, Zoo, Path, dict]:
    """The zoo's settings from its command line ``argv``, refused as a wrong option is.

    :returns: ``(base, scoring, zoo, out, recorded)``: the VAE's run settings, which each entry's replace; the
        test points and importance samples of the bounds; the rows and quality samples; the results folder; and the
        options as results.json records them (``args``: the epochs as given, one hidden width as a number).
    """
    parser = command_line.parser(__doc__)
    options.add_options(parser, data.DataConfig, only=("data", "data_dir"))
    options.add_options(parser, TrainConfig, only=("epochs", "seed"), defaults=DEFAULTS)
    options.add_options(parser, PairConfig, only=("z_dim", "hidden"), defaults=DEFAULTS)
    options.add_options(parser, CompareConfig, only=("test_points", "samples"), defaults=DEFAULTS)
    options.add_options(parser, Zoo)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    options.add_options(parser, command_line.Results, defaults={"out": (f"runs/zoo-{stamp}", "runs/zoo-DATE")})
    args = parser.parse_args(argv)
    data_config, pair, zoo, results_folder = command_line.configs(
        parser, args, data.DataConfig, PairConfig, Zoo, command_line.Results
    )
    with command_line.refusals(parser):
        if data_config.is_user_data:  # the rows need the classes and the feature classifier of a built-in dataset
            raise ValueError(
                f"--data {data_config.data!r}: the zoo runs on a built-in dataset, one of {', '.join(data.DATASETS)}"
            )
        epochs = args.epochs if args.epochs is not None else data.default_epochs(data_config)
        scoring = CompareConfig(test_points=args.test_points, samples=args.samples)
    (train,) = command_line.configs(parser, args, TrainConfig, epochs=epochs)
    recorded = {
        "data": data_config.data,
        "data_dir": data_config.data_dir,
        "epochs": args.epochs,
        "z_dim": pair.z_dim,
        "hidden": pair.hidden[0] if len(pair.hidden) == 1 else list(pair.hidden),  # one width: as a number
        "test_points": scoring.test_points,
        "samples": scoring.samples,
        "quality_samples": zoo.quality_samples,
        "only": list(zoo.only) or None,
        "seed": train.seed,
        "out": results_folder.out,
    }
    base = RunConfig(data=data_config, pair=pair, train=train)
    return base, scoring, zoo, Path(results_folder.out), recorded


def main(argv=None) -> list[dict]:
    """Train and score the rows the command line ``argv`` asks for; write OUT/results.json and OUT/results.md.

    :returns: the rows of the table, those of an earlier run of the same settings kept where ``--only`` reran some.
    """
    base, scoring, zoo, out, recorded = settings(argv)
    grey_config = replace(base.data, binarize="none")
    real = data.load(grey_config)
    subset = slice(0, 10_000)  # enough for a linear classifier of real images
    classifier = LogisticRegression(max_iter=300).fit(_flat(real.train.images(subset)), real.train.y[subset].numpy())
    classifier_accuracy = classifier.score(_flat(real.test.images()), real.test.y.numpy())
    print(f"classifier of real images: {classifier_accuracy:.1%} on the test split", flush=True)
    header = (
        f"{base.data.data}, {base.train.epochs} epochs, z={base.pair.z_dim}, hidden {recorded['hidden']}; "
        f"{min(scoring.test_points, len(real.test))} test images, "
        f"K={scoring.samples}; nats per datapoint\n\n"
        "| pair | ELBO | log p(x) | reconstruction | sample FD | precision | recall | HF power | s/epoch | accuracy "
        "| note |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    feature_classifier = load_classifier(grey_config)
    features = (real, feature_classifier)
    print(header, flush=True)
    rows = [
        run_entry(e, base, scoring, zoo.quality_samples, out, classifier, features)
        for e in ENTRIES
        if not zoo.only or e.name in zoo.only
    ]
    results_path = out / "results.json"
    if zoo.only and results_path.exists():  # rerunning some rows: keep the others of the same setting
        previous = json.loads(results_path.read_text())
        same = {k: v for k, v in previous["args"].items() if k not in ("only", "out")}
        if same != {k: v for k, v in recorded.items() if k not in ("only", "out")}:
            raise SystemExit(f"{results_path} holds rows of other settings; use another --out")
        fresh = {r["pair"]: r for r in rows}
        kept = {r["pair"]: r for r in previous["rows"] if r["pair"] not in fresh}
        rows = [{**kept, **fresh}[e.name] for e in ENTRIES if e.name in kept or e.name in fresh]
    write_json(results_path, {"args": recorded, "classifier_accuracy": classifier_accuracy, "rows": rows})
    data_hf = sharpness(real.test.images(slice(zoo.quality_samples)))["high_frequency_fraction"]
    reference = next((r["sample_reference"] for r in rows if r.get("sample_reference")), None)
    floor = (
        ""
        if reference is None
        else f"; real training images against as many test images (the floor at this size): FD {reference['fd']:.2f}, "
        f"precision {reference['precision']:.2f}, recall {reference['recall']:.2f}"
    )
    footer = (
        f"\n\nclassifier of real test images: {classifier_accuracy:.1%}; features for sample quality: a conv "
        f"classifier with test accuracy {feature_classifier.info['test_accuracy']:.1%}; HF power of the test images: "
        f"{data_hf:.2%}{floor}\n"
    )
    table = "\n".join([header, *map(_line, rows)]) + footer
    atomic_write(out / "results.md", lambda handle: handle.write(table.encode()))
    return rows


if __name__ == "__main__":
    main()
    sys.exit(0)
