"""Stand-in Geant4 low-energy tables, computed, for machines without the G4EMLOW data set.

`G4EmStandardPhysics_option1` reads two tables from G4EMLOW (see docs/simulate.md, "Offline mode"):

- ``brem_SB/br<Z>``: the Seltzer-Berger scaled bremsstrahlung cross section chi = (beta^2/Z^2) k dsigma/dk in mb
  on a grid of kappa = k/T and ln(T/MeV), used below 1 GeV. We tabulate the screened Bethe-Heitler cross section
  (Tsai, Rev. Mod. Phys. 46 (1974) 815, eq. 3.9, with the Thomas-Fermi screening functions and the Coulomb
  correction of Davies, Bethe and Maximon), which is what Geant4's own relativistic model uses above 1 GeV, so the
  hand-over at 1 GeV is seamless; at 1-100 MeV it underestimates the real tables (no low-energy Coulomb/Elwert
  terms), which shifts a little energy from radiation to ionisation for soft electrons.
- ``epics2017/phot/pe-{cs,high,low}-<Z>.dat``: the photoelectric cross section, as one pseudo-shell whose total is
  Geant4's built-in Sandia parametrisation (sigma = a1/E + a2/E^2 + a3/E^3 + a4/E^4 per energy interval; what the
  data-free `G4PEEffectFluoModel` uses). Below the top interval it is tabulated as sigma E^3 (barn MeV^3), above it
  the fit rows carry the top interval's coefficients. No sub-shells, so no fluorescence (option 1 has it off).

The brem part is pure numpy; the photoelectric part reads the Sandia coefficients through geant4_pybind and so runs
in a process that may import Geant4 (``python -m caloforge.simulate.g4tables DIR``).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

#: Version of the stand-in computation; recorded in output provenance and the cache stamp.
TABLES_VERSION = 1
Z_MAX = 100
_ALPHA = 1.0 / 137.035999
_ELECTRON_MASS_MEV = 0.51099895
_CLASSICAL_RADIUS_MB = 79.4079  # r_e^2 in millibarn (r_e = 2.8179403e-13 cm)
#: 16 alpha r_e^2 / 3 in mb: the prefactor of k dsigma/dk in Tsai's formula, per Z^2.
_BREM_FACTOR_MB = 16.0 * _ALPHA * _CLASSICAL_RADIUS_MB / 3.0
#: Grids of the stand-in table: reduced photon energy kappa = k/T and ln(T/MeV) from 1 keV to 10 GeV.
KAPPA_GRID = np.concatenate([np.linspace(0.0, 0.9, 19), [0.925, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999, 0.9995,
                                                         0.9999, 1.0]])
LOG_T_GRID = np.log(np.logspace(-3, 4, 71))


def coulomb_correction(z: int) -> float:
    """Davies-Bethe-Maximon Coulomb correction f_c(alpha Z)."""
    a2 = (_ALPHA * z) ** 2
    return a2 * (1.0 / (1.0 + a2) + 0.20206 - 0.0369 * a2 + 0.0083 * a2 ** 2 - 0.002 * a2 ** 3)


def _screening(gamma: np.ndarray, eps: np.ndarray):
    """Thomas-Fermi screening functions Phi1, Phi1-Phi2, Psi1, Psi1-Psi2 (Tsai's fits)."""
    phi1 = 20.863 - 2.0 * np.log(1.0 + (0.55846 * gamma) ** 2) - 4.0 * (
        1.0 - 0.6 * np.exp(-0.9 * gamma) - 0.4 * np.exp(-1.5 * gamma))
    phi12 = 2.0 / (3.0 * (1.0 + 6.5 * gamma + 6.0 * gamma ** 2))
    psi1 = 28.340 - 2.0 * np.log(1.0 + (3.621 * eps) ** 2) - 4.0 * (
        1.0 - 0.7 * np.exp(-8.0 * eps) - 0.3 * np.exp(-29.2 * eps))
    psi12 = 2.0 / (3.0 * (1.0 + 40.0 * eps + 400.0 * eps ** 2))
    return phi1, phi12, psi1, psi12


def scaled_brem_dcs(z: int, kinetic_mev: np.ndarray, kappa: np.ndarray) -> np.ndarray:
    """chi = (beta^2 / Z^2) k dsigma/dk in mb (Seltzer-Berger convention) from the screened Bethe-Heitler formula.

    Broadcasts kinetic_mev against kappa; clipped at 0 (the formula turns negative only where k -> T at low T)."""
    t = np.asarray(kinetic_mev, dtype=np.float64)
    total = t + _ELECTRON_MASS_MEV
    k = np.asarray(kappa, dtype=np.float64) * t
    y = k / total  # photon energy over the electron's total energy
    final = np.maximum(total - k, _ELECTRON_MASS_MEV)
    reduced = 100.0 * _ELECTRON_MASS_MEV * k / (total * final)
    gamma, eps = reduced / z ** (1.0 / 3.0), reduced / z ** (2.0 / 3.0)
    phi1, phi12, psi1, psi12 = _screening(gamma, eps)
    log_z = math.log(z)
    f_z = log_z / 3.0 + coulomb_correction(z)
    dxs = (1.0 - y + 0.75 * y * y) * ((0.25 * phi1 - f_z) + (0.25 * psi1 - 2.0 * log_z / 3.0) / z) + 0.125 * (
        1.0 - y) * (phi12 + psi12 / z)
    beta2 = t * (t + 2 * _ELECTRON_MASS_MEV) / total ** 2
    return np.maximum(beta2 * _BREM_FACTOR_MB * dxs, 0.0)


def brem_table_text(z: int) -> str:
    """One ``brem_SB/br<Z>`` file in the G4Physics2DVector text layout: type nx ny, x grid, y grid, ny rows of nx."""
    chi = scaled_brem_dcs(z, np.exp(LOG_T_GRID)[:, None], KAPPA_GRID[None, :])  # (ny, nx)
    lines = [f"2 {KAPPA_GRID.size} {LOG_T_GRID.size}",
             " ".join(f"{x:.6g}" for x in KAPPA_GRID),
             " ".join(f"{y:.8g}" for y in LOG_T_GRID)]
    lines += [" ".join(f"{v:.6g}" for v in row) for row in chi]
    return "\n".join(lines) + "\n"


def sandia_per_atom(g4, z: int) -> np.ndarray:
    """Sandia intervals of element Z per atom: rows (E_low MeV, a1..a4 in barn MeV^k), from Geant4's own table."""
    nist = g4.G4NistManager.Instance()
    mat = nist.FindOrBuildMaterial(f"G4_{nist.FindOrBuildElement(z).GetSymbol()}")
    if mat is None:
        raise LookupError(f"no NIST material for Z={z}")
    table = mat.GetSandiaTable()
    atoms_per_mm3 = mat.GetTotNbOfAtomsPerVolume()
    barn_mm2 = 1e-22
    rows = [[table.GetSandiaCofForMaterial(i, j) for j in range(5)] for i in range(table.GetMatNbOfIntervals())]
    arr = np.array(rows, dtype=np.float64)
    arr[:, 1:] /= atoms_per_mm3 * barn_mm2
    return arr


def sandia_cross_section(intervals: np.ndarray, e_mev: np.ndarray) -> np.ndarray:
    """sigma(E) in barn from per-atom Sandia intervals (0 below the first interval)."""
    e = np.asarray(e_mev, dtype=np.float64)
    idx = np.searchsorted(intervals[:, 0], e, side="right") - 1
    c = intervals[np.clip(idx, 0, None)]
    sigma = c[:, 1] / e + c[:, 2] / e ** 2 + c[:, 3] / e ** 3 + c[:, 4] / e ** 4
    return np.where(idx >= 0, np.maximum(sigma, 0.0), 0.0)


def photoelectric_texts(intervals: np.ndarray) -> dict[str, str]:
    """The three files of one element: pe-cs (sigma E^3 table below the top interval), pe-high and pe-low (fit)."""
    e_low, e_top = intervals[0, 0], intervals[-1, 0]
    grid = np.unique(np.concatenate([np.geomspace(e_low, e_top, 200), intervals[:, 0] * (1 + 1e-6),
                                     np.maximum(intervals[1:, 0] * (1 - 1e-6), e_low), [e_top]]))
    grid = grid[(grid >= e_low) & (grid <= e_top)]
    values = sandia_cross_section(intervals, grid) * grid ** 3
    cs = [f"{grid[0]:.8g} {grid[-1]:.8g} {grid.size}", f"{grid.size}"]
    cs += [f"{e:.10g} {v:.8g}" for e, v in zip(grid, values)]
    top = intervals[-1]
    # one pseudo-shell: edge = lowest tabulated energy, so the model never needs a table below it
    fit = f"1 1 {e_top:.10g}\n{e_low:.10g} {top[1]:.8g} {top[2]:.8g} {top[3]:.8g} {top[4]:.8g} 0 0\n"
    return {"cs": "\n".join(cs) + "\n", "high": fit, "low": fit}


def build(dest: str | Path) -> None:
    """Write the stand-in G4EMLOW subset (brem_SB and epics2017/phot for Z = 1..100) into dest."""
    import os

    dest = Path(dest)
    (dest / "brem_SB").mkdir(parents=True, exist_ok=True)
    phot = dest / "epics2017" / "phot"
    phot.mkdir(parents=True, exist_ok=True)
    for z in range(1, Z_MAX + 1):
        (dest / "brem_SB" / f"br{z}").write_text(brem_table_text(z))
    if "geant4_pybind" not in sys.modules and "G4LEDATA" not in os.environ:
        raise RuntimeError("g4tables.build: the Geant4 data variables must be set before importing geant4_pybind")
    import geant4_pybind as g4

    last = None
    for z in range(1, Z_MAX + 1):
        try:
            last = sandia_per_atom(g4, z)
        except Exception:  # no NIST element material past Z = 98: reuse the last one (never used in practice)
            if last is None:
                raise
        for kind, text in photoelectric_texts(last).items():
            (phot / f"pe-{kind}-{z}.dat").write_text(text)


if __name__ == "__main__":  # python -m caloforge.simulate.g4tables DEST (environment prepared by g4env)
    build(sys.argv[1])
