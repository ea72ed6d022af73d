"""`caloforge simulate`: full Geant4 showers for a detector preset or a detector YAML (extra [sim])."""

from __future__ import annotations

import argparse

from caloforge.cli.argtypes import colon_pair


def _range(text: str) -> tuple[float, float]:
    return colon_pair(text, "A:B in rad")


def _energy(text: str) -> dict:
    """'1:100' -> log-uniform range in GeV; '1,10,100' (or one value) -> a list of GeV."""
    try:
        if ":" in text:
            return {"energy_range_gev": colon_pair(text), "energy_list_gev": None}
        return {"energy_range_gev": None, "energy_list_gev": tuple(float(x) for x in text.split(","))}
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"expected LOW:HIGH or a comma list in GeV, found {text!r}") from None


def register(sub) -> None:
    p = sub.add_parser(
        "simulate", help="full Geant4 showers for a detector (needs geant4-pybind: pip install caloforge[sim])",
        description="Simulate showers with Geant4 in a Par04-style layered cylinder, scored on a mesh aligned with "
                    "the particle at its entry point. Without the Geant4 data sets an offline mode with computed "
                    "stand-in tables runs (recorded in the file). A stopped run resumes when started again.")
    p.add_argument("--detector", required=True,
                   help="preset name (see `caloforge data presets`) or a detector YAML file (docs/simulate.md)")
    p.add_argument("--particle", default="e-", help="e-, e+, gamma or pi+ (pi+ needs a hadronic physics list; "
                                                     "default e-)")
    p.add_argument("--energy", type=_energy, default=_energy("1:100"),
                   help="LOW:HIGH in GeV, log-uniform (default 1:100), or a comma list of GeV (--n showers each)")
    p.add_argument("--theta", type=_range, default=None,
                   help="polar angle range A:B in rad, uniform (default pi/2: normal incidence)")
    p.add_argument("--phi", type=_range, default=None, help="azimuth range A:B in rad, uniform (default 0)")
    p.add_argument("--n", type=int, required=True, help="number of showers (per energy for a list)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same showers (default 0)")
    p.add_argument("--chunk", type=int, default=25,
                   help="showers per saved chunk: the unit of resuming (default 25)")
    p.add_argument("--out", required=True, help="output HDF5 file (written atomically at the end)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing output (and discard chunks of a different request)")
    p.set_defaults(func=_simulate)


def _simulate(args) -> int:
    from caloforge.simulate.detector_yaml import resolve_detector
    from caloforge.simulate.g4run import Request, simulate_file

    spec = resolve_detector(args.detector)
    req = Request(spec, args.particle, args.n, seed=args.seed, theta_range=args.theta, phi_range=args.phi,
                  chunk=args.chunk, **args.energy)
    path = simulate_file(req, args.out, workers=args.workers, force=args.force, show_progress=True)
    print(f"wrote {req.n_total} Geant4 {args.particle} showers in {spec.name} ({spec.geometry.n_voxels} voxels) "
          f"to {path}")
    return 0
