"""Networks: the patch tokenizer, embeddings (time, condition, 3-D sin-cos, 3-D RoPE) and the DiT backbone."""

from caloforge.models.dit import DiT, DiTConfig
from caloforge.models.presets import PRESETS, preset
from caloforge.models.tokenizer import Patcher

__all__ = ["PRESETS", "DiT", "DiTConfig", "Patcher", "preset"]
