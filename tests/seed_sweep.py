"""Run the test suite under several seeds and count, per test, under how many it passed.

A statistical test must pass for any seed, not only for the one it was written with (another
processor gives other floating-point bits from the same seed). This script runs pytest once per
seed with ``PVAE_TEST_SEED`` set, one run after another, and reads the JUnit XML of each run::

    python tests/seed_sweep.py 10                  # the default suite under seeds 0..9
    python tests/seed_sweep.py 3 --first 10 -- -m slow
    python tests/seed_sweep.py 20 -- tests/test_diagnostics.py

Everything after ``--`` goes to pytest. It prints one row per test marked ``statistical`` and per
test that did not pass under every seed (passed/seeds, and the seeds it failed under), then the
whole suite's line. The exit status is 1 if any test failed under any seed.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTEST = ["-q", "-p", "no:cacheprovider"]


def _outcomes(path: Path) -> dict[str, str]:
    """Test id → ``passed``, ``failed``, ``error`` or ``skipped``, from one JUnit XML file."""
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        kinds = {child.tag for child in case}
        out[name] = next((k for k in ("failure", "error", "skipped") if k in kinds), "passed")
        out[name] = {"failure": "failed"}.get(out[name], out[name])
    return out


def _statistical(pytest_args: list[str]) -> set[str]:
    """The ids of the tests marked ``statistical`` among those ``pytest_args`` select, as JUnit names them."""
    listing = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *pytest_args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    marked = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *_and_marker(pytest_args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    selected = {line for line in listing.splitlines() if "::" in line}
    return {_junit_name(line) for line in marked.splitlines() if line in selected}


def _and_marker(pytest_args: list[str]) -> list[str]:
    """``pytest_args`` with ``statistical`` added to its marker expression (the suite's default is ``not slow``)."""
    args, expression = [], "not slow"
    it = iter(pytest_args)
    for arg in it:
        if arg == "-m":
            expression = next(it)
        else:
            args.append(arg)
    return [*args, "-m", f"statistical and ({expression})"]


def _junit_name(node_id: str) -> str:
    """``tests/a/test_b.py::test_c[x]`` → ``tests.a.test_b::test_c[x]``, the JUnit classname::name."""
    path, _, rest = node_id.partition("::")
    module = path.removesuffix(".py").replace("/", ".")
    parts = rest.split("::")
    return f"{'.'.join([module, *parts[:-1]])}::{parts[-1]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="arguments after -- go to pytest")
    parser.add_argument("seeds", type=int, help="how many seeds: FIRST .. FIRST + SEEDS - 1")
    parser.add_argument("--first", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--keep", type=Path, default=None, help="folder to keep each seed's JUnit XML and log in")
    argv = sys.argv[1:] if argv is None else argv
    ours, pytest_args = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    args = parser.parse_args(ours)
    args.pytest_args = pytest_args

    folder = args.keep or Path(tempfile.mkdtemp(prefix="seed-sweep-"))
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[int, str]] = defaultdict(dict)
    seeds = range(args.first, args.first + args.seeds)
    for seed in seeds:
        xml, log = folder / f"seed-{seed}.xml", folder / f"seed-{seed}.log"
        tic = time.perf_counter()
        with open(log, "w") as out:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    f"--junitxml={xml}",
                    *args.pytest_args,
                ],
                cwd=ROOT,
                env={**os.environ, "PVAE_TEST_SEED": str(seed)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        outcomes = _outcomes(xml) if xml.exists() else {}
        for name, outcome in outcomes.items():
            results[name][seed] = outcome
        bad = sorted(n for n, o in outcomes.items() if o in ("failed", "error"))
        print(
            f"seed {seed}: {sum(o == 'passed' for o in outcomes.values())} passed, {len(bad)} failed "
            f"({time.perf_counter() - tic:.0f} s){': ' + ', '.join(bad) if bad else ''}",
            flush=True,
        )

    statistical = _statistical(args.pytest_args)
    n = len(seeds)
    rows = []
    for name in sorted(results):
        passed = sum(results[name].get(s) == "passed" for s in seeds)
        skipped = sum(results[name].get(s) == "skipped" for s in seeds)
        if name in statistical or passed + skipped < n:
            failed = [s for s in seeds if results[name].get(s) not in ("passed", "skipped")]
            rows.append((name, passed, failed))
    print(f"\n{'test':<100} passed/seeds  failed under seeds")
    for name, passed, failed in rows:
        print(f"{name:<100} {passed:>3}/{n:<8} {' '.join(map(str, failed))}")
    clean = sum(all(results[name].get(s) in ("passed", "skipped") for name in results) for s in seeds)
    print(f"\nwhole suite: {clean}/{n} seeds with every test passed ({len(results)} tests); logs in {folder}")
    return 0 if clean == n else 1


if __name__ == "__main__":
    sys.exit(main())
