"""`caloforge data ...`: make, presets, inspect, validate, split."""

from __future__ import annotations

import argparse
import json
import sys

from caloforge.errors import ConfigError

_GEOMETRY_CHOICES = ("1-photons", "1-pions", "2", "3")


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"--fractions: expected comma-separated numbers like 0.8,0.1,0.1, found {text!r}") from None


def _geometry(text: str) -> str:
    if text in _GEOMETRY_CHOICES or text.endswith(".xml"):
        return text
    raise argparse.ArgumentTypeError(f"expected one of {', '.join(_GEOMETRY_CHOICES)} or a binning .xml file, "
                                     f"found {text!r}")


def _add_geometry(p: argparse.ArgumentParser) -> None:
    p.add_argument("--geometry", type=_geometry, default=None, metavar="{1-photons,1-pions,2,3,BINNING.xml}",
                   help="official CaloChallenge binning, or a binning XML in the official format, to check against "
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
