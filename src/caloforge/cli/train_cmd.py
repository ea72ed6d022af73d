"""`caloforge train`: train a recipe on a shower file; re-running on an existing RUN_DIR resumes it.

Multi-GPU / multi-process: ``torchrun --nproc_per_node N -m caloforge.cli.main train ...`` (DDP).
"""

from __future__ import annotations

import signal


def register(sub) -> None:
    p = sub.add_parser("train", help="train a recipe (re-run on the same --out to resume)",
                       description="Train a recipe on a shower file. Overrides are dotted key=value pairs typed by "
                                   "YAML, e.g. train.lr=1e-3 train.batch_size=128 model.depth=4.")
    p.add_argument("--recipe", required=True, help="recipe name (see `caloforge recipes`) or a YAML file")
    p.add_argument("--data", required=True, action="append",
                   help="training file (CaloChallenge layout); repeat for several detectors on one mesh (one file "
                        "each, mapped to slots by name; weights in data.detector_weights)")
    p.add_argument("--val", default=None, help="validation file for a periodic validation loss")
    p.add_argument("--out", required=True, help="run directory (checkpoints, metrics.jsonl, config.yaml)")
    p.add_argument("--steps", type=int, default=None, help="total optimiser steps (overrides train.steps)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--outside-energy-range", choices=("error", "warn"), default="error",
                   help="incident energies in --data/--val outside the recipe's data.energy_range_mev: refuse "
                        "(default) or warn and train anyway")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides, e.g. train.lr=1e-3")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from caloforge.training.distributed import env_dist_info
    from caloforge.training.recipe_io import load_recipe
    from caloforge.training.trainer import train

    recipe = load_recipe(args.recipe, args.overrides)
    data = args.data[0] if len(args.data) == 1 else args.data
    result = train(recipe, data, args.out, val_path=args.val, steps=args.steps, device=args.device,
                   outside_energy_range=args.outside_energy_range)
    if not env_dist_info().is_main:
        return 0 if result.completed else 1
    if result.completed:
        loss = f", loss {result.last_loss:.4f}" if result.last_loss is not None else ""
        print(f"trained {recipe.name} to step {result.step}{loss}; checkpoint {result.checkpoint}")
        return 0
    if result.signal is None:
        print(f"stopped at step {result.step} by {result.stopped_by}; checkpoint {result.checkpoint}")
        return 0
    print(f"stopped at step {result.step} (signal {result.signal}); checkpoint {result.checkpoint}; "
          f"re-run the same command to resume")
    return 128 + int(result.signal or signal.SIGTERM)
