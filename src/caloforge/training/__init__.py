"""Training and sampling: recipes (config), trainer, EMA, LR schedules, checkpoints, DDP, and the Generator.

Import the submodules directly (``from caloforge.training.trainer import train``); this package stays import-light
so that ``caloforge recipes`` does not pay for torch.
"""
