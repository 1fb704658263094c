"""The result of a comparison for people: its tables as a document (:func:`results_document`), written as
Markdown (``results.md``, :func:`results_markdown`) and drawn on a run's page by :mod:`pvae.studies.report` from
``results.json``, the same document either way.

A document is a list of blocks: :class:`Heading`, :class:`Paragraph` and :class:`Table`, plain text each.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Heading:
    """A heading.

    :param level: 1 for the title, 2 for a section.
    :param text: its text.
    """

    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of one or more lines, each a sentence of its own.

    :param lines: its lines.
    """

    lines: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """A table of text.

    :param header: the column names.
    :param rows: the rows, one cell per column.
    """

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


Block = Heading | Paragraph | Table


def _by_k(rows: list[dict], cell, header: str) -> Table:
    """One row per estimator setting, one column per K; ``cell`` makes a row's text."""
    ks = sorted({r["particles"] for r in rows})
    names = list(dict.fromkeys(r["setting"] for r in rows))
    body = []
    for name in names:
        by_k = {r["particles"]: r for r in rows if r["setting"] == name}
        body.append((name, *(cell(by_k[k]) if k in by_k else "" for k in ks)))
    return Table((header, *(f"K={k}" for k in ks)), tuple(body))


def results_document(results: dict) -> list[Block]:
    """The tables of a comparison with their headings and notes, without a title: one row per
    estimator, one column per K.

    :param results: what :func:`pvae.measures.compare.compare_estimators` returned (or its ``results.json``).
    """
    s = results["settings"]
    blocks: list[Block] = [
        Heading(2, f"Bounds at fixed parameters ({s['points']} test points, {s['repeats']} estimates each)"),
        Paragraph(
            (
                "Mean ± standard error of the bound, nats per datapoint; "
                "sd: spread of one estimate of the batch average.",
            )
        ),
        _by_k(results["values"], lambda r: f"{r['mean']:.3f} ± {r['se']:.3f} (sd {r['sd']:.3f})", "estimator"),
    ]
    if results.get("exact_log_px") is not None:
        blocks.append(Paragraph((f"Exact log p(x) of the same points: {results['exact_log_px']:.3f}.",)))
    blocks += [
        Paragraph((ordering_markdown(results["ordering"]),)),
        Heading(2, f"Gradient signal-to-noise ({s['grad_points']} test points, {s['grad_repeats']} estimates each)"),
        Paragraph(
            ("Mean over parameters of |mean| / std of each parameter's gradient: encoder (guide) / decoder (model).",)
        ),
        _by_k(
            results["gradients"],
            lambda r: f"{r['encoder']['snr_mean']:.3f} / {r['decoder']['snr_mean']:.2f}",
            "estimator",
        ),
        Paragraph(("Mean gradient variance per parameter: encoder / decoder.",)),
        _by_k(
            results["gradients"],
            lambda r: f"{r['encoder']['variance']:.2e} / {r['decoder']['variance']:.2e}",
            "estimator",
        ),
        Heading(2, f"Cost ({s['cost_batch']} datapoints per step, median of {s['cost_steps']} steps)"),
        Paragraph(("Milliseconds per training step (loss, gradient, Adam) · peak memory one step allocates.",)),
        _by_k(results["cost"], lambda r: f"{1000 * r['seconds']:.1f} ms · {r['peak_mib']:.1f} MiB", "estimator"),
    ]
    if results.get("notes"):
        blocks.append(Paragraph(tuple(f"Note: {note}." for note in results["notes"])))
    if results["training"]:
        rows = []
        for r in results["training"]:
            budget = "same epochs" if r["budget"] == "epochs" else "same time"
            rows.append(
                (
                    r["label"],
                    budget,
                    f"{r['epochs']:.1f}",
                    f"{r['train_seconds']:.1f}",
                    f"{r['elbo']:.2f}",
                    f"{r['log_px']:.2f} ± {r['log_px_se']:.2f}",
                    f"{r['log_px_diff']:+.2f} ± {r['log_px_diff_se']:.2f}",
                )
            )
        header = ("estimator", "budget", "epochs", "seconds", "test ELBO", "test log p(x)", "Δ log p(x)")
        blocks += [
            Heading(
                2,
                f"Result of training (K={s['train_particles']}, test log p(x) with K={s['samples']} "
                f"on {s['test_points']} test points)",
            ),
            Paragraph(("Δ: test log p(x) minus the first row's of the same budget, ± its paired standard error.",)),
            Table(header, tuple(rows)),
        ]
    return blocks


def ordering_markdown(order: dict) -> str:
    """The chain of :func:`pvae.measures.compare.measure.ordering` as one honest sentence: ``≤`` only where the
    means are in order, ``≈`` with the difference and the tolerance where they are not but agree within it.

    :param order: what :func:`pvae.measures.compare.measure.ordering` returned.
    """
    if not order["chain"]:
        return "Ordering: no bound to order."
    z = order.get("z", 3.0)
    name, mean, _ = order["chain"][0]
    text = f"{name} {mean:.3f}"
    for link, (name, mean, _) in zip(order["links"], order["chain"][1:], strict=True):
        text += f" {link['relation']} {name} {mean:.3f}"
        if link["relation"] == "≈":
            text += f" (lower by {link['difference']:.3f}, within {z:g} SE = {link['tolerance']:.3f})"
    if not order["holds"]:
        return f"Ordering ELBO ≤ IWAE-K ≤ log p(x) is violated: {'; '.join(order['violations'])}. Chain: {text}."
    within = any(link["relation"] == "≈" for link in order["links"])
    verdict = f"holds within {z:g} standard errors" if within else "holds"
    return f"Ordering ELBO ≤ IWAE-K ≤ log p(x) {verdict}: {text}."


def markdown(blocks: list[Block]) -> str:
    """A document as Markdown: ``#`` headings, paragraphs, pipe tables, each followed by a blank line.

    :param blocks: the document.
    """
    lines = []
    for block in blocks:
        if isinstance(block, Heading):
            lines.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            lines.extend(block.lines)
        else:
            lines.append("| " + " | ".join(block.header) + " |")
            lines.append("|---" * len(block.header) + "|")
            lines.extend("| " + " | ".join(row) + " |" for row in block.rows)
        lines.append("")
    return "\n".join(lines)


def results_markdown(results: dict, title: str = "ELBO estimators") -> str:
    """The tables of :func:`pvae.measures.compare.compare_estimators` as Markdown under the heading ``title``: one
    row per estimator, one column per K.

    :param results: the comparison.
    :param title: the document's heading.
    """
    return markdown([Heading(1, title), *results_document(results)])
