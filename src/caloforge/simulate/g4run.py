"""Driver of `caloforge simulate`: plan, worker processes, resumable chunks, one atomic output file.

The plan (energies, angles, per-shower Geant4 seeds) is a function of the request alone. Chunks of showers are
simulated by a pool of worker processes (spawned, each with its own Geant4 run manager) and saved as they finish in
``<out>.partial/``, next to a manifest of the request; a killed run started again with the same request skips the
finished chunks. Every shower seeds Geant4 from SeedSequence(seed, spawn_key=(3, i)), so the file is the same for
any number of workers, chunk size or interruptions. At the end the chunks become one file in the CaloChallenge
layout with the multi-detector extras and provenance attributes, written atomically; then the chunks go.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib.util
import json
import math
import multiprocessing
import os
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from caloforge.errors import CaloforgeError, ConfigError
from caloforge.outputs import atomic_write_bytes, atomic_write_text, check_output, clean_stale_temps
from caloforge.simulate import g4env
from caloforge.simulate.detectors import PRESETS, DetectorSpec, preset_names_by_id
from caloforge.simulate.g4physics import PARTICLES, PHYSICS
from caloforge.simulate.generate import sample_angles, sample_energies

GENERATOR_NAME = "caloforge-geant4"
GENERATOR_VERSION = "1.0"
_MANIFEST = "run.json"


@dataclass(frozen=True)
class Request:
    """What to simulate: energies are a log-uniform range (GeV, n showers) or a list (GeV, n showers each)."""

    detector: DetectorSpec
    particle: str
    n: int
    seed: int = 0
    energy_range_gev: tuple[float, float] | None = (1.0, 100.0)
    energy_list_gev: tuple[float, ...] | None = None
    theta_range: tuple[float, float] | None = None
    phi_range: tuple[float, float] | None = None
    chunk: int = 25

    def check(self) -> None:
        """Refuse a wrong setting before any work (one line naming the option)."""
        if self.particle not in PARTICLES:
            raise ConfigError(f"--particle: expected one of {', '.join(PARTICLES)}, got {self.particle!r}")
        phys = PHYSICS[self.detector.physics]
        if self.particle == "pi+" and not phys.hadronic:
            raise ConfigError(f"--particle pi+: detector {self.detector.name} uses EM-only physics "
                              f"'{self.detector.physics}'; use a detector YAML with physics: ftfp_bert (needs the "
                              "Geant4 data sets)")
        if int(self.n) != self.n or self.n < 1:
            raise ConfigError(f"--n: expected a positive number of showers, got {self.n!r}")
        if int(self.chunk) != self.chunk or self.chunk < 1:
            raise ConfigError(f"--chunk: expected a positive number of showers, got {self.chunk!r}")
        energies = self.energy_list_gev or self.energy_range_gev or ()
        if not energies or not all(math.isfinite(e) and e > 0 for e in energies) or (
                self.energy_list_gev is None and energies[0] > energies[1]):
            raise ConfigError(f"--energy: expected LOW:HIGH with 0 < LOW <= HIGH GeV or a list of GeV > 0, got "
                              f"{energies!r}")
        th, ph = self.theta_range, self.phi_range
        if th is not None and not (0 < th[0] <= th[1] < math.pi):
            raise ConfigError(f"--theta: expected A:B rad with 0 < A <= B < pi, got {th[0]:g}:{th[1]:g}")
        if ph is not None and not (-2 * math.pi <= ph[0] <= ph[1] <= 2 * math.pi):
            raise ConfigError(f"--phi: expected A:B rad with -2pi <= A <= B <= 2pi, got {ph[0]:g}:{ph[1]:g}")

    @property
    def n_total(self) -> int:
        return self.n * len(self.energy_list_gev) if self.energy_list_gev else self.n

    def plan(self) -> dict[str, np.ndarray]:
        """Energies (MeV, float32-exact), angles (rad) and two Geant4 seeds per shower."""
        n = self.n_total
        if self.energy_list_gev:
            e = np.repeat(np.asarray(self.energy_list_gev, dtype=np.float64) * 1e3, self.n)
        else:
            lo, hi = self.energy_range_gev
            e = sample_energies(n, (lo * 1e3, hi * 1e3), self.seed)
        theta, phi = sample_angles(n, self.seed, self.theta_range, self.phi_range)
        return {
            "energies": e.astype(np.float32).astype(np.float64),
            "theta": np.full(n, math.pi / 2) if theta is None else theta,
            "phi": np.zeros(n) if phi is None else phi,
            "seeds": np.array([shower_seeds(self.seed, i) for i in range(n)], dtype=np.int64).reshape(n, 2),
        }

    def manifest(self, data: g4env.DataSetup) -> dict:
        return {"generator_version": GENERATOR_VERSION, "detector": self.detector.to_dict(),
                "particle": self.particle, "n_total": self.n_total, "seed": int(self.seed),
                "energy_range_gev": self.energy_range_gev, "energy_list_gev": self.energy_list_gev,
                "theta_range": self.theta_range, "phi_range": self.phi_range, "chunk": int(self.chunk),
                "offline": data.offline}


def shower_seeds(seed: int, index: int) -> tuple[int, int]:
    """Two non-zero 31-bit Geant4 seeds of shower ``index`` (zero would end CLHEP's seed list)."""
    state = np.random.SeedSequence(int(seed), spawn_key=(3, int(index))).generate_state(2, dtype=np.uint32)
    return tuple(int(s) % (2**31 - 2) + 1 for s in state)


# ---- worker side -------------------------------------------------------------------------------------------------
_SIM = None


def _init_worker(spec: DetectorSpec, particle: str, log_dir: str) -> None:
    """Send Geant4's console output to a log file, then build the run manager once per process."""
    global _SIM
    fd = os.open(Path(log_dir) / f"worker-{os.getpid()}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    from caloforge.simulate.g4app import Simulator

    _SIM = Simulator(spec, particle)


def _run_chunk(k: int, energies, theta, phi, seeds):
    return k, _SIM.run(energies, theta, phi, seeds).astype(np.float64), _SIM.version


class _Quiet:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


# ---- parent side -------------------------------------------------------------------------------------------------
def _chunk_path(partial: Path, k: int) -> Path:
    return partial / f"chunk-{k:06d}.npy"


def _open_partial(partial: Path, manifest: dict, force: bool) -> None:
    """Reuse a partial folder of the same request; a different request's folder is refused (or cleared by force)."""
    path = partial / _MANIFEST
    if partial.is_dir():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if old == json.loads(json.dumps(manifest)):
            return
        if not force:
            diff = sorted(k for k in manifest if old is None or old.get(k) != json.loads(json.dumps(manifest))[k])
            raise CaloforgeError(f"{partial}: holds chunks of a different request ({', '.join(diff) or 'manifest'} "
                                 "differ); pass --force to discard them or remove the folder")
        shutil.rmtree(partial)
    partial.mkdir()
    atomic_write_text(path, json.dumps(manifest, indent=1))


def _save_chunk(partial: Path, k: int, showers: np.ndarray) -> None:
    atomic_write_bytes(_chunk_path(partial, k), lambda f: np.save(f, showers.astype(np.float32)))


def simulate_file(req: Request, out: str | Path, workers: int = 1, force: bool = False,
                  show_progress: bool = False) -> Path:
    """Simulate req into out (atomic); resumes from ``<out>.partial/`` when a previous run was stopped."""
    from caloforge.progress import progress

    req.check()
    if importlib.util.find_spec("geant4_pybind") is None:
        raise ConfigError("simulate: geant4-pybind is not installed; pip install 'caloforge[sim]'")
    if int(workers) != workers or workers < 1:
        raise ConfigError(f"--workers: expected a positive integer, got {workers!r}")
    out = check_output(out, force=force)
    data = g4env.prepare(allow_offline=PHYSICS[req.detector.physics].offline)
    plan = req.plan()
    n, chunk = req.n_total, int(req.chunk)
    partial = out.parent / f"{out.name}.partial"
    _open_partial(partial, req.manifest(data), force)
    clean_stale_temps(partial)  # half-written chunks of a killed run
    chunks = [(k, slice(lo, min(n, lo + chunk))) for k, lo in enumerate(range(0, n, chunk))]
    todo = [(k, s) for k, s in chunks if not _chunk_path(partial, k).exists()]
    if len(todo) < len(chunks):
        print(f"resuming: {len(chunks) - len(todo)} of {len(chunks)} chunks already done in {partial}",
              file=sys.stderr)
    scale = req.detector.readout_scale
    bar = progress(total=n, desc=f"geant4 {req.detector.name} {req.particle}", unit="shower") if show_progress \
        else _Quiet()
    bar.update(n - sum(s.stop - s.start for _, s in todo))
    if todo:
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(min(int(workers), len(todo)), mp_context=ctx, initializer=_init_worker,
                                    initargs=(req.detector, req.particle, str(partial))) as pool:
            futures = [pool.submit(_run_chunk, k, plan["energies"][s], plan["theta"][s], plan["phi"][s],
                                   plan["seeds"][s]) for k, s in todo]
            try:
                for fut in cf.as_completed(futures):
                    k, showers, version = fut.result()
                    _save_chunk(partial, k, showers * scale)
                    if not (partial / "geant4_version.txt").exists():
                        atomic_write_text(partial / "geant4_version.txt", version)
                    bar.update(len(showers))
            except cf.process.BrokenProcessPool:
                raise CaloforgeError(f"{partial}: a Geant4 worker died; its log is in {partial}/worker-*.log; "
                                     "finished chunks are kept, run the same command again to resume") from None
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    bar.close()
    _assemble(req, plan, data, partial, chunks, out)
    shutil.rmtree(partial, ignore_errors=True)
    return out


def file_attrs(req: Request, data: g4env.DataSetup, geant4_version: str) -> dict:
    spec = req.detector
    in_presets = PRESETS.get(spec.name) == spec
    return {
        "generator": GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "geant4_version": geant4_version,
        "geant4_pybind_version": metadata.version("geant4-pybind"),
        "physics": f"{spec.physics} ({PHYSICS[spec.physics].constructor})",
        "production_cut_mm": spec.production_cut_mm,
        "detector": spec.name,
        "detector_parameters": json.dumps(spec.to_dict()),
        "detector_names": preset_names_by_id() if in_presets else [spec.name],
        "particle": req.particle,
        "seed": int(req.seed),
        "seeding": "shower i: Geant4 MixMax seeded from numpy SeedSequence(seed, spawn_key=(3, i))",
        "energy_spec_gev": json.dumps({"range": req.energy_range_gev, "list": req.energy_list_gev,
                                       "n": req.n}),
        "angles": "theta = polar angle to the cylinder axis (pi/2 = normal incidence), phi = azimuth; rad",
        "geant4_data": json.dumps(data.provenance()),
        "offline_tables": "stand-in (approximate low-energy tables)" if data.offline else "installed data sets",
        "units": f"MeV; showers = energy deposited in the {spec.readout} layers x readout scale "
                 f"{spec.readout_scale:.6g}; no threshold applied",
    }


def _assemble(req: Request, plan: dict, data: g4env.DataSetup, partial: Path, chunks, out: Path) -> None:
    from caloforge.data.writer import ShowerWriter

    spec = req.detector
    version = (partial / "geant4_version.txt").read_text() if (partial / "geant4_version.txt").exists() else "?"
    det_id = spec.id if PRESETS.get(spec.name) == spec else 0
    extras = ("detector_id", "incident_theta", "incident_phi")
    with ShowerWriter(out, spec.geometry.n_voxels, geometry=spec.geometry, attrs=file_attrs(req, data, version),
                      extras=extras, expected_n=req.n_total) as writer:
        for k, s in chunks:
            showers = np.load(_chunk_path(partial, k))
            writer.append(plan["energies"][s], showers, extras={
                "detector_id": np.full(s.stop - s.start, det_id, dtype=np.int32),
                "incident_theta": plan["theta"][s].astype(np.float32),
                "incident_phi": plan["phi"][s].astype(np.float32)})
