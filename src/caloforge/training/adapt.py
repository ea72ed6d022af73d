"""Adapting a pre-trained (multi-detector) run to a new detector, as CaloDiT-2 does: the new detector takes the
reserved one-hot slot, the network starts from the source's EMA weights with the source's fitted transforms, and
trains briefly with a lower learning rate and a short warm-up, optionally with some parameters frozen.

Nothing here is a new training loop: the adapted run is the source recipe plus the trainer's seams
(``train.init_from``, ``train.init_chain_from_source``, ``train.freeze``) and ``data.new_detector``, so the result is
an ordinary run directory that resumes, samples, evaluates, distils and exports like any other.
"""

from __future__ import annotations

import copy
from pathlib import Path

from caloforge.data.reader import ShowerFile
from caloforge.errors import ConfigError
from caloforge.training.config import Recipe
from caloforge.training.recipe_io import apply_overrides, recipe_from_dict
from caloforge.training.sources import DataSource, whole_file_detector

#: What adaptation changes in the source recipe unless overridden (CaloDiT-2: far fewer steps, a gentler start).
ADAPT_STEPS = 500
ADAPT_LR_FACTOR = 0.25
ADAPT_WARMUP = 20


def data_detector(path, given: str | None) -> str:
    """The one detector of an adaptation file: given, else the file's single name or 'detector' attribute."""
    if given:
        return given
    with ShowerFile(path) as f:
        name = whole_file_detector(f)
        names = f.attrs.get("detector_names")
        if name is None and isinstance(names, list) and "detector_id" in f.extras:
            used = sorted({int(i) for i in f.extra("detector_id")})
            if len(used) == 1 and 0 <= used[0] < len(names):
                name = names[used[0]]
    if name is None:
        raise ConfigError(f"{path}: cannot tell which single detector the showers come from; pass --detector NAME")
    return name


def adapt_recipe(source_ckpt: dict, source: str | Path, detector: str | None, freeze=(), steps: int | None = None,
                 lr_factor: float = ADAPT_LR_FACTOR, overrides=()) -> Recipe:
    """The adapted run's recipe: the source's, with the new detector in the reserved slot and the trainer seams set.
    ``overrides`` (dotted key=value) are applied last, so any default here can be changed."""
    from caloforge.transforms.conditions import ConditionEncoder

    if not lr_factor > 0:
        raise ConfigError(f"--lr-factor: expected a factor > 0, found {lr_factor}")
    raw = copy.deepcopy(source_ckpt["config"])
    encoder = ConditionEncoder.from_state(source_ckpt["encoder"])
    data = raw.setdefault("data", {})
    if encoder.n_detectors:
        if not encoder.named:
            raise ConfigError(f"{source}: the source run has unnamed detector slots (no data.detectors); adaptation "
                              f"needs a slot table to know which slot is free")
        encoder.with_new_detector(detector)  # refuses a known detector or a taken reserved slot, before any work
        data["new_detector"] = detector
    data["detector_weights"] = {}
    tc = raw.setdefault("train", {})
    n_steps = int(steps) if steps is not None else ADAPT_STEPS
    tc.update({"init_from": str(source), "init_weights": "ema", "init_chain_from_source": True,
               "freeze": list(freeze), "lr": float(tc.get("lr", 5e-4)) * lr_factor, "steps": n_steps,
               "warmup_steps": min(ADAPT_WARMUP, n_steps // 10), "ckpt_every": min(int(tc.get("ckpt_every", 1000)),
                                                                                 n_steps),
               "val_every": min(int(tc.get("val_every", 500)), n_steps)})
    raw["name"] = f"{raw.get('name', 'run')}-adapt-{detector or 'new'}"
    raw["description"] = f"adaptation of {source} to detector {detector}"
    return recipe_from_dict(apply_overrides(raw, list(overrides)), f"adapt {raw['name']}")


def adapt(source, data, out, detector: str | None = None, freeze=(), val=None, steps: int | None = None,
          lr_factor: float = ADAPT_LR_FACTOR, overrides=(), device: str = "auto"):
    """Adapt the run (or checkpoint) ``source`` to the detector of ``data``; returns the trainer's TrainResult.
    Re-running with the same ``out`` resumes the adaptation."""
    from caloforge.training.init_from import source_checkpoint
    from caloforge.training.trainer import train

    ckpt = source_checkpoint(str(source), "--from")
    name = data_detector(data, detector)
    recipe = adapt_recipe(ckpt, Path(source), name, freeze, steps, lr_factor, overrides)
    val_source = DataSource(Path(val), name) if val is not None else None
    return train(recipe, DataSource(Path(data), name), out, val_path=val_source, device=device)
