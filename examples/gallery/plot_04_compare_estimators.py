"""
Comparing ELBO estimators
=========================

An estimator is passed in, never built into a model: the same trained pair can be scored and trained with
``trace`` (the ELBO by sampling), ``meanfield`` (its KL in closed form), ``iwae`` (the importance-weighted
bound of Burda et al., 2016), ``dreg`` (the same bound with the doubly reparameterized gradient of Tucker et
al., 2019) and the others in :data:`pvae.engine.estimators.ESTIMATORS`. :func:`pvae.app.measures.compare` is the
function ``pvae compare-elbos`` calls: at the trained parameters it estimates each bound, the signal-to-noise
ratio of its gradient and the cost of a step, for each number of particles K.

The settings here are small (a 10-epoch run, 64 test points, 5 estimates of each bound, K of 1 and 5);
``pvae compare-elbos RUN`` compares every estimator the pair can use on 100 points, 20 estimates each, with K
up to 50.
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
# The comparison
# --------------
# :class:`~pvae.measures.compare.CompareConfig` holds the options of ``pvae compare-elbos``. The results are
# written to ``RUN/elbos`` (``results.json``, ``results.md`` and ``figures/``) and the folder is returned.
import json

from pvae.app.measures import compare
from pvae.base.device import DeviceConfig
from pvae.measures.compare import CompareConfig

config = CompareConfig(
    estimators=("trace", "meanfield", "iwae", "dreg"),
    particles=(1, 5),
    points=64,
    repeats=5,
    grad_points=8,
    grad_repeats=20,
    cost_batch=64,
    cost_steps=3,
    jit=False,
)
out = compare(run, config, DeviceConfig("cpu"))
results = json.loads((out / "results.json").read_text())

# %%
# The bounds
# ----------
# ``results.md`` tables each bound's mean ± standard error over its estimates, in nats per image, and checks
# the ordering the theory gives: ELBO ≤ IWAE-K ≤ IWAE-K' ≤ log p(x) for K ≤ K'. At K = 1 the IWAE bound is
# the ELBO; with K = 5 it is tighter, and the ELBO estimators agree on one value within their errors.
text = (out / "results.md").read_text()
print(text.split("## Gradient")[0])

# %%
# The figures
# -----------
# :func:`pvae.plots.comparison.comparison_figures` draws the results as ``compare`` wrote them: the bounds
# against K, the gradients' signal-to-noise ratio for the guide's (encoder) and the model's (decoder)
# parameters, and the time and memory of a training step. With more particles the IWAE gradient of the
# encoder grows noisier relative to its size, which DReG corrects (Rainforth et al., 2018).
from pvae.plots.comparison import comparison_figures

figures = comparison_figures(results)
print(", ".join(figures))
