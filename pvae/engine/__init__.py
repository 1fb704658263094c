"""The engine: the pair contract, networks, likelihoods, ELBO estimators and objectives, building a pair from its
config, training.
"""
