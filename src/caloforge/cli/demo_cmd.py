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


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="make a small dataset, train a tiny generator, sample, evaluate, write a report",
        description="The main job end to end. Each stage is skipped when its output exists, so re-running resumes.",
    )
    p.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    p.add_argument("--data", default=None, help="use this CaloChallenge-format file instead of generated showers")
    p.add_argument("--detector", default="par04-siw", help="GFlash preset for the generated data (default par04-siw)")
    p.add_argument("--n", type=int, default=6000, help="number of showers to generate (default 6000)")
    p.add_argument("--energy-range", default="1:100", help="incident energies in GeV, log-uniform (default 1:100)")
    p.add_argument("--recipe", default="tiny-fm", help="training recipe (see `caloforge recipes`)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's)")
    p.add_argument("--solver", default=None, help="sampler (default: the recipe's)")
    p.add_argument("--sampler-steps", type=int, default=None, help="sampler steps (default: the recipe's)")
    p.add_argument("--classifier-epochs", type=int, default=None, help="cap on classifier epochs (default: auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides, e.g. train.lr=1e-3")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from caloforge.workflows.demo import DemoSettings, headline, run_demo

    settings = DemoSettings(
        out_dir=Path(args.out),
        detector=args.detector,
        n_showers=args.n,
        energy_range_gev=_range(args.energy_range),
        data=Path(args.data) if args.data else None,
        recipe=args.recipe,
        steps=args.steps,
        overrides=tuple(args.overrides),
        solver=args.solver,
        sampler_steps=args.sampler_steps,
        seed=args.seed,
        device=args.device,
        classifier_epochs=args.classifier_epochs,
    )
    metrics = run_demo(settings)
    for line in headline(metrics):
        print(line)
    return 0
