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
    from caloforge.data.energies import log_uniform

    return log_uniform(args.n, (1e3 * lo, 1e3 * hi), np.random.default_rng(args.seed))


def _run(args) -> int:
    from caloforge.data.writer import write_showers
    from caloforge.training.generator import Generator

    energies = sample_energies(args)
    gen = Generator.load(args.checkpoint, use_ema=not args.no_ema, device=args.device)
    showers, stats = gen.generate(energies, solver=args.solver, steps=args.steps, seed=args.seed,
                                  batch_size=args.batch_size)
    attrs = {"generator": "caloforge", "checkpoint": gen.source, "step": gen.step, "recipe": gen.config.name,
             "solver": str(stats["solver"]), "nfe": -1 if stats["nfe"] is None else int(stats["nfe"]),
             "seed": int(args.seed)}
    write_showers(args.out, energies, showers, attrs=attrs, geometry=gen.geometry)
    rejected = stats["rejected_per_round"][0] if stats["rejected_per_round"] else 0
    print(f"wrote {len(showers)} showers to {args.out}; rejected {rejected} in the first draw, redrawn "
          f"{stats['n_redrawn']}, still bad {stats['n_still_bad']}; {stats['ms_per_shower']:.2f} ms/shower "
          f"({stats['nfe']} network calls, {stats['device']})")
    return 0
