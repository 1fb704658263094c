"""Pictures of what a VAE does, by audience: :mod:`pvae.plots.run` (one trained run),
:mod:`pvae.plots.comparison` (ELBO estimators compared), :mod:`pvae.plots.diagnostics` (a posterior
diagnosis) and :mod:`pvae.plots.disentangle` (latent dimensions against ground-truth factors). Each
``plot_*`` function takes data and returns a ``Figure``; nothing here writes files (the CLI and the
experiments do).
"""

import matplotlib

matplotlib.use("Agg")  # no display needed; figures are saved by the caller, and this runs before any pyplot import
