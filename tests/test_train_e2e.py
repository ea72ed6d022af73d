"""End to end on CPU with real Geant4 showers: `caloforge train` the tiny two-stage recipe (600 steps), then
`caloforge sample` (Heun 8 for both stages); the samples' mean E_dep/E_inc and mean longitudinal profile are within
5 % of the data, and clearly better than with the untrained weights.

Measured (6000 training showers, 1000 reference showers, 600 steps, Heun 8), tiny-fm-2s (E^0.25 voxels standardised
globally, batch 32, lr 4e-3, layer model 128 x 3 on its own batch of 1024; 2026-12-01): mean E_dep/E_inc +0.7 %,
relative L1 distance of the mean longitudinal profile 0.021; per incident-energy bin (1-5, 5-25, 25-100 GeV) the
response W1 distance is 0.010 (untrained 0.030) and the profile distance 0.028 (untrained 0.28) - the same as with
per-voxel standardisation at batch 64 (2026-11-30): the layer model sets both. (With the 256 x 4 layer model on the
voxel batch of 64: +0.7 %, 0.036, 0.0085 and 0.044; the earlier log(E/E_inc) chain at lr 2e-3: +0.6 %, 0.039, 0.009
and 0.048.)

The one-stage tiny-fm is not tested here because it does not meet the target: after 1200 steps its mean response is
right only on average over energies (0.24 / 0.69 / 1.26 in the three bins vs 0.72 in Geant4) and its profile is off
by 0.225; the two-stage layer model is what fixes both.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
import torch

from caloforge.cli.main import main
from caloforge.data.reader import ShowerFile
from caloforge.data.writer import write_showers
from caloforge.sampling.generator import Generator
from caloforge.training.build import build_network

N_TRAIN, N_REF = 6000, 1000
STEPS = int(os.environ.get("CALOFORGE_E2E_STEPS", "600"))
OVERRIDES = ["train.ckpt_every=600", "train.log_every=100", "sampler.steps=8", "layer_model.steps=8"]


MAX_RATIO_ERR = 0.05  # the project's target
#: recipe -> bound on the profile's relative L1 distance (measured values in the module docstring)
MAX_PROFILE_L1 = {"tiny-fm-2s": 0.05}


def ratio_and_profile(showers: np.ndarray, energies: np.ndarray, thr: float):
    """Mean E_dep/E_inc and the mean energy per layer divided by E_inc (45 layers of the DS2 mesh)."""
    s = np.where(showers < thr, 0.0, showers).astype(np.float64)
    per_layer = s.reshape(len(s), 45, -1).sum(-1) / energies[:, None]  # (n, 45)
    return float((s.sum(1) / energies).mean()), per_layer.mean(0)


def profile_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Relative L1 distance of two mean longitudinal profiles."""
    return float(np.abs(p - q).sum() / q.sum())


ENERGY_BINS_MEV = (1e3, 5e3, 25e3, 1.0001e5)


def per_energy_distances(showers, energies, ref_showers, ref_energies, thr) -> tuple[float, float]:
    """Mean over incident-energy bins of (W1 distance of E_dep/E_inc / data mean, relative L1 profile distance).

    Binned in energy because a two-stage model with untrained weights already has the right *marginal* mean
    response: its layer codes are standardised per layer, so noise codes reproduce their overall mean. What it
    lacks is the energy dependence (resolution, shower depth), which these distances see.
    """
    from scipy.stats import wasserstein_distance

    w, prof = [], []
    for lo, hi in itertools.pairwise(ENERGY_BINS_MEV):
        g, r = (energies >= lo) & (energies < hi), (ref_energies >= lo) & (ref_energies < hi)
        resp_g = np.where(showers[g] < thr, 0.0, showers[g]).sum(1) / energies[g]
        resp_r = np.where(ref_showers[r] < thr, 0.0, ref_showers[r]).sum(1) / ref_energies[r]
        w.append(wasserstein_distance(resp_g, resp_r) / resp_r.mean())
        prof.append(profile_distance(ratio_and_profile(showers[g], energies[g], thr)[1],
                                     ratio_and_profile(ref_showers[r], ref_energies[r], thr)[1]))
    return float(np.mean(w)), float(np.mean(prof))


@pytest.mark.slow
@pytest.mark.parametrize("recipe", sorted(MAX_PROFILE_L1))
def test_training_on_geant4_showers_moves_response_and_profile_close_to_the_data(recipe, g4_file, tmp_path,
                                                                                 monkeypatch):
    monkeypatch.setenv("CALOFORGE_PROGRESS", "0")
    old_threads = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    try:
        with ShowerFile(g4_file) as f:
            tr = f.read(np.arange(N_TRAIN))
            ref = f.read(np.arange(N_TRAIN, N_TRAIN + N_REF))
            thr = f.geometry.threshold_mev
        write_showers(tmp_path / "train.h5", tr.energies, tr.showers, geometry=None, compression=None)
        write_showers(tmp_path / "ref.h5", ref.energies, ref.showers, compression=None)
        run = tmp_path / "run"
        assert main(["train", "--recipe", recipe, "--data", str(tmp_path / "train.h5"), "--out", str(run),
                     "--steps", str(STEPS), "--device", "cpu", *OVERRIDES]) == 0
        assert main(["sample", "--checkpoint", str(run), "--energies-from", str(tmp_path / "ref.h5"),
                     "--seed", "1", "--batch-size", "500", "--device", "cpu", "--out", str(tmp_path / "gen.h5")]) == 0
        with ShowerFile(tmp_path / "gen.h5") as f:
            gen = f.read(np.arange(f.n))
        gen_u = Generator.load(run, device="cpu")  # the same pipeline with the initial (untrained) weights
        torch.manual_seed(0)
        gen_u.net.load_state_dict(build_network(gen_u.net.cfg).state_dict())
        untrained, _ = gen_u.generate(ref.energies, seed=1, batch_size=500)
    finally:
        torch.set_num_threads(old_threads)

    r_data, p_data = ratio_and_profile(ref.showers, ref.energies, thr)
    r_gen, p_gen = ratio_and_profile(gen.showers, gen.energies, thr)
    r_u, p_u = ratio_and_profile(untrained, ref.energies, thr)
    err_ratio, err_profile = abs(r_gen / r_data - 1), profile_distance(p_gen, p_data)
    w_gen, pe_gen = per_energy_distances(gen.showers, gen.energies, ref.showers, ref.energies, thr)
    w_u, pe_u = per_energy_distances(untrained, ref.energies, ref.showers, ref.energies, thr)
    print(f"{recipe}: E_dep/E_inc data {r_data:.4f} gen {r_gen:.4f} untrained {r_u:.4f}; profile L1 gen "
          f"{err_profile:.4f} untrained {profile_distance(p_u, p_data):.4f}; per energy bin: response W1 gen "
          f"{w_gen:.4f} untrained {w_u:.4f}, profile L1 gen {pe_gen:.4f} untrained {pe_u:.4f}")
    assert err_ratio < MAX_RATIO_ERR and err_profile < MAX_PROFILE_L1[recipe]
    assert w_u > 2 * w_gen and pe_u > 2 * pe_gen  # clearly better than the untrained weights
