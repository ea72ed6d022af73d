"""Physics lists `caloforge simulate` offers, and which of them run on the offline stand-in tables.

Only ``em_opt1`` (G4EmStandardPhysics_option1) reads nothing beyond what the stand-ins provide; the others need the
real Geant4 data sets (option 0 reads Rayleigh tables, option 4 fluorescence data, FTFP_BERT hadronic cross
sections). Hadrons (pi+) need a hadronic list: an EM-only list would only ionise.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PhysicsChoice:
    constructor: str  # geant4_pybind class name
    offline: bool  # runs on the stand-in tables
    hadronic: bool  # has hadronic interactions
    reference_list: bool = False  # a complete reference list (not one EM constructor)


PHYSICS: dict[str, PhysicsChoice] = {
    "em_opt1": PhysicsChoice("G4EmStandardPhysics_option1", offline=True, hadronic=False),
    "em_opt0": PhysicsChoice("G4EmStandardPhysics", offline=False, hadronic=False),
    "em_opt4": PhysicsChoice("G4EmStandardPhysics_option4", offline=False, hadronic=False),
    "ftfp_bert": PhysicsChoice("FTFP_BERT", offline=False, hadronic=True, reference_list=True),
}
PARTICLES = ("e-", "e+", "gamma", "pi+")


def make_physics(name: str):
    """The Geant4 physics list object (import geant4_pybind only after g4env.prepare())."""
    import geant4_pybind as g4

    choice = PHYSICS[name]
    if choice.reference_list:
        return getattr(g4, choice.constructor)()
    plist = g4.G4VModularPhysicsList()
    plist.RegisterPhysics(getattr(g4, choice.constructor)())
    return plist
