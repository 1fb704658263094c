"""beta's trade-off on dSprites: reconstruction against disentanglement, one point per trained run.

For each beta of ``--betas`` and each training seed of ``--seeds``, ``pvae train`` fits the
convolutional VAE of Burgess et al. (2018) as Locatello et al. (2019, Table 1) tabulate it
(``--net burgess --hidden 256``, z = 10, Bernoulli likelihood, diagonal Gaussian guide, Adam, batch 64),
then ``pvae disentangle`` scores it. Every cell is an ordinary run directory ``OUT/beta<B>-seed<S>``;
the script writes ``OUT/results.json``, ``OUT/results.md`` (mean ± sd over seeds per beta: the tables of
``pvae runs``, :func:`pvae.studies.study.table`, over the bound's terms and every score, then the scores without shape)
and
``OUT/figures/`` (reconstruction against each disentanglement score, one point per run coloured by
beta; the traversals at beta = 1 beside those at the beta of the best mean MIG).

Two protocols (``--protocol``):

* ``cpu`` — what 2 CPU cores finish in about 1.5 hours with ``--workers 2``: 3,000 steps (2 epochs of a
  fixed-seed subset of 96,000 training images), Adam 1e-3; the metrics at disentanglement_lib's defaults
  but DCI, whose boosted trees get 2,000/1,000 points and 20 stages (6 minutes a run at its defaults).
* ``paper`` — Locatello et al. (2019)'s: 300,000 steps of batch 64 (27 epochs of the 722,280 training
  images, 304,700 steps), Adam 1e-4, beta in {1, 2, 4, 6, 8, 16}, every metric at its defaults: about
  9 hours a run on 2 CPU cores; a GPU's work.

``--elbos meanfield tcvae`` sweeps beta-TCVAE (Chen et al. 2018; beta weighs the total correlation
alone) beside the beta-VAE, in cells ``OUT/tcvae-beta<B>-seed<S>``, with one table row per estimator
and beta, and one marker per estimator in the figure.

Rerunning the same command skips finished cells and resumes interrupted ones from their checkpoint; a
cell that fails is reported with its log and the others go on (its error recorded where ``pvae sweep`` records
one, so that ``pvae runs OUT`` and ``pvae report OUT`` show it).

    python experiments/beta_sweep.py --workers 2 --out runs/beta-sweep
    python experiments/beta_sweep.py --protocol paper --out runs/beta-sweep-paper
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import command_line  # noqa: E402

from pvae.base import options
from pvae.base.files import atomic_write, save_figure, write_json  # noqa: E402
from pvae.data import DataConfig  # noqa: E402
from pvae.engine.config import PairConfig  # noqa: E402
from pvae.measures.disentangle.score import HEADLINES  # noqa: E402
from pvae.studies import study  # noqa: E402
from pvae.studies.sweep import SweepConfig, error_record  # noqa: E402

PROTOCOLS = {
    "cpu": {
        "betas": (1.0, 2.0, 4.0, 8.0, 16.0),
        "train": ["--train-size", "96000", "--epochs", "2", "--lr", "1e-3"],
        "disentangle": ["--metric-options", "dci.num_train=2000,dci.num_test=1000,dci.n_estimators=20"],
    },
    "paper": {"betas": (1.0, 2.0, 4.0, 6.0, 8.0, 16.0), "train": ["--epochs", "27", "--lr", "1e-4"], "disentangle": []},
}


def merged_metric_options(argv: list[str]) -> list[str]:
    """``pvae disentangle`` options with every ``--metric-options`` merged into one, a later value of an option
    replacing the protocol's (``pvae disentangle`` refuses an option set twice)."""
    rest, chosen = [], {}
    items = iter(argv)
    for word in items:
        if word == "--metric-options":
            for item in next(items, "").split(","):
                if item:
                    chosen[item.partition("=")[0]] = item
        else:
            rest.append(word)
    return rest + (["--metric-options", ",".join(chosen.values())] if chosen else [])


#: Marker of each estimator in the trade-off figure (colour is beta).
MARKERS = {"meanfield": "o", "tcvae": "^"}
#: The estimators a sweep may train with: the beta-VAE's two and beta-TCVAE.
ESTIMATORS_SWEPT = ("meanfield", "trace", "tcvae")
#: Training seeds of a sweep by default.
SEEDS = (0, 1, 2)


