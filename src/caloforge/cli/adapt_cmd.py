"""`caloforge adapt`: adapt a pre-trained run to a new detector (reserved slot, EMA start, lower lr, freezing)."""

from __future__ import annotations

import signal


def register(sub) -> None:
    p = sub.add_parser(
        "adapt", help="adapt a pre-trained run to a new detector (re-run on the same --out to resume)",
        description="Start from the pre-trained run's EMA weights and fitted transforms, put the new detector in the "
                    "reserved one-hot slot and train briefly with a lower learning rate (defaults: 500 steps, lr x "
                    "0.25, 20 warm-up steps). The result is a normal run directory: sample, evaluate, distil and "
                    "export it like any other. Overrides are dotted key=value pairs, e.g. train.batch_size=32.")
    p.add_argument("--from", dest="source", required=True, help="pre-trained run directory (or checkpoint file)")
    p.add_argument("--data", required=True, help="showers of the new detector (multi-detector schema; the angles "
                                                 "the model conditions on must be there: see `caloforge data convert`)")
    p.add_argument("--detector", default=None,
                   help="name of the new detector (default: the file's single detector name or 'detector' attribute)")
    p.add_argument("--freeze", action="append", default=[], metavar="PATTERN",
                   help="keep parameters matching this fnmatch pattern fixed, e.g. 'blocks.0.*' (repeatable)")
    p.add_argument("--val", default=None, help="validation file of the new detector (validation loss, quality)")
    p.add_argument("--out", required=True, help="run directory of the adapted model")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default 500)")
    p.add_argument("--lr-factor", type=float, default=0.25, help="learning rate = source lr x this (default 0.25)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides, e.g. train.lr=1e-4")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from caloforge.errors import ConfigError
    from caloforge.training.adapt import adapt

    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps: expected a positive integer, found {args.steps}")
    result = adapt(args.source, args.data, args.out, detector=args.detector, freeze=args.freeze, val=args.val,
                   steps=args.steps, lr_factor=args.lr_factor, overrides=args.overrides, device=args.device)
    if result.completed:
        loss = f", loss {result.last_loss:.4f}" if result.last_loss is not None else ""
        print(f"adapted {args.source} to step {result.step}{loss}; run {result.out_dir}")
        return 0
    print(f"stopped at step {result.step} (signal {result.signal}); re-run the same command to resume")
    return 128 + int(result.signal or signal.SIGTERM)
