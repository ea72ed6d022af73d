"""`caloforge data ...`: make, presets, inspect, validate, split, convert."""

from __future__ import annotations

import argparse
import json
import sys

from caloforge.errors import ConfigError


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"--fractions: expected comma-separated numbers like 0.8,0.1,0.1, found {text!r}") from None


def _geometry(text: str) -> str:
    from caloforge.data.geometry import OFFICIAL  # the grammar is Geometry.parse's

    key = text.split(":", 1)[1] if text.startswith("official:") else text
    if key in OFFICIAL or text.startswith("regular:") or text.endswith(".xml"):
        return text
    raise argparse.ArgumentTypeError(f"expected an official key ({', '.join(OFFICIAL)}), regular:NZxNAxNR:DR_MM or a "
                                     f"binning .xml file, found {text!r}")


def _add_geometry(p: argparse.ArgumentParser) -> None:
    p.add_argument("--geometry", type=_geometry, default=None, metavar="SPEC",
                   help="geometry to check against: an official key (1-photons, 1-pions, 2, 3), regular:NZxNAxNR:DR_MM or a "
                        "binning XML in the official format "
                        "(default: the file's recorded geometry, else the official one with the file's voxel count)")


def register(sub) -> None:
    p = sub.add_parser("data", help="make, inspect, validate and split shower files")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    from caloforge.cli import data_make_cmd

    data_make_cmd.register(dsub)

    v = dsub.add_parser("validate", help="check the layout and every value of a shower file (streamed)")
    v.add_argument("file", help="HDF5 shower file in the CaloChallenge layout")
    _add_geometry(v)
    v.set_defaults(func=_validate)

    i = dsub.add_parser("inspect", help="print a summary of a shower file (streamed)")
    i.add_argument("file", help="HDF5 shower file in the CaloChallenge layout")
    _add_geometry(i)
    i.add_argument("--threshold", type=float, default=None,
                   help="readout threshold in MeV (default: the geometry's official evaluation threshold)")
    i.add_argument("--json", action="store_true", help="print the summary as JSON")
    i.set_defaults(func=_inspect)

    s = dsub.add_parser("split", help="seeded train/val/test split into DIR/<stem>_{train,val,test}.h5")
    s.add_argument("file", help="HDF5 shower file in the CaloChallenge layout")
    s.add_argument("--out", required=True, help="output directory (created if missing; existing parts are kept "
                                                "unless --force)")
    s.add_argument("--fractions", default="0.8,0.1,0.1",
                   help="train,val,test fractions summing to 1 (default 0.8,0.1,0.1; two values give train,test)")
    s.add_argument("--seed", type=int, default=0, help="seed of the permutation (default 0)")
    s.add_argument("--force", action="store_true", help="replace existing parts (the source is never replaced)")
    _add_geometry(s)
    s.set_defaults(func=_split)

    c = dsub.add_parser("convert", help="convert a LEMURS or CaloChallenge file into the multi-detector schema",
                        description="LEMURS files (showers (N, 9, 16, 45) ordered r, phi, z; incident_energy, "
                                    "incident_theta, incident_phi) are transposed to the CaloChallenge flat order; "
                                    "a CaloChallenge file gains a detector name and constant angles. Energies are "
                                    "taken as MeV (see --energy-unit).")
    c.add_argument("file", help="input HDF5 file (LEMURS or CaloChallenge layout)")
    c.add_argument("--out", required=True, help="output HDF5 file (written atomically)")
    c.add_argument("--detector", default=None,
                   help="detector name for every shower (default: from a LEMURS_<det>_ file name or the file's "
                        "'detector' attribute; a file with per-row detector_id keeps them)")
    c.add_argument("--energy-unit", choices=("auto", "MeV", "GeV"), default="auto",
                   help="unit of the incident energies in a LEMURS file (auto: MeV, refused when every energy is "
                        "below 1000)")
    c.add_argument("--shower-scale", type=float, default=1.0,
                   help="multiply voxel energies by this factor (default 1; e.g. 30.303 for the 1/0.033 convention)")
    c.add_argument("--cell-mm", default=None,
                   help="DR:DZ cell sizes in mm of a LEMURS detector's mesh (default 4.65:3.4, the DS2 mesh)")
    c.add_argument("--theta", type=float, default=None,
                   help="polar angle in rad stored for every shower when the file has none (pi/2 = normal incidence)")
    c.add_argument("--phi", type=float, default=None, help="azimuth in rad stored when the file has none")
    c.add_argument("--force", action="store_true", help="replace an existing output file")
    c.set_defaults(func=_convert)

    p.set_defaults(func=lambda args: _no_action(p))


def _no_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _validate(args) -> int:
    from caloforge.data.validate import validate_file

    report = validate_file(args.file, geometry=args.geometry, progress_bar=True)
    print(report.describe())
    return 0


def _inspect(args) -> int:
    from caloforge.data.summary import format_summary, summarize

    if args.threshold is not None and not args.threshold >= 0:
        raise ConfigError(f"--threshold: expected a value >= 0 MeV, found {args.threshold}")
    d = summarize(args.file, geometry=args.geometry, threshold=args.threshold, progress_bar=True)
    print(json.dumps(d, indent=2) if args.json else format_summary(d))
    return 0


def _split(args) -> int:
    from caloforge.data.split import check_fractions, split_file

    fractions = check_fractions(_fractions(args.fractions))  # before creating the output directory
    parts = split_file(args.file, out_dir=args.out, fractions=fractions, seed=args.seed,
                       geometry=args.geometry, progress_bar=True, force=args.force)
    for name, path in parts.items():
        print(f"{name}: {path}")
    return 0


def _convert(args) -> int:
    from caloforge.data.convert import convert_file
    from caloforge.outputs import check_output

    cell = None
    if args.cell_mm is not None:
        try:
            cell = tuple(float(x) for x in args.cell_mm.split(":"))
            assert len(cell) == 2 and all(v > 0 for v in cell)
        except (ValueError, AssertionError):
            raise ConfigError(f"--cell-mm: expected DR:DZ in mm like 4.65:3.4, found {args.cell_mm!r}") from None
    check_output(args.out, force=args.force, inputs=[args.file])
    summary = convert_file(args.file, args.out, detector=args.detector, energy_unit=args.energy_unit,
                           shower_scale=args.shower_scale, cell_mm=cell, theta=args.theta, phi=args.phi)
    print(json.dumps(summary))
    return 0
