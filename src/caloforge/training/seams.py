"""The trainer's seams assembled at the door: ``train.freeze``, ``train.init_from`` and ``train.teacher``.

Everything here runs after the network is built and before the run directory is written, so a wrong pattern, a
source network that does not match or a teacher the objective cannot use is one line and no files. On resume (a
checkpoint in the run directory) the weights and the teacher come from that checkpoint, never from the sources.
"""

from __future__ import annotations

from caloforge.errors import ConfigError
from caloforge.training.context import Teacher, uses_context
from caloforge.training.init_from import (
    freeze_parameters,
    init_from_source,
    source_chain_state,
    source_checkpoint,
)


class Seams:
    """frozen: parameter names kept fixed; teacher: a ``Teacher`` or None; chain_source: the checkpoint whose
    chain (and layer coder) this run starts from, or None; static: extra checkpoint entries (``init``,
    ``teacher``) that every checkpoint of the run carries."""

    def __init__(self, recipe, model, objective, ckpt: dict | None, device):
        tc = recipe.train
        self.frozen = freeze_parameters(model, tc.freeze)
        if self.frozen and not any(p.requires_grad for p in model.parameters()):
            raise ConfigError(f"train.freeze: {list(tc.freeze)} freezes every parameter; nothing would train")
        if tc.teacher is not None and not uses_context(objective):
            raise ConfigError(f"train.teacher: objective {objective.kind!r} does not use a teacher (it has no "
                              f"uses_context); use a distillation objective or unset train.teacher")
        self.chain_source, self.static, self.teacher = None, {}, None
        if ckpt is not None:
            if "init" in ckpt:
                self.static["init"] = ckpt["init"]
        elif tc.init_from is not None:
            src = source_checkpoint(tc.init_from, "train.init_from")
            if tc.init_chain_from_source:
                source_chain_state(src, recipe)  # refuses other transform steps before anything is loaded
                self.chain_source = src
            self.static["init"] = init_from_source(model, tc, src)
        if ckpt is not None and "teacher" in ckpt:
            self.teacher = Teacher.from_payload(ckpt["teacher"], device)
        elif tc.teacher is not None:
            self.teacher = Teacher.from_checkpoint(source_checkpoint(tc.teacher, "train.teacher"),
                                                   tc.teacher_weights, device)
        if self.teacher is not None:
            self.static["teacher"] = self.teacher.payload()
