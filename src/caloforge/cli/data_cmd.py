"""`caloforge data ...`: make, presets, inspect, validate, split."""


def register(sub) -> None:
    p = sub.add_parser("data", help="make, inspect, validate and split shower files")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    from caloforge.cli import data_make_cmd

    data_make_cmd.register(dsub)
