"""A reference implementation of CaloArt's DS2 network and training step, written from the seed's description
(docs/anchors.md section 2.2: Conv3d patches 3x4x3 on (R, PHI, Z) = (9, 16, 45), 3-D sin-cos APE + 3-D RoPE on Q/K,
per-head QK-RMSNorm weights, fp32 RMSNorm pre-norms with weights, SwiGLU (hidden int(4D 2/3)), shared adaLN
(one Linear D->6D + per-block tables), PixArt final layer, separate energy/phi/theta embedders 192/96/96, raw t,
flow matching v-pred/v-loss with logit-normal t, AdamW, grad clip 1, per-tensor EMA). Written plainly, the way the
seed code is written, as the baseline of benchmarks/training_speed.py; it is not caloforge code and ships nowhere.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm32(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(d))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight).to(x.dtype)


def sincos(pos, dim):
    freqs = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float32) / (dim // 2))
    a = torch.outer(pos.float(), freqs)
    return torch.cat([a.sin(), a.cos()], -1)


def embed_t(t, dim=256):
    half = dim // 2
    f = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    a = t.float()[:, None] * f[None]
    return torch.cat([a.cos(), a.sin()], -1)


class Mlp2(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.l1, self.l2 = nn.Linear(i, o), nn.Linear(o, o)

    def forward(self, x):
        return self.l2(F.silu(self.l1(x)))


class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h, self.hd = h, d // h
        self.n1, self.n2 = RMSNorm32(d), RMSNorm32(d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.gq, self.gk = nn.Parameter(torch.ones(h, self.hd)), nn.Parameter(torch.ones(h, self.hd))
        hidden = int(int(d * 4) * 2 / 3)
        self.w12, self.w3 = nn.Linear(d, 2 * hidden), nn.Linear(hidden, d)
        self.table = nn.Parameter(torch.randn(6, d) / d ** 0.5)

    def attn(self, x, phases):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.h, self.hd).unbind(2)  # (B, N, H, hd)
        q = (F.normalize(q.float(), dim=-1) * self.gq * self.hd ** 0.5).to(x.dtype)
        k = (F.normalize(k.float(), dim=-1) * self.gk * self.hd ** 0.5).to(x.dtype)
        q = torch.view_as_real(torch.view_as_complex(q.float().reshape(b, n, self.h, -1, 2)) * phases[None, :, None])
        k = torch.view_as_real(torch.view_as_complex(k.float().reshape(b, n, self.h, -1, 2)) * phases[None, :, None])
        q, k = q.reshape(b, n, self.h, self.hd).to(x.dtype), k.reshape(b, n, self.h, self.hd).to(x.dtype)
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.out(o.transpose(1, 2).reshape(b, n, d))

    def forward(self, x, mod, phases):
        sa, ca, ga, sm, cm, gm = (self.table[None] + mod.view(mod.shape[0], 6, -1)).unbind(1)
        x = x + ga[:, None] * self.attn(self.n1(x) * (1 + ca[:, None]) + sa[:, None], phases)
        a, g = self.w12(self.n2(x) * (1 + cm[:, None]) + sm[:, None]).chunk(2, -1)
        return x + gm[:, None] * self.w3(F.silu(a) * g)


class ReferenceDiT(nn.Module):
    def __init__(self, size=(9, 16, 45), patch=(3, 4, 3), d=384, depth=6, heads=6, widths=(192, 96, 96)):
        super().__init__()
        self.size, self.patch = size, patch
        self.grid = [math.ceil(s / p) for s, p in zip(size, patch)]
        self.proj = nn.Conv3d(1, d, patch, patch)
        coords = torch.stack(torch.meshgrid(*[torch.arange(g) for g in self.grid], indexing="ij"), -1).reshape(-1, 3)
        self.register_buffer("ape", torch.cat([sincos(coords[:, i], d // 3) for i in range(3)], -1)[None])
        hd, fd = d // heads, d // heads // 6
        f = 1.0 / 10000 ** (torch.arange(fd, dtype=torch.float32) / fd)
        ang = torch.cat([torch.outer(coords[:, i].float(), f) for i in range(3)], -1)
        ang = torch.cat([ang, torch.zeros(len(coords), hd // 2 - ang.shape[1])], -1)
        self.register_buffer("phases", torch.polar(torch.ones_like(ang), ang))
        self.t_mlp = Mlp2(256, d)
        self.e_mlp, self.p_mlp, self.th_mlp = Mlp2(1, widths[0]), Mlp2(2, widths[1]), Mlp2(1, widths[2])
        self.ada = nn.Linear(d, 6 * d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(depth))
        self.fnorm, self.final = RMSNorm32(d), nn.Linear(d, math.prod(patch))
        self.ftable = nn.Parameter(torch.randn(2, d) / d ** 0.5)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv3d)):
                nn.init.xavier_uniform_(m.weight.view(m.weight.shape[0], -1))
                nn.init.zeros_(m.bias)
        for m in (self.t_mlp, self.e_mlp, self.p_mlp, self.th_mlp):
            nn.init.normal_(m.l1.weight, std=0.02)
            nn.init.normal_(m.l2.weight, std=0.02)
        nn.init.normal_(self.ada.weight, std=0.02)
        nn.init.zeros_(self.final.weight)

    def forward(self, x, cond, t):  # x (B, 1, R, PHI, Z), cond (B, 4) [energy, sin, cos, theta], t (B,)
        b = x.shape[0]
        pad = [(g * p - s) for g, p, s in zip(self.grid, self.patch, self.size)]
        h = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]))
        h = self.proj(h).flatten(2).transpose(1, 2) + self.ape  # (B, N, D)
        c = self.t_mlp(embed_t(t)) + torch.cat([self.e_mlp(cond[:, :1]), self.p_mlp(cond[:, 1:3]),
                                                 self.th_mlp(cond[:, 3:4])], -1)
        mod = self.ada(F.silu(c))
        for blk in self.blocks:
            h = blk(h, mod, self.phases)
        shift, scale = (self.ftable[None] + c[:, None]).unbind(1)
        h = self.final(self.fnorm(h) * (1 + scale[:, None]) + shift[:, None])  # (B, N, P)
        gr, (pr, pp, pz) = self.grid, self.patch
        h = h.reshape(b, *gr, pr, pp, pz).permute(0, 1, 4, 2, 5, 3, 6).reshape(b, 1, gr[0] * pr, gr[1] * pp,
                                                                                 gr[2] * pz)
        return h[:, :, : self.size[0], : self.size[1], : self.size[2]]


class ReferenceTrainer:
    """One training step as the seed does it: FM v-loss, AdamW (default implementation), clip 1, per-tensor EMA."""

    def __init__(self, model: ReferenceDiT, lr=5e-4):
        self.model = model
        self.opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=1e-5)
        self.ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.step_no = 0

    def step(self, x1, cond):
        t = torch.sigmoid(torch.randn(x1.shape[0])).clamp(1e-5, 1 - 1e-5)
        x0 = torch.randn_like(x1)
        te = t.view(-1, 1, 1, 1, 1)
        zt = (1 - te) * x0 + te * x1
        loss = ((self.model(zt, cond, t) - (x1 - x0)) ** 2).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.step_no += 1
        decay = min(0.9999, 1 - (1 + self.step_no) ** -0.7)
        with torch.no_grad():
            for k, v in self.model.state_dict().items():
                if v.is_floating_point():
                    self.ema[k].mul_(decay).add_(v, alpha=1 - decay)
        return float(loss)
