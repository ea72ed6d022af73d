"""`caloforge sample`: generate showers from a trained run into a file in the official CaloChallenge layout."""

from __future__ import annotations

import numpy as np

from caloforge.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("sample", help="generate showers from a trained run (official HDF5 layout)")
    p.add_argument("--checkpoint", required=True, help="run directory (latest checkpoint) or a checkpoint file")
    p.add_argument("--n", type=int, default=None,
                   help="number of showers (default: every row of --energies-from / --conditions-from)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--energies-from", default=None, metavar="REF.h5",
                     help="take the first N incident energies of this file (all of them without --n)")
    src.add_argument("--energy-range", default=None, metavar="LO:HI",
                     help="incident energies log-uniform in [LO, HI] GeV, e.g. 1:100")
    src.add_argument("--conditions-from", default=None, metavar="FILE.h5",
                     help="take energies and every condition the model needs (incident_phi, incident_theta, "
                          "detector_id) from this shower file")
    p.add_argument("--phi", type=float, default=None, help="incident phi in rad for every shower (angle models)")
    p.add_argument("--theta", type=float, default=None, help="incident theta in rad for every shower (angle models)")
    p.add_argument("--detector", default=None,
                   help="detector for every shower: an integer one-hot slot or a name from the model's "
                        "detector_names (multi-detector models)")
    p.add_argument("--solver", default=None, help="solver from the registry, e.g. euler, heun, rk4, edm_heun, ddim "
                                                  "(default: the recipe's)")
    p.add_argument("--steps", type=int, default=None, help="solver steps (default: the recipe's)")
    p.add_argument("--layer-steps", type=int, default=None,
                   help="two-stage models: steps of the layer-energy model (default: the recipe's layer_model.steps)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise and of --energy-range draws (default 0)")
    p.add_argument("--batch-size", type=int, default=1000, help="showers per network batch (default 1000)")
    p.add_argument("--chunk", type=int, default=10000,
                   help="showers generated and written per step, so memory stays bounded (default 10000); chunk k "
                        "> 0 draws its noise from a stream seeded by (seed, k)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA weights")
    p.add_argument("--out", required=True, help="output HDF5 file (never an input; existing only with --force)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.add_argument("--outside-energy-range", choices=("error", "warn"), default="error",
                   help="incident energies outside the range the model was trained for (its recipe's "
                        "data.energy_range_mev): refuse (default) or warn and extrapolate")
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


def requested_conditions(args, gen) -> dict:
    """energies, phi, theta, detector from the flags or --conditions-from; refuses flags the model does not use."""
    from caloforge.sampling.conditions import conditions_from_file, file_detector_slots, needed_conditions

    needed = needed_conditions(gen.encoder)
    flags = {"phi": args.phi, "theta": args.theta, "detector": args.detector}
    unused = [k for k, v in flags.items() if v is not None and k not in needed]
    if unused:
        raise ConfigError(f"--{unused[0]}: this model is not conditioned on {unused[0]} (it uses "
                          f"{', '.join(['energy', *needed])})")
    if args.conditions_from:
        if args.n is not None and args.n < 1:
            raise ConfigError(f"--n: expected a positive integer, found {args.n}")
        got = conditions_from_file(args.conditions_from, args.n)
        if "detector" in needed and flags["detector"] is None:
            slots = file_detector_slots(args.conditions_from, gen.encoder, args.n)  # named table: map by name
            got["detector"] = slots if slots is not None else got["detector"]
        for k in needed:
            if got[k] is None and flags[k] is None:
                dataset = {"phi": "incident_phi", "theta": "incident_theta", "detector": "detector_id"}[k]
                raise ConfigError(f"{args.conditions_from}: dataset '{dataset}': required by this model, not found "
                                  f"(or give --{k})")
        return {k: (flags[k] if flags.get(k) is not None else v) for k, v in got.items()}
    return {"energies": sample_energies(args), **{k: flags[k] for k in ("phi", "theta", "detector")}}


def _run(args) -> int:
    from caloforge.outputs import check_output, clean_stale_temps
    from caloforge.sampling.generator import Generator
    from caloforge.sampling.output import sample_to_file
    from caloforge.training.checkpoint import resolve_checkpoint

    if args.chunk < 1:
        raise ConfigError(f"--chunk: expected a positive integer, found {args.chunk}")
    ckpt = resolve_checkpoint(args.checkpoint)
    out = check_output(args.out, force=args.force,
                       inputs=[args.energies_from, args.conditions_from, args.checkpoint, ckpt])
    clean_stale_temps(out.parent)
    from caloforge.data.validate import check_energy_range, require_valid

    for flag, src in (("--energies-from", args.energies_from), ("--conditions-from", args.conditions_from)):
        if src:
            require_valid(src, what=flag)  # no NaN, inf or E <= 0 row reaches the model: one line naming the row
    gen = Generator.load(ckpt, use_ema=not args.no_ema, device=args.device)
    cond = requested_conditions(args, gen)
    energies = np.asarray(cond["energies"], dtype=np.float64).reshape(-1)
    check_energy_range(energies, gen.config.data.energy_range_mev,
                       f"{args.energies_from or args.conditions_from or '--energy-range'}: incident energies",
                       on_outside=args.outside_energy_range)
    raw = gen.conditions(energies, cond["phi"], cond["theta"], cond["detector"])  # refuses missing ones
    stats = sample_to_file(out, gen, energies, raw, args.seed, args.chunk, solver=args.solver, steps=args.steps,
                           batch_size=args.batch_size, show_progress=True, layer_steps=args.layer_steps)
    print(f"wrote {stats['n']} showers to {out}; rejected {stats['rejected_first']} in the first draw, redrawn "
          f"{stats['n_redrawn']}, still bad {stats['n_still_bad']}; {stats['ms_per_shower']:.2f} ms/shower "
          f"({stats['solver']} {stats['steps']} steps, {stats['nfe']} network calls, {stats['device']})")
    return 0
