"""Few-step generation from a trained flow/EDM teacher: consistency distillation, progressive distillation, reflow
and bespoke solvers (math as pure torch functions; the distillation loop lives in ``caloforge.training.distill``).

Each method ends in an ``Objective`` subclass (``objectives.py``) whose config carries everything needed to sample
(base objective, time grid, learned solver coefficients), so a distilled run is a normal run directory.
"""
