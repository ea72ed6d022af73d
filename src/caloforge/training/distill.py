"""``caloforge distill``: make a few-step run from a trained teacher run (library entry ``distill``).

The teacher's checkpoint gives the network (EMA weights), objective(s), preprocessing chain, condition encoder,
geometry and, for two-stage runs, the layer coder; the student run reuses all of them, so its data space is exactly
the teacher's. Both stages of a two-stage model are brought to the student's step count by the same method (the
layer MLP is cheap: distilling it costs little). The result is a normal run directory (config.yaml, metrics.jsonl,
checkpoints/) whose objective is ``distilled`` or ``bespoke``: ``sample``, ``bench`` and ``evaluate`` take it as is.
Progressive distillation also leaves each round's student as a run under ``rounds/steps-N``. The work happens in
``<OUT>.partial`` (``distill_partial``): the same command resumes a killed consistency or progressive run from its
last checkpoint (a finished progressive round is not trained again).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from caloforge.errors import CaloforgeError, ConfigError
from caloforge.generative.distill.objectives import Distilled
from caloforge.generative.distill.paths import path_of
from caloforge.outputs import atomic_write_text, check_output
from caloforge.training.build import build_network, build_objective, resolve_device
from caloforge.training.checkpoint import (
    capture_rng_state,
    latest_checkpoint,
    latest_step,
    load_checkpoint,
    save_checkpoint,
    to_numpy,
)
from caloforge.training.distill_config import DistillConfig, distill_config
from caloforge.training.distill_partial import job_request, partial_job
from caloforge.training.recipe_io import dump_recipe, recipe_from_dict, stored_recipe

TRAINER_METHODS = ("consistency", "progressive")


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
    recipe = stored_recipe(ckpt["config"], f"{ckpt['path']}: config")
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
    """Distil ``teacher_run`` on ``data_path`` (the teacher's training file or one like it) into ``out_dir``, working
    in ``<out_dir>.partial`` (resumed by the same command after a kill; ``force`` discards it and replaces out_dir)."""
    cfg = distill_config(method, steps, list(overrides))
    dev = resolve_device(device)
    teacher = load_teacher(teacher_run, dev)
    check_teacher(teacher, cfg)
    out = check_output(out_dir, force=force, inputs=[teacher_run, data_path], what="directory")
    request = job_request(cfg, teacher.ckpt, data_path)
    t0 = time.process_time()
    with partial_job(out, request, force, inputs=[teacher_run, data_path]) as tmp:
        if cfg.method in TRAINER_METHODS:
            last = _in_trainer(cfg, teacher, Path(teacher_run), data_path, tmp, device, t0)
            objectives = student_objectives(cfg, teacher, cfg.steps)
            write_info(tmp, teacher, cfg, time.process_time() - t0)
        else:
            from caloforge.training import distill_loops

            batches = _batches(teacher, data_path, cfg)
            try:
                result = distill_loops.run(cfg, teacher, batches, dev)
            finally:
                batches.close()
            last, objectives = result.last_loss, result.objectives
            write_run(tmp, teacher, cfg, result, time.process_time() - t0)
        seconds = time.process_time() - t0
    return DistillResult(out, cfg.method, cfg.steps, objectives[0].nfe(), seconds, last)


# ---- consistency and progressive: the ordinary trainer with init_from + teacher + the loss context ----------------
def student_objectives(cfg: DistillConfig, teacher: Teacher, steps: int, teacher_solver: str = "euler") -> list:
    """[voxel objective (trains both stages), layer objective (samples the layer stage)] of a student."""
    voxel, layer = teacher.stages[0], teacher.stages[1] if teacher.two_stage else None
    extra = {"grid": cfg.consistency.grid, "distance": cfg.consistency.loss, "huber_c": cfg.consistency.huber_c,
             "teacher_solver": teacher_solver, "layer_weight": cfg.train.layer_weight}
    out = [Distilled(base=voxel.objective.config(), method=cfg.method, default_steps=steps,
                     layer_base=None if layer is None else layer.objective.config(), **extra)]
    if layer is not None:
        out.append(Distilled(base=layer.objective.config(), method=cfg.method, default_steps=steps))
    return out


def _in_trainer(cfg: DistillConfig, teacher: Teacher, teacher_run: Path, data_path, run_dir: Path,
                device: str, t0: float) -> float | None:
    """Consistency: one run. Progressive: one run per round under rounds/steps-N, each round's run being the next
    round's init and teacher; the last round is ``run_dir`` itself."""
    from caloforge.generative.distill.progressive import rounds

    if cfg.method == "consistency":
        return _train_student(cfg, teacher, teacher_run, data_path, run_dir, device, cfg.steps, "euler")
    source, last = teacher_run, None
    for r, n in enumerate(rounds(cfg.progressive.start_steps, cfg.steps)):
        dest = run_dir if n == cfg.steps else run_dir / "rounds" / f"steps-{n}"
        solver = cfg.progressive.teacher_solver if r == 0 else "euler"
        last = _train_student(cfg, teacher, source, data_path, dest, device, n, solver)
        if dest != run_dir and not (dest / "distill.json").is_file():  # a finished round's stays as written
            write_info(dest, teacher, cfg.model_copy(update={"steps": n}), time.process_time() - t0)
        source = dest
    return last


def _finished(run: Path, steps: int) -> dict | None:
    """The checkpoint of a run already trained ``steps`` steps (a finished round of an interrupted distillation), or
    None: resuming skips it instead of rebuilding the trainer, validating the data and touching its files."""
    return load_checkpoint(latest_checkpoint(run)) if latest_step(run) >= steps else None


def _train_student(cfg, teacher, source: Path, data_path, out: Path, device, steps: int, solver: str):
    from caloforge.training.trainer import train

    tc = cfg.train
    done = _finished(out, tc.steps)
    if done is not None:
        return done.get("last_loss")
    objectives = student_objectives(cfg, teacher, steps, solver)
    raw = student_recipe(teacher, cfg, objectives, teacher.source)
    ema = tc.ema.model_dump()
    if cfg.method == "consistency":  # the EMA network is the consistency target
        ema["max_decay"] = cfg.consistency.target_decay
    raw["train"] = {"steps": tc.steps, "batch_size": tc.batch_size, "lr": tc.lr, "betas": [0.9, 0.99],
                    "weight_decay": 0.0, "warmup_steps": min(tc.warmup_steps, tc.steps - 1), "schedule": "constant",
                    "grad_clip": tc.grad_clip, "ema": ema, "ckpt_every": min(tc.ckpt_every, tc.steps),
                    "val_every": tc.steps, "log_every": tc.log_every, "seed": tc.seed, "init_from": str(source),
                    "init_chain_from_source": True, "teacher": str(source)}
    res = train(recipe_from_dict(raw, "distilled recipe"), data_path, out, device=device)
    if not res.completed:
        raise CaloforgeError(f"distill {cfg.method}: stopped at step {res.step} (signal {res.signal}); the work is "
                             f"kept in {out}: re-run the same command to resume")
    return res.last_loss


def _batches(teacher: Teacher, data_path, cfg: DistillConfig):
    from caloforge.data.geometry import Geometry
    from caloforge.training.data import TrainBatches
    from caloforge.transforms.chain import Chain
    from caloforge.transforms.conditions import ConditionEncoder
    from caloforge.transforms.layer_coder import LayerEnergyCoder

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


def write_info(run_dir: Path, teacher: Teacher, cfg: DistillConfig, seconds: float) -> dict:
    """distill.json: method, steps, teacher and the CPU seconds the distillation took (read by benchmarks)."""
    info = {"method": cfg.method, "steps": cfg.steps, "teacher": teacher.source,
            "teacher_step": int(teacher.ckpt["step"]), "cpu_seconds": seconds, "settings": cfg.model_dump(mode="json")}
    atomic_write_text(Path(run_dir) / "distill.json", json.dumps(info, indent=1) + "\n")
    return info


def write_run(run_dir: Path, teacher: Teacher, cfg: DistillConfig, result, seconds: float) -> Path:
    """checkpoints/, config.yaml, distill.json and metrics.jsonl of a distilled run in ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    raw = student_recipe(teacher, cfg, result.objectives, teacher.source)
    ck = teacher.ckpt
    static = {k: ck[k] for k in ("model_range", "chain", "encoder", "geometry", "model_config", "layer_coder")
              if k in ck}
    info = write_info(run_dir, teacher, cfg, seconds)
    payload = {**static, "config": raw, "objective": result.objectives[0].config(),
               "model": result.model_state, "ema": result.ema_state, "optimizer": {}, "rng": capture_rng_state(),
               "last_loss": result.last_loss, "data": {"n": result.n_data, "seed": cfg.train.seed}, "distill": info}
    if teacher.two_stage:
        payload["layer_objective"] = result.objectives[1].config()
    save_checkpoint(run_dir, result.step, payload, keep=1)
    atomic_write_text(run_dir / "config.yaml", dump_recipe(recipe_from_dict(raw, "distilled recipe")))
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in result.metrics))
    return run_dir
