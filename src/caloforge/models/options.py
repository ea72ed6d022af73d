"""The DiT's option vocabularies, torch-free: one home for the recipe check (pydantic Literals) and the network.

``caloart`` values reproduce CaloArt's DS2 model exactly (docs/train.md lists what still differs):
- ``cond_widths``: separate embedders for energy / phi (sin, cos) / theta whose outputs are concatenated
  (CaloArt ``condition_embed_dims``); angles absent from the data go in as zeros, as CaloArt feeds them.
- ``norm_affine``: learnable per-channel weights in the pre-norms and the final norm.
- ``qk_norm_weights``: ``shared`` (one weight vector for all heads) or ``per_head``.
- ``t_scale``: the flow time (or c_noise) is multiplied by this before the sinusoids (1000: DiT's integer steps).
- ``rope_layout``: ``all`` rotates every head channel (z takes the remainder); ``equal`` gives each axis
  2 * (head_dim // 6) channels and leaves the rest unrotated (64 channels: 60 rotated).
- ``init``: ``zero`` (adaLN-Zero: every block starts as the identity) or ``caloart`` (modulation tables
  N(0, 1/D), shared modulation N(0, 0.02), condition embedders N(0, 0.02)); the output layer is zero in both.
"""

from __future__ import annotations

from typing import Literal, get_args

PosEmbed = Literal["sincos", "rope", "sincos+rope", "none"]
Norm = Literal["layernorm", "rmsnorm"]
Mlp = Literal["gelu", "swiglu"]
QKNormWeights = Literal["shared", "per_head"]
RopeLayout = Literal["all", "equal"]
Init = Literal["zero", "caloart"]

POS_EMBEDS, NORMS, MLPS = get_args(PosEmbed), get_args(Norm), get_args(Mlp)
QK_NORM_WEIGHTS, ROPE_LAYOUTS, INITS = get_args(QKNormWeights), get_args(RopeLayout), get_args(Init)
