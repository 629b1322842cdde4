"""The network and how it learns: the CNN builder, callbacks and budgets, the tuner, checkpoints, plots."""
