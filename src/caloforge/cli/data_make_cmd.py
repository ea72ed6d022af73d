"""`caloforge data make` and `caloforge data presets` (placeholder until implemented)."""


def register(dsub) -> None:
    pass
