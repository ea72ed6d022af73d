"""`caloforge demo`: the main job on the embedded default (GFlash par04-siw showers) or on your own file."""

from __future__ import annotations

from pathlib import Path


def _range(text: str) -> tuple[float, float]:
    from caloforge.errors import CaloforgeError

    try:
        lo, hi = (float(x) for x in text.split(":"))
    except ValueError:
        raise CaloforgeError(f"--energy-range: expected LO:HI in GeV (e.g. 1:100), got {text!r}") from None
    if not 0 < lo < hi:
        raise CaloforgeError(f"--energy-range: expected 0 < LO < HI, got {text!r}")
    return lo, hi


def _minutes(value: float) -> float:
    from caloforge.errors import CaloforgeError

    if not value >= 0:
        raise CaloforgeError(f"--minutes: expected a number of minutes >= 0, got {value}")
    return value


def register(sub) -> None:
    from caloforge.workflows.demo import DEFAULT_MINUTES, DEFAULT_RECIPE

    p = sub.add_parser(
        "demo",
        help="make a small dataset, train a small generator in a time budget, sample, evaluate, write a report",
        description="The main job end to end: GFlash showers (or --data FILE), a seeded train/val/test split, "
                    "training inside --minutes, sampling, evaluation against the held-out test split with the "
                    "reference-vs-reference floor, and a report. Each stage is skipped when its output is current, "
                    "so re-running resumes.",
    )
    p.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    p.add_argument("--data", default=None, help="try your own showers: a CaloChallenge-format HDF5 file "
                   "(incident_energies, showers) used instead of the generated ones")
    p.add_argument("--detector", default="par04-siw", help="GFlash preset for the generated data (default par04-siw)")
    p.add_argument("--n", type=int, default=6000, help="number of showers to generate (default 6000)")
    p.add_argument("--energy-range", default="1:100", help="incident energies in GeV, log-uniform (default 1:100)")
    p.add_argument("--recipe", default=DEFAULT_RECIPE,
                   help=f"training recipe (see `caloforge recipes`; default {DEFAULT_RECIPE})")
    p.add_argument("--minutes", type=float, default=DEFAULT_MINUTES,
                   help=f"training budget in minutes of wall time, speed probe included; the step count is set "
                        f"to fit it (default {DEFAULT_MINUTES:g}; 0: no budget, the recipe's steps)")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps instead of what fits the budget (the budget still stops training)")
    p.add_argument("--solver", default=None, help="sampler (default: the recipe's)")
    p.add_argument("--sampler-steps", type=int, default=None, help="sampler steps (default: the recipe's)")
    p.add_argument("--classifier-epochs", type=int, default=None,
                   help="cap on the evaluation classifiers' epochs (default: early stopping, at most 30)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the split, sampling and evaluation")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides, e.g. train.lr=1e-3")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from caloforge.workflows.demo import DemoSettings, final_screen, run_demo

    settings = DemoSettings(
        out_dir=Path(args.out),
        detector=args.detector,
        n_showers=args.n,
        energy_range_gev=_range(args.energy_range),
        data=Path(args.data) if args.data else None,
        recipe=args.recipe,
        minutes=_minutes(args.minutes),
        steps=args.steps,
        overrides=tuple(args.overrides),
        solver=args.solver,
        sampler_steps=args.sampler_steps,
        seed=args.seed,
        device=args.device,
        classifier_epochs=args.classifier_epochs,
    )
    metrics = run_demo(settings)
    for line in final_screen(metrics):
        print(line)
    return 0
