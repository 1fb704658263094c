"""The numbers of a diagnosis in words, one line per part (what ``pvae diagnose`` prints)."""


def describe_diagnostics(results: dict) -> str:
    """The numbers of a diagnosis, one line per part, and what did not apply.

    :param results: what :func:`pvae.measures.diagnostics.diagnose` returned.
    """
    lines = []
    if "importance" in results:
        r, k = results["importance"], results["importance"]["k_hat"]
        khat_samples = results["settings"]["khat_samples"]
        lines.append(
            f"importance (N={len(r['worst'])}, K={khat_samples}): Pareto k̂ median {k['median']:.2f}, "
            f"max {k['max']:.2f}; {r['fraction_k_above_0.7']:.0%} of datapoints above 0.7, "
            f"{r['fraction_k_above_0.5']:.0%} above 0.5; ESS {r['ess_fraction']['median']:.1%} of K (median)"
        )
    if "nuts" in results:
        r, c = results["nuts"], results["nuts"]["convergence"]
        head = (
            f"NUTS ({r['datapoints']} datapoints): max R-hat {c['max_r_hat']:.3f}, min ESS bulk "
            f"{c['min_ess_bulk']:.0f} / tail {c['min_ess_tail']:.0f}, {c['divergences']} divergences"
        )
        if not r["converged"]:
            lines.append(f"{head}; {r['refused']}")
        for site, m in (r["comparison"] or {}).items():
            lines.append(
                f"{head}; guide vs NUTS on {site!r}: median |mean error| {m['median_abs_mean_error']:.2f} sd "
                f"(max {m['max_abs_mean_error']:.2f}), median sd ratio {m['median_sd_ratio']:.2f} "
                f"({m['min_sd_ratio']:.2f}–{m['max_sd_ratio']:.2f}), {results['settings']['coverage']:.0%} intervals "
                f"cover {m['mean_coverage']:.1%} of NUTS draws"
            )
    if "gaps" in results:
        g = results["gaps"]
        lines.append(
            f"gaps (N={len(g['per_datapoint']['log_px'])}): log p(x) {g['log_px']['mean']:.2f}, best local ELBO "
            f"{g['local_elbo']['mean']:.2f}, amortized ELBO {g['amortized_elbo']['mean']:.2f}; approximation gap "
            f"{g['approximation_gap']['mean']:.2f} ± {g['approximation_gap']['se']:.2f}, amortization gap "
            f"{g['amortization_gap']['mean']:.2f} ± {g['amortization_gap']['se']:.2f} nats"
        )
    if "latent" in results:
        r = results["latent"]
        text = f"latent: {len(r['active'])} of {len(r['activity'])} dimensions active"
        if "mutual_information" in r:
            saturated = (
                " (at its ceiling log N: more points would raise it)"
                if r["mutual_information"] > r["log_n"] - 0.05
                else ""
            )
            text += (
                f"; KL {r['kl']:.2f}; I(x;z) ≈ {r['mutual_information']:.2f} of at most log N = {r['log_n']:.2f}"
                f"{saturated}; KL(q(z) ‖ p(z)) {r['marginal_kl']:.2f}; {r['prior_holes']:.1%} of prior draws "
                "fall where q(z) is below its own 1% quantile (1% if q(z) = p(z))"
            )
        lines.append(text)
    for name, reason in results["not_applicable"].items():
        lines.append(f"not applicable, {name}: {reason}")
    return "\n".join(lines)
