"""CPU inference speed of the exported generator: onnxruntime beside PyTorch eager, same model, same run.

For each recipe size (random weights through the normal checkpoint path: speed does not depend on training):
- one voxel-network evaluation at batch 1, 1 thread: ms, FLOPs (torch FlopCounterMode), achieved GFLOP/s and the
  fraction of this core's float32 peak; precision levers beside it (bf16 autocast, dynamic int8 in torch and in
  onnxruntime);
- the whole generator (GeneratorModule: samplers, inverse transforms, join, threshold) at 1 step and at the
  recipe's default steps: ms/shower for 1 thread batch 1 and 2 threads batch 100, eager vs onnxruntime.
Each figure is the median of timed calls after one warm-up; a configuration whose estimated time exceeds
``--budget`` seconds is skipped and marked so. The load average is recorded next to every row (shared machine).

    OMP_NUM_THREADS=2 python benchmarks/inference_speed.py --out benchmarks/results/inference_speed.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from machine import cpu_features, cpu_flags, cpu_model

from caloforge.export.layouts import CaloChallengeLayout
from caloforge.export.writer import export_generator
from caloforge.sampling.generator import Generator
from caloforge.sampling.random_run import random_checkpoint
from caloforge.training.recipe_io import load_recipe


def peak_per_cycle() -> int:
    """float32 FLOP/cycle/core: 2 FMA pipes x lanes x 2, lanes of the widest vectors the CPU lists (AVX2: 8,
    AVX-512: 16). An assumption: a core that splits AVX-512 into two 256-bit halves (Zen 4) has half of it."""
    return 64 if "avx512f" in cpu_flags() else 32


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def core_peak_gflops() -> float:
    mhz = 0.0
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            mhz = max(mhz, float(line.split(":")[1]))
    return peak_per_cycle() * mhz / 1e3


def timed(fn, budget: float, min_reps: int = 3) -> float:
    """Median seconds per call (one warm-up, then at least min_reps calls or until the budget is spent)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    times = []
    while len(times) < min_reps and (sum(times) + first < budget or not times):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def net_rows(gen, tmp: Path, budget: float, peak: float) -> list[str]:
    """One voxel-network evaluation, batch 1, 1 thread: eager, levers, onnxruntime (fp32 and int8)."""
    from torch.utils.flop_counter import FlopCounterMode

    net = gen.voxel_net.eval()
    c_dim = net.cfg.cond_dim
    z, t, c = torch.randn(1, *gen.grid), torch.full((1,), 0.5), torch.rand(1, c_dim)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net(z, t, c)
    flops = fc.get_total_flops()
    torch.set_num_threads(1)
    rows = []

    def row(label, sec):
        gf = flops / sec / 1e9
        rows.append(f"| net eval b1 1 thread | {label} | {1e3 * sec:.1f} | {gf:.1f} GFLOP/s ({100 * gf / peak:.0f} % "
                    f"of peak) | {load()} |")

    with torch.inference_mode():
        row("torch eager fp32", timed(lambda: net(z, t, c), budget))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            row("torch eager bf16 autocast", timed(lambda: net(z, t, c), budget))
        # embedders read .weight.dtype, which a quantised Linear has not: they stay float (a few % of the FLOPs)
        names = {n for n, m in net.named_modules() if isinstance(m, torch.nn.Linear) and "embedder" not in n}
        q = torch.ao.quantization.quantize_dynamic(net, names, dtype=torch.qint8)
        row("torch dynamic int8 (Linear)", timed(lambda: q(z, t, c), budget))
    path = tmp / "net.onnx"
    torch.onnx.export(net, (z.expand(2, *gen.grid).contiguous(), t.expand(2), c.expand(2, c_dim)), str(path),
                      dynamo=False, input_names=["z", "t", "c"], output_names=["out"], opset_version=17,
                      dynamic_axes={k: {0: "b"} for k in ("z", "t", "c", "out")})
    feed = {"z": z.numpy(), "t": t.numpy(), "c": c.numpy()}
    sess = ort_session(path, 1)
    row("onnxruntime fp32", timed(lambda: sess.run(None, feed), budget))
    from onnxruntime.quantization import QuantType, quantize_dynamic

    qpath = tmp / "net_int8.onnx"
    quantize_dynamic(str(path), str(qpath), weight_type=QuantType.QInt8)
    qsess = ort_session(qpath, 1)
    row("onnxruntime dynamic int8", timed(lambda: qsess.run(None, feed), budget))
    rows.append(f"| (one evaluation = {flops / 1e9:.2f} GFLOP; {sum(p.numel() for p in net.parameters()) / 1e6:.2f} M "
                f"parameters, {net.patcher.n_tokens} tokens) | | | | |")
    return rows


