"""Which way the default runs each pair of the zoo, and what compiling its loss buys.

For every row of ``experiments/zoo.py`` (or those of ``--only``), trains the pair on digits twice from the
same initial weights: with the default ``--jit auto`` and with ``--jit off``. Prints the line ``fit`` says
about the loss (compiled and checked, or eager and why) and the seconds of the faster training epoch of
each, with their ratio. Writes ``OUT/results.json`` and ``OUT/results.md``.

    python experiments/compiled_zoo.py                        # every row, 3 epochs, one thread
    python experiments/compiled_zoo.py --only vae "conv vae"   # some rows
"""

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zoo import ENTRIES  # noqa: E402

from pvae import data  # noqa: E402
from pvae.config import PairConfig, build_pair  # noqa: E402
from pvae.files import atomic_write, write_json  # noqa: E402
from pvae.train import TrainConfig, fit  # noqa: E402


def measure(entry, epochs: int, z_dim: int, hidden: int, seed: int) -> dict:
    """The loss's line and the faster epoch's seconds of one zoo row, under the default and ``--jit off``."""
    dataset = data.load(data.DataConfig("digits", **entry.data))
    pair = replace(PairConfig(z_dim=z_dim, hidden=(hidden,)), **entry.pair)
    row = {"pair": entry.name}
    for jit in ("auto", "off"):
        torch.manual_seed(seed)
        model, guide = build_pair(pair, dataset.x_shape, dataset.num_classes)
        lines = []
        config = replace(TrainConfig(epochs=epochs, seed=seed), **entry.train, jit=jit)
        history = fit(model, guide, dataset, config, progress=False, say=lines.append)
        row[jit] = {"line": lines[0], "seconds": min(m["seconds"] for m in history)}
    row["speedup"] = row["off"]["seconds"] / row["auto"]["seconds"]
    return row


def to_markdown(rows: list[dict]) -> str:
    """One line per pair: how the default runs its loss, the two epochs' seconds and their ratio."""
    lines = [
        "| pair | the default's loss | s/epoch default | s/epoch --jit off | speed-up |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        said = r["auto"]["line"].removeprefix("loss: ")
        lines.append(
            f"| {r['pair']} | {said} | {r['auto']['seconds']:.3f} | {r['off']['seconds']:.3f} | {r['speedup']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="names of the zoo's rows to run (default: all)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each fit; the faster one is kept")
    parser.add_argument("--z-dim", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=f"runs/compiled_zoo-{time.strftime('%Y%m%d-%H%M%S')}")
    args = parser.parse_args(argv)
    unknown = set(args.only or ()) - {e.name for e in ENTRIES}
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}; the rows are {[e.name for e in ENTRIES]}")
    torch.set_num_threads(args.threads)
    rows = []
    for entry in ENTRIES:
        if not args.only or entry.name in args.only:
            rows.append(measure(entry, args.epochs, args.z_dim, args.hidden, args.seed))
            print(to_markdown(rows[-1:]).splitlines()[-1], flush=True)
    out = Path(args.out)
    write_json(out / "results.json", {"args": vars(args), "rows": rows})
    table = to_markdown(rows)
    atomic_write(out / "results.md", lambda handle: handle.write(table.encode()))
    return rows


if __name__ == "__main__":
    main()
