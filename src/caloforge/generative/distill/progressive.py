"""Progressive distillation (Salimans & Ho 2022; CaloScore v2): a student learns to do in one first-order step what
its teacher does in two, so each round halves the step count; the student starts from the teacher's weights and
becomes the next round's teacher.
"""

from __future__ import annotations

import torch

from caloforge.generative.distill.paths import Path
from caloforge.generative.distill.steps import field, heun_step, linear_step, step_coefficients
from caloforge.generative.objectives.base import Net, expand, randn


def two_step_target(path: Path, teacher: Net, z: torch.Tensor, t: torch.Tensor, u: torch.Tensor,
                    cond: torch.Tensor | None, teacher_solver: str = "euler") -> torch.Tensor:
    """Where two teacher steps t -> (t + u) / 2 -> u land (Euler/DDIM, or Heun for a first round from an ODE teacher)."""
    mid = 0.5 * (t + u) if path.objective.kind != "edm" else torch.sqrt(t * u)  # EDM: geometric midpoint in sigma
    move = heun_step if teacher_solver == "heun" else linear_step
    return move(path, teacher, move(path, teacher, z, t, mid, cond), mid, u, cond)


def field_target(path: Path, z: torch.Tensor, t: torch.Tensor, u: torch.Tensor, z_u: torch.Tensor) -> torch.Tensor:
    """The F that makes one first-order move t -> u land exactly on z_u: (z_u - a z) / b."""
    a, b = step_coefficients(path, t, u)
    return (z_u - expand(a, z) * z) / expand(b, z)


def distillation_loss(path: Path, student: Net, teacher: Net, x: torch.Tensor, cond: torch.Tensor | None,
                      student_steps: int, generator: torch.Generator | None = None,
                      teacher_solver: str = "euler") -> torch.Tensor:
    """MSE in F-space between the student's one step and the teacher's two, at a random step of the student grid."""
    grid = path.grid(student_steps).to(x.device, x.dtype)
    b = x.shape[0]
    dev = generator.device if generator is not None else x.device
    i = torch.randint(0, student_steps, (b,), generator=generator, device=dev).to(x.device)
    t, u = grid[i], grid[i + 1]
    z = path.noisy(x, randn(tuple(x.shape), x, generator), t)
    with torch.no_grad():
        want = field_target(path, z, t, u, two_step_target(path, teacher, z, t, u, cond, teacher_solver))
    got = field(path, student, z, t, cond)
    return (got.float() - want.float()).pow(2).flatten(1).mean(dim=1).mean()


def rounds(start_steps: int, final_steps: int) -> list[int]:
    """Student step counts of the rounds, e.g. 16 -> 1: [8, 4, 2, 1]; start must be final x a power of two."""
    out, n = [], start_steps
    while n > final_steps:
        n //= 2
        out.append(n)
    return out
