"""Time a training step of pvae's VAE against a hand-written PyTorch VAE, in one process.

Both run the same networks from the same initial weights with the same Adam, on the same
batches. Steps are timed in interleaved rounds (a round times ``--steps`` steps of every
variant in turn), so drifts of the machine hit every variant alike; each round gives a ratio to
the reference, and the table reports the median ratio and its interquartile range. A second
copy of the reference is timed as a control: its ratio shows the noise of the measurement.

With ``--eval-rounds N`` it also times the importance-sampled evaluation: pvae's
:func:`pvae.measures.evaluate.bounds` (ELBO and log p(x) with K = ``--eval-samples`` per datapoint, as
``pvae evaluate`` runs it, Pyro's validation on) against the hand-written vectorized estimator
``ReferenceVAE.bounds`` at the same weights, one batch of ``--eval-batch-size`` datapoints per pass,
in N interleaved rounds. Each pass starts from the same seed, so both draw the same z: the table
also gives the largest difference of their per-datapoint log p(x), which is float rounding only.

    python experiments/bench_speed.py                 # batch sizes 32, 128, 512
    python experiments/bench_speed.py --rounds 5 --steps 5 --batch-sizes 32   # a quick look
    python experiments/bench_speed.py --eval-rounds 15  # and the evaluation, K = 1000, 100 datapoints a pass
    python experiments/bench_speed.py --batch-sizes --eval-rounds 15 --image-shape 1 8 8   # evaluation only, digits
    python experiments/bench_speed.py --net burgess --z-dim 10 --hidden 256 --batch-sizes 64 \
        --variants "pvae meanfield (default)"     # the Locatello et al. conv VAE on 64×64 images
"""

import statistics
import sys
import time
from dataclasses import field
from pathlib import Path

import pyro
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import command_line  # noqa: E402
from reference_vae import ReferenceVAE  # noqa: E402

from pvae.base import options  # noqa: E402
from pvae.base.files import write_json  # noqa: E402
from pvae.engine.config import PairConfig, build_pair  # noqa: E402
from pvae.engine.train import TrainConfig, make_loss, step  # noqa: E402
from pvae.measures.evaluate import bounds  # noqa: E402

#: Variant name → TrainConfig overrides for the pvae step. The default (``--jit auto``) compiles the
#: loss after checking it against the eager one; ``--jit off`` is the eager loss.
VARIANTS = {
    "pvae meanfield (default)": dict(elbo="meanfield"),
    "pvae trace": dict(elbo="trace"),
    "pvae meanfield --jit off": dict(elbo="meanfield", jit="off"),
    "pvae trace --jit off": dict(elbo="trace", jit="off"),
}


#: Net family → (shape of one image, ink density of the random binary batch): MNIST's 28×28 with its
#: density for the MLP and the 3×3 conv net, dSprites' 64×64 (about 4% of its pixels are on) for burgess.
IMAGES = {"mlp": ((1, 28, 28), 0.13), "conv": ((1, 28, 28), 0.13), "burgess": ((1, 64, 64), 0.04)}
#: The benchmark's own defaults of pvae's settings: option → (default, as the help shows it).
DEFAULTS = {"net": ("mlp", "mlp"), "z_dim": (20, "20"), "hidden": ((400,), "400 (burgess: give 256)")}
#: Training batch sizes timed by default.
BATCH_SIZES = (32, 128, 512)


@options.config
class BenchSpeed:
    """What is timed, and how often.

    :param batch_sizes: training batches timed (the option alone, without a size: the evaluation only).
    :param rounds: interleaved rounds of the training steps' timing.
    :param steps: steps of each variant per round.
    :param warmup: untimed steps of each variant.
    :param variants: the pvae steps timed against the reference.
    :param image_shape: one image, C H W (none: the net family's).
    :param eval_rounds: rounds of the evaluation's timing (0: none).
    :param eval_samples: K, importance samples per datapoint.
    :param eval_batch_size: datapoints per evaluation pass.
    :param eval_warmup: untimed evaluation passes of each estimator.
    """

    batch_sizes: tuple[int, ...] | None = field(
        default=None, metadata={**options.words("N"), **options.default_is(" ".join(map(str, BATCH_SIZES)))}
    )
    rounds: int = 40
    steps: int = 20
    warmup: int = 30
    variants: tuple[str, ...] = field(
        default=(), metadata={**options.words("NAME"), **options.choices(VARIANTS), **options.default_is("all")}
    )
    image_shape: tuple[int, ...] | None = field(default=None, metadata=options.words("N"))
    eval_rounds: int = 0
    eval_samples: int = 1000
    eval_batch_size: int = 100
    eval_warmup: int = 1

    def __post_init__(self):
        if self.batch_sizes is None:
            object.__setattr__(self, "batch_sizes", BATCH_SIZES)
        if not self.variants:
            object.__setattr__(self, "variants", tuple(VARIANTS))
        options.require(self, "batch_sizes", all(b > 0 for b in self.batch_sizes), "positive sizes")
        options.positive(self, "rounds", "steps", "eval_samples", "eval_batch_size")
        options.positive(self, "warmup", "eval_rounds", "eval_warmup", zero=True)
        options.require(
            self,
            "image_shape",
            self.image_shape is None or (len(self.image_shape) == 3 and min(self.image_shape) > 0),
            "three positive sizes, C H W",
        )


