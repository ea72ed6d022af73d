"""Export a trained generator to ONNX or TorchScript (dynamic batch size, metadata stored in the file).

ONNX goes through the TorchScript-based exporter (``dynamo=False``: it needs no onnxscript) at opset 17, is checked
with ``onnx.checker`` and carries its metadata as ``metadata_props``; TorchScript is a trace saved with an extra file
``caloforge.json``. Both are written through ``caloforge.outputs.atomic_path``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from caloforge import __version__
from caloforge.errors import ConfigError
from caloforge.export.layouts import PAR04_SLOTS, CaloChallengeLayout, Par04Layout
from caloforge.outputs import atomic_path

FORMATS = ("onnx", "torchscript")
LAYOUTS = ("calochallenge", "par04")
OPSET = 17
META_FILE = "caloforge.json"


def build_layout(gen, layout: str, solver: str | None = None, steps: int | None = None,
                 layer_steps: int | None = None):
    """The layout module around ``gen.module(solver, steps, layer_steps)`` (refuses stochastic solvers for par04: its only
    randomness is the in-graph prior draw)."""
    if layout not in LAYOUTS:
        raise ConfigError(f"--layout: expected one of {', '.join(LAYOUTS)}, found {layout!r}")
    module = gen.module(solver, steps, layer_steps)
    if layout == "calochallenge":
        return CaloChallengeLayout(module).eval()
    if module.stochastic:
        raise ConfigError("--solver: the par04 layout needs a deterministic solver (its only noise is drawn in the "
                          "graph once); use e.g. euler, heun, ddim")
    return Par04Layout(module, gen.grid).eval()


def metadata(gen, layout_module, layout: str, solver: str | None, steps: int | None,
             layer_steps: int | None = None) -> dict:
    solver, steps = gen.solver_steps(solver, steps)
    layer_solver, layer_steps = gen.layer_solver_steps(layer_steps) or (None, None)
    module = layout_module.gen
    enc = module.encode
    z, a, r = gen.grid
    meta = {
        "producer": "caloforge", "caloforge_version": __version__, "recipe": gen.config.name,
        "checkpoint": gen.source, "step": gen.step, "objective": gen.objective.kind, "solver": solver,
        "steps": steps, "nfe": gen.nfe(solver, steps), "layer_nfe": gen.layer_nfe(layer_steps), "two_stage": gen.two_stage,
        "layer_solver": layer_solver, "layer_steps": layer_steps,
        "layout": layout, "geometry": gen.geometry.name, "grid_z_alpha_r": [z, a, r],
        "geometry_dict": gen.geometry.to_dict(),
        "threshold_mev": float(gen.threshold_mev), "energy_range_mev": list(gen.encoder.energy_range_mev),
        "angles": bool(enc.angles), "detector_slots": int(enc.n_onehot),
        "detector_names": gen.detector_names or [],
        "inputs": layout_module.input_names(), "outputs": ["showers"],
    }
    if layout == "calochallenge":
        meta.update(units="energy MeV, phi/theta rad, showers MeV", noise_dim=module.noise_dim,
                    noise_layout={k: list(v) for k, v in module.noise_layout().items()},
                    cell_order="CaloChallenge flat: z outermost, alpha, r fastest")
    else:
        meta.update(units="input E GeV, phi/theta rad; output GeV (Geant4 multiplies by 1000)",
                    input_columns=["E_GeV", "phi_rad", "theta_rad", *[f"onehot_{s}" for s in PAR04_SLOTS]],
                    cell_order=f"r outermost, phi, z innermost: index = iR*{a * z} + iPhi*{z} + iZ",
                    n_cells=r * a * z, noise="drawn inside the graph (RandomNormalLike)")
    return meta


def export_generator(gen, fmt: str, layout: str, out: str | Path, solver: str | None = None,
                     steps: int | None = None, trace_batch: int = 2, layer_steps: int | None = None) -> dict:
    """Write the exported generator to ``out``; returns its metadata. ``out`` must already be checked (outputs)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format: expected one of {', '.join(FORMATS)}, found {fmt!r}")
    if gen.device.type != "cpu":
        raise ConfigError("export: load the generator on the CPU (device='cpu')")
    wrapper = build_layout(gen, layout, solver, steps, layer_steps)
    meta = metadata(gen, wrapper, layout, solver, steps, layer_steps)
    inputs = wrapper.example_inputs(trace_batch)
    with atomic_path(out) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about python control flow on shapes (all static here)
        if fmt == "onnx":
            _write_onnx(wrapper, inputs, tmp, meta)
        else:
            traced = torch.jit.trace(wrapper, inputs, check_trace=False)
            torch.jit.save(traced, str(tmp), _extra_files={META_FILE: json.dumps(meta)})
    return meta


def _write_onnx(wrapper, inputs, tmp: Path, meta: dict) -> None:
    import onnx

    names = wrapper.input_names()
    torch.onnx.export(wrapper, inputs, str(tmp), dynamo=False, input_names=names, output_names=["showers"],
                      dynamic_axes={n: {0: "batch"} for n in [*names, "showers"]}, opset_version=OPSET)
    model = onnx.load(str(tmp))
    onnx.helper.set_model_props(model, {k: json.dumps(v) if not isinstance(v, str) else v for k, v in meta.items()})
    model.doc_string = f"caloforge {meta['recipe']} generator, layout {meta['layout']}"
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(tmp))


def read_metadata(path: str | Path) -> dict:
    """The metadata of an exported file (ONNX metadata_props or the TorchScript extra file)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        out = {}
        for k, v in props.items():
            try:
                out[k] = json.loads(v)
            except json.JSONDecodeError:
                out[k] = v
        return out
    extra = {META_FILE: ""}
    torch.jit.load(str(path), _extra_files=extra)
    return json.loads(extra[META_FILE])
