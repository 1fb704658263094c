"""The studies: many runs at once — sweeps, run tables, HTML reports, TensorBoard."""
