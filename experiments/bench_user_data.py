"""What the user's own data cost: resident memory of training on a .npy larger than that memory, and how
fast tables load (and where the time goes).

    python experiments/bench_user_data.py                       # a 1.2 GB .npy, a 200,000-row table
    python experiments/bench_user_data.py --rows 200000 --table-rows 20000   # quicker

1. **Memory.** A ``.npy`` of binary 28×28 images (``--rows`` of them, one byte a pixel) is trained on for
   one epoch by ``pvae train`` in a child process, and so is a file of 2,000 such images; the peak resident
   memory of each child (``VmHWM``) is printed with the file's size. pvae reads the rows of a ``.npy``
   a batch at a time (``os.pread``), so the big file's peak should be the small file's plus a few batches,
   not plus the file.
2. **Tables.** A CSV of ``--table-rows`` rows × 20 real columns is loaded by :func:`pvae.data.load` five
   times; the median rows per second is printed, and the share of each stage (the CSV parser, finding
   the kind, the split and the standardization statistics).
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: The child: pvae train, then its own peak resident memory (VmHWM, KiB) on the last line. Not ru_maxrss:
#: Linux keeps that across exec, so a child would report its parent's peak.
_CHILD = (
    "import sys; from pvae import cli; code = cli.main(sys.argv[1:]); "
    "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:'))); sys.exit(code)"
)


def peak_rss_of_training(path: Path, out: Path) -> float:
    """Peak resident memory (MiB) of a child ``pvae train`` of one epoch on ``path``."""
    argv = [sys.executable, "-c", _CHILD, "train", "--data", str(path), "--epochs", "1", "--samples", "10"]
    argv += ["--hidden", "64", "--z-dim", "4", "--no-progress", "--out", str(out), "--device", "cpu"]
    done = subprocess.run(argv, check=True, capture_output=True, text=True)
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def write_images(path: Path, rows: int, seed: int = 0) -> None:
    """``rows`` binary 28×28 images as uint8, written in blocks (never held whole)."""
    rng = np.random.default_rng(seed)
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(rows, 1, 28, 28))
    for start in range(0, rows, 50_000):
        stop = min(rows, start + 50_000)
        array[start:stop] = rng.random((stop - start, 1, 28, 28)) < 0.2
    array.flush()
    del array


def table_timing(folder: Path, rows: int, repeats: int = 5) -> dict:
    """Median rows/s of :func:`pvae.data.load` on a CSV of ``rows`` × 20 real columns, and each stage's share."""
    import pandas as pd

    from pvae import data, userdata
    from pvae.data import DataConfig

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


def main(argv: list[str] | None = None) -> dict:
    """Run both measurements and print them; returns the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_500_000, help="images in the big .npy (784 bytes each)")
    parser.add_argument("--table-rows", type=int, default=200_000, help="rows of the CSV")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        small, big = folder / "small.npy", folder / "big.npy"
        write_images(small, 2_000)
        write_images(big, args.rows)
        size = big.stat().st_size / 2**20
        small_rss = peak_rss_of_training(small, folder / "run-small")
        big_rss = peak_rss_of_training(big, folder / "run-big")
        print(f"memory: a {size:,.0f} MiB .npy of {args.rows:,} binary 28×28 images trains one epoch with a peak")
        print(f"  resident memory of {big_rss:,.0f} MiB; a 2,000-image file of the same images: {small_rss:,.0f} MiB")
        print(f"  (the file is {size / big_rss:.1f}× the peak; the peak grew by {big_rss - small_rss:,.0f} MiB)")
        timing = table_timing(folder, args.table_rows)
        print(
            f"tables: {timing['rows']:,} rows × 20 real columns load in {timing['seconds']:.2f} s "
            f"({timing['rows_per_second']:,.0f} rows/s, median of 5); shares of the time:"
        )
        for name, share in timing["shares"].items():
            print(f"  {name}: {share:.0%}")
    return {"file_mib": size, "peak_mib": big_rss, "small_peak_mib": small_rss, "table": timing}


if __name__ == "__main__":
    main()
