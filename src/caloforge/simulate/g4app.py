"""The Geant4 application behind `caloforge simulate`, run inside a worker process (geant4_pybind).

Par04-style: a world of vacuum holding a concentric cylinder (axis = global z) of absorber / active (/ gap) shells
from the NIST material database, starting at the inner radius. The particle starts at the origin with direction
(theta, phi) and enters the inner face; its deposits (at the post-step point, as Par04 does) are scored on a
cylindrical mesh whose axis is the particle direction and whose origin is the entry point (z along the particle,
r from the axis, alpha around it, measured from the projection of the cylinder axis; alpha bins start at -pi as in
Par04). Deposits outside the mesh are dropped.

Each shower seeds the Geant4 engine with its own seeds before its primary is made, so a shower is a function of
(detector, particle, energy, angles, seeds) only: any chunking, worker count or resume gives the same showers.
Import this module only after ``g4env.prepare()`` has set the data-set variables.
"""

from __future__ import annotations

import math

import geant4_pybind as g4
import numpy as np

from caloforge.simulate.detectors import DetectorSpec
from caloforge.simulate.g4mesh import bin_deposits, shower_frame
from caloforge.simulate.g4physics import make_physics
from caloforge.simulate.materials import G4_NAMES

_GAP_MATERIAL = "G4_AIR"


class _Calorimeter(g4.G4VUserDetectorConstruction):
    def __init__(self, spec: DetectorSpec):
        super().__init__()
        self.spec = spec
        self._keep: list = []  # Python owns these Geant4 objects: keep them alive
        self.scored: list = []

    def _shell(self, name, material, r_in, thickness, world_lv, scored):
        half_z = self.spec.length_mm / 2
        solid = g4.G4Tubs(name, r_in, r_in + thickness, half_z, 0.0, 2 * math.pi)
        lv = g4.G4LogicalVolume(solid, material, name)
        pv = g4.G4PVPlacement(None, g4.G4ThreeVector(), lv, name, world_lv, False, 0, False)
        self._keep += [solid, lv, pv]
        if scored:
            self.scored.append(lv)

    def Construct(self):
        spec, nist = self.spec, g4.G4NistManager.Instance()
        depth = spec.layer_count * spec.period_mm
        half = spec.inner_radius_mm + depth + 100.0
        world_s = g4.G4Box("world", half, half, spec.length_mm / 2 + 100.0)
        world_lv = g4.G4LogicalVolume(world_s, nist.FindOrBuildMaterial("G4_Galactic"), "world")
        world_pv = g4.G4PVPlacement(None, g4.G4ThreeVector(), world_lv, "world", None, False, 0, False)
        self._keep += [world_s, world_lv, world_pv]
        active = nist.FindOrBuildMaterial(G4_NAMES[spec.active])
        every = spec.readout == "all"
        if not spec.is_sampling:
            self._shell("active", active, spec.inner_radius_mm, depth, world_lv, True)
            return world_pv
        absorber = nist.FindOrBuildMaterial(G4_NAMES[spec.absorber])
        gap = nist.FindOrBuildMaterial(_GAP_MATERIAL)
        r = spec.inner_radius_mm
        for i in range(spec.layer_count):
            self._shell(f"abs{i}", absorber, r, spec.d_absorber_mm, world_lv, every)
            self._shell(f"act{i}", active, r + spec.d_absorber_mm, spec.d_active_mm, world_lv, True)
            if spec.d_gap_mm > 0:
                self._shell(f"gap{i}", gap, r + spec.d_absorber_mm + spec.d_active_mm, spec.d_gap_mm, world_lv, every)
            r += spec.period_mm
        return world_pv

    def ConstructSDandField(self):
        sd = _Scorer("caloforge_scorer")
        g4.G4SDManager.GetSDMpointer().AddNewDetector(sd)
        for lv in self.scored:
            lv.SetSensitiveDetector(sd)
        self._keep.append(sd)
        self.sd = sd


