"""Tier-1: the previous system's convolutional-recurrent-attention network, reproduced, and Tier-1+.

- :mod:`serlib.systems.tier1.network`           the network
- :mod:`serlib.systems.tier1.trainer`           training loop, schedule, checkpoints, exact resume, early stopping
- :mod:`serlib.systems.tier1.averaging`         mean weights of the last epochs (SWA), batch-norm re-measured
- :mod:`serlib.systems.tier1.epoch_posteriors`  every epoch's validation posteriors; judging the epoch choice
- :mod:`serlib.systems.tier1.predictor`         a trained network on new files
- :mod:`serlib.systems.tier1.system`            Tier-1 and Tier-1+ as registered systems: fit, predictor, export
"""
