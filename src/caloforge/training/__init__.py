"""Training: recipes (config), trainer, EMA, LR schedules, checkpoints, DDP (sampling lives in caloforge.sampling).

Import the submodules directly (``from caloforge.training.trainer import train``); this package stays import-light
so that ``caloforge recipes`` does not pay for torch.
"""
