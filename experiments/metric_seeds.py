"""How far a trained model's disentanglement scores move with the metrics' own seed alone.

The metrics draw their points, votes and classifiers' seeds from one generator; this script scores
one run under several metric seeds (the grid encoded once, :class:`pvae.disentangle.score.EncodedGrid`)
and prints, per score, the mean, the standard deviation and the range over the seeds: the spread a
difference between two models must exceed before it means anything.

    python experiments/metric_seeds.py runs/beta-sweep/beta4-seed0 --seeds 0 1 2 3 4
"""

import argparse
import shlex
import statistics
import sys
from dataclasses import replace
from pathlib import Path

from pvae.cli import build_parser
from pvae.config import restore
from pvae.data import DataError
from pvae.disentangle.score import DisentangleConfig, EncodedGrid, representation, score
from pvae.files import atomic_write, write_json
from pvae.options import from_args
from pvae.runs import RunError


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run trained on data with ground-truth factors")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="metric seeds")
    parser.add_argument("--options", default="", help="`pvae disentangle` options, e.g. '--num-train 2000'")
    parser.add_argument("--out", help="default: RUN/disentanglement/metric-seeds")
    args = parser.parse_args(argv)
    if len(args.seeds) < 2:
        parser.error("--seeds needs at least two seeds to measure a spread")
    options = build_parser(only="disentangle").parse_args(["disentangle", args.run, *shlex.split(args.options)])
    try:
        config = from_args(DisentangleConfig, options)
        run, run_config, dataset, model, guide = restore(args.run)
    except (ValueError, RunError, DataError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    if dataset.ground_truth is None:
        parser.exit(
            2,
            f"{parser.prog}: error: {args.run} was trained on {run_config.data.data}, which has no ground-truth "
            "factors; give a run trained with --data dsprites\n",
        )
    grid = EncodedGrid(dataset.ground_truth, representation(guide, "mean"), config.batch_size)
    results = []
    for seed in args.seeds:
        results.append(score(model, guide, grid, replace(config, seed=seed)))
        print(f"metric seed {seed}: done ({grid.encoded} grid points encoded so far)", file=sys.stderr, flush=True)
    rows = spreads(results)
    out = Path(args.out) if args.out else run.path / "disentanglement" / "metric-seeds"
    lines = [
        f"{run.path}: scores under metric seeds {', '.join(map(str, args.seeds))} "
        f"({args.options or 'the defaults'}); one trained model, so only the metrics' draws vary\n",
        "| metric | score | factors | mean | sd | range |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['metric']} | {r['score']} | {r['factors']} | {r['mean']:.3f} | {r['sd']:.3f} | {r['range']:.3f} |"
        for r in rows
    ]
    text = "\n".join(lines) + "\n"
    write_json(out / "results.json", {"run": str(run.path), "seeds": args.seeds, "options": args.options, "rows": rows})
    atomic_write(out / "results.md", lambda handle: handle.write(text.encode()))
    print(text)
    print(f"results in {out}: results.json, results.md")
    return rows


if __name__ == "__main__":
    main()
