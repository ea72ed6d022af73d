"""Inputs of the agreement benchmark (``official_agreement.py``): the official evaluation code and jetnet loaded as
modules, and the pairs of files both sides evaluate (Geant4 halves, parametrised vs Geant4, a trained model vs
Geant4, dataset-1 and dataset-3 layouts)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import h5py
import numpy as np

from caloforge.data.geometry import Geometry

REPO = Path(__file__).resolve().parents[1]


# ---- loading the official code ------------------------------------------------------------------------------------
def load_official(code_dir: Path):
    """evaluate.py imported as a module (its CLI runs only under __main__); LaTeX text and the float64 default
    dtype it sets at import are undone (we have no LaTeX; the default dtype is set around its classifier only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    sys.path.insert(0, str(code_dir))
    os.chdir(code_dir)  # evaluate.py opens binning_dataset_*.xml relative to the working directory
    import evaluate as official

    plt.rc("text", usetex=False)
    torch.set_default_dtype(torch.float32)
    return official


def load_jetnet(path: Path):
    """jetnet/evaluation/gen_metrics.py with stubs for the modules fpd/kpd do not use."""
    ef, ef_emd = types.ModuleType("energyflow"), types.ModuleType("energyflow.emd")
    ef_emd.emds, ef.emd = None, ef_emd
    jn, ju, jd = (types.ModuleType(n) for n in ("jetnet", "jetnet.utils", "jetnet.datasets"))
    jn.__path__, jn.utils, jd.JetNet = [], ju, object
    sys.modules.update({"energyflow": ef, "energyflow.emd": ef_emd, "jetnet": jn, "jetnet.utils": ju,
                        "jetnet.datasets": jd})
    spec = importlib.util.spec_from_file_location("jetnet_gen_metrics", path / "jetnet" / "evaluation" / "gen_metrics.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["jetnet_gen_metrics"] = module
    spec.loader.exec_module(module)
    return module


# ---- input pairs --------------------------------------------------------------------------------------------------
def write_h5(path: Path, energies, showers) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset("incident_energies", data=np.asarray(energies, np.float32).reshape(-1, 1))
        f.create_dataset("showers", data=np.asarray(showers, np.float32))
    return path


def make_cli(detector: str, n: int, seed: int, out: Path) -> Path:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    subprocess.run([sys.executable, "-m", "caloforge.cli.main", "data", "make", "--detector", detector, "--n", str(n),
                    "--seed", str(seed), "--out", str(out)], check=True, env=env, capture_output=True)
    return out


def toy_ds1(path: Path, n: int, seed: int, key: str) -> Path:
    """DS1-layout showers with parametrised random content: the 15 discrete energies 2^8..2^22 MeV, E_tot/E_inc
    ~ N(0.9, 0.04), layer fractions from a Dirichlet, exponential voxel energies (many below the 1 MeV threshold)."""
    geo = Geometry.official(key)
    rng = np.random.default_rng(seed)
    e = 2.0 ** rng.integers(8, 23, n)
    rel = list(geo.relevant_layers)
    frac = rng.dirichlet(np.linspace(1, 6, len(rel))[::-1] + 1, n)  # (n, L)
    x = np.zeros((n, geo.n_voxels), np.float32)
    for j, layer in enumerate(rel):
        sl = geo.layer_slice(layer)
        w = rng.exponential(1.0, (n, sl.stop - sl.start)) ** 3 * (rng.random((n, sl.stop - sl.start)) < 0.6)
        w /= w.sum(axis=1, keepdims=True) + 1e-12
        x[:, sl] = w * (frac[:, j] * e * rng.normal(0.9, 0.04, n))[:, None]
    return write_h5(path, e, x)


def build_pairs(names: list[str], work: Path, args) -> list[tuple[str, str, Path, Path]]:
    pairs = []
    with h5py.File(args.data, "r") as f:
        showers, energies = f["showers"][:], f["incident_energies"][:]
    order = np.random.default_rng(0).permutation(len(showers))
    half = len(order) // 2
    ref2 = write_h5(work / "g4_A.h5", energies[order[:half]], showers[order[:half]])
    if "ds2-halves" in names:
        gen = write_h5(work / "g4_B.h5", energies[order[half:]], showers[order[half:]])
        pairs.append((f"ds2-halves: Geant4 half B vs Geant4 half A ({half} each)", "2", ref2, gen))
    if "ds2-param" in names:
        gen = make_cli("par04-siw", half, 7, work / "par04.h5")
        pairs.append((f"ds2-param: par04-siw parametrised vs Geant4 half A ({half} each)", "2", ref2, gen))
    if "ds2-model" in names:
        if not (args.model_gen and args.model_ref):
            raise SystemExit("--pairs ds2-model: needs --model-gen FILE (a trained model's showers) and --model-ref "
                             "FILE (the Geant4 showers it is compared with, e.g. its held-out test split)")
        n = min(_rows(args.model_gen), _rows(args.model_ref))
        gen, ref = (write_h5(work / name, *_head(path, n)) for name, path in
                    (("model_gen.h5", args.model_gen), ("model_ref.h5", args.model_ref)))
        pairs.append((f"ds2-model: {args.model_label} vs Geant4 ({n} each)", "2", ref, gen))
    if "ds1" in names:
        ref1, gen1 = toy_ds1(work / "ds1_a.h5", args.ds1_n, 1, "1-photons"), toy_ds1(work / "ds1_b.h5", args.ds1_n, 2, "1-photons")
        pairs.append((f"ds1: DS1-photons layout, toy seed 2 vs seed 1 ({args.ds1_n} each)", "1-photons", ref1, gen1))
    if "ds3" in names:
        ref3 = make_cli("par04-siw-ds3", args.ds3_n, 1, work / "ds3_a.h5")
        gen3 = make_cli("par04-siw-ds3", args.ds3_n, 2, work / "ds3_b.h5")
        pairs.append((f"ds3: DS3 mesh, par04-siw-ds3 seed 2 vs seed 1 ({args.ds3_n} each)", "3", ref3, gen3))
    return pairs




def _rows(path) -> int:
    with h5py.File(path, "r") as f:
        return len(f["incident_energies"])


def _head(path, n: int):
    """(energies, showers) of the first n rows: the official loader wants only the two CaloChallenge datasets."""
    with h5py.File(path, "r") as f:
        return f["incident_energies"][:n], f["showers"][:n]
