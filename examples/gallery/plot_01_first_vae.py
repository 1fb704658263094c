"""
A first VAE in Python
=====================

Load the embedded digits, build a model/guide pair, fit it with SVI, score it on the test split, and draw
what it learned: reconstructions and samples from the prior. This is the engine level, where every piece
is a function you call; the last cell runs the same through the application in one call, which also writes
a run directory as ``pvae train`` does.

The settings are small so that the page builds in seconds (20 epochs, 10 latent dimensions, K=200
importance samples); ``pvae train`` on the digits trains for longer and scores with K=1000.
"""

# %%
# The data and the pair
# ---------------------
# ``digits`` is scikit-learn's bundled set of 1,797 handwritten digits, 8×8 pixels, split into train,
# validation and test. ``binarize="dynamic"`` draws fresh binary pixels from the grey levels at every batch,
# the standard for log-likelihood numbers. ``build_pair`` builds the registered pair by name: a VAE
# (Bernoulli pixels from an MLP decoder) with a diagonal Gaussian guide.
import pyro

from pvae import data
from pvae.engine.config import PairConfig, build_pair
from pvae.engine.train import TrainConfig, fit
from pvae.measures.evaluate import evaluate

pyro.set_rng_seed(0)
digits = data.load(data.DataConfig("digits", binarize="dynamic"))
print(f"{len(digits.train)} train, {len(digits.val)} validation, {len(digits.test)} test images of {digits.x_shape}")

model, guide = build_pair(PairConfig(model="vae", guide="gaussian", z_dim=10, hidden=(256,)), digits.x_shape)

# %%
# Fit
# ---
# ``fit`` maximises the ELBO with one ``torch.optim`` optimizer over the pair's parameters. It returns one
# dict per epoch; ``val_elbo`` is the validation ELBO in nats per datapoint.
history = fit(model, guide, digits, TrainConfig(elbo="meanfield", epochs=20, lr=3e-3), progress=False)
first, last = history[0], history[-1]
print(f"validation ELBO: {first['val_elbo']:.2f} after epoch 1, {last['val_elbo']:.2f} after epoch {last['epoch']}")

# %%
# Evaluate
# --------
# ``evaluate`` returns the ELBO with its two terms and the importance-sampled estimate of log p(x) with K
# samples per datapoint. The ELBO is a lower bound, so it sits below log p(x); the difference is the KL from
# the guide to the true posterior, averaged over the test images.
scores = evaluate(model, guide, digits.test.images(), num_samples=200)
print(
    f"test ELBO {scores['elbo']:.2f} = reconstruction {scores['reconstruction']:.2f} − KL {scores['kl']:.2f}; "
    f"log p(x) ≈ {scores['log_px']:.2f} ± {scores['log_px_se']:.2f} (K={scores['iwae_samples']}), nats per image"
)

# %%
# Figures
# -------
# ``run_figures`` draws the standard figures of a run as matplotlib figures, by name: the learning curves,
# test images above their reconstructions, decoder means at draws from the prior, an interpolation between
# two test digits in latent space, and the posterior means of the test set (projected on two principal axes),
# coloured by digit.
from pvae.plots.run import run_figures

figures = run_figures(model, guide, digits, history)
print(", ".join(figures))

# %%
# The same through the application
# --------------------------------
# ``pvae.app.train.train`` is the function ``pvae train`` calls: it takes one frozen record of every setting,
# writes a run directory (``config.json``, ``checkpoint.pt``, ``metrics.jsonl``, ``summary.json`` and
# ``figures/``), scores the test split and returns the directory. A variant is
# ``dataclasses.replace(settings, beta=4.0)``. With the settings and the seed of the cells above it trains the
# same pair; among its figures are latent traversals, which the run draws along the dimensions the test data
# use most (each row moves one dimension of the first test digit's code, the others held).
import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.image import imread

from pvae.app.train import TrainSettings, train

settings = TrainSettings(
    epochs=20,
    z_dim=10,
    hidden=(256,),
    lr=3e-3,
    samples=200,
    out=str(Path(tempfile.mkdtemp()) / "first"),
    progress=False,
    device="cpu",  # a model this small computes fastest on the CPU
)
run = train(settings)
summary = json.loads((run / "summary.json").read_text())
print(f"the run's test ELBO {summary['test']['elbo']:.2f}, log p(x) ≈ {summary['test']['log_px']:.2f}")

fig, ax = plt.subplots(figsize=(7, 7))
ax.imshow(imread(run / "figures" / "traversals.png"))
ax.set_axis_off()
