"""
A sweep and its table
=====================

:func:`pvae.app.studies.sweep`, the function ``pvae sweep`` calls, trains one run per cell of a grid over
the settings of ``pvae train``: each cell is ``dataclasses.replace(base, **its settings)``, written into a
folder named after them, and a sweep stopped halfway goes on where it stopped when run again.
:func:`pvae.app.studies.runs` (``pvae runs``) then reads every run under the folder into one table: the
settings that differ, the test numbers, mean ± sd over the seeds.

Here the grid is beta ∈ {0.5, 1, 2} × two seeds, and each run trains for 2 epochs of batches of 32; a real
sweep trains each cell to the end (``pvae sweep OUT --grid beta=0.5,1,2 --grid seed=0,1,2 --workers 2``, the
runs as ``pvae train`` would train them) and is worth running with several workers or as a scheduler's array
job.
"""

# %%
# The sweep
# ---------
# :class:`~pvae.studies.sweep.SweepConfig` holds the options of ``pvae sweep`` (the grid, explicit cells, the
# workers); ``base`` the settings every cell shares.
import tempfile
from pathlib import Path

import pyro

from pvae.app.studies import runs, sweep
from pvae.app.train import TrainSettings
from pvae.base.device import DeviceConfig
from pvae.studies.sweep import SweepConfig

pyro.set_rng_seed(0)
folder = Path(tempfile.mkdtemp()) / "beta-sweep"
base = TrainSettings(epochs=2, batch_size=32, z_dim=8, hidden=(256,), lr=3e-3, samples=50)
cells = sweep(folder, SweepConfig(grid=("beta=0.5,1,2", "seed=0,1")), DeviceConfig("cpu"), base=base)
for cell in cells:
    print(f"{cell['name']:>16}: {cell['state']}")

# %%
# The table
# ---------
# One row per group of runs that differ only in their seed; ``RunsConfig`` also writes it as CSV or Markdown,
# or draws one number against a setting.
from pvae.studies.study import RunsConfig

text = runs(folder, RunsConfig(markdown=str(folder / "runs.md")))

# %%
# A number against beta
# ---------------------
# :func:`pvae.plots.study.plot_against` draws a number of the table against a setting, mean ± sd over the seeds
# (``pvae runs OUT --plot kl --against train.beta`` writes the same figure). The KL falls as beta grows.
from pvae.plots.study import plot_against
from pvae.studies.study import collect, table

result = table(collect(folder))
fig = plot_against(result, "kl", "train.beta")
fig = plot_against(result, "reconstruction", "train.beta")
