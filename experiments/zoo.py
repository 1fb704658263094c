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

import argparse
import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from sklearn.linear_model import LogisticRegression

from pvae import data
from pvae.config import PairConfig, RunConfig, build_pair
from pvae.evaluate import evaluate, sample_prior
from pvae.files import atomic_write, write_json
from pvae.pair import traits
from pvae.quality.classifier import load_classifier
from pvae.quality.score import QualityConfig, quality
from pvae.quality.sharpness import sharpness
from pvae.runs import Run
from pvae.train import TrainConfig, fit


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


def run_entry(entry: Entry, args, base: RunConfig, classifier, features) -> dict:
    config = RunConfig(
        data=replace(base.data, **entry.data),
        pair=replace(base.pair, **entry.pair),
        train=replace(base.train, **entry.train),
    )
    dataset = data.load(config.data)
    torch.manual_seed(config.train.seed)
    model, guide = build_pair(config.pair, dataset.x_shape, dataset.num_classes)
    slug = "".join(c if c.isalnum() else "-" for c in entry.name).strip("-")
    run = Run.create(Path(args.out) / slug, config.to_dict(), overwrite=True)
    history = fit(model, guide, dataset, config.train, run=run, progress=False)
    test = dataset.test
    n = min(args.test_points, len(test))
    torch.manual_seed(0)
    scores = evaluate(model, guide, test.images(slice(n)), test.y[:n], num_samples=args.samples)
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
    scored = quality(model, guide, grey, feature_classifier, QualityConfig(samples=args.quality_samples))
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


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="digits", choices=data.DATASETS)
    parser.add_argument("--data-dir")
    parser.add_argument("--epochs", type=int, help="default: 100 for digits, 10 otherwise")
    parser.add_argument("--z-dim", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--test-points", type=int, default=10_000, help="score the first N test images")
    parser.add_argument("--samples", type=int, default=1000, help="K, importance samples per datapoint of log p(x)")
    parser.add_argument(
        "--quality-samples", type=int, default=10_000, help="prior samples scored against as many test images"
    )
    parser.add_argument("--only", nargs="*", help="names of the rows to run (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=f"runs/zoo-{time.strftime('%Y%m%d-%H%M%S')}")
    args = parser.parse_args(argv)
    epochs = args.epochs or (100 if args.data == "digits" else 10)
    unknown = set(args.only or ()) - {e.name for e in ENTRIES}
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}; the rows are {[e.name for e in ENTRIES]}")
    base = RunConfig(
        data=data.DataConfig(args.data, args.data_dir),
        pair=PairConfig(z_dim=args.z_dim, hidden=(args.hidden,)),
        train=TrainConfig(epochs=epochs, seed=args.seed),
    )
    real = data.load(data.DataConfig(args.data, args.data_dir, binarize="none"))
    subset = slice(0, 10_000)  # enough for a linear classifier of real images
    classifier = LogisticRegression(max_iter=300).fit(_flat(real.train.images(subset)), real.train.y[subset].numpy())
    classifier_accuracy = classifier.score(_flat(real.test.images()), real.test.y.numpy())
    print(f"classifier of real images: {classifier_accuracy:.1%} on the test split", flush=True)
    header = (
        f"{args.data}, {epochs} epochs, z={args.z_dim}, hidden {args.hidden}; "
        f"{min(args.test_points, len(real.test))} test images, "
        f"K={args.samples}; nats per datapoint\n\n"
        "| pair | ELBO | log p(x) | reconstruction | sample FD | precision | recall | HF power | s/epoch | accuracy "
        "| note |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    grey_config = data.DataConfig(args.data, args.data_dir, binarize="none")
    feature_classifier = load_classifier(grey_config)
    features = (real, feature_classifier)
    print(header, flush=True)
    rows = [run_entry(e, args, base, classifier, features) for e in ENTRIES if not args.only or e.name in args.only]
    results_path = Path(args.out) / "results.json"
    if args.only and results_path.exists():  # rerunning some rows: keep the others of the same setting
        previous = json.loads(results_path.read_text())
        same = {k: v for k, v in previous["args"].items() if k not in ("only", "out")}
        if same != {k: v for k, v in vars(args).items() if k not in ("only", "out")}:
            raise SystemExit(f"{results_path} holds rows of other settings; use another --out")
        fresh = {r["pair"]: r for r in rows}
        kept = {r["pair"]: r for r in previous["rows"] if r["pair"] not in fresh}
        rows = [{**kept, **fresh}[e.name] for e in ENTRIES if e.name in kept or e.name in fresh]
    write_json(results_path, {"args": vars(args), "classifier_accuracy": classifier_accuracy, "rows": rows})
    data_hf = sharpness(real.test.images(slice(args.quality_samples)))["high_frequency_fraction"]
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
    atomic_write(Path(args.out) / "results.md", lambda handle: handle.write(table.encode()))
    return rows


if __name__ == "__main__":
    main()
    sys.exit(0)
