"""Pictures of what a VAE does, by audience: :mod:`pvae.plots.run` (one trained run),
:mod:`pvae.plots.comparison` (ELBO estimators compared) and :mod:`pvae.plots.diagnostics` (a posterior
diagnosis). Each ``plot_*`` function takes data and returns a ``Figure``; nothing here writes files
(the CLI and the experiments do).
"""

import matplotlib

matplotlib.use("Agg")  # no display needed; figures are saved by the caller, and this runs before any pyplot import
