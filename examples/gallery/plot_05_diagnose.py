"""
Diagnosing a posterior
======================

How good is the amortized guide q(z|x)? :func:`pvae.app.measures.diagnose`, the function ``pvae diagnose``
calls, asks four questions of a trained run: can q(z|x) serve as an importance proposal for the posterior
(the Pareto k̂ of each datapoint's importance weights, Yao et al., 2018); does it match the posterior that
NUTS samples; how much of the gap log p(x) − ELBO is due to the guide's family and how much to sharing one
encoder across datapoints (Cremer, Li & Duvenaud, 2018); and which latent dimensions are used.

The settings are small (a 10-epoch run, 32 test points, 500 draws for k̂, one datapoint for NUTS with short
chains); ``pvae diagnose RUN`` runs 100 points, 1000 draws, and four NUTS chains of 500 + 500 steps on five
datapoints.
"""

# %%
# A trained pair
# --------------
import tempfile
from pathlib import Path

import pyro

from pvae.app.train import TrainSettings, train

pyro.set_rng_seed(0)
folder = Path(tempfile.mkdtemp())
run = train(
    TrainSettings(
        epochs=10, z_dim=8, hidden=(256,), lr=3e-3, samples=100, out=str(folder / "run"), progress=False, device="cpu"
    )
)

# %%
# The diagnosis
# -------------
# :class:`~pvae.measures.diagnostics.DiagnoseConfig` holds the options of ``pvae diagnose``. The results go to
# ``RUN/diagnostics``: ``diagnostics.json``, ``posterior.nc`` (the NUTS and guide draws as ArviZ
# ``InferenceData``) and ``figures/``. The last lines printed say the results in words: chains this short usually do
# not pass R̂ and ESS, and then no comparison with NUTS is reported, rather than a wrong one.
import json

from pvae.app.measures import diagnose
from pvae.base.device import DeviceConfig
from pvae.measures.diagnostics import DiagnoseConfig

config = DiagnoseConfig(
    points=32,
    khat_samples=500,
    nuts_points=1,
    chains=2,
    nuts_warmup=100,
    nuts_draws=100,
    samples=500,
    local_particles=16,
    local_steps=50,
    elbo_samples=100,
    latent_points=360,
)
out = diagnose(run, config, DeviceConfig("cpu"))
results = json.loads((out / "diagnostics.json").read_text())

# %%
# Pareto k̂
# ---------
# One k̂ per datapoint, from the weights p(x, z) / q(z|x) of draws z ~ q(z|x): below 0.5 importance sampling
# with q as the proposal is reliable, between 0.5 and 0.7 usable, above 0.7 not (then the
# importance-sampled log p(x) of that datapoint is not to be trusted either).
from pvae.plots.diagnostics import plot_gaps, plot_khat, plot_kl_per_dim

k_hat = results["importance"]["per_datapoint"]["k_hat"]
print(f"k̂: median {sorted(k_hat)[len(k_hat) // 2]:.2f}, max {max(k_hat):.2f}, {sum(k > 0.7 for k in k_hat)} above 0.7")
fig = plot_khat(k_hat)

# %%
# The gaps
# --------
# For each datapoint, log p(x) (importance-sampled), the ELBO of the best guide of the family for that datapoint
# alone (its parameters optimized by L-BFGS), and the ELBO of the amortized guide. The approximation gap is
# the first difference, the amortization gap the second; both are in nats per image.
gaps = results["gaps"]
print(
    f"log p(x) {gaps['log_px']['mean']:.2f}, best local ELBO {gaps['local_elbo']['mean']:.2f}, "
    f"amortized ELBO {gaps['amortized_elbo']['mean']:.2f}: approximation gap "
    f"{gaps['approximation_gap']['mean']:.2f} ± {gaps['approximation_gap']['se']:.2f}, amortization gap "
    f"{gaps['amortization_gap']['mean']:.2f} ± {gaps['amortization_gap']['se']:.2f} nats"
)
fig = plot_gaps(gaps)

# %%
# Latent usage
# ------------
# The KL of each latent dimension and its activity, Cov_x E_q[z_j | x]: a dimension near zero in both has
# collapsed onto the prior.
fig = plot_kl_per_dim(results["latent"], config.active_threshold)

# %%
# NUTS against the guide
# ----------------------
# The figure ``diagnose`` wrote of the marginals of the NUTS draws beside the guide's, for the first datapoint;
# its title says when NUTS did not converge.
import matplotlib.pyplot as plt
from matplotlib.image import imread

fig, ax = plt.subplots(figsize=(10, 3.2))
ax.imshow(imread(out / "figures" / "marginals.png"))
ax.set_axis_off()
fig.tight_layout()
