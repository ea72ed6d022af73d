"""`caloforge sample` (placeholder until implemented)."""


def register(sub) -> None:
    p = sub.add_parser("sample", help="(not implemented yet)")
    p.set_defaults(func=lambda args: 1)
