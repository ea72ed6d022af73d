"""The training loop: AdamW + warm-up/decay schedule + grad clipping + EMA, checkpoints, exact resume, DDP.

Exact resume rests on three choices: the lr is a pure function of the step, the data batch is a pure function of
(seed, step) (``training.data``), and the training noise is drawn from a generator re-seeded from (seed, step,
shard) at every step. Model, optimiser, EMA and global RNG states are in the checkpoint; nothing else is needed, so a
run killed at any instant and restarted on the same RUN_DIR continues bit-identically on CPU (deterministic mode).

The global batch is split into world x grad_accum equal shards, each with its own noise stream, so a 2-process DDP
run and a 1-process run with grad_accum=2 compute the same update (up to float summation order).
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from caloforge.data.reader import ShowerFile
from caloforge.data.validate import check_energy_range, require_valid
from caloforge.errors import CaloforgeError, ConfigError
from caloforge.progress import progress
from caloforge.training import distributed, run_dir
from caloforge.training.build import (
    autocast_context,
    build_network,
    build_objective,
    network_config,
    noise_seed,
    resolve_device,
    voxel_grid,
)
from caloforge.training.callbacks import SignalStop, TrainState
from caloforge.training.checkpoint import (
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    to_numpy,
)
from caloforge.training.config import Recipe
from caloforge.training.context import LossContext, uses_context
from caloforge.training.data import (
    FIT_NOISE_KEY,
    TrainBatches,
    build_condition_encoder,
    fit_batches,
    load_validation,
    resolve_geometry,
    threshold_mismatch,
)
from caloforge.training.ema import EMA
from caloforge.training.metrics_log import MetricsLog
from caloforge.training.recipe_io import dump_recipe, load_recipe
from caloforge.training.schedules import first_changed_step, lr_factor
from caloforge.training.seams import Seams
from caloforge.training.sources import as_sources

VAL_BATCH = 256
VAL_SEED = 12345


@dataclass
class TrainResult:
    out_dir: Path
    step: int  # optimiser steps completed
    completed: bool  # False when stopped by a signal before the last step
    last_loss: float | None
    checkpoint: Path | None
    signal: int | None = None  # the signal that stopped the run (SIGTERM/SIGINT)
    stopped_by: str | None = None  # class name of the callback that stopped it early


def _with_steps(recipe: Recipe, steps: int | None) -> Recipe:
    if steps is None:
        return recipe
    if steps < 1:
        raise ConfigError(f"--steps: expected a positive integer, found {steps}")
    return recipe.model_copy(update={"train": recipe.train.model_copy(update={"steps": int(steps)})})


def _set_determinism(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def batch_loss(objective, net, x: torch.Tensor, c: torch.Tensor, generator, layer_weight: float | None = None,
               ctx: LossContext | None = None, layer_batch: torch.Tensor | None = None):
    """The training loss of one batch: the objective's, or for a two-stage net voxel + layer_weight x layer loss
    (the layer loss on ``layer_batch`` when the layer model has its own batch).

    An objective with ``uses_context`` gets the whole network and the LossContext and returns the total loss.
    """
    if uses_context(objective):
        return objective.loss(net, x, c, generator=generator, ctx=ctx)
    if layer_weight is None:
        return objective.loss(net, x, c, generator=generator)
    voxel_loss, layer_loss = net(x, c, generator) if layer_batch is None else net(x, c, generator, layer_batch)
    return voxel_loss + layer_weight * layer_loss


@torch.no_grad()
def validation_loss(objective, net, x: np.ndarray, c: np.ndarray, grid, device, layer_weight=None,
                    ctx: LossContext | None = None) -> float:
    """Mean loss over a fixed validation set with fixed noise (comparable across steps and runs)."""
    gen = torch.Generator(device=device).manual_seed(VAL_SEED)
    total, n = 0.0, 0
    for i in range(0, len(x), VAL_BATCH):
        xb = torch.from_numpy(x[i:i + VAL_BATCH]).to(device).view(-1, *grid)  # (B, Z, A, R)
        cb = torch.from_numpy(c[i:i + VAL_BATCH]).to(device)  # (B, C)
        total += float(batch_loss(objective, net, xb, cb, gen, layer_weight, ctx)) * len(xb)
        n += len(xb)
    return total / max(n, 1)


def train(recipe: Recipe | str, data_path, out_dir, val_path=None, steps: int | None = None,
          device: str = "auto", callbacks=(), outside_energy_range: str = "error") -> TrainResult:
    """Train (or resume, when out_dir holds a checkpoint) a recipe on a shower file; see the module docstring.

    ``callbacks``: extra loop callbacks (``caloforge.training.callbacks``) run after the built-in ones.
    The files are validated first (``require_valid``); energies outside ``data.energy_range_mev`` are an error, or
    a warning with ``outside_energy_range='warn'``. One process at a time writes a run directory (``run_dir``).
    """
    recipe = _with_steps(recipe if isinstance(recipe, Recipe) else load_recipe(recipe), steps)
    tc, out = recipe.train, Path(out_dir)
    # one file (a path or a training.sources.DataSource) or several, one per detector
    data_path = list(data_path) if isinstance(data_path, (list, tuple)) else as_sources(data_path)[0]
    dev = resolve_device(device)
    info = distributed.setup(dev)
    dev = info.device
    try:
        with run_dir.RunDirLock(out, "train", enabled=info.is_main):
            return _train(recipe, tc, data_path, out, val_path, dev, info, list(callbacks), outside_energy_range)
    finally:
        distributed.teardown(info)


def _paths_text(data_path) -> str:
    """The training file(s) as a user typed them (one path, or several for a multi-detector run)."""
    return ", ".join(str(s.path) for s in as_sources(data_path))


def _train(recipe, tc, data_path, out, val_path, dev, info, extra_callbacks, outside_energy_range="error"
           ) -> TrainResult:
    distributed.per_rank_batch(tc.batch_size, info, tc.grad_accum)
    layer_bs = _layer_batch_size(recipe, info, tc.grad_accum)
    ckpt_file = latest_checkpoint(out) if out.is_dir() else None
    run_dir.check_recipe(out, recipe.to_dict(), ckpt_file is not None)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        run_dir.remove_stale_temps(out)
    ckpt = load_checkpoint(ckpt_file) if ckpt_file else None
    _set_determinism(tc.seed, tc.deterministic)

    with ShowerFile(as_sources(data_path)[0].path) as f:
        geometry = resolve_geometry(recipe.data, f)
    if info.is_main and (note := threshold_mismatch(recipe.postprocess.threshold_mev, geometry)):
        print(note, file=sys.stderr)
    checks = [("--data", s.path) for s in as_sources(data_path)]  # every file of a multi-detector run
    checks += [("--val", s.path) for s in as_sources(val_path)] if val_path is not None else []
    for opt_name, path in checks:  # no NaN, inf, negative deposit or E <= 0 reaches the model
        report = require_valid(path, geometry, what=opt_name)
        check_energy_range(report, recipe.data.energy_range_mev, f"{opt_name} {path}", outside_energy_range)
    encoder = build_condition_encoder(recipe.data)
    if ckpt is not None:
        _check_schedule_total(ckpt, tc, out)
    model_cfg = network_config(recipe, geometry, encoder.dim)
    torch.manual_seed(tc.seed)  # same initial weights on every rank and run
    objective = build_objective(recipe.objective)
    layer_objective = build_objective(recipe.layer_model.objective) if recipe.layer_model is not None else None
    objectives = (objective, layer_objective) if layer_objective is not None else None
    model = build_network(model_cfg, objectives).to(dev)  # a two-stage net receives its objectives here
    seams = Seams(recipe, model, objective, ckpt, dev)  # init_from / freeze / teacher: checked before any file
    from caloforge.transforms.chain import Chain

    coder = _layer_coder(recipe, geometry, data_path, ckpt if ckpt is not None else seams.chain_source)
    if ckpt is not None or seams.chain_source is not None:
        chain = Chain.from_state(to_numpy((ckpt or seams.chain_source)["chain"]))
    else:
        chain = Chain.from_config(list(recipe.transforms), where=f"recipe {recipe.name}: transforms")
        chain.reseed([tc.seed % 2**32, FIT_NOISE_KEY])  # dequantisation noise of the fit: a function of the seed
        chain.fit(fit_batches(data_path, recipe.data.fit_max_showers, geometry, coder))
    layer_weight, extra_static = None, dict(seams.static)
    if coder is not None:
        layer_weight = recipe.layer_model.loss_weight
        extra_static |= {"layer_coder": coder.state(), "layer_objective": layer_objective.config()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=tc.lr, betas=tuple(tc.betas),
                            weight_decay=tc.weight_decay,
                            fused=dev.type in ("cpu", "cuda"))  # one kernel for all tensors (training_speed.md)
    ema = EMA(model, tc.ema.power, tc.ema.max_decay, tc.ema.start, skip=frozenset(seams.frozen))
    data = TrainBatches(data_path, chain, encoder, recipe.data, tc.batch_size, tc.seed, info.rank, info.world,
                        geometry, coder)
    start = 0
    if ckpt is not None:
        if ckpt["data"]["n"] != data.n:
            raise ConfigError(f"{_paths_text(data_path)}: holds {data.n} showers but the run in {out} was trained on a file with "
                              f"{ckpt['data']['n']}; resuming needs the same training file")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        ema.load_state_dict(ckpt["ema"])
        restore_rng_state(ckpt["rng"])
        start = int(ckpt["step"])
        if info.is_main:
            print(f"[train] resuming from step {start} of {tc.steps} ({ckpt_file})", file=sys.stderr, flush=True)
    ema_net = ema.network(model) if uses_context(objective) else None
    net = distributed.wrap(model, info, dev)
    if tc.compile:  # inductor: CUDA, or CPU with a C++ compiler (benchmarks/results/training_speed.md)
        net = torch.compile(net)
    val = load_validation(val_path, chain, encoder, recipe.data, geometry, coder) if val_path else None
    grid = voxel_grid(model_cfg)
    lo, hi = ckpt["model_range"] if ckpt is not None else data.model_range(recipe.data.fit_max_showers)
    signals = SignalStop()
    callbacks = [signals]
    if val_path and tc.quality_showers and info.is_main:
        from caloforge.training.quality import InLoopQuality

        callbacks.append(InLoopQuality(val_path, tc.quality_showers, recipe, objective, chain, encoder, geometry, dev,
                                       (lo, hi), coder, layer_objective))
    callbacks += extra_callbacks
    static = {"model_range": (lo, hi), "config": recipe.to_dict(), "chain": chain.state(), "encoder": encoder.state(),
              "geometry": geometry.to_dict(), "model_config": model_cfg, "objective": objective.config(), **extra_static}

    def checkpoint(step_done: int, last_loss) -> Path | None:
        path = None
        if info.is_main:
            pos = data.position(step_done)
            payload = {**static, "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                       "rng": capture_rng_state(), "last_loss": last_loss,
                       "data": {"n": data.n, "seed": tc.seed, "epoch": pos.epoch, "index": pos.index,
                                "batches_per_epoch": data.batches_per_epoch}}
            run_dir.store_recipe(out, dump_recipe(recipe))  # with the checkpoint, never before: see run_dir
            path = save_checkpoint(out, step_done, payload, keep=tc.keep_checkpoints)
        distributed.barrier(info)
        return path

    metrics = MetricsLog(out, info.is_main)
    state = TrainState(start, tc.steps, recipe, out, model, ema, objective, info.is_main, log=metrics.write)
    shard = data.local_batch // tc.grad_accum
    clip = tc.grad_clip if tc.grad_clip is not None else math.inf
    last_loss, ckpt_path, t_log, n_log, step, stopped_by = None, ckpt_file, time.perf_counter(), 0, start, None
    bar = progress(total=tc.steps, desc=f"train {recipe.name}", unit="step", initial=start) if info.is_main else None
    with ExitStack() as stack:
        for cb in callbacks:
            if hasattr(cb, "__enter__"):
                stack.enter_context(cb)
        _call(callbacks, "on_train_start", state)
        for step in range(start, tc.steps):
            lr = tc.lr * lr_factor(step, tc.steps, tc.schedule, tc.warmup_steps, tc.decay_fraction, tc.min_factor)
            for group in opt.param_groups:
                group["lr"] = lr
            x, c = data.batch(step)
            xb = torch.from_numpy(x).to(dev).view(-1, *grid)  # (b, Z, A, R) this rank's share
            cb_ = torch.from_numpy(c).to(dev)  # (b, C)
            ctx = LossContext(step, ema_net, seams.teacher) if ema_net is not None else None
            lb = torch.from_numpy(data.layer_batch(step, layer_bs)).to(dev) if layer_bs else None  # (b', C + L)
            lshard = 0 if lb is None else len(lb) // tc.grad_accum
            opt.zero_grad(set_to_none=True)
            loss_sum = 0.0
            for k in range(tc.grad_accum):
                gen = torch.Generator(device=dev).manual_seed(noise_seed(tc.seed, step, info.rank * tc.grad_accum + k))
                sync = nullcontext() if (not info.enabled or k == tc.grad_accum - 1) else net.no_sync()
                with sync:
                    with autocast_context(dev, tc.precision):
                        loss = batch_loss(objective, net, xb[k * shard:(k + 1) * shard],
                                          cb_[k * shard:(k + 1) * shard], gen, layer_weight, ctx,
                                          None if lb is None else lb[k * lshard:(k + 1) * lshard])
                    (loss / tc.grad_accum).backward()
                loss_sum += float(loss.detach())
            if not math.isfinite(loss_sum):
                raise CaloforgeError(f"recipe {recipe.name}: step {step}: training loss is not finite ({loss_sum}) "
                                     f"on the batch of {_paths_text(data_path)} rows {_rows_text(data, step, info)}; "
                                     f"nothing of this step was saved; lower train.lr or check the transforms")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
            opt.step()
            ema.update(model, step)
            done = step + 1
            n_log += 1
            last_loss = distributed.mean_across(loss_sum / tc.grad_accum, info) if (
                done % tc.log_every == 0 or done == tc.steps) else last_loss
            state.step, state.loss, state.lr, state.grad_norm = done, last_loss, lr, grad_norm
            if bar is not None:
                bar.update(1)
            if done % tc.log_every == 0 or done == tc.steps:
                now = time.perf_counter()
                metrics.write({"step": done, "loss": last_loss, "lr": lr, "grad_norm": grad_norm,
                               "samples_per_s": n_log * tc.batch_size / max(now - t_log, 1e-9)})
                if bar is not None:
                    bar.set_postfix(loss=f"{last_loss:.4f}")
                t_log, n_log = now, 0
            paused = time.perf_counter()  # validation, callbacks and checkpoints stay out of samples/s
            if info.is_main and (done % tc.val_every == 0 or done == tc.steps):
                if val is not None:
                    state.val_loss = _ema_val_loss(objective, model, ema, val, grid, dev, layer_weight,
                                                   LossContext(step, ema.network(model), seams.teacher))
                    metrics.write({"step": done, "val_loss": state.val_loss})
                for record in _call(callbacks, "on_val", state):
                    metrics.write({"step": done, **record})
            asked = [type(cb).__name__ for cb, stop in zip(callbacks, _call(callbacks, "on_step_end", state, True))
                     if stop]
            stopping = distributed.any_flag(bool(asked), info)
            if done % tc.ckpt_every == 0 or done == tc.steps or stopping:
                ckpt_path = checkpoint(done, last_loss)
            t_log += time.perf_counter() - paused
            if stopping:
                step, stopped_by = done, (asked[0] if asked else "another rank")
                break
        else:
            step = tc.steps
    if bar is not None:
        bar.close()
    metrics.close()
    data.close()
    return TrainResult(out, step, step >= tc.steps, last_loss, ckpt_path, signals.signum, stopped_by)


def _call(callbacks, hook: str, state, keep_all: bool = False) -> list:
    """Call one hook on every callback that has it; results (all of them with keep_all, else the non-empty)."""
    results = []
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        r = fn(state) if fn is not None else None
        if keep_all or r:
            results.append(r)
    return results


def _rows_text(data: TrainBatches, step: int, info) -> str:
    rows = data.global_rows(step)[info.rank * data.local_batch:(info.rank + 1) * data.local_batch]
    shown = ", ".join(str(int(r)) for r in sorted(rows)[:8])
    return f"[{shown}{', ...' if len(rows) > 8 else ''}] ({len(rows)} rows)"


def _ema_val_loss(objective, model, ema: EMA, val, grid, dev, layer_weight=None, ctx=None) -> float:
    return validation_loss(objective, ema.network(model), val[0], val[1], grid, dev, layer_weight, ctx)


def _check_schedule_total(ckpt: dict, tc, out: Path) -> None:
    """A new train.steps at resume is accepted only if it leaves the lr of every trained step unchanged (constant,
    WSD before its decay); otherwise the run would not be the one its config.yaml describes (docs/train.md)."""
    old, done = int(ckpt["config"]["train"]["steps"]), int(ckpt["step"])
    bad = first_changed_step(done, old, tc.steps, tc.schedule, tc.warmup_steps, tc.decay_fraction, tc.min_factor)
    if bad is not None:
        raise ConfigError(f"{out}: train.steps: the run was trained {done} steps on a {tc.schedule} schedule over "
                          f"{old} steps; a total of {tc.steps} would change the lr of step {bad} already trained; "
                          f"resume with --steps {old} or start a new --out")


def _layer_batch_size(recipe: Recipe, info, grad_accum: int) -> int | None:
    """The layer model's own global batch (``layer_model.batch_size``), checked before any work; None = shared."""
    lm = recipe.layer_model
    if lm is None or lm.batch_size is None:
        return None
    parts = info.world * grad_accum
    if lm.batch_size % parts:
        raise ConfigError(f"recipe {recipe.name}: layer_model.batch_size: expected a multiple of world size x "
                          f"grad_accum = {parts}, found {lm.batch_size}")
    return lm.batch_size


def _layer_coder(recipe: Recipe, geometry, data_path: Path, ckpt: dict | None):
    """The two-stage layer-energy coder: restored from the checkpoint, or fitted on the training file; else None."""
    if recipe.layer_model is None:
        return None
    from caloforge.transforms.layer_coder import LayerEnergyCoder

    if ckpt is not None and "layer_coder" in ckpt:  # the run's own, or the init source's (init_chain_from_source)
        return LayerEnergyCoder.from_state(to_numpy(ckpt["layer_coder"]), geometry)
    lm = recipe.layer_model
    pp_thr = recipe.postprocess.threshold_mev  # the run's one readout threshold, before both stages
    thr = geometry.threshold_mev if pp_thr is None else pp_thr
    coder = LayerEnergyCoder(geometry, thr, lm.max_dep, lm.alpha, normalise=lm.normalise_layers)
    return coder.fit(fit_batches(data_path, recipe.data.fit_max_showers, geometry), label=str(data_path))
