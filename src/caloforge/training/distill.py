"""``caloforge distill``: make a few-step run from a trained teacher run (library entry ``distill``).

The teacher's checkpoint gives the network (EMA weights), objective(s), preprocessing chain, condition encoder,
geometry and, for two-stage runs, the layer coder; the student run reuses all of them, so its data space is exactly
the teacher's. Both stages of a two-stage model are brought to the student's step count by the same method (the
layer MLP is cheap: distilling it costs little). The result is a normal run directory (config.yaml, metrics.jsonl,
checkpoints/) whose objective is ``distilled`` or ``bespoke``: ``sample``, ``bench`` and ``evaluate`` take it as is.
Progressive distillation also leaves each round's student as a run under ``rounds/steps-N``.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from caloforge.errors import ConfigError
from caloforge.generative.distill.paths import path_of
from caloforge.outputs import atomic_write_text, check_output, replaced_dir
from caloforge.training.build import build_network, build_objective, resolve_device
from caloforge.training.checkpoint import capture_rng_state, load_checkpoint, save_checkpoint, to_numpy
from caloforge.training.config import dump_recipe, recipe_from_dict
from caloforge.training.distill_config import DistillConfig, distill_config


@dataclass
class Stage:
    """One network of the teacher with its objective: the voxel DiT (or single-stage net) or the layer MLP."""

    name: str  # "voxel" or "layer"
    objective: object
    n_cond: int | None  # layer stage: conditions are cond[:, :n_cond] and the data cond[:, n_cond:]

    def net(self, model):
        return getattr(model, self.name) if self.name == "layer" or hasattr(model, "layer") else model

    def split(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(data, conditions) of this stage from a training batch."""
        return (c[:, self.n_cond:], c[:, :self.n_cond]) if self.name == "layer" else (x, c)

    @property
    def path(self):
        return path_of(self.objective)


@dataclass
class Teacher:
    ckpt: dict
    model: torch.nn.Module  # EMA weights, frozen
    stages: list[Stage]
    recipe: object
    source: str

    @property
    def two_stage(self) -> bool:
        return len(self.stages) == 2


@dataclass
class DistillResult:
    out_dir: Path
    method: str
    steps: int
    nfe: int
    seconds: float
    last_loss: float | None


def load_teacher(teacher_run, device) -> Teacher:
    ckpt = load_checkpoint(teacher_run)
    recipe = recipe_from_dict(ckpt["config"], f"{ckpt['path']}: config")
    model = build_network(ckpt["model_config"])
    model.load_state_dict(ckpt["ema"])
    model.to(device).eval().requires_grad_(False)
    stages = [Stage("voxel", build_objective(ckpt["objective"]), None)]
    if "layer_coder" in ckpt:
        stages.append(Stage("layer", build_objective(ckpt["layer_objective"]), model.layer.cfg.cond_dim))
    return Teacher(ckpt, model, stages, recipe, str(ckpt["path"]))


def check_teacher(teacher: Teacher, cfg: DistillConfig) -> None:
    """Refuse teachers a method cannot use, before any work (one line naming the file and field)."""
    for st in teacher.stages:
        kind = st.objective.kind
        field = "objective" if st.name == "voxel" else "layer_objective"
        if kind in ("distilled", "bespoke"):
            raise ConfigError(f"{teacher.source}: {field}: the teacher is already a {kind} run; distil the original "
                              f"teacher run instead")
        need = ("flow",) if cfg.method in ("bespoke", "reflow") else ("flow", "edm")
        if kind not in need:
            raise ConfigError(f"{teacher.source}: {field}: kind {kind!r}: --method {cfg.method} needs a "
                              f"{' or '.join(need)} teacher")


