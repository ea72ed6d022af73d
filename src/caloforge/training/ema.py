"""Exponential moving average of the weights with an inverse-decay warm-up (as in k-diffusion / CaloArt).

Early in training the average must forget fast (the weights move a lot), late it should average over many steps, so
the decay grows with the step: ``min(max_decay, 1 - (1 + step / inv_gamma) ** -power)``; at step 0 it is 0 (a copy).
"""

from __future__ import annotations

import copy

import torch


def ema_decay(step: int, power: float = 0.7, max_decay: float = 0.9999, start: int = 0, inv_gamma: float = 1.0) -> float:
    """Decay used for the EMA update made after optimiser step ``step`` (0 = copy the weights)."""
    s = step - start
    if s <= 0:
        return 0.0
    return min(max_decay, 1.0 - (1.0 + s / inv_gamma) ** -power)


class EMA:
    """Shadow copy of a module's floating-point parameters and buffers, updated in place after each step.

    ``skip`` names entries that are never updated (frozen parameters: they keep their starting value exactly).
    """

    def __init__(self, module: torch.nn.Module, power: float = 0.7, max_decay: float = 0.9999, start: int = 0,
                 skip: frozenset[str] = frozenset()):
        self.power, self.max_decay, self.start, self.skip = power, max_decay, start, frozenset(skip)
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self._net: torch.nn.Module | None = None

    def network(self, like: torch.nn.Module) -> torch.nn.Module:
        """The EMA weights as a module (eval, no grad) that stays in sync: it is built once from a copy of ``like``
        and the shadow then lives in its tensors, so every later update moves it at no copying cost."""
        if self._net is None:
            net = copy.deepcopy(like).eval().requires_grad_(False)
            state = net.state_dict()  # tensors sharing storage with the copy's parameters and buffers
            with torch.no_grad():
                for k, v in self.shadow.items():
                    state[k].copy_(v)
            self.shadow, self._net = state, net
        return self._net

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> float:
        """s = decay * s + (1 - decay) * v for every float tensor, as one multi-tensor lerp (the same arithmetic as
        a per-tensor loop, without a Python round trip per tensor: benchmarks/training_speed.py)."""
        decay = ema_decay(step, self.power, self.max_decay, self.start)
        shadows, values = [], []
        for k, v in module.state_dict().items():
            if k in self.skip:
                continue
            s = self.shadow[k]
            if s.is_floating_point() and s.dtype == v.dtype:
                shadows.append(s)
                values.append(v.detach())
            elif s.is_floating_point():
                s.lerp_(v.detach().to(s.dtype), 1.0 - decay)
            else:
                s.copy_(v)
        if shadows:
            torch._foreach_lerp_(shadows, values, 1.0 - decay)
        return decay

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) ^ set(state)
        if missing:
            raise KeyError(f"EMA state does not match the model (keys differ: {sorted(missing)[:3]})")
        with torch.no_grad():
            for k, v in state.items():
                self.shadow[k].copy_(v)

    def copy_to(self, module: torch.nn.Module) -> None:
        module.load_state_dict(self.shadow)
