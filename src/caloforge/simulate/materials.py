"""Materials and the GFlash effective quantities of a sampling structure.

Per-material numbers are the PDG "Atomic and Nuclear Properties" values (rounded): radiation length X0 in g/cm^2,
density, critical energy for electrons (Rossi definition), Moliere radius and minimum-ionising dE/dx. Compounds carry
mass-weighted Z and A, as GFlash uses them.

The mixture formulae follow Grindhammer & Peters (hep-ex/0001020, sec. 3) with mass fractions w_i of each layer:
1/X0_eff = sum w_i / X0_i,  Ec_eff = X0_eff * sum w_i Ec_i / X0_i,  R_M,eff = E_s / sum(w_i Ec_i / X0_i)
(all in g/cm^2, E_s = 21.2 MeV), Z_eff = sum w_i Z_i, F_s = X0_eff / (d_abs + d_act) and the e/mip ratio
e_hat = 1 / (1 + 0.007 (Z_abs - Z_act)). Working in g/cm^2 keeps the formulae dimensionally honest; lengths are
obtained by dividing by the mean density of the sampling period.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from caloforge.errors import ConfigError

#: Scale energy of multiple scattering (MeV) used for the Moliere radius.
E_S_MEV = 21.2


@dataclass(frozen=True)
class Material:
    """One medium: Z, A (g/mol), density (g/cm^3), X0 (g/cm^2), Ec (MeV), R_M (cm), dE/dx_min (MeV cm^2/g)."""

    name: str
    z: float
    a: float
    density: float
    x0_gcm2: float
    ec_mev: float
    rm_cm: float
    dedx_mip: float

    @property
    def x0_mm(self) -> float:
        return 10.0 * self.x0_gcm2 / self.density

    @property
    def rm_mm(self) -> float:
        return 10.0 * self.rm_cm


MATERIALS: dict[str, Material] = {
    m.name: m
    for m in (
        Material("W", 74, 183.84, 19.30, 6.76, 7.97, 0.9327, 1.145),
        Material("Pb", 82, 207.2, 11.35, 6.37, 7.43, 1.602, 1.122),
        Material("Fe", 26, 55.845, 7.874, 13.84, 21.68, 1.719, 1.451),
        Material("Cu", 29, 63.546, 8.96, 12.86, 19.42, 1.568, 1.403),
        Material("Si", 14, 28.0855, 2.329, 21.82, 40.19, 4.944, 1.664),
        Material("LAr", 18, 39.948, 1.396, 19.55, 32.84, 9.043, 1.519),
        # polystyrene (C8H8) plastic scintillator: mass-weighted Z and A
        Material("scintillator", 5.61, 11.16, 1.032, 43.79, 93.11, 9.411, 1.936),
        # lead tungstate PbWO4: mass-weighted Z and A
        Material("PbWO4", 68.4, 170.9, 8.30, 7.39, 9.31, 1.959, 1.229),
    )
}


#: Geant4 NIST database names of the materials above (what `caloforge simulate` builds).
G4_NAMES: dict[str, str] = {
    "W": "G4_W", "Pb": "G4_Pb", "Fe": "G4_Fe", "Cu": "G4_Cu", "Si": "G4_Si", "LAr": "G4_lAr",
    "scintillator": "G4_POLYSTYRENE", "PbWO4": "G4_PbWO4",
}


def material(name: str) -> Material:
    """The named material; unknown names raise a one-line error listing the known ones."""
    try:
        return MATERIALS[name]
    except KeyError:
        raise ConfigError(f"detector: material: expected one of {sorted(MATERIALS)}, got {name!r}") from None


@dataclass(frozen=True)
class EffectiveMedium:
    """GFlash effective quantities of a (possibly one-material) sampling structure; lengths in mm."""

    z: float
    a: float
    density: float
    x0_mm: float
    rm_mm: float
    ec_mev: float
    fs: float | None  # X0_eff / sampling period; None for a homogeneous medium
    ehat: float  # e/mip ratio; 1 for a homogeneous medium
    mip_fraction: float  # share of a minimum-ionising particle's energy loss that lands in the active layer


def homogeneous(medium: Material) -> EffectiveMedium:
    return EffectiveMedium(
        z=medium.z,
        a=medium.a,
        density=medium.density,
        x0_mm=medium.x0_mm,
        rm_mm=medium.rm_mm,
        ec_mev=medium.ec_mev,
        fs=None,
        ehat=1.0,
        mip_fraction=1.0,
    )


def sampling(absorber: Material, active: Material, d_absorber_mm: float, d_active_mm: float,
             d_gap_mm: float = 0.0) -> EffectiveMedium:
    """Effective medium of a repeated absorber + active layer pair (GFlash sampling formulae).

    An optional gap (air, PCB, cooling) is treated as massless: it only lengthens the period, so lengths grow."""
    if not (d_absorber_mm > 0 and d_active_mm > 0):
        raise ConfigError(
            f"detector: layer thicknesses: expected > 0 mm, got absorber {d_absorber_mm!r}, active {d_active_mm!r}"
        )
    mass_abs = d_absorber_mm * absorber.density
    mass_act = d_active_mm * active.density
    w_abs, w_act = mass_abs / (mass_abs + mass_act), mass_act / (mass_abs + mass_act)
    if not d_gap_mm >= 0:
        raise ConfigError(f"detector: d_gap_mm: expected >= 0 mm, got {d_gap_mm!r}")
    period_mm = d_absorber_mm + d_active_mm + d_gap_mm
    density = (mass_abs + mass_act) / period_mm
    inv_x0 = w_abs / absorber.x0_gcm2 + w_act / active.x0_gcm2  # 1 / (g/cm^2)
    ec_over_x0 = w_abs * absorber.ec_mev / absorber.x0_gcm2 + w_act * active.ec_mev / active.x0_gcm2
    x0_mm = 10.0 / inv_x0 / density
    loss_abs = mass_abs * absorber.dedx_mip
    loss_act = mass_act * active.dedx_mip
    return EffectiveMedium(
        z=w_abs * absorber.z + w_act * active.z,
        a=w_abs * absorber.a + w_act * active.a,
        density=density,
        x0_mm=x0_mm,
        rm_mm=10.0 * E_S_MEV / ec_over_x0 / density,
        ec_mev=ec_over_x0 / inv_x0,
        fs=x0_mm / period_mm,
        ehat=1.0 / (1.0 + 0.007 * (absorber.z - active.z)),
        mip_fraction=loss_act / (loss_abs + loss_act),
    )


def default_stochastic_term(d_active_mm: float, mip_fraction: float) -> float:
    """Sampling resolution a in sigma/E = a/sqrt(E/GeV): the textbook 2.7% sqrt(d_active[mm] / f_mip)."""
    return 0.027 * math.sqrt(d_active_mm / mip_fraction)