@options.config
class BetaSweep:
    """What the sweep trains and scores.

    :param protocol: cpu: 3,000 steps; paper: 300k.
    :param betas: the values of beta.
    :param elbos: estimators swept (meanfield: the beta-VAE; tcvae puts beta on the total correlation alone).
    :param seeds: training seeds.
    :param metric_seed: seed of the metrics' draws.
    :param train_options: more `pvae train` options, e.g. '--train-size 500'.
    :param disentangle_options: more `pvae disentangle` options.
    :param report: write the tables and figures of the cells finished so far and train nothing (a sweep still
        running, or one stopped early); the others are listed as not finished.
    """

    protocol: str = field(default="cpu", metadata=options.choices(sorted(PROTOCOLS)))
    betas: tuple[float, ...] | None = field(
        default=None, metadata={**options.words("BETA"), **options.default_is("the protocol's (cpu 1 2 4 8 16)")}
    )
    elbos: tuple[str, ...] | None = field(
        default=None,
        metadata={**options.words("ELBO"), **options.choices(ESTIMATORS_SWEPT), **options.default_is("meanfield")},
    )
    seeds: tuple[int, ...] | None = field(
        default=None, metadata={**options.words("SEED"), **options.default_is(" ".join(map(str, SEEDS)))}
    )
    metric_seed: int = 0
    train_options: str = field(default="", metadata=options.default_is("none"))
    disentangle_options: str = field(default="", metadata=options.default_is("none"))
    report: bool = False

    def __post_init__(self):
        if self.elbos is None:
            object.__setattr__(self, "elbos", ("meanfield",))
        if self.seeds is None:
            object.__setattr__(self, "seeds", SEEDS)
        options.seed(self, "metric_seed")
        options.require(self, "seeds", all(0 <= s <= options.MAX_SEED for s in self.seeds), "seeds of pvae train")
        options.require(self, "betas", self.betas is None or min(self.betas) >= 0, "non-negative numbers")


#: Settings every cell shares: the architecture and likelihood of Locatello et al. (2019).
COMMON = ["--data", "dsprites", "--net", "burgess", "--hidden", "256", "--batch-size", "64", "--no-progress"]
#: The numbers of the two tables (:func:`pvae.studies.study.table`): the bound's terms and every score over all the
#: factors, then every score without the shape factor.
MAIN = ("elbo", "reconstruction", "kl", "active_units", "beta_vae", "factor_vae", "mig", "dci", "dci_completeness")
MAIN += ("sap", "modularity")
NO_SHAPE = tuple(f"{name}_no_shape" for name in MAIN[4:])
#: The scores of the figure: (metric, key, title).
SCORES = [(name, key, f"{name} {key}".replace("_", " ")) for name, key in HEADLINES.items()]
SCORES.insert(4, ("dci", "completeness", "dci completeness"))


def cell_name(beta: float, seed: int, elbo: str = "meanfield") -> str:
    """``beta4-seed0`` for the beta-VAE, ``tcvae-beta4-seed0`` under another estimator."""
    return f"{'' if elbo == 'meanfield' else elbo + '-'}beta{beta:g}-seed{seed}"


def run_cell(elbo: str, beta: float, seed: int, args, protocol: dict) -> dict:
    """Train (or resume) and score one cell; returns its row, or its error."""
    name = cell_name(beta, seed, elbo)
    cell = Path(args.out) / name
    result = cell / "disentanglement" / "disentanglement.json"
    log = Path(args.out) / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    pvae = [sys.executable, "-m", "pvae"]
    data_dir = ["--data-dir", args.data_dir] if args.data_dir else []
    steps = []
    if args.report and not result.exists():
        return {"estimator": elbo, "beta": beta, "seed": seed, "error": "not finished (--report trains nothing)"}
    if not result.exists():
        summary = cell / "summary.json"
        if not (summary.exists() and "test" in json.loads(summary.read_text())):
            train = [*pvae, "train", *COMMON, *protocol["train"], *data_dir, "--z-dim", str(args.z_dim)]
            train += ["--elbo", elbo, "--beta", str(beta), "--seed", str(seed), "--samples", "1", "--out", str(cell)]
            steps.append(train + (["--resume"] if (cell / "checkpoint.pt").exists() else []))
        steps.append([*pvae, "disentangle", str(cell), *protocol["disentangle"], "--seed", str(args.metric_seed)])
    with open(log, "a") as handle:
        for command in steps:
            handle.write(f"$ {' '.join(command)}\n")
            handle.flush()
            done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
            if done.returncode != 0:
                error = f"{command[3]} exited with {done.returncode}; see {log}"
                write_json(error_record(cell), {"error": error})  # where `pvae runs` and the tables read it
                return {"estimator": elbo, "beta": beta, "seed": seed, "error": error}
    error_record(cell).unlink(missing_ok=True)
    print(f"{name}: done", flush=True)
    return row(elbo, beta, seed, cell)


