"""Detector descriptions and the named presets that `caloforge data make --detector` accepts.

A detector is a homogeneous medium or a repeated absorber + active layer pair, read out on a regular cylindrical
mesh aligned with the particle (as Par04 does). Each preset has a stable integer id (the ``detector_id`` condition
and the index into a file's ``detector_names``); never renumber a preset, only append new ones.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cached_property

from caloforge.data.geometry import Geometry
from caloforge.errors import ConfigError
from caloforge.simulate.materials import (
    EffectiveMedium,
    default_stochastic_term,
    homogeneous,
    material,
    sampling,
)

#: Visible energy threshold per voxel (MeV in the active medium), the CaloChallenge DS2/DS3 value before scaling.
VISIBLE_THRESHOLD_MEV = 0.5e-3


@dataclass(frozen=True)
class Mesh:
    """Readout mesh: n_z layers of dz_mm, n_alpha angular bins, n_r rings of dr_mm."""

    n_z: int
    n_alpha: int
    n_r: int
    dr_mm: float
    dz_mm: float


@dataclass(frozen=True)
class DetectorSpec:
    """A calorimeter for the GFlash generator; optional overrides replace the values derived from the materials."""

    name: str
    id: int
    description: str
    active: str
    mesh: Mesh
    absorber: str | None = None  # None: homogeneous calorimeter made of `active`
    d_absorber_mm: float = 0.0
    d_active_mm: float = 0.0
    sampling_fraction_override: float | None = None  # visible / incident energy of a fully contained shower
    stochastic_term_override: float | None = None  # a in sigma/E = a / sqrt(E/GeV)
    readout_scale_override: float | None = None  # file energy = visible energy x readout scale
    x0_front: float = 0.0  # GFlash: dead material in front, X0 at normal incidence (crossed / sin(theta))
    # Geant4 geometry and physics (`caloforge simulate`); GFlash reads only d_gap_mm (it lengthens the period).
    inner_radius_mm: float = 800.0  # the particle starts on the axis and enters the inner face
    length_mm: float = 2000.0  # cylinder length along its axis
    n_layers: int | None = None  # absorber/active periods; None: enough to cover the mesh depth
    d_gap_mm: float = 0.0  # passive air/PCB stand-in after the active layer (G4_AIR in Geant4)
    readout: str = "active"  # "active": only the active layers are scored; "all": every layer
    production_cut_mm: float = 0.7
    physics: str = "em_opt1"  # see caloforge.simulate.g4physics.PHYSICS

    @cached_property
    def medium(self) -> EffectiveMedium:
        if self.absorber is None:
            return homogeneous(material(self.active))
        return sampling(material(self.absorber), material(self.active), self.d_absorber_mm, self.d_active_mm,
                        self.d_gap_mm)

    @property
    def is_sampling(self) -> bool:
        return self.absorber is not None

    @property
    def sampling_fraction(self) -> float:
        """Visible fraction of a contained shower: e/mip x the mip fraction of the active layer unless overridden."""
        if self.sampling_fraction_override is not None:
            return float(self.sampling_fraction_override)
        return self.medium.ehat * self.medium.mip_fraction

    @property
    def stochastic_term(self) -> float:
        if self.stochastic_term_override is not None:
            return float(self.stochastic_term_override)
        if not self.is_sampling:
            return 0.03
        return default_stochastic_term(self.d_active_mm, self.medium.mip_fraction)

    @property
    def readout_scale(self) -> float:
        """Multiplier from visible to file energies (1 / sampling fraction unless overridden, as CaloChallenge)."""
        if self.readout_scale_override is not None:
            return float(self.readout_scale_override)
        return 1.0 / self.sampling_fraction

    @property
    def threshold_mev(self) -> float:
        """Readout threshold in file units (a visible 0.5 keV times the readout scale)."""
        return VISIBLE_THRESHOLD_MEV * self.readout_scale

    @property
    def period_mm(self) -> float:
        """Thickness of one absorber + active (+ gap) period; the whole depth of a homogeneous detector."""
        if not self.is_sampling:
            return self.mesh.n_z * self.mesh.dz_mm
        return self.d_absorber_mm + self.d_active_mm + self.d_gap_mm

    @property
    def layer_count(self) -> int:
        """Number of periods Geant4 builds: n_layers, or just enough to cover the mesh depth."""
        if self.n_layers is not None:
            return int(self.n_layers)
        return max(1, math.ceil(self.mesh.n_z * self.mesh.dz_mm / self.period_mm - 1e-9))

    @cached_property
    def geometry(self) -> Geometry:
        m = self.mesh
        return Geometry.regular(m.n_z, m.n_alpha, m.n_r, m.dr_mm, m.dz_mm, name=self.name, threshold_mev=self.threshold_mev)

    @property
    def layers_text(self) -> str:
        if not self.is_sampling:
            return f"{self.active} (homogeneous)"
        gap = f" / {self.d_gap_mm:g} mm gap" if self.d_gap_mm else ""
        return f"{self.d_absorber_mm:g} mm {self.absorber} / {self.d_active_mm:g} mm {self.active}{gap}"

    def to_dict(self) -> dict:
        """Everything needed to reproduce the detector, plus the derived effective quantities (for file attrs)."""
        d = asdict(self)
        d["derived"] = {
            **asdict(self.medium),
            "sampling_fraction": self.sampling_fraction,
            "stochastic_term": self.stochastic_term,
            "readout_scale": self.readout_scale,
            "threshold_mev": self.threshold_mev,
            "layer_count": self.layer_count,
        }
        return d

    def summary_line(self) -> str:
        m, med = self.mesh, self.medium
        return (
            f"{self.name:<14} id={self.id:<2} mesh {m.n_z}x{m.n_alpha}x{m.n_r} ({m.dz_mm:g} mm x {m.dr_mm:g} mm)  "
            f"{self.layers_text:<28} X0={med.x0_mm:.2f} mm  R_M={med.rm_mm:.2f} mm  f_samp={self.sampling_fraction:.4f}"
            f"  - {self.description}"
        )


_DS2 = Mesh(45, 16, 9, 4.65, 3.4)

PRESETS: dict[str, DetectorSpec] = {
    p.name: p
    for p in (
        DetectorSpec(
            "par04-siw", 0, "Par04-like W/Si on the CaloChallenge DS2 mesh, tuned to the shared Geant4 file",
            "Si", _DS2, "W", 1.4, 0.3,
            # tuned: E_tot/E_inc = 0.72 and sigma/E = 0.16/sqrt(E) as measured on the shared Geant4 DS2 file
            sampling_fraction_override=0.0241, stochastic_term_override=0.16, readout_scale_override=1 / 0.033,
        ),
        DetectorSpec(
            "par04-siw-ds3", 1, "Par04-like W/Si on the CaloChallenge DS3 mesh (45x50x18)",
            "Si", Mesh(45, 50, 18, 2.325, 3.4), "W", 1.4, 0.3,
            sampling_fraction_override=0.0241, stochastic_term_override=0.16, readout_scale_override=1 / 0.033,
        ),
        DetectorSpec("par04-scipb", 2, "Par04-style Pb/plastic-scintillator cylinder (illustrative 2 mm / 4 mm)",
                     "scintillator", Mesh(45, 16, 9, 18.0, 12.0), "Pb", 2.0, 4.0),
        DetectorSpec("lar-pb", 3, "ATLAS-like Pb/LAr sampling calorimeter (1.5 mm Pb, 4.2 mm LAr gap)",
                     "LAr", Mesh(45, 16, 9, 20.0, 17.1), "Pb", 1.5, 4.2),
        DetectorSpec("pbwo4", 4, "CMS-like homogeneous PbWO4 crystal calorimeter (23 cm deep)",
                     "PbWO4", Mesh(45, 16, 9, 9.8, 5.1), stochastic_term_override=0.028),
        DetectorSpec("fe-sci", 5, "CALICE-AHCAL-like steel/scintillator sampling (17.2 mm Fe, 3 mm sci)",
                     "scintillator", Mesh(45, 16, 9, 9.8, 20.2), "Fe", 17.2, 3.0),
        DetectorSpec("w-sci", 6, "tungsten/scintillator sampling calorimeter (3.5 mm W, 2 mm sci)",
                     "scintillator", Mesh(45, 16, 9, 6.95, 5.5), "W", 3.5, 2.0),
        # Layered-cylinder approximations of the other LEMURS calorimeters (docs/simulate.md says what is left out).
        DetectorSpec("odd", 7, "ODD-like ECal as a layered cylinder (assumed 1.4 mm W / 0.5 mm Si / 2.0 mm gap)",
                     "Si", Mesh(45, 16, 9, 4.65, 3.9), "W", 1.4, 0.5, d_gap_mm=2.0, inner_radius_mm=1250.0,
                     length_mm=2 * 3000.0),
        DetectorSpec("cld", 8, "FCC-ee CLD-like Si-W ECal as a layered cylinder (1.9 mm W / 0.5 mm Si / 2.65 mm gap)",
                     "Si", Mesh(45, 16, 9, 4.65, 5.05), "W", 1.9, 0.5, d_gap_mm=2.65, n_layers=40,
                     inner_radius_mm=2150.0,
                     length_mm=2 * 2210.0),
        DetectorSpec("allegro", 9, "FCC-ee ALLEGRO-like Pb/LAr ECal, inclined plates unrolled (2.8 mm Pb / 3.9 mm LAr"
                     " / 1.9 mm gap)", "LAr", Mesh(45, 16, 8, 5.0, 11.0), "Pb", 2.8, 3.9, d_gap_mm=1.9, n_layers=43,
                     inner_radius_mm=2170.0, length_mm=2 * 3100.0),
        # LEMURS-like GFlash set for the angle / adaptation study (docs/adapt.md): all on the 45 x 16 x 9 grid so that
        # one model can learn them all; cell sizes follow the detector (LEMURS / DDML) and the dead material in front
        # (x0_front) gives each its own angle dependence. par04-siw (id 0) is the first of the five. odd/cld/allegro
        # above are the Geant4 back-end's layered cylinders (no front material; allegro has 8 rings).
        DetectorSpec("par04-scipb-ds2", 10, "LEMURS-like Par04 Sci/Pb: Par04 layer pitch with Pb + scintillator "
                     "(approximation)", "scintillator", Mesh(45, 16, 9, 6.0, 3.4), "Pb", 1.4, 0.3,
                     stochastic_term_override=0.18),
        DetectorSpec("odd-like", 11, "ODD-like W/Si barrel ECal behind a tracker (approximation: 2.2 mm W / 0.32 mm "
                     "Si, 0.5 X0 upstream)", "Si", Mesh(45, 16, 9, 4.65, 4.0), "W", 2.2, 0.32, x0_front=0.5),
        DetectorSpec("cld-like", 12, "FCC-ee CLD-like W/Si ECal (approximation: 1.9 mm W / 0.5 mm Si, 0.3 X0 "
                     "upstream; DDML mesh 4.65 mm x 5.05 mm)", "Si", Mesh(45, 16, 9, 4.65, 5.05), "W", 1.9, 0.5,
                     x0_front=0.3),
        DetectorSpec("allegro-like", 13, "FCC-ee ALLEGRO-like Pb/LAr ECal (approximation: 2 mm Pb / 2.4 mm LAr, "
                     "1.2 X0 of cryostat + solenoid upstream; DDML cells 5 mm x 11 mm on 9 rings)", "LAr",
                     Mesh(45, 16, 9, 5.0, 11.0), "Pb", 2.0, 2.4, x0_front=1.2),
    )
}

#: The five LEMURS-like presets (one model, one grid), in CaloDiT-2's one-hot order.
LEMURS_LIKE = ("par04-siw", "par04-scipb-ds2", "odd-like", "cld-like", "allegro-like")

assert len({p.id for p in PRESETS.values()}) == len(PRESETS), "preset ids must be unique"


def preset_names_by_id() -> list[str]:
    """Preset names ordered by id (ids are 0..K-1): the ``detector_names`` attribute of generated files."""
    return [p.name for p in sorted(PRESETS.values(), key=lambda p: p.id)]


def get_detector(detector: str | DetectorSpec) -> DetectorSpec:
    """A preset by name (or a spec passed through); unknown names raise one line listing the valid ones."""
    if isinstance(detector, DetectorSpec):
        return detector
    try:
        return PRESETS[str(detector)]
    except KeyError:
        raise ConfigError(
            f"--detector: expected one of {', '.join(preset_names_by_id())}, got {detector!r}"
        ) from None
