"""`caloforge sample`: generate showers from a trained run into a file in the official CaloChallenge layout."""

from __future__ import annotations

import numpy as np

from caloforge.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("sample", help="generate showers from a trained run (official HDF5 layout)")
    p.add_argument("--checkpoint", required=True, help="run directory (latest checkpoint) or a checkpoint file")
    p.add_argument("--n", type=int, default=None, help="number of showers (default: all energies of --energies-from)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--energies-from", default=None, metavar="REF.h5",
                     help="take the first N incident energies of this file (all of them without --n)")
    src.add_argument("--energy-range", default=None, metavar="LO:HI",
                     help="incident energies log-uniform in [LO, HI] GeV, e.g. 1:100")
    p.add_argument("--solver", default=None, help="ODE/diffusion solver (default: the recipe's)")
    p.add_argument("--steps", type=int, default=None, help="solver steps (default: the recipe's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise and of --energy-range draws (default 0)")
    p.add_argument("--batch-size", type=int, default=1000, help="showers per network batch (default 1000)")
    p.add_argument("--chunk", type=int, default=10000,
                   help="showers generated and written per step, so memory stays bounded (default 10000); chunk k "
                        "> 0 draws its noise from a stream seeded by (seed, k)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA weights")
    p.add_argument("--out", required=True, help="output HDF5 file")
    p.set_defaults(func=_run)


def energy_range_gev(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise ConfigError(f"--energy-range: expected LO:HI in GeV like 1:100, found {text!r}") from None
    if not 0 < lo <= hi:
        raise ConfigError(f"--energy-range: expected 0 < LO <= HI, found {text!r}")
    return lo, hi


def sample_energies(args) -> np.ndarray:
    """Incident energies (n,) in MeV from --energies-from or --energy-range."""
    if args.n is not None and args.n < 1:
        raise ConfigError(f"--n: expected a positive integer, found {args.n}")
    if args.energies_from:
        from caloforge.data.reader import ShowerFile

        with ShowerFile(args.energies_from) as f:
            e = f.energies()
        if args.n is not None and args.n > len(e):
            raise ConfigError(f"--n: {args.energies_from} holds {len(e)} energies, found --n {args.n}")
        return e[: args.n] if args.n is not None else e
    if args.n is None:
        raise ConfigError("--n: required with --energy-range (how many showers to generate)")
    lo, hi = energy_range_gev(args.energy_range)
    rng = np.random.default_rng(args.seed)
    return 1e3 * 10 ** rng.uniform(np.log10(lo), np.log10(hi), args.n)


def chunk_seed(seed: int, k: int) -> int:
    """Noise seed of output chunk k: the plain seed for the first chunk (so small files do not change)."""
    return int(seed) if k == 0 else int(np.random.SeedSequence([int(seed), int(k)]).generate_state(1)[0])


def _run(args) -> int:
    from caloforge.data.writer import ShowerWriter
    from caloforge.training.generator import Generator

    if args.chunk < 1:
        raise ConfigError(f"--chunk: expected a positive integer, found {args.chunk}")
    energies = sample_energies(args)
    gen = Generator.load(args.checkpoint, use_ema=not args.no_ema, device=args.device)
    gen.nfe(args.solver, args.steps)  # a bad solver / steps is refused before the file is started
    solver = args.solver or gen.config.sampler.solver or gen.objective.default_solver
    nfe = gen.nfe(args.solver, args.steps)
    attrs = {"generator": "caloforge", "checkpoint": gen.source, "step": gen.step, "recipe": gen.config.name,
             "solver": str(solver), "nfe": -1 if nfe is None else int(nfe), "seed": int(args.seed)}
    rejected = redrawn = still_bad = 0
    seconds = 0.0
    with ShowerWriter(args.out, gen.geometry.n_voxels, geometry=gen.geometry, attrs=attrs,
                      expected_n=len(energies)) as writer:
        for k, lo in enumerate(range(0, len(energies), args.chunk)):
            e = energies[lo:lo + args.chunk]
            showers, stats = gen.generate(e, solver=args.solver, steps=args.steps, seed=chunk_seed(args.seed, k),
                                          batch_size=args.batch_size)
            writer.append(e, showers)
            rejected += stats["rejected_per_round"][0] if stats["rejected_per_round"] else 0
            redrawn, still_bad, seconds = redrawn + stats["n_redrawn"], still_bad + stats["n_still_bad"], \
                seconds + stats["seconds"]
    print(f"wrote {len(energies)} showers to {args.out}; rejected {rejected} in the first draw, redrawn "
          f"{redrawn}, still bad {still_bad}; {1e3 * seconds / len(energies):.2f} ms/shower "
          f"({nfe} network calls, {stats['device']})")
    return 0