def row(elbo: str, beta: float, seed: int, cell: Path) -> dict:
    """The numbers of one finished cell: the test ELBO and its terms, active units, every score."""
    test = json.loads((cell / "summary.json").read_text())["test"]
    scores = json.loads((cell / "disentanglement" / "disentanglement.json").read_text())
    out = {
        "estimator": elbo,
        "beta": beta,
        "seed": seed,
        "elbo": test["elbo"],
        "reconstruction": test["reconstruction"],
        "kl": test["kl"],
        "active_units": len(scores["latent"]["active"]),
    }
    for label, suffix in (("all factors", ""), ("without shape", " (no shape)")):
        for name, key, title in SCORES:
            value = scores["metrics"].get(name, {}).get(label, {}).get(key)
            if value is not None:
                out[title + suffix] = value
    return out


def table(out: Path, rows: list[dict]) -> str:
    """Markdown, built by :func:`pvae.studies.study.table` from the cells' run directories: one row per estimator and
    beta, mean ± sd over its seeds; the bound's terms and the scores over every factor, then the scores without
    shape; failed cells as rows with their error, cells not finished listed below."""
    cells = [out / cell_name(r["beta"], r["seed"], r["estimator"]) for r in rows]
    scored = [c for c in cells if (c / "disentanglement" / "disentanglement.json").is_file()]
    records = [study.read_run(c, out) for c in scored + [c for c in cells if study.failure(c) is not None]]
    lines = []
    for label, numbers in (("all factors", MAIN), ("without shape", NO_SHAPE)):
        if records:
            lines += [f"\n{label}:\n", study.to_markdown(study.table(records, numbers=numbers))]
    unfinished = [c.name for c in cells if c not in scored and study.failure(c) is None]
    lines += [f"\nnot finished: {name}" for name in unfinished]
    return "\n".join(lines) + "\n"


def trade_off_figure(rows: list[dict]):
    """Reconstruction (x) against each score (y), one point per run, coloured by beta."""
    done = [r for r in rows if "error" not in r]
    titles = [t for _, _, t in SCORES if any(t in r for r in done)]
    fig, axes = plt.subplots(2, (len(titles) + 1) // 2, figsize=(4 * ((len(titles) + 1) // 2), 7), squeeze=False)
    betas = sorted({r["beta"] for r in done})
    colours = {b: plt.cm.viridis(i / max(len(betas) - 1, 1)) for i, b in enumerate(betas)}
    for ax, title in zip(axes.flat, titles, strict=False):
        for r in done:
            marker = MARKERS.get(r["estimator"], "s")
            ax.scatter(r["reconstruction"], r[title], color=colours[r["beta"]], marker=marker, s=25)
        ax.set_xlabel("test reconstruction E_q log p(x|z) (nats)")
        ax.set_ylabel(title)
    for ax in list(axes.flat)[len(titles) :]:
        ax.axis("off")
    handles = [plt.Line2D([], [], marker="o", ls="", color=colours[b], label=f"beta {b:g}") for b in betas]
    elbos = sorted({r["estimator"] for r in done})
    if len(elbos) > 1:
        handles += [plt.Line2D([], [], marker=MARKERS.get(e, "s"), ls="", color="grey", label=e) for e in elbos]
    fig.suptitle("beta's trade-off on dSprites: one point per run, scores over every factor")
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), bbox_to_anchor=(0.5, 0.955), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.91))
    return fig


