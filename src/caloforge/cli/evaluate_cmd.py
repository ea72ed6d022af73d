"""`caloforge evaluate`: the CaloChallenge evaluation of one or more generated files against a reference."""

from __future__ import annotations

from caloforge.errors import CaloforgeError, ConfigError


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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="classifier device: auto, cpu or cuda")
    p.add_argument("--label", action="append", default=None, metavar="NAME",
                   help="name of each --gen in the report (repeat, one per --gen, same order)")
    p.add_argument("--ms-per-shower", action="append", default=None, metavar="MS",
                   help="generation cost of each --gen in ms/shower ('-' if unknown; repeat, one per --gen): "
                        "adds a row to the table and the quality-vs-time plot")
    p.add_argument("--checkpoint", action="append", default=None, metavar="CKPT.pt",
                   help="checkpoint that made each --gen ('-' if none; repeat, one per --gen): ms/shower is measured "
                        "on 100 showers with the checkpoint's default sampler")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="report directory (metrics.json, summary.csv, report.html, plots/); replaced as a whole")
    p.add_argument("--force", action="store_true", help="replace an existing report directory")
    p.set_defaults(func=_run)


def parse_geometry(spec: str | None):
    """``Geometry.parse`` (the one grammar: official key, regular:NZxNAxNR:DR_MM or a binning .xml), or None."""
    from caloforge.data.geometry import Geometry

    if spec is None:
        return None
    try:
        return Geometry.parse(spec)
    except CaloforgeError as exc:
        raise ConfigError(f"--geometry: {exc}") from None


def _per_gen(values, n: int, flag: str) -> list:
    if values is None:
        return [None] * n
    if len(values) != n:
        raise ConfigError(f"{flag}: expected one value per --gen ({n}), found {len(values)}")
    return [None if v in ("-", "") else v for v in values]


def _ms_per_shower(args) -> list:
    """--ms-per-shower as given, else measured from --checkpoint (100 showers, default sampler), else None."""
    ms = []
    for v in _per_gen(args.ms_per_shower, len(args.gen), "--ms-per-shower"):
        try:
            ms.append(None if v is None else float(v))
        except ValueError:
            raise ConfigError(f"--ms-per-shower: expected a number or '-', found {v!r}") from None
        if ms[-1] is not None and not ms[-1] > 0:
            raise ConfigError(f"--ms-per-shower: expected a positive number, found {v!r}")
    for i, ckpt in enumerate(_per_gen(args.checkpoint, len(args.gen), "--checkpoint")):
        if ckpt is not None and ms[i] is None:
            from caloforge.evaluation.timing import time_batch
            from caloforge.sampling.generator import Generator

            ms[i] = time_batch(Generator.load(ckpt, device=args.device), 100, repeats=1)["ms_per_shower"]
    return ms


def _run(args) -> int:
    from caloforge.evaluation.report import check_report_dir, evaluate, summary_row

    cls = () if args.classifiers.strip() in ("", "none") else tuple(c.strip() for c in args.classifiers.split(","))
    if args.repeats < 1:
        raise ConfigError(f"--repeats: expected a positive integer, found {args.repeats}")
    _per_gen(args.label, len(args.gen), "--label")
    check_report_dir(args.out, [args.ref, args.train, *args.gen], args.force)  # before a checkpoint is timed
    ms = _ms_per_shower(args)
    m = evaluate(args.gen, args.ref, dataset=args.dataset, out_dir=args.out, geometry=parse_geometry(args.geometry),
                 classifiers=cls, fpd=not args.no_fpd, kpd=not args.no_kpd, official=args.official,
                 repeats=args.repeats, seed=args.seed, allow_overlap=args.allow_overlap, train_path=args.train,
                 classifier_epochs=args.epochs, low_level_cap=args.low_level_cap, device=args.device,
                 labels=args.label, ms_per_shower=ms, force=args.force)
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
