"""A workbench for variational autoencoders written as Pyro model/guide pairs."""

import pyro

__version__ = "0.1.0"

# Parameters live in the modules that own them, never in Pyro's global param store.
pyro.settings.set(module_local_params=True)
