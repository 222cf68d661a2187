"""Sweeps: Optuna studies (storage, samplers, pruners) and the worker's pruning hook."""
