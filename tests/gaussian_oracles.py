"""Exact networks for Gaussian data x ~ N(mu, s^2) (every element independent), one per objective.

For Gaussian data the posterior mean E[x | z] is linear in z, so the ideal network output of each objective is known
in closed form; the samplers driven by these oracles must reproduce N(mu, s^2). Shared by the objective and sampler
tests.
"""

from __future__ import annotations

import torch

from caloforge.generative.objectives import DDPM, EDM, FlowMatching, VPDiffusion
from caloforge.generative.objectives.base import expand


def vp_posterior(z, alpha, sigma, mu, s):
    """(E[x | z], E[eps | z]) for z = alpha x + sigma eps, x ~ N(mu, s^2)."""
    var = alpha**2 * s**2 + sigma**2
    resid = z - alpha * mu
    return mu + alpha * s**2 * resid / var, sigma * resid / var


def flow_oracle(obj: FlowMatching, mu: float, s: float):
    """Exact flow-matching network in the objective's prediction space (t_in = t, z = (1-t) n + t x)."""

    def net(z, t_in, cond):
        t = expand(t_in, z)
        x_hat, eps_hat = vp_posterior(z, t, 1.0 - t, mu, s)
        return {"x": x_hat, "eps": eps_hat, "v": x_hat - eps_hat}[obj.prediction]

    return net


def edm_oracle(obj: EDM, mu: float, s: float):
    """Exact EDM raw network F: recover sigma from c_noise and z from c_in z, return (D - c_skip z) / c_out."""
    sd = obj.sigma_data

    def net(z_in, c_noise, cond):
        sigma = expand(torch.exp(4.0 * c_noise), z_in)
        z = z_in * torch.sqrt(sigma**2 + sd**2)
        d = mu + s**2 / (s**2 + sigma**2) * (z - mu)
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / torch.sqrt(sigma**2 + sd**2)
        return (d - c_skip * z) / c_out

    return net


def vp_oracle(obj: VPDiffusion, mu: float, s: float):
    """Exact v-prediction network for the VP objective (t_in = t)."""

    def net(z, t_in, cond):
        alpha, sigma = (expand(a, z) for a in obj.schedule(t_in.double()))
        x_hat, eps_hat = vp_posterior(z, alpha, sigma, mu, s)
        return alpha * eps_hat - sigma * x_hat

    return net


def ddpm_oracle(obj: DDPM, mu: float, s: float):
    """Exact eps-prediction network for DDPM (t_in = k / T with k integer)."""

    def net(z, t_in, cond):
        k = torch.round(t_in.double() * obj.timesteps).long()
        ab = expand(obj.alpha_bar[k], z)
        return vp_posterior(z, ab.sqrt(), (1.0 - ab).sqrt(), mu, s)[1]

    return net


def oracle_for(obj, mu: float, s: float):
    return {"flow": flow_oracle, "edm": edm_oracle, "vp": vp_oracle, "ddpm": ddpm_oracle}[obj.kind](
        obj, mu, s
    )