def _steppers(
    batch: torch.Tensor, z_dim: int, hidden: tuple[int, ...], lr: float, variants: list[str], net: str = "mlp"
) -> dict:
    """One zero-argument training step per variant, all from the same initial weights."""
    torch.manual_seed(0)
    pair = PairConfig(z_dim=z_dim, hidden=hidden, net=net)
    model, guide = build_pair(pair, tuple(batch.shape[1:]))
    initial = (model.state_dict(), guide.state_dict())
    steppers = {}
    for name in ("reference", "reference (control copy)"):
        ref = ReferenceVAE.like(model, guide)
        optimizer = torch.optim.Adam(ref.parameters(), lr=lr)
        steppers[name] = lambda ref=ref, optimizer=optimizer: step(ref, optimizer, batch)
    for name in variants:
        m, g = build_pair(pair, tuple(batch.shape[1:]))
        m.load_state_dict(initial[0]), g.load_state_dict(initial[1])
        loss_fn = make_loss(m, g, TrainConfig(**VARIANTS[name]))
        loss_fn(batch)  # parameters exist before the optimizer is built; the loss is compiled and checked here
        optimizer = torch.optim.Adam(loss_fn.parameters(), lr=lr)
        steppers[name] = lambda loss_fn=loss_fn, optimizer=optimizer: step(loss_fn, optimizer, batch)
    return steppers


def measure(
    batch_size: int,
    rounds: int,
    steps: int,
    warmup: int,
    variants: list[str],
    z_dim=20,
    hidden=(400,),
    net="mlp",
    shape: tuple[int, ...] | None = None,
) -> dict:
    """Milliseconds per step and per-round ratios to the reference for one batch size.

    :param shape: one image's shape (None: the net family's, :data:`IMAGES`)."""
    shape, density = shape or IMAGES[net][0], IMAGES[net][1]
    batch = torch.bernoulli(torch.full((batch_size, *shape), density))
    steppers = _steppers(batch, z_dim, hidden, 1e-3, variants, net)
    times = {name: [] for name in steppers}
    with pyro.validation_enabled(False):  # as in fit after its first, validated batch
        for fn in steppers.values():
            for _ in range(warmup):
                fn()
        for _ in range(rounds):
            for name, fn in steppers.items():
                tic = time.perf_counter()
                for _ in range(steps):
                    fn()
                times[name].append((time.perf_counter() - tic) / steps * 1e3)
    reference = times["reference"]
    return {name: {"ms_per_step": statistics.median(ms), **_ratios(ms, reference)} for name, ms in times.items()}


def _ratios(ms: list[float], reference: list[float]) -> dict:
    """The median and quartiles of the per-round ratios of ``ms`` to ``reference``."""
    ratios = sorted(a / b for a, b in zip(ms, reference, strict=True))
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {"ratio": statistics.median(ratios), "q25": q[0], "q75": q[2]}


def measure_evaluation(
    batch_size: int,
    samples: int,
    rounds: int,
    warmup: int,
    z_dim=20,
    hidden=(400,),
    net="mlp",
    shape: tuple[int, ...] | None = None,
) -> dict:
    """Milliseconds per batch of K-sample bounds, per-round ratios to the hand-written estimator, and the
    largest difference of the per-datapoint log p(x) between the two at the same draws of z.

    :param shape: one image's shape (None: the net family's, :data:`IMAGES`)."""
    shape, density = shape or IMAGES[net][0], IMAGES[net][1]
    torch.manual_seed(0)
    batch = torch.bernoulli(torch.full((batch_size, *shape), density))
    model, guide = build_pair(PairConfig(z_dim=z_dim, hidden=hidden, net=net), shape)
    model.eval()
    guide.eval()
    passes = {}
    for name in ("reference", "reference (control copy)"):
        ref = ReferenceVAE.like(model, guide)
        passes[name] = lambda ref=ref: ref.bounds(batch, samples)[1]  # log p(x), (batch,)
    passes["pvae bounds"] = lambda: bounds(model, guide, batch, num_samples=samples)["log_px"]
    times = {name: [] for name in passes}
    log_px = {}
    with pyro.validation_enabled(True):  # as `pvae evaluate` runs it (Pyro's default)
        for _ in range(warmup):
            for fn in passes.values():
                fn()
        for _ in range(rounds):
            for name, fn in passes.items():
                torch.manual_seed(1)  # the same draws of z for every pass
                tic = time.perf_counter()
                log_px[name] = fn()
                times[name].append((time.perf_counter() - tic) * 1e3)
    return {
        name: {
            "ms_per_batch": statistics.median(ms),
            **_ratios(ms, times["reference"]),
            "max_abs_diff_log_px": float((log_px[name] - log_px["reference"]).abs().max()),
        }
        for name, ms in times.items()
    }


