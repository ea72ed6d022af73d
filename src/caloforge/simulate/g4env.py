"""Geant4 data sets for `caloforge simulate`: use installed ones, else an explicit offline stand-in set.

`import geant4_pybind` asks on stdin to download the data sets when they are not configured; a batch job must never
do that, so ``prepare()`` sets GEANT4_DATA_DIR and every per-data-set variable before the import happens (in the
worker processes, which inherit the environment). Resolution order:

1. the per-data-set variables the user set (G4LEDATA, G4ENSDFSTATEDATA, G4LEVELGAMMADATA, ...);
2. data sets found under $GEANT4_DATA_DIR (folders G4EMLOW*, G4ENSDFSTATE*, PhotonEvaporation*, ...);
3. offline stand-ins in the cache folder ($CALOFORGE_G4DATA, default ~/.cache/caloforge/g4data): computed
   bremsstrahlung and photoelectric tables (``g4tables``), an empty ENSDFSTATE.dat and an empty level-gamma folder.
   Only an EM physics list that reads nothing else (option 1) runs on them; the output's provenance says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from caloforge.errors import CaloforgeError
from caloforge.outputs import replaced_dir

#: Data-set variable -> folder-name prefix of the Geant4 11.4 data set it points at.
DATASETS: dict[str, str] = {
    "G4LEDATA": "G4EMLOW",
    "G4ENSDFSTATEDATA": "G4ENSDFSTATE",
    "G4LEVELGAMMADATA": "PhotonEvaporation",
    "G4NEUTRONHPDATA": "G4NDL",
    "G4RADIOACTIVEDATA": "RadioactiveDecay",
    "G4PARTICLEXSDATA": "G4PARTICLEXS",
    "G4PIIDATA": "G4PII",
    "G4REALSURFACEDATA": "RealSurface",
    "G4SAIDXSDATA": "G4SAIDDATA",
    "G4ABLADATA": "G4ABLA",
    "G4INCLDATA": "G4INCL",
    "G4CHANNELINGDATA": "G4CHANNELING",
    "G4NUDEXLIBDATA": "G4NUDEXLIB",
    "G4URRPTDATA": "G4URRPT",
}
#: What an EM-only option-1 run reads (the rest only has to be set so that the import does not prompt).
EM_DATASETS = ("G4LEDATA", "G4ENSDFSTATEDATA", "G4LEVELGAMMADATA")
STANDIN_NOTE = (
    "offline stand-ins, not G4EMLOW: Seltzer-Berger bremsstrahlung tables replaced by the screened Bethe-Heitler "
    "(Tsai) cross section (exact above 1 GeV, low by ~8% at 100 MeV and ~30% at 10 MeV in W); photoelectric "
    "cross section = Geant4's Sandia parametrisation as one pseudo-shell (no fluorescence); empty ENSDFSTATE and "
    "level-gamma data (not read by EM physics)"
)
_STAMP = "caloforge-standin.json"


@dataclass
class DataSetup:
    """Where each data set comes from; ``offline`` is True when any EM data set is a stand-in."""

    env: dict[str, str]
    sources: dict[str, str] = field(default_factory=dict)  # variable -> "user" | "GEANT4_DATA_DIR" | "stand-in"
    offline: bool = False

    def provenance(self) -> dict:
        d = asdict(self)
        d["note"] = STANDIN_NOTE if self.offline else "Geant4 data sets as installed by the user"
        return d


def cache_dir() -> Path:
    return Path(os.environ.get("CALOFORGE_G4DATA") or Path.home() / ".cache" / "caloforge" / "g4data")


def _find_in(root: Path, prefix: str) -> Path | None:
    hits = sorted(p for p in root.glob(f"{prefix}*") if p.is_dir()) if root.is_dir() else []
    return hits[-1] if hits else None


def _standin_ok(folder: Path) -> bool:
    try:
        return json.loads((folder / _STAMP).read_text()).get("tables_version") == _tables_version()
    except (OSError, ValueError):
        return False


def _tables_version() -> int:
    from caloforge.simulate.g4tables import TABLES_VERSION

    return TABLES_VERSION


def _build_standins(folder: Path, env: dict[str, str]) -> None:
    """Compute the stand-in set into folder (swapped in whole; a killed build leaves nothing half made)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with replaced_dir(folder) as tmp:
        (tmp / "G4ENSDFSTATE").mkdir()
        (tmp / "G4ENSDFSTATE" / "ENSDFSTATE.dat").write_text("")
        (tmp / "PhotonEvaporation").mkdir()
        (tmp / "empty").mkdir()
        build_env = {**os.environ, **{v: str(tmp / "empty") for v in DATASETS}, **env,
                     "GEANT4_DATA_DIR": str(tmp), "G4LEDATA": str(tmp / "G4EMLOW"),
                     "G4ENSDFSTATEDATA": str(tmp / "G4ENSDFSTATE"), "G4LEVELGAMMADATA": str(tmp / "PhotonEvaporation")}
        proc = subprocess.run([sys.executable, "-m", "caloforge.simulate.g4tables", str(tmp / "G4EMLOW")],
                              env=build_env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise CaloforgeError(f"{folder}: building the offline Geant4 tables failed: {tail[0]}")
        (tmp / _STAMP).write_text(json.dumps({"tables_version": _tables_version(), "note": STANDIN_NOTE}))


def prepare(allow_offline: bool = True) -> DataSetup:
    """Resolve every data-set variable, building the stand-ins if needed; sets os.environ and returns the setup."""
    env: dict[str, str] = {}
    sources: dict[str, str] = {}
    root = Path(os.environ["GEANT4_DATA_DIR"]) if os.environ.get("GEANT4_DATA_DIR") else None
    for var, prefix in DATASETS.items():
        if os.environ.get(var) and Path(os.environ[var]).is_dir():
            env[var], sources[var] = os.environ[var], "user"
        elif root is not None and (hit := _find_in(root, prefix)) is not None:
            env[var], sources[var] = str(hit), "GEANT4_DATA_DIR"
    missing_em = [v for v in EM_DATASETS if v not in env]
    standin = cache_dir() / f"standin-v{_tables_version()}"
    if missing_em:
        if not allow_offline:
            raise CaloforgeError(f"Geant4 data sets {', '.join(missing_em)} not found (set GEANT4_DATA_DIR or the "
                                 "variables; see docs/simulate.md) and this physics list has no offline mode")
        if not _standin_ok(standin):
            _build_standins(standin, env)
        folders = {"G4LEDATA": standin / "G4EMLOW", "G4ENSDFSTATEDATA": standin / "G4ENSDFSTATE",
                   "G4LEVELGAMMADATA": standin / "PhotonEvaporation"}
        for var in missing_em:
            env[var], sources[var] = str(folders[var]), "stand-in"
    empty = (standin if missing_em else cache_dir()) / "empty"
    empty.mkdir(parents=True, exist_ok=True)
    for var in DATASETS:  # never read by EM physics; set so that the import cannot prompt
        env.setdefault(var, str(empty))
    env.setdefault("GEANT4_DATA_DIR", str(root) if root is not None else str(cache_dir()))
    os.environ.update(env)
    return DataSetup(env=env, sources=sources, offline=bool(missing_em))
