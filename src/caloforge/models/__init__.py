"""Networks: the patch tokenizer, embeddings (time, condition, 3-D sin-cos, 3-D RoPE) and the DiT backbone.

Imported lazily so that ``caloforge.models.options`` (the option vocabularies the recipe check uses) needs no torch.
"""

__all__ = ["DiT", "DiTConfig", "Patcher"]


def __getattr__(name):
    if name in ("DiT", "DiTConfig"):
        from caloforge.models import dit

        return getattr(dit, name)
    if name == "Patcher":
        from caloforge.models.tokenizer import Patcher

        return Patcher
    raise AttributeError(f"module 'caloforge.models' has no attribute {name!r}")