def evaluation_markdown(rows: dict) -> str:
    """The evaluation timings as a Markdown table, one row per estimator."""
    lines = ["| estimator | ms/batch | ratio [IQR] | max abs diff of log p(x) |", "|---|---:|---:|---:|"]
    for name, r in rows.items():
        ratio = f"{r['ratio']:.2f} [{r['q25']:.2f}, {r['q75']:.2f}]"
        lines.append(f"| {name} | {r['ms_per_batch']:.0f} | {ratio} | {r['max_abs_diff_log_px']:.1e} |")
    return "\n".join(lines) + "\n"


def to_markdown(results: dict) -> str:
    """The results as a Markdown table, one row per variant, one column pair per batch size."""
    sizes = list(results)
    head = "| variant | " + " | ".join(f"batch {b}: ms/step | ratio [IQR]" for b in sizes) + " |"
    lines = [head, "|---|" + "---:|---:|" * len(sizes)]
    for name in results[sizes[0]]:
        cells = []
        for b in sizes:
            r = results[b][name]
            cells += [f"{r['ms_per_step']:.2f}", f"{r['ratio']:.2f} [{r['q25']:.2f}, {r['q75']:.2f}]"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = command_line.parser(__doc__)
    options.add_options(parser, BenchSpeed)
    options.add_options(parser, PairConfig, only=("net", "z_dim", "hidden"), defaults=DEFAULTS)
    options.add_options(parser, command_line.Threads, defaults={"threads": (None, "torch's choice")})
    stamp = time.strftime("%Y%m%d-%H%M%S")
    options.add_options(
        parser, command_line.Results, defaults={"out": (f"runs/bench_speed-{stamp}", "runs/bench_speed-DATE")}
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    # `--batch-sizes` followed by no size: time the evaluation only (an option of words takes one at least)
    alone = [i for i, word in enumerate(argv) if word == "--batch-sizes" and not _a_size(argv[i + 1 : i + 2])]
    args = parser.parse_args([word for i, word in enumerate(argv) if i not in alone])
    bench, pair, threads, results_folder = command_line.configs(
        parser,
        args,
        BenchSpeed,
        PairConfig,
        command_line.Threads,
        command_line.Results,
        **({"batch_sizes": ()} if alone else {}),
    )
    if pair.net not in IMAGES:
        parser.error(f"--net {pair.net}: this benchmark times {', '.join(IMAGES)}")
    if threads.threads:
        torch.set_num_threads(threads.threads)
    shape = bench.image_shape or IMAGES[pair.net][0]
    hidden = list(pair.hidden)
    results = {}
    for b in bench.batch_sizes:
        results[b] = measure(
            b, bench.rounds, bench.steps, bench.warmup, list(bench.variants), pair.z_dim, pair.hidden, pair.net, shape
        )
        print(f"batch {b}: " + ", ".join(f"{n} {r['ratio']:.2f}" for n, r in results[b].items()), flush=True)
    table = to_markdown(results) if results else ""
    setting = f"--net {pair.net}, {'×'.join(map(str, shape))} images, z = {pair.z_dim}, hidden {hidden}"
    steps = f", {bench.rounds} rounds of {bench.steps} steps\n\n{table}" if results else "\n"
    print(f"\n{setting}; {torch.get_num_threads()} torch threads{steps}")
    evaluation = None
    if bench.eval_rounds > 0:
        evaluation = measure_evaluation(
            bench.eval_batch_size,
            bench.eval_samples,
            bench.eval_rounds,
            bench.eval_warmup,
            pair.z_dim,
            pair.hidden,
            pair.net,
            shape,
        )
        eval_setting = (
            f"evaluation: K = {bench.eval_samples}, {bench.eval_batch_size} datapoints a pass, "
            f"{bench.eval_rounds} rounds, Pyro's validation on"
        )
        print(f"{eval_setting}\n\n{evaluation_markdown(evaluation)}")
    out = Path(results_folder.out)
    meta = {
        "net": pair.net,
        "image_shape": list(shape),
        "z_dim": pair.z_dim,
        "hidden": hidden,
        "threads": torch.get_num_threads(),
        "rounds": bench.rounds,
        "steps": bench.steps,
        "torch": torch.__version__,
        "pyro": pyro.__version__,
    }
    saved = {"settings": meta, "results": {str(b): r for b, r in results.items()}}
    if evaluation is not None:
        meta.update(
            eval_samples=bench.eval_samples, eval_batch_size=bench.eval_batch_size, eval_rounds=bench.eval_rounds
        )
        saved["evaluation"] = evaluation
        table += ("\n" if table else "") + f"{eval_setting}\n\n{evaluation_markdown(evaluation)}"
        results["evaluation"] = evaluation
    write_json(out / "results.json", saved)
    (out / "results.md").write_text(table)
    print(f"results in {out}")
    return results


def _a_size(words: list[str]) -> bool:
    """Whether the first of ``words`` is a batch size (not another option, nor the end of the line)."""
    return bool(words) and not words[0].startswith("-")


if __name__ == "__main__":
    main()
