"""How far a trained model's disentanglement scores move with the metrics' own seed alone.

The metrics draw their points, votes and classifiers' seeds from one generator; this script scores
one run under several metric seeds (the grid encoded once, :class:`pvae.measures.disentangle.score.EncodedGrid`)
and prints, per score, the mean, the standard deviation and the range over the seeds: the spread a
difference between two models must exceed before it means anything.

    python experiments/metric_seeds.py runs/beta-sweep/beta4-seed0 --seeds 0 1 2 3 4

The run, and the options of ``pvae disentangle`` (given here, or as one word in ``--options``), are read by
``pvae disentangle``'s own parser.
"""

import shlex
import statistics
import sys
from dataclasses import field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import command_line  # noqa: E402

from pvae.base import options  # noqa: E402
from pvae.base.files import atomic_write, write_json  # noqa: E402
from pvae.cli import build_parser  # noqa: E402
from pvae.engine.config import restore  # noqa: E402
from pvae.measures.disentangle.score import DisentangleConfig, EncodedGrid, representation, score  # noqa: E402

#: The metric seeds scored by default.
SEEDS = (0, 1, 2, 3, 4)


@options.config
class MetricSeeds:
    """The metric seeds, and the other settings of the scores.

    :param seeds: metric seeds, two or more.
    :param options: `pvae disentangle` options as one word, e.g. '--num-train 2000'.
    """

    seeds: tuple[int, ...] | None = field(
        default=None, metadata={**options.words("SEED"), **options.default_is(" ".join(map(str, SEEDS)))}
    )
    options: str = field(default="", metadata=options.default_is("none"))

    def __post_init__(self):
        if self.seeds is None:
            object.__setattr__(self, "seeds", SEEDS)
        options.require(self, "seeds", len(self.seeds) >= 2, "two seeds or more, to measure a spread")
        seeds_ok = all(0 <= seed <= options.MAX_SEED for seed in self.seeds)
        options.require(self, "seeds", seeds_ok, f"integers from 0 to {options.MAX_SEED}")


def spreads(results: list[dict]) -> list[dict]:
    """One row per (metric, score, set of factors): its values over the seeds, mean, sd and range."""
    rows = []
    first = results[0]["metrics"]
    for name, by_set in first.items():
        for label, scores in by_set.items():
            for key, value in scores.items():
                if not isinstance(value, float):
                    continue
                values = [r["metrics"][name][label][key] for r in results]
                rows.append(
                    {
                        "metric": name,
                        "score": key,
                        "factors": label,
                        "values": values,
                        "mean": statistics.mean(values),
                        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                        "range": max(values) - min(values),
                    }
                )
    return rows


def main(argv=None) -> list[dict]:
    parser = command_line.parser(
        __doc__,
        usage="%(prog)s RUN [options] [pvae disentangle's options]",
        epilog="RUN: a run trained on data with ground-truth factors; see pvae disentangle --help for its options",
    )
    options.add_options(parser, MetricSeeds)
    options.add_options(parser, command_line.Results, defaults={"out": (None, "RUN/disentanglement/metric-seeds")})
    args, disentangle = parser.parse_known_args(argv)
    seeds, results_folder = command_line.configs(parser, args, MetricSeeds, command_line.Results)
    parsed = build_parser(only="disentangle").parse_args(["disentangle", *disentangle, *shlex.split(seeds.options)])
    with command_line.refusals(parser):
        config = options.from_args(DisentangleConfig, parsed)
        run, run_config, dataset, model, guide = restore(parsed.run)
    if dataset.ground_truth is None:
        parser.exit(
            2,
            f"{parser.prog}: error: {parsed.run} was trained on {run_config.data.data}, which has no ground-truth "
            "factors; give a run trained with --data dsprites\n",
        )
    grid = EncodedGrid(dataset.ground_truth, representation(guide, "mean"), config.batch_size)
    results = []
    for seed in seeds.seeds:
        results.append(score(model, guide, grid, replace(config, seed=seed)))
        print(f"metric seed {seed}: done ({grid.encoded} grid points encoded so far)", file=sys.stderr, flush=True)
    rows = spreads(results)
    out = Path(results_folder.out) if results_folder.out else run.path / "disentanglement" / "metric-seeds"
    lines = [
        f"{run.path}: scores under metric seeds {', '.join(map(str, seeds.seeds))} "
        f"({seeds.options or 'the defaults'}); one trained model, so only the metrics' draws vary\n",
        "| metric | score | factors | mean | sd | range |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['metric']} | {r['score']} | {r['factors']} | {r['mean']:.3f} | {r['sd']:.3f} | {r['range']:.3f} |"
        for r in rows
    ]
    text = "\n".join(lines) + "\n"
    write_json(
        out / "results.json", {"run": str(run.path), "seeds": list(seeds.seeds), "options": seeds.options, "rows": rows}
    )
    atomic_write(out / "results.md", lambda handle: handle.write(text.encode()))
    print(text)
    print(f"results in {out}: results.json, results.md")
    return rows


if __name__ == "__main__":
    main()