def generator_rows(gen, steps: int, tmp: Path, budget: float, net_sec: float) -> list[str]:
    """Whole generator at ``steps``: eager vs onnxruntime, (1 thread, batch 1) and (2 threads, batch 100). At 1 step
    a two-stage generator runs its layer-energy model in 1 step too (a 1-step generator); at the recipe's steps the
    layer model keeps the recipe's own."""
    solver = gen.solver_steps()[0]
    layer_steps = 1 if steps == 1 and gen.two_stage else None
    module = gen.module(solver, steps, layer_steps)
    wrapper = CaloChallengeLayout(module).eval()
    path = tmp / f"gen_{steps}.onnx"
    nfe = gen.nfe(solver, steps)
    layer = f" + layer NFE {gen.layer_nfe(layer_steps)}" if gen.two_stage else ""
    rows = []
    for threads, batch in ((1, 1), (2, 100)):
        est = nfe * batch * net_sec * (1.0 if threads == 1 else 0.6) * 4  # warm-up + 3 timed calls
        label = f"{gen.config.name} {solver} {steps} steps (NFE {nfe}{layer}), {threads} thr, batch {batch}"
        if est > budget * 4:
            rows.append(f"| {label} | skipped: estimated {est:.0f} s over the budget | | | {load()} |")
            continue
        if not path.exists():
            export_generator(gen, "onnx", "calochallenge", path, solver, steps, layer_steps=layer_steps)
        torch.set_num_threads(threads)
        inputs = wrapper.example_inputs(batch)
        with torch.inference_mode():
            eager = timed(lambda inputs=inputs: wrapper(*inputs), budget, min_reps=2)
        sess = ort_session(path, threads)
        feed = {i.name: x.numpy() for i, x in zip(sess.get_inputs(), inputs)}
        onnx_t = timed(lambda sess=sess, feed=feed: sess.run(None, feed), budget, min_reps=2)
        rows.append(f"| {label} | {1e3 * eager / batch:.2f} | {1e3 * onnx_t / batch:.2f} | {eager / onnx_t:.2f} | "
                    f"{load()} |")
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipes", default="tiny-fm-2s,cpu-fm-2s,caloart-ds2")
    p.add_argument("--budget", type=float, default=20.0, help="seconds of timed calls per configuration")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    peak = core_peak_gflops()
    lines = ["# CPU inference speed: exported generator (onnxruntime) beside PyTorch eager", "",
             f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} python benchmarks/inference_speed.py "
             + " ".join(sys.argv[1:]) + "`", "",
             (f"Machine: {cpu_model()}, {os.cpu_count()} logical cores (shared), torch {torch.__version__}; float32 "
              f"peak of one core taken as {peak_per_cycle()} FLOP/cycle x the reported clock = {peak:.0f} GFLOP/s "
              f"(two FMA pipes of the widest vectors listed); instruction sets: {cpu_features()}. Random weights (speed only). Load average "
              "(1/5/15 min) beside each row."), ""]
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for name in args.recipes.split(","):
            recipe = load_recipe(name)
            gen = Generator.load(random_checkpoint(recipe, tmp / name), device="cpu")
            lines += [f"## {name}", "", "| what | variant | ms | throughput | load |", "|---|---|---|---|---|"]
            nrows = net_rows(gen, tmp, args.budget, peak)
            lines += nrows
            write(args.out, lines)
            net_sec = float(nrows[0].split("|")[3]) / 1e3
            lines += ["", "| generator | eager ms/shower | onnxruntime ms/shower | eager / onnxruntime | load |",
                      "|---|---|---|---|---|"]
            for steps in sorted({1, gen.solver_steps()[1]}):
                lines += generator_rows(gen, steps, tmp, args.budget, net_sec)
            lines.append("")
            print("\n".join(lines[-12:]), flush=True)
            write(args.out, lines)  # after every recipe: a long run killed half-way keeps what it measured
    print("\n".join(lines))
    return 0


def write(out: str | None, lines: list[str]) -> None:
    if out:
        from caloforge.outputs import atomic_write_text

        atomic_write_text(out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
