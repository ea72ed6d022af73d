"""Invertible preprocessing chain, condition encoding, layer-energy u-parametrisation and post-processing (numpy)."""

from caloforge.transforms.chain import Chain
from caloforge.transforms.conditions import ConditionEncoder
from caloforge.transforms.layer_energy import (
    denormalise_layers,
    layer_energies,
    layer_energies_to_u,
    normalise_layers,
    u_to_layer_energies,
)
from caloforge.transforms.postprocess import RedrawStats, apply_threshold, reject_and_redraw, unphysical_mask
from caloforge.transforms.stats import RunningMoments
from caloforge.transforms.steps import STEPS, Step, step_from_config

__all__ = [
    "STEPS",
    "Chain",
    "ConditionEncoder",
    "RedrawStats",
    "RunningMoments",
    "Step",
    "apply_threshold",
    "denormalise_layers",
    "layer_energies",
    "layer_energies_to_u",
    "normalise_layers",
    "reject_and_redraw",
    "step_from_config",
    "u_to_layer_energies",
    "unphysical_mask",
]
