"""What the user's own data cost: resident memory of training on a .npy several times larger than that
memory, and how fast tables load (and where the time goes).

    python experiments/bench_user_data.py                       # a 3.7 GiB .npy, a 200,000-row table
    python experiments/bench_user_data.py --rows 200000 --table-rows 20000   # quicker

1. **Memory.** A ``.npy`` of binary 28×28 images (``--rows`` of them, one byte a pixel; 3,738 MiB by
   default) is written, a block of rows at a time, into a temporary folder (``--dir``; removed afterwards,
   with everything written in it), and so is a small file of 2,000 training images (the held-out rows come
   on top). ``pvae train`` runs on each in a child process, on the CPU, with
   ``--epochs 1 --hidden 64 --z-dim 4 --samples 10``: training steps for at most ``--train-seconds``
   (``--max-seconds``: the small file's epoch ends long before, the big file's is cut, its batches drawn at
   random from all of its rows), then the validation ELBO, the test evaluation and the figures, as every
   run does. Both runs hold out
   ``--held-out`` rows for validation and as many for test (``--val-size``/``--test-size``; at most a tenth
   of ``--rows``). The peak resident memory of each child (``VmHWM``: its own pages, not the kernel's file
   cache) is printed with the big file's size, their ratio, the steps trained, and how much the peak grew
   from the small file to the big one, per extra row. pvae reads the rows of a ``.npy`` a batch at a time
   (``os.pread``), so the big file's peak should be the small file's plus a few batches and the per-row
   bookkeeping of the split (row indices and labels, int64), not plus the file.

   ``--held-out 0`` keeps pvae's own split (10% of the rows for test, 10% of the rest for validation).
   Evaluating those grows the resident memory today by some 2–4 MiB per 1,000 rows
   (:func:`pvae.measures.evaluate.evaluate` keeps each batch's small results, which pin the glibc heap that the
   batch's large buffers grew), so the peak then grows with the file; a fixed number of held-out rows
   measures the reading of the training rows alone.
2. **Tables.** A CSV of ``--table-rows`` rows × 20 real columns is loaded by :func:`pvae.data.load` five
   times; the median rows per second is printed, and the share of each stage (the CSV parser, finding
   the kind, the checksum, and the rest: the split and the standardization statistics).
"""

import json
import math
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import command_line  # noqa: E402

from pvae.base import options  # noqa: E402
from pvae.engine.train import TrainConfig  # noqa: E402

#: The child: pvae train, then its own peak resident memory (VmHWM, KiB) on the last line. Not ru_maxrss:
#: Linux keeps that across exec, so a child would report its parent's peak. A child process, not
#: :func:`pvae.app.train.train` in this one: the peak measured is that of one training alone, from its start.
_CHILD = (
    "import sys; from pvae import cli; code = cli.main(sys.argv[1:]); "
    "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:'))); sys.exit(code)"
)
#: Training images of the small file (its held-out rows come on top).
SMALL_TRAIN_ROWS = 2_000
#: Datapoints per training step (pvae train's default, said here for the steps per epoch).
BATCH_SIZE = TrainConfig.batch_size
#: Bytes of one image in the file (1 × 28 × 28 uint8).
ROW_BYTES = 28 * 28


