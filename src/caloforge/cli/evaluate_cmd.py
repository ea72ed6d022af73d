"""`caloforge evaluate`: the CaloChallenge evaluation of one or more generated files against a reference."""

from __future__ import annotations

from caloforge.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate generated showers against a reference (CaloChallenge protocol)")
    p.add_argument("--gen", action="append", required=True, metavar="GEN.h5",
                   help="generated file (repeat --gen to compare several side by side)")
    p.add_argument("--ref", required=True, metavar="REF.h5", help="reference (held-out Geant4) file")
    p.add_argument("--dataset", choices=["1-photons", "1-pions", "2", "3"], default=None,
                   help="official dataset: official geometry, threshold and binnings")
    p.add_argument("--geometry", default=None, metavar="SPEC",
                   help="non-official mesh: regular:NZxNAxNR:DR_MM (e.g. regular:45x16x9:4.65) or a binning XML; "
                        "default: the file attribute caloforge_geometry")
    p.add_argument("--train", default=None, metavar="TRAIN.h5", help="training file: refuse if the reference shares showers with it")
    p.add_argument("--allow-overlap", action="store_true", help="evaluate even with shared showers (warned in the report)")
    p.add_argument("--classifiers", default="high,low", help="comma list of high, low, low-normed, cnn; 'none' for none")
    p.add_argument("--official", action="store_true", help="exact official classifier protocol (float64, 2048 wide, 50 epochs)")
    p.add_argument("--repeats", type=int, default=1, help="independent classifier trainings (the paper used 10)")
    p.add_argument("--epochs", type=int, default=None, help="override the classifier epoch count")
    p.add_argument("--low-level-cap", type=int, default=None, help="max showers per class for low-level classifiers")
    p.add_argument("--no-fpd", action="store_true", help="skip FPD")
    p.add_argument("--no-kpd", action="store_true", help="skip KPD")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the classifiers (split, initialisation) and of the low-level row subset; FPD/KPD "
                        "keep jetnet's fixed draws")
    p.add_argument("--device", default="auto", help="classifier device: auto, cpu or cuda")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (metrics.json, summary.csv, report.html)")
    p.set_defaults(func=_run)


def parse_geometry(spec: str | None):
    """'regular:45x16x9:4.65' (n_z x n_alpha x n_r : dr in mm), an official key ('2'), or a binning XML path."""
    from pathlib import Path

    from caloforge.data.geometry import OFFICIAL, Geometry

    if spec is None:
        return None
    if spec in OFFICIAL:
        return Geometry.official(spec)
    if spec.startswith("regular:"):
        try:
            _, shape, dr = spec.split(":")
            nz, na, nr = (int(v) for v in shape.lower().split("x"))
            return Geometry.regular(nz, na, nr, float(dr))
        except ValueError:
            raise ConfigError(f"--geometry: expected regular:NZxNAxNR:DR_MM like regular:45x16x9:4.65, found {spec!r}") from None
    if Path(spec).suffix.lower() == ".xml":
        return Geometry.from_xml(spec)
    raise ConfigError(f"--geometry: expected regular:NZxNAxNR:DR_MM, an official key or a .xml file, found {spec!r}")


def _run(args) -> int:
    from caloforge.evaluation.report import evaluate, summary_row

    cls = () if args.classifiers.strip() in ("", "none") else tuple(c.strip() for c in args.classifiers.split(","))
    if args.repeats < 1:
        raise ConfigError(f"--repeats: expected a positive integer, found {args.repeats}")
    m = evaluate(args.gen, args.ref, dataset=args.dataset, out_dir=args.out, geometry=parse_geometry(args.geometry),
                 classifiers=cls, fpd=not args.no_fpd, kpd=not args.no_kpd, official=args.official,
                 repeats=args.repeats, seed=args.seed, allow_overlap=args.allow_overlap, train_path=args.train,
                 classifier_epochs=args.epochs, low_level_cap=args.low_level_cap, device=args.device)
    for w in m["warnings"]:
        print(f"WARNING: {w}")
    rows = [summary_row(g) for g in m["generated"]]
    keys = [k for k in rows[0] if k != "path"]
    print("  ".join(f"{k:>14}" for k in keys))
    for r in rows:
        print("  ".join(f"{(f'{v:.4g}' if isinstance(v, float) else str(v if v is not None else '-')):>14}"
                        for v in (r.get(k) for k in keys)))
    print(f"report: {args.out}/report.html")
    return 0
