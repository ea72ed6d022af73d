"""`caloforge bench`: ms per shower of a trained generator at batch sizes 1 / 100 / 10 000, CPU threads and GPU."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("bench", help="time a trained generator (ms per shower, CaloChallenge batch sizes)")
    p.add_argument("--checkpoint", required=True, help="run directory (latest checkpoint) or a checkpoint file")
    p.add_argument("--batch-sizes", default="1,100,10000", help="comma list (default 1,100,10000)")
    p.add_argument("--threads", default="1,all", help="CPU thread counts, comma list; 'all' = every core (default 1,all)")
    p.add_argument("--solver", default=None, help="solver (default: the recipe's)")
    p.add_argument("--steps", type=int, default=None, help="solver steps (default: the recipe's)")
    p.add_argument("--layer-steps", type=int, default=None,
                   help="two-stage models: steps of the layer-energy model (default: the recipe's layer_model.steps)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per configuration (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1)")
    p.add_argument("--max-seconds", type=float, default=300.0,
                   help="skip a batch size whose extrapolated run time exceeds this (default 300)")
    p.add_argument("--no-gpu", action="store_true", help="CPU only even when a GPU is present")
    p.add_argument("--out", default=None, help="write the results as JSON here (existing only with --force)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=_run)


def _run(args) -> int:
    import torch

    from caloforge.errors import ConfigError
    from caloforge.evaluation.timing import bench_generator, format_table, parse_batch_sizes, parse_threads
    from caloforge.outputs import atomic_write_text, check_output
    from caloforge.progress import progress
    from caloforge.sampling.generator import Generator
    from caloforge.training.checkpoint import resolve_checkpoint

    sizes, threads = parse_batch_sizes(args.batch_sizes), parse_threads(args.threads)
    if args.repeats < 1 or args.warmup < 0:
        raise ConfigError(f"--repeats/--warmup: expected >= 1 / >= 0, found {args.repeats} / {args.warmup}")
    ckpt = resolve_checkpoint(args.checkpoint)
    if args.out:
        check_output(args.out, force=args.force, inputs=[args.checkpoint, ckpt])
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.no_gpu else [])
    results = []
    for dev in devices:
        gen = Generator.load(ckpt, device=dev)
        gen.solver_steps(args.solver, args.steps)  # refuse a wrong solver/steps before timing anything
        gen.layer_solver_steps(args.layer_steps)
        per_thread = threads if dev == "cpu" else threads[:1]
        result = None
        for t in progress(per_thread, desc=f"bench {dev}", unit="thread setting"):
            part = bench_generator(gen, sizes, [t], args.solver, args.steps, args.repeats, args.warmup,
                                   args.max_seconds, layer_steps=args.layer_steps)
            if result is None:
                result = part
            else:
                result["rows"] += part["rows"]
        results.append(result)
        print(format_table(results[-1]))
    if args.out:
        doc = {"checkpoint": str(args.checkpoint), "command": "caloforge bench " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("func", "command") and v
            not in (None, False)), "results": results}
        atomic_write_text(args.out, json.dumps(doc, indent=1))
        print(f"wrote {args.out}")
    return 0
