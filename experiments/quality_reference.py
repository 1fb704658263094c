"""pvae's VAE against a hand-written PyTorch VAE: same data, networks, optimizer and budget.

Both are trained in this process on the same dynamically binarized training split, then scored
on the same fixed-seed binarized test images by two independent estimators: pvae's
``evaluate`` (Pyro traces) and the reference's hand-written importance sampler. The cross term —
the hand-written estimator applied to pvae's trained weights — checks pvae's evaluation code
against arithmetic that shares none of it.

    python experiments/quality_reference.py                        # Fashion-MNIST, 10 epochs
    python experiments/quality_reference.py --data digits --epochs 20 --z-dim 20
"""

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import command_line  # noqa: E402
from reference_vae import ReferenceVAE  # noqa: E402

from pvae import data  # noqa: E402
from pvae.base.files import write_json  # noqa: E402
from pvae.base.options import add_options  # noqa: E402
from pvae.engine.config import PairConfig, build_pair  # noqa: E402
from pvae.engine.train import TrainConfig, fit, step  # noqa: E402
from pvae.measures.compare import CompareConfig  # noqa: E402
from pvae.measures.evaluate import evaluate  # noqa: E402

#: The comparison's own defaults of pvae's settings: option → (default, as the help shows it).
DEFAULTS = {
    "data": ("fashion-mnist", "fashion-mnist"),
    "epochs": (10, "10"),
    "z_dim": (50, "50"),
    "hidden": ((400,), "400"),
}


def train_reference(ref: ReferenceVAE, dataset: data.Dataset, config: TrainConfig) -> float:
    """The plain PyTorch loop: Adam on the negative ELBO, fresh binarization per batch. Returns s/epoch."""
    torch.manual_seed(config.seed)
    optimizer = torch.optim.Adam(ref.parameters(), lr=config.lr)
    tic = time.perf_counter()
    for _ in range(config.epochs):
        for x, _ in data.batches(dataset.train, config.batch_size):
            step(ref, optimizer, dataset.training_batch(x))
    return (time.perf_counter() - tic) / config.epochs


def _score(elbo: torch.Tensor, log_px: torch.Tensor) -> dict:
    n = len(elbo)
    return {"elbo": float(elbo.mean()), "log_px": float(log_px.mean()), "log_px_se": float(log_px.std() / n**0.5)}


def main(argv=None) -> dict:
    parser = command_line.parser(__doc__)
    add_options(parser, data.DataConfig, only=("data", "data_dir"), defaults=DEFAULTS)
    add_options(parser, TrainConfig, only=("epochs", "batch_size", "lr", "jit", "seed"), defaults=DEFAULTS)
    add_options(parser, PairConfig, only=("z_dim", "hidden"), defaults=DEFAULTS)
    add_options(parser, CompareConfig, only=("test_points", "samples"))  # how the trained pairs are scored
    stamp = time.strftime("%Y%m%d-%H%M%S")
    add_options(
        parser,
        command_line.Results,
        defaults={"out": (f"runs/quality_reference-{stamp}", "runs/quality_reference-DATE")},
    )
    args = parser.parse_args(argv)
    config, pair, results_folder = command_line.configs(
        parser, args, TrainConfig, PairConfig, command_line.Results, elbo="meanfield", beta=1.0
    )
    (data_config,) = command_line.configs(parser, args, data.DataConfig, binarize="dynamic", data_seed=config.seed)
    with command_line.refusals(parser):
        scoring = CompareConfig(test_points=args.test_points, samples=args.samples)

    dataset = data.load(data_config)
    torch.manual_seed(config.seed)
    model, guide = build_pair(pair, dataset.x_shape)
    ref = ReferenceVAE.like(model, guide)  # the same initial weights

    history = fit(model, guide, dataset, config, progress=False)
    pvae_seconds = sum(h["seconds"] for h in history) / len(history)
    ref_seconds = train_reference(ref, dataset, config)

    x = dataset.test.images(slice(scoring.test_points))
    torch.manual_seed(config.seed + 10)
    pvae_eval = evaluate(model, guide, x, num_samples=scoring.samples)
    torch.manual_seed(config.seed + 10)
    pvae_by_hand = _score(*ReferenceVAE.like(model, guide).bounds(x, scoring.samples))
    torch.manual_seed(config.seed + 10)
    ref_by_hand = _score(*ref.bounds(x, scoring.samples))
    results = {
        "settings": {
            "data": data_config.data,
            "data_dir": data_config.data_dir,
            "epochs": config.epochs,
            "z_dim": pair.z_dim,
            "hidden": pair.hidden[0] if len(pair.hidden) == 1 else list(pair.hidden),  # one width: as a number
            "batch_size": config.batch_size,
            "lr": config.lr,
            "test_points": scoring.test_points,
            "samples": scoring.samples,
            "jit": config.jit,
            "seed": config.seed,
            "out": results_folder.out,
            "test_images": f"first {len(x)} of the test split, binarized once with seed {config.seed + 2}",
            "train_size": len(dataset.train),
        },
        "pvae (pvae evaluate)": {
            "elbo": pvae_eval["elbo"],
            "log_px": pvae_eval["log_px"],
            "log_px_se": pvae_eval["log_px_se"],
            "seconds_per_epoch": pvae_seconds,
        },
        "pvae (hand-written estimator)": {**pvae_by_hand, "seconds_per_epoch": pvae_seconds},
        "hand-written VAE (hand-written estimator)": {**ref_by_hand, "seconds_per_epoch": ref_seconds},
    }
    lines = ["| model (estimator) | test ELBO | test log p(x) | s/epoch |", "|---|---:|---:|---:|"]
    for name, r in results.items():
        if name != "settings":
            lines.append(
                f"| {name} | {r['elbo']:.2f} | {r['log_px']:.2f} ± {r['log_px_se']:.2f} | "
                f"{r['seconds_per_epoch']:.1f} |"
            )
    table = "\n".join(lines) + "\n"
    print(table)
    out = Path(results_folder.out)
    write_json(out / "results.json", results)
    (out / "results.md").write_text(table)
    print(f"results in {out}")
    return results


if __name__ == "__main__":
    main()
