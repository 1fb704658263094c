"""
Beta's trade-off
================

The beta-VAE maximises reconstruction − beta · KL. In pvae beta is not a model of its own: one handler scales
the latent site ``"z"`` in model and guide, so any pair and any estimator take it. Below, the same VAE is
trained with three values of beta through the application, and each is scored on the test split: the
reconstruction term against the KL, and the KL of each latent dimension (a dimension whose KL is near zero
encodes nothing: it is inactive).

Each run here is short (10 epochs, 8 latent dimensions, K=50 for log p(x)); the trade-off on dSprites in the
results pages comes from ``experiments/beta_sweep.py`` with full-length runs and more values of beta.
"""

# %%
# Three runs
# ----------
# :class:`~pvae.app.train.TrainSettings` holds every option of ``pvae train``; a variant is
# ``dataclasses.replace(settings, beta=b)``, exactly what one cell of a sweep is.
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import pyro

from pvae.app.train import TrainSettings, train

pyro.set_rng_seed(0)
folder = Path(tempfile.mkdtemp())
settings = TrainSettings(
    epochs=10, z_dim=8, hidden=(256,), lr=3e-3, samples=50, progress=False, device="cpu"
)  # a model this small computes fastest on the CPU
betas = (0.5, 1.0, 4.0)
runs = {b: train(replace(settings, beta=b, out=str(folder / f"beta{b}"))) for b in betas}

# %%
# Reconstruction against KL
# -------------------------
# Each run's ``summary.json`` holds its test scores. A larger beta buys a smaller KL (a code closer to the
# prior) with worse reconstructions. Only beta = 1 maximises the ELBO itself; at beta = 4 this short run has
# let the posterior collapse onto the prior (a KL near zero), and log p(x) is the worst of the three.
tests = {b: json.loads((run / "summary.json").read_text())["test"] for b, run in runs.items()}
print(f"{'beta':>5} {'reconstruction':>15} {'KL':>7} {'ELBO':>8} {'log p(x)':>9}")
for b, t in tests.items():
    print(f"{b:>5} {t['reconstruction']:>15.2f} {t['kl']:>7.2f} {t['elbo']:>8.2f} {t['log_px']:>9.2f}")

import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(5.5, 4))
ax.plot([tests[b]["kl"] for b in betas], [tests[b]["reconstruction"] for b in betas], "o-")
for b in betas:
    ax.annotate(f"β = {b:g}", (tests[b]["kl"], tests[b]["reconstruction"]), textcoords="offset points", xytext=(6, -4))
ax.set_xlabel("KL(q(z|x) ‖ p(z)), nats per image")
ax.set_ylabel("reconstruction E_q log p(x|z), nats per image")
ax.set_title("test split of the digits")
fig.tight_layout()

# %%
# KL per latent dimension
# -----------------------
# :func:`pvae.measures.diagnostics.latent_usage` splits the KL by dimension and counts the active units (the
# dimensions whose posterior mean varies across datapoints, Burda et al., 2016). :func:`pvae.engine.config.restore`
# gives back the trained pair of a run directory.
from pvae.engine.config import restore
from pvae.measures.diagnostics import latent_usage

usage = {}
for b, run in runs.items():
    _, _, dataset, model, guide = restore(run)
    usage[b] = latent_usage(model, guide, dataset.test.images(), prior_draws=1000)
    print(f"beta {b:g}: {len(usage[b]['active'])} active units of {settings.z_dim}, KL {usage[b]['kl']:.2f} nats")

fig, ax = plt.subplots(figsize=(6.5, 4))
width = 0.8 / len(betas)
for i, b in enumerate(betas):
    kl = usage[b]["kl_per_dim"].sort(descending=True).values
    ax.bar([d + (i - 1) * width for d in range(len(kl))], kl.tolist(), width, label=f"β = {b:g}")
ax.set_xlabel("latent dimension, by KL (largest first)")
ax.set_ylabel("KL, nats per image")
ax.legend()
fig.tight_layout()

# %%
# What the trade-off looks like
# -----------------------------
# Each run drew its own figures into ``figures/``; its reconstructions (test digits above them) show the price
# of a small KL.
from matplotlib.image import imread

fig, axes = plt.subplots(1, len(betas), figsize=(4 * len(betas), 3.4))
for ax, b in zip(axes, betas, strict=True):
    ax.imshow(imread(runs[b] / "figures" / "reconstructions.png"))
    ax.set_title(f"β = {b:g}")
    ax.set_axis_off()
fig.tight_layout()
