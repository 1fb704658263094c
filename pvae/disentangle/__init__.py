"""Disentanglement: datasets' ground-truth factors and the metrics scored against them."""