def peak_rss_of_training(path: Path, out: Path, held_out: int = 0, seconds: float = 0) -> dict:
    """Peak resident memory of a child ``pvae train`` of one epoch on ``path`` (``peak_mib``), cut after
    ``seconds`` of steps (0: the whole epoch), holding out ``held_out`` rows for validation and as many for
    test (0: pvae's own split); with the training rows (``train_rows``), the ``steps`` taken and whether the
    epoch was ``complete``, and the child's wall time (``seconds``)."""
    argv = [sys.executable, "-c", _CHILD, "train", "--data", str(path), "--epochs", "1", "--samples", "10"]
    argv += ["--hidden", "64", "--z-dim", "4", "--no-progress", "--out", str(out), "--device", "cpu"]
    argv += ["--batch-size", str(BATCH_SIZE)]
    if held_out:
        argv += ["--val-size", str(held_out), "--test-size", str(held_out)]
    if seconds:
        argv += ["--max-seconds", str(seconds)]
    tic = time.perf_counter()
    done = subprocess.run(argv, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - tic
    steps = sum(json.loads(line)["steps"] for line in (out / "metrics.jsonl").read_text().splitlines() if line)
    said = re.search(r"\((\d+) train, (\d+) val, (\d+) test\)", done.stderr)  # pvae train's first line
    train_rows = int(said.group(1)) if said else None
    complete = train_rows is not None and steps == math.ceil(train_rows / BATCH_SIZE)
    return {
        "peak_mib": int(done.stdout.strip().splitlines()[-1]) / 1024,
        "train_rows": train_rows,
        "steps": steps,
        "complete": complete,
        "seconds": wall,
    }


def write_images(path: Path, rows: int, seed: int = 0, block: int = 20_000) -> None:
    """``rows`` binary 28×28 images as uint8 ``(rows, 1, 28, 28)``, written a block of rows at a time with
    plain writes (never held whole, nor mapped)."""
    rng = np.random.default_rng(seed)
    shape = (rows, 1, 28, 28)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": shape}
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        for start in range(0, rows, block):
            stop = min(rows, start + block)
            handle.write((rng.random((stop - start, *shape[1:]), dtype=np.float32) < 0.2).astype(np.uint8).tobytes())


def table_timing(folder: Path, rows: int, repeats: int = 5) -> dict:
    """Median rows/s of :func:`pvae.data.load` on a CSV of ``rows`` × 20 real columns, and each stage's share."""
    import pandas as pd

    from pvae import data
    from pvae.data import DataConfig, userdata

    rng = np.random.default_rng(1)
    path = folder / "table.csv"
    pd.DataFrame(rng.normal(size=(rows, 20)), columns=[f"x{i}" for i in range(20)]).to_csv(path, index=False)
    totals, stages = [], {"parse": [], "kind": [], "checksum": []}
    for _ in range(repeats):
        tic = time.perf_counter()
        dataset = data.load(DataConfig(str(path)))
        totals.append(time.perf_counter() - tic)
        tic = time.perf_counter()
        frame = pd.read_csv(path)
        stages["parse"].append(time.perf_counter() - tic)
        values = frame.to_numpy()
        tic = time.perf_counter()
        userdata.find_kind(values)
        stages["kind"].append(time.perf_counter() - tic)
        tic = time.perf_counter()
        userdata.checksum(path)
        stages["checksum"].append(time.perf_counter() - tic)
    total = statistics.median(totals)
    shares = {name: statistics.median(times) / total for name, times in stages.items()}
    shares["the rest (split, storage, standardization)"] = 1 - sum(shares.values())
    return {"rows": rows, "seconds": total, "rows_per_second": rows / total, "shares": shares, "kind": dataset.kind}


@options.config
class BenchUserData:
    """How large the files are, and how long the runs train.

    :param rows: images in the big .npy (784 bytes each).
    :param table_rows: rows of the CSV.
    :param held_out: validation rows, and as many test rows (0: pvae's own split).
    :param train_seconds: seconds of training steps at most (0: a whole epoch).
    :param dir: where the temporary files go (none: the system's).
    """

    rows: int = 5_000_000
    table_rows: int = 200_000
    held_out: int = 1_000
    train_seconds: float = 120
    dir: str | None = None

    def __post_init__(self):
        options.positive(self, "rows", "table_rows")
        options.positive(self, "held_out", "train_seconds", zero=True)


def main(argv: list[str] | None = None) -> dict:
    """Run both measurements and print them; returns the numbers."""
    parser = command_line.parser(__doc__.splitlines()[0])
    options.add_options(parser, BenchUserData)
    (bench,) = command_line.configs(parser, parser.parse_args(argv), BenchUserData)
    held_out = min(bench.held_out, bench.rows // 10)
    small_rows = SMALL_TRAIN_ROWS + 2 * held_out if held_out else SMALL_TRAIN_ROWS
    with tempfile.TemporaryDirectory(prefix="bench-user-data-", dir=bench.dir) as folder:
        folder = Path(folder)
        needed = (bench.rows + small_rows) * ROW_BYTES
        free = shutil.disk_usage(folder).free
        if free < needed + 2**30:  # and a GiB to spare for the runs and the table
            raise SystemExit(
                f"the files need {needed / 2**30:.1f} GiB and {folder} has {free / 2**30:.1f} GiB free: "
                "give --dir on a larger disk, or fewer --rows"
            )
        small, big = folder / "small.npy", folder / "big.npy"
        write_images(small, small_rows)
        write_images(big, bench.rows)
        size = big.stat().st_size / 2**20
        small_run = peak_rss_of_training(small, folder / "run-small", held_out, bench.train_seconds)
        big_run = peak_rss_of_training(big, folder / "run-big", held_out, bench.train_seconds)
        big.unlink()  # the disk back before the tables
        small_rss, big_rss = small_run["peak_mib"], big_run["peak_mib"]
        held = f"{held_out:,} validation and {held_out:,} test rows held out" if held_out else "pvae's own split"
        trained = "one epoch"
        if not big_run["complete"]:
            share = big_run["steps"] * BATCH_SIZE / big_run["train_rows"] if big_run["train_rows"] else None
            trained = f"{big_run['steps']:,} steps of {BATCH_SIZE} rows drawn from all of them"
            trained += (
                f" (--max-seconds {bench.train_seconds:g}{'' if share is None else f', {share:.0%} of an epoch'})"
            )
        extra, grew = bench.rows - small_rows, big_rss - small_rss
        per_row = f" ({grew * 2**20 / extra:,.0f} bytes a row; a row is {ROW_BYTES} on disk)" if extra > 0 else ""
        big_s, small_s = f"{big_run['seconds']:.0f} s", f"{small_run['seconds']:.0f} s"
        print(f"memory: a {size:,.0f} MiB .npy of {bench.rows:,} binary 28×28 images ({held})")
        print(f"  trains {trained},")
        print(f"  then validates, tests and draws its figures, with a peak resident memory of {big_rss:,.0f} MiB")
        print(f"  ({big_s}); a {small_rows:,}-image file of the same images trains one epoch with a peak of")
        print(f"  {small_rss:,.0f} MiB ({small_s}): the file is {size / big_rss:.1f}× the peak, and the peak grew by")
        print(f"  {grew:,.0f} MiB for {extra:,} more rows{per_row}")
        timing = table_timing(folder, bench.table_rows)
        print(
            f"tables: {timing['rows']:,} rows × 20 real columns load in {timing['seconds']:.2f} s "
            f"({timing['rows_per_second']:,.0f} rows/s, median of 5); shares of the time:"
        )
        for name, share in timing["shares"].items():
            print(f"  {name}: {share:.0%}")
    return {
        "file_mib": size,
        "peak_mib": big_rss,
        "small_peak_mib": small_rss,
        "ratio": size / big_rss,
        "grew_mib": grew,
        "big_run": big_run,
        "small_run": small_run,
        "table": timing,
    }


if __name__ == "__main__":
    main()
