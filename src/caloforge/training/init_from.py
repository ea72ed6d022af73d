"""Starting a run from another run's weights (``train.init_from``) and freezing parameters (``train.freeze``).

These are the seams fine-tuning, detector adaptation and distillation share: the new run is an ordinary run
directory whose first step starts from the source's EMA (or raw) weights instead of a random initialisation. Both
are checked when the network has been built and before any file is written, so a wrong pattern or a network that
does not match is one line at the door.
"""

from __future__ import annotations

import fnmatch

import torch

from caloforge.errors import CaloforgeError, ConfigError
from caloforge.training.checkpoint import load_checkpoint


def source_checkpoint(path: str, field: str = "train.init_from") -> dict:
    """The newest checkpoint of a run directory (or a checkpoint file); a missing one is a one-line ConfigError."""
    try:
        return load_checkpoint(path)
    except CaloforgeError as exc:  # name the setting that pointed there
        raise ConfigError(f"{field}: {exc}") from None


def source_weights(ckpt: dict, which: str) -> dict[str, torch.Tensor]:
    return ckpt["ema"] if which == "ema" else ckpt["model"]


def map_names(state: dict[str, torch.Tensor], prefix_map: dict[str, str]) -> dict[str, torch.Tensor]:
    """Rename source entries by prefix (longest source prefix first); unmapped names are kept as they are."""
    if not prefix_map:
        return dict(state)
    order = sorted(prefix_map, key=len, reverse=True)
    out = {}
    for name, value in state.items():
        src = next((p for p in order if name.startswith(p)), None)
        out[name if src is None else prefix_map[src] + name[len(src):]] = value
    return out


def _first_mismatch(target: dict[str, torch.Tensor], source: dict[str, torch.Tensor]) -> str | None:
    for name, t in target.items():
        if name not in source:
            return f"{name} is missing in the source"
        if tuple(source[name].shape) != tuple(t.shape):
            return f"{name} has shape {list(source[name].shape)} in the source, {list(t.shape)} here"
    extra = sorted(set(source) - set(target))
    return f"{extra[0]} is in the source but not in this network" if extra else None


@torch.no_grad()
def load_weights(model: torch.nn.Module, source: dict[str, torch.Tensor], strict: bool = True,
                 label: str = "train.init_from") -> list[str]:
    """Copy source weights into model; returns the names left (partly) at their fresh initialisation.

    strict: names and shapes must match exactly (else one line naming the first differing parameter).
    Not strict: same-named entries are loaded; where the shapes differ but have the same rank, the overlapping
    leading block is copied and the rest keeps its initialisation (e.g. a condition embedder that gained one-hot
    columns keeps the source's columns for the old conditions); names only the source has are ignored.
    """
    target = model.state_dict()
    if strict:
        bad = _first_mismatch(target, source)
        if bad is not None:
            raise ConfigError(f"{label}: the source network does not match this recipe's: {bad} "
                              f"(use train.init_strict=false for a partial start, train.init_map to rename)")
    untouched = []
    for name, t in target.items():
        s = source.get(name)
        if s is None or s.dim() != t.dim():
            untouched.append(name)
            continue
        if tuple(s.shape) == tuple(t.shape):
            t.copy_(s.to(t.dtype))
            continue
        block = tuple(slice(0, min(a, b)) for a, b in zip(s.shape, t.shape))
        t[block].copy_(s[block].to(t.dtype))
        untouched.append(name)
    if len(untouched) == len(target):
        raise ConfigError(f"{label}: no parameter of the source matches this network by name "
                          f"(first here: {next(iter(target))}; use train.init_map to rename)")
    return untouched


def init_from_source(model: torch.nn.Module, tc, ckpt: dict) -> dict:
    """Apply ``train.init_*`` to a freshly built model; returns a small provenance record for the checkpoint."""
    state = map_names(source_weights(ckpt, tc.init_weights), dict(tc.init_map))
    untouched = load_weights(model, state, strict=tc.init_strict)
    return {"source": str(ckpt["path"]), "weights": tc.init_weights, "source_step": int(ckpt["step"]),
            "strict": bool(tc.init_strict), "not_loaded": untouched}


def source_chain_state(ckpt: dict, recipe) -> dict:
    """The source's fitted chain state, refused when the source was trained with other transform steps."""
    src = list(ckpt["config"].get("transforms", []))
    here = recipe.to_dict()["transforms"]
    if src != here:
        i = next((k for k in range(max(len(src), len(here)))
                  if k >= len(src) or k >= len(here) or src[k] != here[k]), 0)
        raise ConfigError(f"train.init_chain_from_source: the source's transforms differ from recipe "
                          f"{recipe.name}'s at step {i} ({src[i] if i < len(src) else None!r} vs "
                          f"{here[i] if i < len(here) else None!r}); use the same transforms")
    return ckpt["chain"]


def freeze_parameters(model: torch.nn.Module, patterns) -> list[str]:
    """requires_grad=False on every parameter whose name matches a pattern (fnmatch); returns the frozen names.

    A pattern that matches nothing is a one-line ConfigError (a typo would otherwise silently train everything).
    """
    names = [n for n, _ in model.named_parameters()]
    frozen = set()
    for pat in patterns:
        hits = fnmatch.filter(names, pat)
        if not hits:
            raise ConfigError(f"train.freeze: pattern {pat!r} matches no parameter of this network "
                              f"(names look like {names[0]!r}, {names[-1]!r})")
        frozen.update(hits)
    for n, p in model.named_parameters():
        if n in frozen:
            p.requires_grad_(False)
    return sorted(frozen)