def traversals_figure(out: Path, rows: list[dict]):
    """The traversals at the lowest beta beside those at the beta of the best mean MIG (of the first
    estimator swept), each from the run of its beta with the highest MIG, named in its title."""
    done = [r for r in rows if "error" not in r and "mig discrete mig" in r]
    elbo = done[0]["estimator"] if done else None
    done = [r for r in done if r["estimator"] == elbo]
    betas = {r["beta"] for r in done}
    means = {b: statistics.mean(r["mig discrete mig"] for r in done if r["beta"] == b) for b in betas}
    if not means:
        return None
    panels = []
    for beta in dict.fromkeys((min(means), max(means, key=means.get))):
        run = max((r for r in done if r["beta"] == beta), key=lambda r: r["mig discrete mig"])
        path = out / cell_name(beta, run["seed"], elbo) / "disentanglement" / "figures" / "traversals.png"
        title = f"beta {beta:g}, seed {run['seed']}: MIG {run['mig discrete mig']:.3f} (seeds' mean {means[beta]:.3f})"
        panels.append((title, path))
    fig, axes = plt.subplots(1, len(panels), figsize=(8 * len(panels), 7), squeeze=False)
    for ax, (title, path) in zip(axes.flat, panels, strict=True):
        ax.imshow(plt.imread(path))
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    return fig


def main(argv=None) -> list[dict]:
    parser = command_line.parser(
        __doc__,
        epilog="protocols: " + "; ".join(f"{k}: train {' '.join(v['train'])}" for k, v in PROTOCOLS.items()),
    )
    options.add_options(parser, BetaSweep)
    options.add_options(parser, PairConfig, only=("z_dim",), defaults={"z_dim": (10, "10")})
    options.add_options(parser, SweepConfig, only=("workers",))
    options.add_options(parser, command_line.Threads, defaults={"threads": (None, "cores / workers")})
    options.add_options(parser, DataConfig, only=("data_dir",), defaults={"data_dir": (None, "pvae's data directory")})
    options.add_options(parser, command_line.Results, defaults={"out": ("runs/beta-sweep", "runs/beta-sweep")})
    parsed = parser.parse_args(argv)
    sweep, pair, threads, _, results_folder = command_line.configs(
        parser, parsed, BetaSweep, PairConfig, command_line.Threads, DataConfig, command_line.Results, data="dsprites"
    )
    betas = sweep.betas or PROTOCOLS[sweep.protocol]["betas"]
    # every beta of a seed before the next seed, every estimator of a seed before the next seed
    cells = [(e, b, s) for s in sweep.seeds for e in sweep.elbos for b in betas]
    (workers,) = command_line.configs(
        parser, parsed, SweepConfig, cells=tuple(f"elbo={e} beta={b:g} seed={s}" for e, b, s in cells)
    )
    args = argparse.Namespace(  # the settings of every cell, as results.json records them
        protocol=sweep.protocol,
        betas=None if sweep.betas is None else list(sweep.betas),
        elbos=list(sweep.elbos),
        seeds=list(sweep.seeds),
        z_dim=pair.z_dim,
        metric_seed=sweep.metric_seed,
        workers=workers.workers,
        threads=threads.threads or max(1, (os.cpu_count() or 1) // workers.workers),
        data_dir=parsed.data_dir,  # as given (DataConfig has checked it)
        train_options=sweep.train_options,
        disentangle_options=sweep.disentangle_options,
        out=results_folder.out,
        report=sweep.report,
    )
    protocol = dict(PROTOCOLS[args.protocol])
    protocol["train"] = protocol["train"] + shlex.split(args.train_options)
    protocol["disentangle"] = merged_metric_options(protocol["disentangle"] + shlex.split(args.disentangle_options))
    print(f"{len(cells)} cells, {args.workers} at a time, {args.threads} threads each → {args.out}", flush=True)
    with ThreadPoolExecutor(args.workers) as pool:
        rows = list(pool.map(lambda c: run_cell(*c, args, protocol), cells))
    out = Path(args.out)
    text = (
        f"dSprites, protocol {args.protocol} ({' '.join(protocol['train'])}; disentangle "
        f"{' '.join(protocol['disentangle']) or 'at the defaults'}), z={args.z_dim}, metric seed {args.metric_seed}; "
        "test ELBO terms in nats per image; mean ± sd over seeds\n\n" + table(out, rows)
    )
    write_json(out / "results.json", {"args": vars(args), "protocol": protocol, "rows": rows})
    atomic_write(out / "results.md", lambda handle: handle.write(text.encode()))
    if any("error" not in r for r in rows):
        save_figure(trade_off_figure(rows), out / "figures" / "trade_off.png")
        fig = traversals_figure(out, rows)
        if fig is not None:
            save_figure(fig, out / "figures" / "traversals.png")
    print(text)
    return rows


if __name__ == "__main__":
    failed = [r for r in main() if "error" in r and not r["error"].startswith("not finished")]
    sys.exit(1 if failed else 0)
