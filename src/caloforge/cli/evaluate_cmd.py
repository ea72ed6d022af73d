"""`caloforge evaluate` (placeholder until implemented)."""


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="(not implemented yet)")
    p.set_defaults(func=lambda args: 1)
