"""`caloforge recipes`: list the shipped training recipes (one line each: name - description)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("recipes", help="list the shipped training recipes")
    p.add_argument("--show", metavar="NAME", default=None, help="print one recipe as resolved YAML")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from caloforge.training.recipe_io import dump_recipe, list_recipes, load_recipe

    if args.show:
        print(dump_recipe(load_recipe(args.show)), end="")
        return 0
    entries = list_recipes()
    width = max(len(name) for name, _ in entries)
    for name, description in entries:
        print(f"{name:<{width}} — {description}")
    return 0
