"""How large a batch, and how large a network, should a two-stage model's layer-energy model get? The layer model
alone, trained as `caloforge train` trains it (flow matching on the standardised logit-u codes, AdamW, warm-up +
cosine), then sampled with Heun 32 at the test energies and judged on its layer energies only.

    python benchmarks/layer_batch.py --train TRAIN.h5 --test TEST.h5 [--steps 1400]
        [--configs 256x4@64,128x3@1024] [--out benchmarks/results/layer_batch.md]

Judged by: a gradient-boosting classifier (3-fold AUC) on (log E_inc, log10(E_layer + 1e-3 MeV) of the 45 layers),
generated vs test, and the mean over layers of a 30-bin separation power of log10(E_layer + 1e-3). Cost: the CPU
seconds of the training loop (one thread, as the row says). Why it matters: the layer network is cheap per shower,
so its batch can grow well beyond the voxel model's; see `layer_model.batch_size` in docs/train.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from machine import cpu_model

REPO = Path(__file__).resolve().parents[1]


def parse_config(text: str) -> tuple[int, int, int]:
    """'128x3@1024' -> (width 128, depth 3, batch 1024)."""
    try:
        net, batch = text.split("@")
        width, depth = net.split("x")
        return int(width), int(depth), int(batch)
    except ValueError:
        raise SystemExit(f"layer_batch: --configs: expected WIDTHxDEPTH@BATCH, found {text!r}") from None


def read(path: Path, geometry=None):
    from caloforge.data.reader import ShowerFile

    with ShowerFile(path, geometry) as f:
        b = f.read(np.arange(f.n))
        return f.geometry, np.asarray(b.showers, np.float64), np.asarray(b.energies, np.float64).reshape(-1)


def train_and_sample(codes, cond, test_cond, width, depth, batch, steps, lr, seed=0) -> tuple[np.ndarray, float]:
    """Train a LayerMLP on (codes, cond) for ``steps``; Heun-32 samples at ``test_cond``; (samples, CPU seconds)."""
    import torch

    from caloforge.generative.objectives import build_objective
    from caloforge.models.two_stage import LayerMLP, LayerMLPConfig
    from caloforge.training.schedules import lr_factor

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = LayerMLP(LayerMLPConfig(codes.shape[1], cond.shape[1], width, depth))
    obj = build_objective({"kind": "flow", "prediction": "v", "loss_space": "v", "time_sampling": "logit_normal"})
    opt = torch.optim.AdamW(net.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=1e-5)
    y_all, c_all = torch.from_numpy(codes.astype(np.float32)), torch.from_numpy(cond.astype(np.float32))
    t0 = time.process_time()
    for step in range(steps):
        for group in opt.param_groups:  # the trainer's schedule: 50 warm-up steps, cosine to 0.05
            group["lr"] = lr * lr_factor(step, steps, "cosine", warmup_steps=50, min_factor=0.05)
        rows = torch.from_numpy(rng.integers(0, len(codes), batch))
        loss = obj.loss(net, y_all[rows], c_all[rows])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
    seconds = time.process_time() - t0
    noise = torch.randn(len(test_cond), codes.shape[1], generator=torch.Generator().manual_seed(seed + 1))
    out = obj.sample(net.eval(), noise, torch.from_numpy(test_cond.astype(np.float32)), solver="heun", steps=32)
    return out.numpy().astype(np.float64), seconds


def scores(ref_layers, gen_layers, ref_e) -> tuple[float, float]:
    """(classifier AUC, mean separation power) of generated vs reference layer energies."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import cross_val_score

    f = lambda x: np.log10(x + 1e-3)
    x = np.r_[np.c_[np.log(ref_e), f(ref_layers)], np.c_[np.log(ref_e), f(gen_layers)]]
    y = np.r_[np.zeros(len(ref_e)), np.ones(len(ref_e))]
    auc = cross_val_score(HistGradientBoostingClassifier(max_iter=150), x, y, cv=3, scoring="roc_auc").mean()
    seps = []
    for a, b in zip(f(ref_layers).T, f(gen_layers).T):
        edges = np.linspace(min(a.min(), b.min()), max(a.max(), b.max()) + 1e-9, 31)
        h1, h2 = np.histogram(a, edges)[0] / len(a), np.histogram(b, edges)[0] / len(b)
        m = (h1 + h2) > 0
        seps.append(0.5 * float(((h1 - h2)[m] ** 2 / (h1 + h2)[m]).sum()))
    return float(auc), float(np.mean(seps))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", type=Path, required=True)
    p.add_argument("--test", type=Path, required=True)
    p.add_argument("--steps", type=int, default=1400)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--configs", default="256x4@64,128x3@1024")
    p.add_argument("--energy-range-mev", type=float, nargs=2, default=(1e3, 1e5))
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "layer_batch_rows.md")
    args = p.parse_args(argv)
    import torch

    from caloforge.outputs import atomic_write_text
    from caloforge.transforms.conditions import ConditionEncoder
    from caloforge.transforms.layer_coder import LayerEnergyCoder
    from caloforge.transforms.layer_energy import layer_energies

    torch.set_num_threads(1)
    configs = [parse_config(c) for c in args.configs.split(",") if c]
    geometry, x_tr, e_tr = read(args.train)
    _, x_te, e_te = read(args.test, geometry)
    thr = geometry.threshold_mev
    coder = LayerEnergyCoder(geometry, thr).fit(lambda: iter([(x_tr, e_tr)]), label=str(args.train))
    codes = coder.codes(x_tr, e_tr)
    enc = ConditionEncoder(tuple(args.energy_range_mev))
    cond, test_cond = enc.encode(e_tr), enc.encode(e_te)
    ref_layers = layer_energies(np.where(x_te < thr, 0.0, x_te), geometry)
    lines = [f"# layer model alone (`python benchmarks/layer_batch.py {' '.join(argv or sys.argv[1:])}`)", "",
             (f"Machine: {os.cpu_count()} cores, {cpu_model()}; one thread; load {os.getloadavg()[0]:.1f} at start; "
              f"{len(e_tr)} training / {len(e_te)} test showers."), "",
             "| width x depth @ batch | steps | train CPU s | AUC (layer energies) | mean sep. power |",
             "|---|---|---|---|---|"]
    for width, depth, batch in configs:
        gen, seconds = train_and_sample(codes, cond, test_cond, width, depth, batch, args.steps, args.lr)
        gen_layers = coder.layer_energies(gen, e_te)
        auc, sep = scores(ref_layers, np.where(gen_layers < thr, 0.0, gen_layers), e_te)
        lines.append(f"| {width} x {depth} @ {batch} | {args.steps} | {seconds:.0f} | {auc:.3f} | {sep:.3f} |")
        print(lines[-1], flush=True)
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
