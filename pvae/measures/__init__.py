"""The measures: what a trained pair is worth — bounds and log p(x), posterior diagnostics, disentanglement, sample
quality, estimator comparisons, codes.
"""
