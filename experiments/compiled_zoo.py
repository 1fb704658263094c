"""Which way the default runs each pair of the zoo, and what compiling its loss buys.

For every row of ``experiments/zoo.py`` (or those of ``--only``), trains the pair on digits twice from the
same initial weights: with the default ``--jit auto`` and with ``--jit off``. Prints the line ``fit`` says
about the loss (compiled and checked, or eager and why) and the seconds of the faster training epoch of
each, with their ratio. Writes ``OUT/results.json`` and ``OUT/results.md``.

    python experiments/compiled_zoo.py                        # every row, 3 epochs, one thread
    python experiments/compiled_zoo.py --only vae "conv vae"   # some rows
"""

import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import command_line  # noqa: E402
from zoo import ENTRIES, Zoo  # noqa: E402

from pvae import data
from pvae.base import options  # noqa: E402
from pvae.base.files import atomic_write, write_json  # noqa: E402
from pvae.engine.config import PairConfig, build_pair  # noqa: E402
from pvae.engine.train import TrainConfig, fit  # noqa: E402

#: The experiment's own defaults of pvae's settings: option → (default, as the help shows it).
DEFAULTS = {
    "epochs": (3, "3"),
    "z_dim": (20, "20"),
    "hidden": ((400,), "400"),
    "threads": (1, "1"),
}


def measure(entry, epochs: int, z_dim: int, hidden: tuple[int, ...], seed: int) -> dict:
    """The loss's line and the faster epoch's seconds of one zoo row, under the default and ``--jit off``."""
    dataset = data.load(data.DataConfig("digits", **entry.data))
    pair = replace(PairConfig(z_dim=z_dim, hidden=hidden), **entry.pair)
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
    parser = command_line.parser(__doc__)
    options.add_options(parser, Zoo, only=("only",))  # the zoo's own --only: its rows
    options.add_options(parser, TrainConfig, only=("epochs", "seed"), defaults=DEFAULTS)
    options.add_options(parser, PairConfig, only=("z_dim", "hidden"), defaults=DEFAULTS)
    options.add_options(parser, command_line.Threads, defaults=DEFAULTS)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    options.add_options(
        parser, command_line.Results, defaults={"out": (f"runs/compiled_zoo-{stamp}", "runs/compiled_zoo-DATE")}
    )
    args = parser.parse_args(argv)
    zoo, train, pair, threads, results_folder = command_line.configs(
        parser, args, Zoo, TrainConfig, PairConfig, command_line.Threads, command_line.Results
    )
    torch.set_num_threads(threads.threads)
    rows = []
    for entry in ENTRIES:
        if not zoo.only or entry.name in zoo.only:
            rows.append(measure(entry, train.epochs, pair.z_dim, pair.hidden, train.seed))
            print(to_markdown(rows[-1:]).splitlines()[-1], flush=True)
    out = Path(results_folder.out)
    recorded = {
        "only": list(zoo.only) or None,
        "epochs": train.epochs,
        "z_dim": pair.z_dim,
        "hidden": pair.hidden[0] if len(pair.hidden) == 1 else list(pair.hidden),  # one width: as a number
        "threads": threads.threads,
        "seed": train.seed,
        "out": results_folder.out,
    }
    write_json(out / "results.json", {"args": recorded, "rows": rows})
    table = to_markdown(rows)
    atomic_write(out / "results.md", lambda handle: handle.write(table.encode()))
    return rows


if __name__ == "__main__":
    main()
