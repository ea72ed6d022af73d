"""The GFlash electromagnetic shower parametrisation (Grindhammer & Peters, hep-ex/0001020), vectorised over showers.

Constants are those of Geant4's GFlash tuning classes (GVFlashHomoShowerTuning, GFlashSamplingShowerTuning), which
implement the paper. Depth t is in units of the effective X0, radii in units of the effective Moliere radius, energies
in GeV inside the formulae. Sampling corrections enter through F_s (X0_eff / sampling period) and e_hat (e/mip); a
homogeneous medium has F_s = inf, e_hat = 1, so every correction vanishes.

Longitudinal: dE/dt is a Gamma(alpha, beta) density with T = (alpha - 1)/beta; ln T and ln alpha are correlated
normals whose means, widths and correlation depend on y = E/Ec. Radial: f(r) = p 2r Rc^2/(r^2+Rc^2)^2 +
(1-p) 2r Rt^2/(r^2+Rt^2)^2 with Rc, Rt, p functions of tau = t/T, E and Z.
"""

from __future__ import annotations

import numpy as np

# ---- homogeneous medium (GVFlashHomoShowerTuning) --------------------------------------------------------------
T_HOM = -0.812  # <ln T> = ln(ln y + T_HOM)
A_HOM = (0.81, 0.458, 2.26)  # <ln alpha> = ln(a1 + (a2 + a3/Z) ln y)
SIG_LNT_HOM = (-1.4, 1.26)  # sigma(ln T) = 1 / (s1 + s2 ln y)
SIG_LNA_HOM = (-0.58, 0.86)
RHO_HOM = (0.705, -0.023)  # corr(ln T, ln alpha) = r1 + r2 ln y
# ---- sampling corrections (GFlashSamplingShowerTuning) ---------------------------------------------------------
T_SAM = (-0.55, -0.69)  # T_sam = T_hom + t1 / F_s + t2 (1 - e_hat)
A_SAM = -0.476  # alpha_sam = alpha_hom + a1 / F_s
SIG_LNT_SAM = (-2.5, 1.25)
SIG_LNA_SAM = (-0.82, 0.79)
RHO_SAM = (0.784, -0.023)
# ---- radial profile ------------------------------------------------------------------------------------------
RC = (0.0251, 0.00319, 0.1162, -0.000381)  # Rc = (c1 + c2 ln E) + (c3 + c4 Z) tau
RT = (0.659, -0.00309, 0.645, -2.59, 0.3585, 0.0412)  # Rt = k1 (exp(k3 (tau - k2)) + exp(k4 (tau - k2)))
WC = (2.632, -0.00094, 0.401, 0.00187, 1.313, -0.0686)  # p = p1 exp((p2 - tau)/p3 - exp((p2 - tau)/p3))
RC_SAM = (-0.0203, 0.0397)  # Rc += c1 (1 - e_hat) + c2 / F_s exp(-tau)
RT_SAM = (-0.14, -0.495)  # Rt += t1 (1 - e_hat) + t2 / F_s exp(-tau)
WC_SAM = (0.348, -0.642)  # p += (1 - e_hat) (c1 + c2 / F_s exp(-(tau - 1)^2))
# ---- number of spots -----------------------------------------------------------------------------------------
SPOTS_HOM = (93.0, 0.876)  # N = n1 ln(Z) E^n2
SPOTS_SAM = (10.3, 0.959)  # N = n1 / a E^n2, a = sampling stochastic term

#: Widths are capped, as in Geant4, because the 1/(s1 + s2 ln y) forms diverge at low y.
MAX_SIGMA = 0.5


def _sigma(coef: tuple[float, float], log_y: np.ndarray) -> np.ndarray:
    denom = coef[0] + coef[1] * log_y
    with np.errstate(divide="ignore"):
        return np.where(denom > 1.0 / MAX_SIGMA, 1.0 / np.maximum(denom, 1e-12), MAX_SIGMA)


