"""Generation speed in the CaloChallenge convention: milliseconds per shower at batch sizes 1, 100 and 10 000.

Each configuration (device, CPU threads, batch size) gets warm-up calls, then ``repeats`` timed calls of
``generator.generate`` on one batch; we report the median and the 16-84 % spread of ms per shower. CUDA work is
synchronised before the clock is read. A batch size is skipped, with the reason, when its estimated memory exceeds
half of the available RAM or its estimated time exceeds the budget (extrapolated from the previous batch size).
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np

from caloforge.errors import CaloforgeError

#: Bytes per voxel per shower held at once while sampling (noise, solver stages, transforms): a rough upper bound.
_BYTES_PER_VOXEL = 4 * 16


def available_memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def machine_info() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    info = {"cpu": cpu, "nproc": os.cpu_count(), "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "gpu": None}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def parse_threads(spec: str) -> list[int]:
    """'1,all' -> [1, os.cpu_count()]; every entry a positive integer or 'all'."""
    out = []
    for tok in str(spec).split(","):
        tok = tok.strip()
        if tok == "all":
            out.append(os.cpu_count() or 1)
        elif tok.isdigit() and int(tok) > 0:
            out.append(int(tok))
        else:
            raise CaloforgeError(f"--threads: expected a comma list of positive integers or 'all', found {tok!r}")
    return list(dict.fromkeys(out))


def parse_batch_sizes(spec: str) -> list[int]:
    try:
        sizes = [int(t) for t in str(spec).split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise CaloforgeError(f"--batch-sizes: expected a comma list of positive integers, found {spec!r}")
    return sizes


def _sync(device) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def time_batch(generator, batch_size: int, solver=None, steps=None, repeats: int = 3, warmup: int = 1,
               seed: int = 0, energy_range_mev=(1e3, 1e6), layer_steps=None) -> dict:
    """Median and 16-84 % ms per shower of ``generator.generate`` on one batch of ``batch_size`` showers."""
    from caloforge.data.energies import log_uniform

    energies = log_uniform(batch_size, energy_range_mev, np.random.default_rng(seed))
    device = getattr(generator, "device", "cpu")
    for w in range(warmup):
        generator.generate(energies, solver=solver, steps=steps, seed=seed + w, batch_size=batch_size,
                           **_layer(layer_steps))
    _sync(device)
    ms = []
    for r in range(repeats):
        t0 = time.perf_counter()
        generator.generate(energies, solver=solver, steps=steps, seed=seed + 100 + r, batch_size=batch_size,
                           **_layer(layer_steps))
        _sync(device)
        ms.append(1e3 * (time.perf_counter() - t0) / batch_size)
    ms = np.asarray(ms)
    return {"ms_per_shower": float(np.median(ms)), "p16": float(np.percentile(ms, 16)),
            "p84": float(np.percentile(ms, 84)), "runs_ms": ms.round(4).tolist()}


def _layer(layer_steps) -> dict:
    """``layer_steps`` only when set: plain callables timed here need not know about two-stage models."""
    return {} if layer_steps is None else {"layer_steps": layer_steps}


def count_parameters(generator) -> int | None:
    net = getattr(generator, "net", None)
    return int(sum(p.numel() for p in net.parameters())) if net is not None else None


def bench_generator(generator, batch_sizes=(1, 100, 10_000), threads=(1,), solver=None, steps=None,
                    repeats: int = 3, warmup: int = 1, max_seconds: float = 300.0, seed: int = 0,
                    energy_range_mev=None, layer_steps=None) -> dict:
    """Time every (threads, batch size) on the generator's device; returns rows plus NFE, parameters, machine."""
    import torch

    device = str(getattr(generator, "device", "cpu"))
    if energy_range_mev is None:  # the range the generator was trained on, when it says so
        encoder = getattr(generator, "encoder", None)
        energy_range_mev = tuple(getattr(encoder, "energy_range_mev", (1e3, 1e6)))
    n_vox = generator.geometry.n_voxels
    avail = available_memory_bytes()
    old_threads = torch.get_num_threads()
    thread_list = list(threads) if not device.startswith("cuda") else [old_threads]
    rows = []
    try:
        for t in thread_list:
            torch.set_num_threads(int(t))
            prev_ms = None
            for bs in sorted(batch_sizes):
                row = {"device": device, "threads": int(t), "batch_size": int(bs)}
                need = bs * n_vox * _BYTES_PER_VOXEL
                est_s = None if prev_ms is None else prev_ms * bs * (repeats + warmup) / 1e3
                if avail is not None and need > avail / 2:
                    row["skipped"] = (f"does not fit in memory: ~{need / 2**30:.1f} GiB estimated, "
                                      f"{avail / 2**30:.1f} GiB available")
                elif est_s is not None and est_s > max_seconds:
                    row["skipped"] = f"estimated {est_s:.0f} s exceeds the {max_seconds:.0f} s budget (--max-seconds)"
                else:
                    try:
                        row.update(time_batch(generator, bs, solver, steps, repeats, warmup, seed, energy_range_mev,
                                              layer_steps))
                        prev_ms = row["ms_per_shower"]
                    except (RuntimeError, MemoryError) as exc:
                        if "out of memory" not in str(exc).lower() and not isinstance(exc, MemoryError):
                            raise
                        row["skipped"] = "out of memory"
                rows.append(row)
    finally:
        torch.set_num_threads(old_threads)
    layer = getattr(generator, "layer_nfe", None)
    return {"rows": rows, "nfe": generator.nfe(solver, steps), "solver": solver, "steps": steps,
            "layer_nfe": layer(layer_steps) if layer is not None else None,
            "parameters": count_parameters(generator), "repeats": repeats, "warmup": warmup,
            "energy_range_mev": list(energy_range_mev),
            "machine": machine_info()}


def format_table(result: dict) -> str:
    lines = [f"{'device':<8}{'threads':>8}{'batch':>8}{'ms/shower':>12}{'16-84 %':>22}",]
    for r in result["rows"]:
        head = f"{r['device']:<8}{r['threads']:>8}{r['batch_size']:>8}"
        if "skipped" in r:
            lines.append(f"{head}  skipped: {r['skipped']}")
        else:
            spread = f"{r['p16']:.4g} - {r['p84']:.4g}"
            lines.append(f"{head}{r['ms_per_shower']:>12.4g}{spread:>22}")
    lines.append(f"NFE {result['nfe']}, parameters {result['parameters']}, {result['machine']['cpu']} "
                 f"({result['machine']['nproc']} cores), torch {result['machine']['torch']}")
    return "\n".join(lines)
