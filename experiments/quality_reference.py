"""pvae's VAE against a hand-written PyTorch VAE: same data, networks, optimizer and budget.

Both are trained in this process on the same dynamically binarized training split, then scored
on the same fixed-seed binarized test images by two independent estimators: pvae's
``evaluate`` (Pyro traces) and the reference's hand-written importance sampler. The cross term —
the hand-written estimator applied to pvae's trained weights — checks pvae's evaluation code
against arithmetic that shares none of it.

    python experiments/quality_reference.py                        # Fashion-MNIST, 10 epochs
    python experiments/quality_reference.py --data digits --epochs 20 --z-dim 20
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_vae import ReferenceVAE  # noqa: E402

from pvae import data  # noqa: E402
from pvae.config import PairConfig, build_pair  # noqa: E402
from pvae.evaluate import evaluate  # noqa: E402
from pvae.files import write_json  # noqa: E402
from pvae.train import TrainConfig, fit, step  # noqa: E402


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="fashion-mnist", choices=data.DATASETS)
    parser.add_argument("--data-dir")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--z-dim", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--test-points", type=int, default=1000, help="score the first N test images")
    parser.add_argument("--samples", type=int, default=1000, help="K, importance samples per datapoint of log p(x)")
    parser.add_argument("--jit", default="auto", choices=["auto", "on", "off"], help="how pvae runs its loss")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=f"runs/quality_reference-{time.strftime('%Y%m%d-%H%M%S')}")
    args = parser.parse_args(argv)

    dataset = data.load(data.DataConfig(args.data, args.data_dir, "dynamic", data_seed=args.seed))
    config = TrainConfig(
        "meanfield", 1.0, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, jit=args.jit
    )
    torch.manual_seed(args.seed)
    model, guide = build_pair(PairConfig(z_dim=args.z_dim, hidden=(args.hidden,)), dataset.x_shape)
    ref = ReferenceVAE.like(model, guide)  # the same initial weights

    history = fit(model, guide, dataset, config, progress=False)
    pvae_seconds = sum(h["seconds"] for h in history) / len(history)
    ref_seconds = train_reference(ref, dataset, config)

    x = dataset.test.images(slice(args.test_points))
    torch.manual_seed(args.seed + 10)
    pvae_eval = evaluate(model, guide, x, num_samples=args.samples)
    torch.manual_seed(args.seed + 10)
    pvae_by_hand = _score(*ReferenceVAE.like(model, guide).bounds(x, args.samples))
    torch.manual_seed(args.seed + 10)
    ref_by_hand = _score(*ref.bounds(x, args.samples))
    results = {
        "settings": {
            **vars(args),
            "test_images": f"first {len(x)} of the test split, binarized once with seed {args.seed + 2}",
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
    out = Path(args.out)
    write_json(out / "results.json", results)
    (out / "results.md").write_text(table)
    print(f"results in {out}")
    return results


if __name__ == "__main__":
    main()