def longitudinal_moments(log_y: np.ndarray, z: float, inv_fs: np.ndarray, ehat: float) -> dict[str, np.ndarray]:
    """Mean and width of ln T and ln alpha and their correlation, per shower (inv_fs = 0: homogeneous)."""
    sampling = np.any(inv_fs > 0)
    t_hom = np.maximum(log_y + T_HOM, 0.1)
    a_hom = np.maximum(A_HOM[0] + (A_HOM[1] + A_HOM[2] / z) * log_y, 0.1)
    if not sampling:
        return {
            "mean_ln_t": np.log(t_hom),
            "mean_ln_alpha": np.log(a_hom),
            "sigma_ln_t": _sigma(SIG_LNT_HOM, log_y),
            "sigma_ln_alpha": _sigma(SIG_LNA_HOM, log_y),
            "rho": RHO_HOM[0] + RHO_HOM[1] * log_y,
        }
    t_sam = np.maximum(t_hom + T_SAM[0] * inv_fs + T_SAM[1] * (1.0 - ehat), 0.1)
    a_sam = np.maximum(a_hom + A_SAM * inv_fs, 0.1)
    return {
        "mean_ln_t": np.log(t_sam),
        "mean_ln_alpha": np.log(a_sam),
        "sigma_ln_t": _sigma(SIG_LNT_SAM, log_y),
        "sigma_ln_alpha": _sigma(SIG_LNA_SAM, log_y),
        "rho": RHO_SAM[0] + RHO_SAM[1] * log_y,
    }


def expected_shower_max(energy_gev: np.ndarray, ec_mev: float, z: float, inv_fs=0.0, ehat: float = 1.0) -> np.ndarray:
    """exp(<ln T>): the GFlash depth of the shower maximum in X0 (the median over showers)."""
    log_y = np.log(np.asarray(energy_gev, dtype=np.float64) * 1e3 / ec_mev)
    return np.exp(longitudinal_moments(log_y, z, np.broadcast_to(inv_fs, log_y.shape), ehat)["mean_ln_t"])


def draw_profile(moments: dict[str, np.ndarray], normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, alpha) per shower from two standard normals per shower (normals: (B, 2)), with the paper's correlation."""
    rho = np.clip(moments["rho"], -1.0, 1.0)
    c1, c2 = np.sqrt((1 + rho) / 2), np.sqrt((1 - rho) / 2)
    u, v = normals[:, 0], normals[:, 1]
    t_max = np.exp(moments["mean_ln_t"] + moments["sigma_ln_t"] * (c1 * u + c2 * v))
    alpha = np.exp(moments["mean_ln_alpha"] + moments["sigma_ln_alpha"] * (c1 * u - c2 * v))
    # Geant4's guards: a shower maximum before 1 X0 or alpha <= 1 has no Gamma-profile meaning.
    return np.maximum(t_max, 1.0), np.maximum(alpha, 1.1)


def radial_parameters(
    tau: np.ndarray, energy_gev: np.ndarray, z: float, inv_fs: np.ndarray, ehat: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Rc, Rt, p) in Moliere radii for depths tau = t/T: tau (B, L), energy and inv_fs (B,) -> each (B, L)."""
    log_e = np.log(energy_gev)[:, None]  # (B, 1)
    f = inv_fs[:, None]  # (B, 1)
    rc = RC[0] + RC[1] * log_e + (RC[2] + RC[3] * z) * tau
    k4 = RT[4] + RT[5] * log_e
    rt = (RT[0] + RT[1] * z) * (np.exp(RT[3] * (tau - RT[2])) + np.exp(k4 * (tau - RT[2])))
    p2, p3 = WC[2] + WC[3] * z, WC[4] + WC[5] * log_e
    x = (p2 - tau) / p3
    p = (WC[0] + WC[1] * z) * np.exp(x - np.exp(x))
    leak = 1.0 - ehat
    rc = rc + RC_SAM[0] * leak + RC_SAM[1] * f * np.exp(-tau)
    rt = rt + RT_SAM[0] * leak + RT_SAM[1] * f * np.exp(-tau)
    p = p + leak * (WC_SAM[0] + WC_SAM[1] * f * np.exp(-((tau - 1.0) ** 2)))
    # Keep the two-component form proper: positive radii, a weight in [0, 1].
    return np.maximum(rc, 1e-3), np.maximum(rt, 1e-3), np.clip(p, 0.0, 1.0)


def radial_cdf(r: np.ndarray, rc: np.ndarray, rt: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Fraction of a layer's energy within radius r (all in Moliere radii); r broadcasts against (rc, rt, p)."""
    r2 = r * r
    return p * r2 / (r2 + rc * rc) + (1.0 - p) * r2 / (r2 + rt * rt)


def mean_spot_count(energy_gev: np.ndarray, z: float, stochastic_term: float, is_sampling: bool) -> np.ndarray:
    """Expected number of energy spots per shower (GFlash: homogeneous 93 ln Z E^0.876; sampling 10.3/a E^0.959)."""
    if is_sampling:
        return SPOTS_SAM[0] / stochastic_term * energy_gev ** SPOTS_SAM[1]
    return SPOTS_HOM[0] * np.log(z) * energy_gev ** SPOTS_HOM[1]
