"""The base: what every layer uses — options generated from config dataclasses, atomic file writes, registries, site
names, devices and torchrun's ranks, the run directory, the ArviZ adapter.
"""
