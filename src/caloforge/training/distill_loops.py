"""The two distillation loops that do not fit the trainer (see ``training.distill``; consistency and progressive
run in ``caloforge.training.trainer`` through its loss context).

Reflow trains a student initialised from the teacher's EMA weights on precomputed (noise, teacher sample) pairs
(AdamW, warm-up then constant lr, grad clipping, an EMA of the student whose weights are saved for sampling): the
pairs are not rows of a shower file, so the trainer's data path cannot serve them. Bespoke keeps the teacher's weights
and trains only the few solver coefficients of each stage.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch

from caloforge.errors import CaloforgeError
from caloforge.generative.distill import reflow
from caloforge.generative.distill.bespoke import BespokeSolver, Reference, lte_loss
from caloforge.generative.distill.objectives import Bespoke, Distilled, time_field
from caloforge.generative.objectives.base import CallCounter
from caloforge.progress import progress
from caloforge.training.build import noise_seed
from caloforge.training.ema import EMA
from caloforge.training.schedules import lr_factor


@dataclass
class LoopResult:
    objectives: list  # voxel (or single-stage) objective, then the layer objective
    model_state: dict
    ema_state: dict
    step: int
    n_data: int
    last_loss: float | None = None
    metrics: list = field(default_factory=list)


def run(cfg, teacher, batches, dev) -> LoopResult:
    """The loops that are not network training in the trainer: reflow (precomputed pairs) and bespoke."""
    if cfg.method == "bespoke":
        return _bespoke(cfg, teacher, batches, dev)
    return _reflow(cfg, teacher, batches, dev)


def _distilled(cfg, teacher, steps: int | None = None) -> list:
    return [Distilled(base=st.objective.config(), method=cfg.method, default_steps=steps or cfg.steps)
            for st in teacher.stages]


def _train(cfg, teacher, batches, dev, loss_fn, desc: str, student=None) -> tuple:
    """Generic loop: ``loss_fn(student, stage, x, cond, gen)`` summed over stages (layer weighted)."""
    tc = cfg.train
    student = copy.deepcopy(teacher.model) if student is None else student
    student.requires_grad_(True).train()
    opt = torch.optim.AdamW(student.parameters(), lr=tc.lr, betas=(0.9, 0.99), weight_decay=0.0)
    ema = EMA(student, tc.ema.power, tc.ema.max_decay, tc.ema.start)
    grid = _voxel_grid(teacher)
    metrics, last, t_log = [], None, time.perf_counter()
    for step in progress(range(tc.steps), desc=desc, total=tc.steps):
        for g in opt.param_groups:
            g["lr"] = tc.lr * lr_factor(step, tc.steps, "constant", tc.warmup_steps)
        x, c = batches.batch(step)
        xb, cb = torch.from_numpy(x).to(dev).view(-1, *grid), torch.from_numpy(c).to(dev)
        gen = torch.Generator(device=dev).manual_seed(noise_seed(tc.seed, step, 0))
        loss = 0.0
        for st in teacher.stages:
            data, cond = st.split(xb, cb)
            w = tc.layer_weight if st.name == "layer" else 1.0
            loss = loss + w * loss_fn(student, st, data, cond, gen)
        if not torch.isfinite(loss):
            raise CaloforgeError(f"distill {cfg.method}: step {step}: loss is not finite; lower train.lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(student.parameters(), tc.grad_clip)
        opt.step()
        ema.update(student, step)
        if (step + 1) % tc.log_every == 0 or step + 1 == tc.steps:
            last = float(loss.detach())
            now = time.perf_counter()
            metrics.append({"step": step + 1, "loss": last, "stage": desc, "seconds": now - t_log})
            t_log = now
    return student, ema, last, metrics


def _rows(batches, rows):
    """Model-space (x, cond) of given training rows (TrainBatches serves batches by step; we need chosen rows)."""
    return batches.batch_rows(rows) if hasattr(batches, "batch_rows") else (
        (batches._x[rows], batches._c[rows]) if batches.in_memory else batches._transform_rows(rows))


def _voxel_grid(teacher) -> tuple:
    from caloforge.training.build import voxel_grid

    return voxel_grid(teacher.ckpt["model_config"])


# ---- reflow ---------------------------------------------------------------------------------------------------------
@torch.no_grad()
def _pairs(cfg, teacher, batches, dev) -> dict:
    """Per stage: (noise, teacher ODE sample, conditions) for ``reflow.pairs`` training rows."""
    n, chunk, grid = cfg.reflow.pairs, 256, _voxel_grid(teacher)
    gen = torch.Generator(device=dev).manual_seed(cfg.train.seed + 7)
    rows = torch.randperm(batches.n, generator=torch.Generator().manual_seed(cfg.train.seed))[:n].numpy()
    out = {st.name: ([], [], []) for st in teacher.stages}
    for i in progress(range(0, len(rows), chunk), desc="reflow pairs"):
        x, c = _rows(batches, rows[i:i + chunk])
        xb, cb = torch.from_numpy(x).to(dev).view(-1, *grid), torch.from_numpy(c).to(dev)
        for st in teacher.stages:
            data, cond = st.split(xb, cb)
            noise = torch.randn(data.shape, generator=gen, device=dev)
            sample = st.objective.sample(CallCounter(st.net(teacher.model)), noise, cond, generator=gen)
            for lst, v in zip(out[st.name], (noise, sample, cond)):
                lst.append(v)
    return {k: tuple(torch.cat(v) for v in lists) for k, lists in out.items()}


def _reflow(cfg, teacher, batches, dev) -> LoopResult:
    pairs = _pairs(cfg, teacher, batches, dev)
    n_pairs = len(next(iter(pairs.values()))[0])
    bs = min(cfg.train.batch_size, n_pairs)

    def loss_fn(student, st, x, cond, gen):
        noise, sample, cnd = pairs[st.name]
        idx = torch.randint(0, n_pairs, (bs,), generator=gen, device=gen.device).to(noise.device)
        return reflow.pair_loss(st.path, st.net(student), noise[idx], sample[idx], cnd[idx], gen,
                                cfg.reflow.t_zero_share)

    student, ema, last, metrics = _train(cfg, teacher, batches, dev, loss_fn, "reflow")
    return LoopResult(_distilled(cfg, teacher), student.state_dict(), ema.state_dict(), cfg.train.steps, batches.n,
                      last, metrics)


# ---- bespoke --------------------------------------------------------------------------------------------------------
def _bespoke(cfg, teacher, batches, dev) -> LoopResult:
    bs_cfg, grid = cfg.bespoke, _voxel_grid(teacher)
    gen = torch.Generator(device=dev).manual_seed(cfg.train.seed + 11)
    rows = torch.randperm(batches.n, generator=torch.Generator().manual_seed(cfg.train.seed))[:bs_cfg.trajectories]
    x, c = _rows(batches, rows.numpy())
    xb, cb = torch.from_numpy(x).to(dev).view(-1, *grid), torch.from_numpy(c).to(dev)
    objectives, metrics, last = [], [], None
    for st in teacher.stages:
        data, cond = st.split(xb, cb)
        net = st.net(teacher.model)
        x0 = torch.randn(data.shape, generator=gen, device=dev)
        ref = Reference(time_field(st.objective, net, cond), x0, bs_cfg.knots, bs_cfg.rtol, bs_cfg.atol)
        solver = BespokeSolver(cfg.steps, bs_cfg.base).to(dev)
        opt = torch.optim.Adam(solver.parameters(), lr=bs_cfg.lr)
        n = len(x0)
        for it in progress(range(bs_cfg.iterations), desc=f"bespoke {st.name}"):
            idx = torch.randperm(n, generator=gen, device=gen.device)[:min(bs_cfg.batch, n)].to(dev)
            loss = lte_loss(solver, time_field(st.objective, net, cond[idx]), ref.subset(idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if (it + 1) % cfg.train.log_every == 0 or it + 1 == bs_cfg.iterations:
                last = float(loss.detach())
                metrics.append({"step": it + 1, "loss": last, "stage": f"bespoke {st.name}"})
        objectives.append(Bespoke(base=st.objective.config(), solver=solver.config()))
    state = teacher.model.state_dict()
    return LoopResult(objectives, state, state, bs_cfg.iterations, batches.n, last, metrics)
