"""`caloforge distill`: turn a trained run into a one- or few-step run (see docs/distill.md)."""

from __future__ import annotations

METHOD_HELP = ("consistency: consistency distillation (1 model, sample at any step count); progressive: rounds "
               "that halve the steps (each round's student kept under OUT/rounds/); bespoke: learned K-step solver for "
               "the unchanged teacher; reflow: rectified-flow reflow on teacher (noise, sample) pairs")


def register(sub) -> None:
    p = sub.add_parser("distill", help="distil a trained run into a one- or few-step run",
                       description="Distil a trained run (--teacher) into a run that samples in --steps steps. "
                                   "Overrides are dotted key=value pairs typed by YAML: train.steps, train.lr, "
                                   "train.batch_size, consistency.grid, progressive.start_steps, bespoke.base, "
                                   "reflow.pairs, ... (docs/distill.md lists them). " + METHOD_HELP)
    p.add_argument("--method", required=True, choices=("consistency", "progressive", "bespoke", "reflow"))
    p.add_argument("--teacher", required=True, help="the teacher run directory (or one checkpoint file)")
    p.add_argument("--data", required=True, help="training file (the teacher's, CaloChallenge layout)")
    p.add_argument("--steps", type=int, default=None,
                   help="the student's sampler steps (default: 1; bespoke 4)")
    p.add_argument("--out", required=True, help="the new run directory (a normal run: sample/bench/evaluate take "
                                                 "it); built in OUT.partial, renamed when finished")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--force", action="store_true",
                   help="replace an existing --out run directory and discard an interrupted run in OUT.partial "
                        "(without it, the same command resumes that run; other settings are refused)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="settings, e.g. train.steps=500")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from caloforge.training.distill import distill

    res = distill(args.method, args.teacher, args.data, args.out, steps=args.steps, overrides=args.overrides,
                  device=args.device, force=args.force)
    loss = f", last loss {res.last_loss:.4g}" if res.last_loss is not None else ""
    print(f"distilled ({res.method}, {res.steps} steps, NFE {res.nfe}) in {res.seconds / 60:.1f} CPU min{loss}; "
          f"run {res.out_dir}")
    return 0
