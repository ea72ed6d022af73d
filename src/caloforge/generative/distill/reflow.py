"""Rectified-flow reflow (Liu et al. 2023) for a flow teacher: couple each noise draw with the teacher's ODE sample
from it, and train the student on the straight path between the two. The coupled paths cross less than the
independent ones, so few Euler steps (and at the limit one) follow them closely; starting from the teacher's weights
it needs no long training.
"""

from __future__ import annotations

import torch

from caloforge.generative.distill.paths import Path
from caloforge.generative.objectives.base import Net, expand, rand


def pair_loss(path: Path, student: Net, noise: torch.Tensor, sample: torch.Tensor, cond: torch.Tensor | None,
              generator: torch.Generator | None = None, t_zero_share: float = 0.25) -> torch.Tensor:
    """MSE between the student's velocity and ``sample - noise`` on the straight path; a share of the times is put
    at the noise end, where the one-step sampler evaluates."""
    b = noise.shape[0]
    t = rand((b,), noise, generator)
    t = torch.where(rand((b,), noise, generator) < t_zero_share, torch.zeros_like(t), t)
    tb = expand(t, noise)
    z = (1.0 - tb) * noise + tb * sample
    v = path.objective.velocity(student, z, t, cond)
    return (v.float() - (sample - noise).float()).pow(2).flatten(1).mean(dim=1).mean()