def distill(method: str, teacher_run, data_path, out_dir, steps: int | None = None, overrides=(),
            device: str = "cpu", force: bool = False) -> DistillResult:
    """Distil ``teacher_run`` on ``data_path`` (the teacher's training file or one like it) into ``out_dir``."""
    cfg = distill_config(method, steps, list(overrides))
    dev = resolve_device(device)
    teacher = load_teacher(teacher_run, dev)
    check_teacher(teacher, cfg)
    out = check_output(out_dir, force=force, inputs=[teacher_run, data_path], what="directory")
    from caloforge.training import distill_loops

    t0 = time.process_time()
    with replaced_dir(out) as tmp:
        batches = _batches(teacher, data_path, cfg)
        try:
            result = distill_loops.run(cfg, teacher, batches, dev, tmp)
        finally:
            batches.close()
        seconds = time.process_time() - t0
        write_run(tmp, teacher, cfg, result, seconds)
    nfe = result.objectives[0].nfe()
    return DistillResult(out, cfg.method, cfg.steps, nfe, seconds, result.last_loss)


def _batches(teacher: Teacher, data_path, cfg: DistillConfig):
    from caloforge.data.geometry import Geometry
    from caloforge.transforms.chain import Chain
    from caloforge.transforms.conditions import ConditionEncoder
    from caloforge.transforms.layer_coder import LayerEnergyCoder
    from caloforge.training.data import TrainBatches

    ck = teacher.ckpt
    geometry = Geometry.from_dict(ck["geometry"])
    coder = LayerEnergyCoder.from_state(to_numpy(ck["layer_coder"]), geometry) if teacher.two_stage else None
    try:
        return TrainBatches(data_path, Chain.from_state(to_numpy(ck["chain"])), ConditionEncoder.from_state(
            ck["encoder"]), teacher.recipe.data, cfg.train.batch_size, cfg.train.seed, geometry=geometry, coder=coder)
    except ConfigError as exc:
        raise ConfigError(f"distill: {exc}") from None


def student_recipe(teacher: Teacher, cfg: DistillConfig, objectives: list, label: str) -> dict:
    """The teacher's recipe with the distilled objective(s) and the student's step count as sampler defaults."""
    raw = copy.deepcopy(teacher.ckpt["config"])
    raw["name"] = f"{raw.get('name', 'run')}-{cfg.method}{cfg.steps}"
    raw["description"] = f"{cfg.method} distillation ({cfg.steps} steps) of {label}"
    raw["objective"] = objectives[0].config()
    raw["sampler"] = {"solver": None, "steps": objectives[0].default_steps}
    if teacher.two_stage:
        raw["layer_model"] = {**raw["layer_model"], "objective": objectives[1].config(), "solver": None,
                              "steps": objectives[1].default_steps}
    recipe_from_dict(raw, "distilled recipe")  # the run must load like any other
    return raw


def write_run(run_dir: Path, teacher: Teacher, cfg: DistillConfig, result, seconds: float) -> Path:
    """checkpoints/, config.yaml, distill.json and metrics.jsonl of a distilled run in ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    raw = student_recipe(teacher, cfg, result.objectives, teacher.source)
    ck = teacher.ckpt
    static = {k: ck[k] for k in ("model_range", "chain", "encoder", "geometry", "model_config", "layer_coder")
              if k in ck}
    info = {"method": cfg.method, "steps": cfg.steps, "teacher": teacher.source, "teacher_step": int(ck["step"]),
            "cpu_seconds": seconds, "settings": cfg.model_dump(mode="json")}
    payload = {**static, "config": raw, "objective": result.objectives[0].config(),
               "model": result.model_state, "ema": result.ema_state, "optimizer": {}, "rng": capture_rng_state(),
               "last_loss": result.last_loss, "data": {"n": result.n_data, "seed": cfg.train.seed}, "distill": info}
    if teacher.two_stage:
        payload["layer_objective"] = result.objectives[1].config()
    save_checkpoint(run_dir, result.step, payload, keep=1)
    atomic_write_text(run_dir / "config.yaml", dump_recipe(recipe_from_dict(raw, "distilled recipe")))
    atomic_write_text(run_dir / "distill.json", json.dumps(info, indent=1) + "\n")
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in result.metrics))
    return run_dir
