"""Parts of `caloforge simulate` that need no Geant4: detector YAML, one description for both back-ends, the
stand-in bremsstrahlung table, the aligned scoring mesh, seeding and request checks."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from caloforge.cli.main import main
from caloforge.errors import ConfigError
from caloforge.simulate.detector_yaml import load_detector, resolve_detector
from caloforge.simulate.detectors import PRESETS, Mesh
from caloforge.simulate.g4mesh import bin_deposits, shower_frame
from caloforge.simulate.g4run import Request, shower_seeds
from caloforge.simulate.g4tables import KAPPA_GRID, LOG_T_GRID, brem_table_text, scaled_brem_dcs

USER_YAML = """
name: my-wsci
description: test detector
absorber: W
active: scintillator
d_absorber_mm: 3.5
d_active_mm: 2.0
d_gap_mm: 0.5
mesh: {n_z: 20, n_alpha: 8, n_r: 6, dr_mm: 7.0, dz_mm: 6.0}
inner_radius_mm: 1000
production_cut_mm: 0.5
"""


def test_a_user_yaml_detector_loads_and_feeds_both_back_ends(tmp_path):
    path = tmp_path / "det.yaml"
    path.write_text(USER_YAML)
    spec = resolve_detector(str(path))
    assert spec.name == "my-wsci" and spec.period_mm == pytest.approx(6.0) and spec.layer_count == 20
    assert spec.geometry.grid_shape == (20, 8, 6) and spec.production_cut_mm == 0.5
    # the gap lengthens the period: the effective X0 is longer than without it
    no_gap = load_detector(_write(tmp_path, USER_YAML.replace("d_gap_mm: 0.5", "d_gap_mm: 0.0")))
    assert spec.medium.x0_mm > no_gap.medium.x0_mm
    out = tmp_path / "gflash.h5"
    assert main(["data", "make", "--detector", str(path), "--n", "5", "--out", str(out)]) == 0


def _write(tmp_path, text, name="other.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("edit, field", [
    (("d_active_mm: 2.0", "d_active_mm: -1"), "d_active_mm"),
    (("active: scintillator", "active: unobtainium"), "active"),
    (("production_cut_mm: 0.5", "production_cut_mm: 0.5\ncolour: red"), "colour"),
    (("n_r: 6", "n_r: 0"), "mesh.n_r"),
    (("production_cut_mm: 0.5", "physics: qgsp"), "physics"),
])
def test_a_wrong_yaml_field_is_one_line_naming_file_and_field(tmp_path, edit, field):
    path = _write(tmp_path, USER_YAML.replace(*edit))
    with pytest.raises(ConfigError) as err:
        load_detector(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and field in msg


def test_preset_names_mean_one_detector_in_both_back_ends():
    siw = resolve_detector("par04-siw")
    assert siw is PRESETS["par04-siw"]  # the same object serves data make (GFlash) and simulate (Geant4)
    # the shared Geant4 set: inner radius 800 mm, 90 x (1.4 mm W + 0.3 mm Si), DS2 mesh, Si read out, x 1/0.033
    assert (siw.inner_radius_mm, siw.layer_count, siw.d_absorber_mm, siw.d_active_mm) == (800.0, 90, 1.4, 0.3)
    assert (siw.active, siw.readout, siw.geometry.grid_shape) == ("Si", "active", (45, 16, 9))
    assert siw.readout_scale == pytest.approx(1 / 0.033) and siw.physics == "em_opt1"
    ds3 = PRESETS["par04-siw-ds3"]
    assert ds3.geometry.grid_shape == (45, 50, 18) and ds3.layer_count == 90
    for name in ("par04-scipb", "odd", "cld", "allegro"):
        spec = PRESETS[name]
        depth_x0 = spec.layer_count * spec.period_mm / spec.medium.x0_mm
        assert 15 < depth_x0 < 45, f"{name}: {depth_x0:.1f} X0 is not an EM calorimeter depth"
    with pytest.raises(ConfigError, match="par04-siw"):
        resolve_detector("no-such-detector")


def test_standin_brem_table_matches_the_radiation_length_at_high_energy_and_is_lower_below():
    k = np.linspace(0.0, 1.0, 4001)
    z, atoms_per_cm3, x0_cm = 74, 6.3222e22, 0.35  # tungsten, PDG X0 = 6.76 g/cm^2 / 19.3 g/cm^3
    ratios = []
    for t in (10.0, 100.0, 1000.0):
        chi = scaled_brem_dcs(z, t, k)
        beta2 = t * (t + 2 * 0.511) / (t + 0.511) ** 2
        # radiative loss / (E / X0) = n X0 Z^2 integral of k dsigma/dk over k/T
        ratios.append(atoms_per_cm3 * x0_cm * z * z * np.trapezoid(chi / beta2, k) * 1e-27)
    assert ratios[2] == pytest.approx(1.0, abs=0.03)  # Tsai's complete-screening limit defines X0
    assert ratios[0] < ratios[1] < ratios[2]
    lines = brem_table_text(z).splitlines()
    assert lines[0].split()[1:] == [str(KAPPA_GRID.size), str(LOG_T_GRID.size)]
    assert len(lines) == 3 + LOG_T_GRID.size and all(float(v) >= 0 for v in lines[5].split())


def test_the_mesh_follows_the_particle_from_its_entry_point():
    mesh = Mesh(n_z=4, n_alpha=4, n_r=3, dr_mm=1.0, dz_mm=2.0)
    theta, phi = 1.2, 0.7
    frame = shower_frame(theta, phi, 100.0)
    entry, u, v, w = frame
    assert np.hypot(entry[0], entry[1]) == pytest.approx(100.0)
    assert abs(u @ w) < 1e-12 and abs(v @ w) < 1e-12
    points = np.array([entry + 3.0 * w + 0.5 * u,  # layer 1, ring 0, alpha just above 0 -> bin 2
                       entry + 7.9 * w + 2.5 * v,  # layer 3, ring 2, alpha = pi/2 -> bin 3
                       entry - 0.1 * w,  # before the entry point: dropped
                       entry + 1.0 * w + 3.5 * u])  # outside the last ring: dropped
    out = bin_deposits(points, np.array([1.0, 2.0, 4.0, 8.0]), frame, mesh).reshape(4, 4, 3)
    assert out[1, 2, 0] == 1.0 and out[3, 3, 2] == 2.0 and out.sum() == 3.0


def test_seeds_are_per_shower_non_zero_and_reproducible():
    seeds = [shower_seeds(5, i) for i in range(200)]
    assert seeds == [shower_seeds(5, i) for i in range(200)]
    assert len(set(seeds)) == 200 and all(0 < s < 2**31 for pair in seeds for s in pair)
    assert shower_seeds(6, 0) != shower_seeds(5, 0)


def test_a_wrong_request_is_refused_before_any_work():
    siw = PRESETS["par04-siw"]
    for kwargs, option in (({"particle": "mu-"}, "--particle"), ({"particle": "pi+"}, "pi+"),
                           ({"energy_range_gev": (10, 1)}, "--energy"), ({"theta_range": (0.0, 1.0)}, "--theta"),
                           ({"n": 0}, "--n")):
        req = Request(**{"detector": siw, "particle": "e-", "n": 4, **kwargs})
        with pytest.raises(ConfigError, match=option.replace("+", r"\+")):
            req.check()
    plan = Request(siw, "gamma", 3, energy_list_gev=(1.0, 2.0), energy_range_gev=None).plan()
    assert np.array_equal(plan["energies"], [1e3] * 3 + [2e3] * 3)
    assert np.allclose(plan["theta"], math.pi / 2)


def test_installed_data_sets_under_geant4_data_dir_are_used_and_nothing_is_built(tmp_path, monkeypatch):
    from caloforge.simulate import g4env

    for folder in ("G4EMLOW8.8", "G4ENSDFSTATE3.0", "PhotonEvaporation6.1", "G4PARTICLEXS4.2"):
        (tmp_path / "data" / folder).mkdir(parents=True)
    saved = dict(os.environ)
    try:
        for var in g4env.DATASETS:
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("GEANT4_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("CALOFORGE_G4DATA", str(tmp_path / "cache"))
        setup = g4env.prepare(allow_offline=False)
        assert not setup.offline and setup.sources["G4LEDATA"] == "GEANT4_DATA_DIR"
        assert setup.env["G4LEDATA"].endswith("G4EMLOW8.8") and setup.env["G4PARTICLEXSDATA"].endswith("4.2")
        assert all(var in setup.env for var in g4env.DATASETS)  # every variable set: the import cannot prompt
        assert not (tmp_path / "cache" / "standin-v1").exists()
        monkeypatch.setenv("GEANT4_DATA_DIR", str(tmp_path / "empty"))
        for var in g4env.DATASETS:
            monkeypatch.delenv(var, raising=False)
        with pytest.raises(Exception, match="G4LEDATA"):
            g4env.prepare(allow_offline=False)  # e.g. ftfp_bert: no offline mode
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_simulate_and_data_make_draw_the_same_energies_and_angles_for_a_seed(tmp_path):
    import h5py

    from caloforge.simulate.generate import make_file

    path = make_file("par04-siw", 30, tmp_path / "gf.h5", energy_range=(1e3, 1e5), seed=9,
                     theta_range=(1.0, 2.0), phi_range=(-1.0, 1.0))
    plan = Request(PRESETS["par04-siw"], "e-", 30, seed=9, energy_range_gev=(1.0, 100.0), theta_range=(1.0, 2.0),
                   phi_range=(-1.0, 1.0)).plan()
    with h5py.File(path, "r") as f:
        assert np.array_equal(f["incident_energies"][:, 0], plan["energies"].astype(np.float32))
        assert np.allclose(f["incident_theta"][:, 0], plan["theta"]) and np.allclose(f["incident_phi"][:, 0],
                                                                                     plan["phi"])