class _Scorer(g4.G4VSensitiveDetector):
    """Collects (post-step point, deposit) of every step with a deposit, as Par04 scores; binned once per event."""

    def __init__(self, name):
        super().__init__(name)
        self.buf: list[tuple[float, float, float, float]] = []

    def ProcessHits(self, step, history):
        edep = step.GetTotalEnergyDeposit()
        if edep <= 0:
            return False
        p = step.GetPostStepPoint().GetPosition()
        self.buf.append((p.x, p.y, p.z, edep))
        return True


class _Gun(g4.G4VUserPrimaryGeneratorAction):
    def __init__(self, app: Simulator):
        super().__init__()
        self.app = app
        self.gun = g4.G4ParticleGun(1)
        self.gun.SetParticleDefinition(g4.G4ParticleTable.GetParticleTable().FindParticle(app.particle))
        self.gun.SetParticlePosition(g4.G4ThreeVector(0, 0, 0))

    def GeneratePrimaries(self, event):
        i = event.GetEventID()
        app = self.app
        g4.G4Random.setTheSeeds([int(s) for s in app.seeds[i]] + [0])  # zero-terminated, as CLHEP reads it
        w = app.frames[i][3]
        self.gun.SetParticleEnergy(float(app.energies[i]))
        self.gun.SetParticleMomentumDirection(g4.G4ThreeVector(*(float(x) for x in w)))
        app.sd().buf.clear()
        self.gun.GeneratePrimaryVertex(event)


class _EventEnd(g4.G4UserEventAction):
    def __init__(self, app: Simulator):
        super().__init__()
        self.app = app

    def EndOfEventAction(self, event):
        app = self.app
        i = event.GetEventID()
        buf = np.asarray(app.sd().buf, dtype=np.float64).reshape(-1, 4)
        app.out[i] = bin_deposits(buf[:, :3], buf[:, 3], app.frames[i], app.spec.mesh)


class _Actions(g4.G4VUserActionInitialization):
    def __init__(self, app: Simulator):
        super().__init__()
        self.app = app
        self._keep: list = []

    def Build(self):
        gun, end = _Gun(self.app), _EventEnd(self.app)
        self._keep += [gun, end]
        self.SetUserAction(gun)
        self.SetUserAction(end)


class Simulator:
    """One Geant4 run manager for one detector and particle; ``run`` simulates a chunk of showers."""

    def __init__(self, spec: DetectorSpec, particle: str):
        self.spec, self.particle = spec, particle
        g4.G4Random.setTheEngine(g4.MixMaxRng())
        self.rm = g4.G4RunManager()
        self.detector = _Calorimeter(spec)
        self.physics = make_physics(spec.physics)
        self.actions = _Actions(self)
        self.rm.SetUserInitialization(self.detector)
        self.rm.SetUserInitialization(self.physics)
        self.rm.SetUserInitialization(self.actions)
        ui = g4.G4UImanager.GetUIpointer()
        for cmd in ("/control/verbose 0", "/run/verbose 0", "/event/verbose 0", "/tracking/verbose 0",
                    "/process/verbose 0", "/process/em/verbose 0"):
            ui.ApplyCommand(cmd)
        self.rm.Initialize()
        # SetDefaultCutValue is ignored from Python (docs/simulate.md); the UI command after Initialize() works.
        ui.ApplyCommand(f"/run/setCut {spec.production_cut_mm} mm")
        self.version = str(g4.G4Version).strip("$ ").replace("Name: ", "")

    def sd(self) -> _Scorer:
        return self.detector.sd

    def run(self, energies_mev, thetas, phis, seeds) -> np.ndarray:
        """Showers (n, V) float64 in MeV deposited (before any readout scale)."""
        n = len(energies_mev)
        self.energies, self.seeds = np.asarray(energies_mev, float), np.asarray(seeds)
        self.frames = [shower_frame(float(t), float(p), self.spec.inner_radius_mm) for t, p in zip(thetas, phis)]
        self.out = np.zeros((n, self.spec.geometry.n_voxels))
        if n:
            self.rm.BeamOn(n)
        return self.out
