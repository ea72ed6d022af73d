"""Run an exported ``--layout par04`` ONNX generator exactly as Geant4 11.4's Par04 example does, and write the
showers as a CaloChallenge file that ``caloforge evaluate`` scores.

What Par04 does per particle (Par04InferenceSetup::GetEnergies + Par04OnnxInference::RunInference), and this script
repeats: build ONE condition vector of 8 floats [E / 1000 (GeV), phi, theta, geometry one-hot of 5], run
``Session::Run`` on a {1, 8} tensor (input name read from the model), read the first R*A*Z floats of the FIRST output,
multiply each by 1000 (GeV -> MeV), and deposit only cells above 0.0005 MeV. The cells come ordered r outermost,
then phi, then z innermost; here they are reordered to the CaloChallenge flat order (z outermost, r fastest).

    python examples/par04_consumer.py --model cd.onnx --energies-from ref.h5 --phi 0 --theta 1.5708 --slot 0 \
        --out par04_showers.h5
    python examples/par04_consumer.py --model cd.onnx --energies-gev 10,50,100 --n-per-energy 200 --out gen.h5

Only onnxruntime and numpy are needed to run the model; caloforge is used to read energies and write the file.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

HIT_THRESHOLD_MEV = 0.0005  # Par04: only cells with E > 0.0005 MeV become hits


def par04_condition(e_mev: float, phi: float, theta: float, slot: int) -> np.ndarray:
    """The {1, 8} float vector Par04InferenceSetup builds for CaloDiT-2."""
    onehot = np.zeros(5, dtype=np.float32)
    onehot[slot] = 1.0
    return np.concatenate([[e_mev / 1000.0, phi, theta], onehot]).astype(np.float32)[None, :]


def _json_or_text(value: str):
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def run_par04(model_path: str, energies_mev: np.ndarray, phi: float, theta: float, slot: int):
    """Showers (n, Z*A*R) MeV in CaloChallenge order, one Session::Run per particle, and the model metadata."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    session = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    meta = {k: _json_or_text(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    z, a, r = meta["grid_z_alpha_r"]
    n_cells = r * a * z
    input_name = session.get_inputs()[0].name
    out = np.empty((len(energies_mev), n_cells), dtype=np.float32)
    for i, e in enumerate(energies_mev):
        first = session.run(None, {input_name: par04_condition(float(e), phi, theta, slot)})[0]
        cells = np.asarray(first, dtype=np.float32).reshape(-1)[:n_cells] * 1000.0  # GeV -> MeV
        cells[~(cells > HIT_THRESHOLD_MEV)] = 0.0
        out[i] = cells.reshape(r, a, z).transpose(2, 1, 0).reshape(-1)  # (r, phi, z) -> CaloChallenge (z, a, r)
    return out, meta


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Par04-style onnxruntime consumer of a caloforge par04 export")
    p.add_argument("--model", required=True, help="an ONNX file from `caloforge export --layout par04`")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--energies-from", help="take the incident energies of this CaloChallenge file")
    src.add_argument("--energies-gev", help="comma list of incident energies in GeV")
    p.add_argument("--n-per-energy", type=int, default=100, help="particles per --energies-gev value")
    p.add_argument("--n", type=int, default=None, help="use only the first N energies of --energies-from")
    p.add_argument("--phi", type=float, default=0.0, help="incident phi in rad (default 0)")
    p.add_argument("--theta", type=float, default=np.pi / 2, help="incident theta in rad (default pi/2)")
    p.add_argument("--slot", type=int, default=0, choices=range(5),
                   help="geometry one-hot slot: 0 Par04SiW, 1 Par04SciPb, 2 ODD, 3 FCCeeCLD, 4 new detector")
    p.add_argument("--out", required=True, help="CaloChallenge HDF5 file to write")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    args = p.parse_args(argv)

    from caloforge.data.geometry import Geometry
    from caloforge.data.writer import write_showers
    from caloforge.outputs import atomic_path, check_output

    out = check_output(args.out, force=args.force, inputs=[args.model, args.energies_from])
    if args.energies_from:
        from caloforge.data.reader import ShowerFile

        with ShowerFile(args.energies_from) as f:
            energies = f.energies()[: args.n]
    else:
        energies = np.repeat([1e3 * float(v) for v in args.energies_gev.split(",")], args.n_per_energy)
    showers, meta = run_par04(args.model, energies, args.phi, args.theta, args.slot)
    geometry = Geometry.from_dict(meta["geometry_dict"])
    with atomic_path(out) as tmp:
        write_showers(tmp, energies, showers, geometry=geometry,
                      attrs={"generator": "caloforge par04 consumer (onnxruntime)", "model": str(args.model),
                             "recipe": str(meta.get("recipe", "")), "phi": args.phi, "theta": args.theta,
                             "slot": args.slot})
    print(f"wrote {len(showers)} showers to {out} ({meta.get('recipe')}, {meta.get('solver')} "
          f"{meta.get('steps')} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
