"""
A model/guide pair of your own
==============================

A pair is two ``PyroModule``\\ s: a model that samples the latent site ``"z"`` and observes ``"x"`` inside the
``"data"`` plate, and a guide with the same signature that samples ``"z"`` given ``x``. The file
``examples/laplace_vae.py`` holds one written outside the package: a Laplace prior on z and a Laplace guide
over it. Here it is imported from there, its traits are read, and it is trained briefly and scored like any
registered pair.

The training is short (20 epochs, 8 latent dimensions); ``pvae train --model examples/laplace_vae.py:LaplaceVAE
--guide examples/laplace_vae.py:LaplaceGuide`` trains it from the command line with the data's own defaults.
"""

# %%
# The file
# --------
# The networks come from :mod:`pvae.engine.nets`, the pixels' distribution from :mod:`pvae.engine.likelihoods`;
# the rest is plain Pyro.
#
# .. literalinclude:: /../examples/laplace_vae.py
#    :language: python
#
# It is imported from the ``examples/`` folder beside this gallery.
import sys
from pathlib import Path

import pyro

try:
    here = Path(__file__).resolve().parent
except NameError:  # the documentation's build runs each example in its own folder, without __file__
    here = Path.cwd()
sys.path.insert(0, str(here.parent))  # examples/
from laplace_vae import LaplaceGuide, LaplaceVAE

from pvae import data

pyro.set_rng_seed(0)
digits = data.load(data.DataConfig("digits", binarize="dynamic"))
model = LaplaceVAE(digits.x_shape, z_dim=8, hidden=(256,))
guide = LaplaceGuide(digits.x_shape, z_dim=8, hidden=(256,))

# %%
# Its traits
# ----------
# Everything the engine may know about a pair beyond its methods is a *trait*, a class attribute that the
# pair declares or leaves out for the default. :func:`pvae.engine.pair.traits` reads them once into one frozen
# record; fit, evaluate, diagnose and the commands read that record and nothing else. This pair declares none,
# so it is a plain VAE to the engine: labels unused, a guide with a density and no dependence between
# latents (``mean_field``), no exact marginal.
from pvae.engine.pair import check_pair, traits

pair = traits(model, guide)
for name in ("model", "guide", "latent_sites", "labels", "point_estimate", "mean_field", "likelihood"):
    print(f"{name:>15}: {getattr(pair, name)!r}")

# %%
# :func:`pvae.engine.pair.check_pair` traces model and guide once on a batch of two and refuses a pair that
# does not fit (other ``z_dim``\ s, a latent site one side lacks). A misspelt trait is refused by name rather
# than falling back to its default in silence:


class TypoGuide(LaplaceGuide):
    mean_feild = False  # meant: mean_field


check_pair(model, guide)
try:
    traits(model, TypoGuide(digits.x_shape, z_dim=8))
except ValueError as error:
    print(f"refused: {error}")

# %%
# Train and score
# ---------------
# ``fit`` and ``evaluate`` take any model and guide. No KL between two Laplace distributions is registered,
# so the estimator is ``trace``, which samples log p(z) − log q(z|x).
from pvae.engine.train import TrainConfig, fit
from pvae.measures.evaluate import evaluate

history = fit(model, guide, digits, TrainConfig(elbo="trace", epochs=20, lr=3e-3), progress=False)
scores = evaluate(model, guide, digits.test.images(), num_samples=200)
print(
    f"test ELBO {scores['elbo']:.2f} (reconstruction {scores['reconstruction']:.2f}, KL {scores['kl']:.2f}), "
    f"log p(x) ≈ {scores['log_px']:.2f} ± {scores['log_px_se']:.2f} with K=200, nats per image"
)

# %%
# Its figures
# -----------
# The standard figures use the pair's ``prior`` and ``decode``: test digits above their reconstructions, and
# decoder means at draws from the Laplace prior.
import matplotlib.pyplot as plt

from pvae.plots.run import run_figures

figures = run_figures(model, guide, digits, history)
for name in set(figures) - {"reconstructions", "samples"}:
    plt.close(figures.pop(name))
