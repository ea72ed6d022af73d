"""`caloforge data make` (GFlash showers for a detector preset) and `caloforge data presets`."""

from __future__ import annotations

from caloforge.cli.argtypes import colon_pair
from caloforge.errors import ConfigError


def _energy_range_gev(text: str) -> tuple[float, float]:
    return colon_pair(text, "LOW:HIGH in GeV like 1:100")


def _angle_range(text: str) -> tuple[float, float]:
    return colon_pair(text, "LOW:HIGH in rad like 0.87:2.27")


def register(dsub) -> None:
    m = dsub.add_parser("make", help="generate GFlash showers for a detector preset into an HDF5 file")
    m.add_argument("--detector", required=True, help="preset name (see `caloforge data presets`) or a detector YAML "
                   "file (docs/simulate.md)")
    m.add_argument("--n", type=int, required=True, help="number of showers")
    m.add_argument("--energy-range", type=_energy_range_gev, default=(1.0, 100.0),
                   help="incident energies LOW:HIGH in GeV, sampled log-uniform (default 1:100)")
    m.add_argument("--seed", type=int, default=0, help="random seed; same seed, same file (default 0)")
    m.add_argument("--out", required=True, help="output HDF5 file (written atomically; never replaced without --force)")
    m.add_argument("--force", action="store_true", help="replace --out if it exists")
    m.add_argument("--theta-range", type=_angle_range, default=None,
                   help="polar angles LOW:HIGH in rad drawn uniformly and stored as incident_theta (pi/2 = normal "
                        "incidence; LEMURS uses 0.87:2.27); default: normal incidence, not stored")
    m.add_argument("--phi-range", type=_angle_range, default=None,
                   help="azimuths LOW:HIGH in rad drawn uniformly and stored as incident_phi (write --phi-range=-3.1416:3.1416 for a negative LOW)")
    m.add_argument("--chunk", type=int, default=1000, help="showers generated and written per step (default 1000)")
    m.set_defaults(func=_make)

    p = dsub.add_parser("presets", help="list the detector presets of the GFlash generator")
    p.set_defaults(func=_presets)


def _make(args) -> int:
    from caloforge.outputs import check_output, clean_stale_temps
    from caloforge.simulate.detector_yaml import resolve_detector
    from caloforge.simulate.ds1 import DS1_PRESETS, make_ds1_file
    from caloforge.simulate.generate import make_file

    lo, hi = args.energy_range
    if not (0 < lo <= hi):
        raise ConfigError(f"--energy-range: expected 0 < LOW <= HIGH GeV, found {lo:g}:{hi:g}")
    th = args.theta_range
    if th is not None and not (0 < th[0] <= th[1] < 3.14159265):
        raise ConfigError(f"--theta-range: expected 0 < LOW <= HIGH < pi rad, found {th[0]:g}:{th[1]:g}")
    if args.phi_range is not None and not args.phi_range[0] <= args.phi_range[1]:
        raise ConfigError(f"--phi-range: expected LOW <= HIGH rad, found {args.phi_range[0]:g}:{args.phi_range[1]:g}")
    out = check_output(args.out, force=args.force, what="--out")
    clean_stale_temps(out.parent)
    if args.detector in DS1_PRESETS:  # dataset-1 layers: irregular binning, discrete energies
        path = make_ds1_file(args.detector, args.n, args.out, energy_range=(lo * 1e3, hi * 1e3), seed=args.seed,
                             chunk=args.chunk, show_progress=True)
        print(f"wrote {args.n} {args.detector} showers ({DS1_PRESETS[args.detector].geometry.n_voxels} voxels) "
              f"to {path}")
        return 0
    spec = resolve_detector(args.detector)
    path = make_file(spec, args.n, args.out, energy_range=(lo * 1e3, hi * 1e3), seed=args.seed, chunk=args.chunk,
                     theta_range=th, phi_range=args.phi_range, show_progress=True)
    print(f"wrote {args.n} {spec.name} showers ({spec.geometry.n_voxels} voxels, {lo:g}-{hi:g} GeV) to {path}")
    return 0


def _presets(args) -> int:
    from caloforge.simulate.detectors import PRESETS
    from caloforge.simulate.ds1 import DS1_PRESETS

    for spec in sorted(PRESETS.values(), key=lambda s: s.id):
        print(spec.summary_line())
    for spec in DS1_PRESETS.values():
        print(spec.summary_line())
    return 0
