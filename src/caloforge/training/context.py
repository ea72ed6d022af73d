"""What an objective may see beyond (net, x, cond): the step, the EMA target network and a frozen teacher.

An objective opts in with a class attribute ``uses_context = True``; the trainer then calls
``objective.loss(net, x, cond, generator=gen, ctx=LossContext(...))`` with the whole network (for a two-stage model
the ``TwoStageNet``, conditions followed by the layer codes) and the objective returns the total loss. Objectives
without the attribute are called exactly as before. The teacher is stored in the student's checkpoints, so a resumed
distillation needs neither the teacher's run directory nor its path to stay valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from caloforge.training.build import build_network, build_objective


class NoGrad:
    """A frozen network as a plain callable ``net(z, t_in, cond)`` that never records a graph."""

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def __call__(self, *args, **kwargs):
        with torch.no_grad():
            return self.module(*args, **kwargs)


@dataclass
class Teacher:
    """A trained run's network in eval mode with requires_grad False, its objective and its preprocessing.

    ``teacher(z, t_in, cond)`` evaluates the (voxel) network without a graph; ``teacher.layer`` the layer network of
    a two-stage teacher (else None). ``chain`` is the teacher's fitted transform-chain state (plain types): the
    student must learn in the same model space (start it with ``train.init_from`` + ``train.init_chain_from_source``).
    """

    net: torch.nn.Module
    objective: object
    chain: dict
    model_config: dict
    source: str
    step: int
    weights: str = "ema"
    layer_objective: object | None = None
    _state: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.net.eval().requires_grad_(False)
        self.voxel = NoGrad(getattr(self.net, "voxel", self.net))
        self.layer = NoGrad(self.net.layer) if hasattr(self.net, "layer") else None

    def __call__(self, z: torch.Tensor, t_in: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        return self.voxel(z, t_in, cond)

    @classmethod
    def from_checkpoint(cls, ckpt: dict, weights: str = "ema", device="cpu") -> Teacher:
        """From a run's checkpoint dict (``load_checkpoint``), with its EMA or raw weights."""
        return cls._build({"source": str(ckpt["path"]), "step": int(ckpt["step"]), "weights": weights,
                           "model_config": ckpt["model_config"], "objective": ckpt["objective"],
                           "layer_objective": ckpt.get("layer_objective"), "chain": ckpt["chain"],
                           "state": ckpt["ema"] if weights == "ema" else ckpt["model"]}, device)

    @classmethod
    def from_payload(cls, payload: dict, device="cpu") -> Teacher:
        """From the ``teacher`` entry of a student's checkpoint (``payload()``)."""
        return cls._build(payload, device)

    @classmethod
    def _build(cls, p: dict, device) -> Teacher:
        layer_obj = build_objective(p["layer_objective"]) if p.get("layer_objective") else None
        objectives = (build_objective(p["objective"]), layer_obj) if layer_obj is not None else None
        net = build_network(p["model_config"], objectives)
        net.load_state_dict(p["state"])
        return cls(net.to(device), build_objective(p["objective"]), p["chain"], p["model_config"], p["source"],
                   int(p["step"]), p["weights"], layer_obj, p["state"])

    def payload(self) -> dict:
        """Everything needed to rebuild the teacher, for the student's checkpoint."""
        return {"source": self.source, "step": self.step, "weights": self.weights, "model_config": self.model_config,
                "objective": self.objective.config(), "chain": self.chain, "state": self._state,
                "layer_objective": None if self.layer_objective is None else self.layer_objective.config()}


@dataclass
class LossContext:
    """Handed to objectives with ``uses_context = True``.

    step: the optimiser step being taken (0-based). ema: the EMA weights as a network (eval, no grad), in sync
    with the training EMA after every update (the consistency-distillation target). teacher: the frozen teacher, or
    None when ``train.teacher`` is unset.
    """

    step: int
    ema: torch.nn.Module
    teacher: Teacher | None = None


def uses_context(objective) -> bool:
    return bool(getattr(objective, "uses_context", False))
