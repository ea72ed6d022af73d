"""The one device resolver of every command that runs a network (training, sampling, the evaluation classifier)."""

from __future__ import annotations

from caloforge.errors import ConfigError


def resolve_device(name: str = "auto"):
    """'auto' -> cuda when available else cpu; 'cpu', 'cuda', 'cuda:N'; 'cuda' without a GPU is a one-line error."""
    import torch

    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"--device: expected auto, cpu or cuda, found {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device: {name} requested but torch sees no CUDA device (use --device cpu)")
    return torch.device(name)
