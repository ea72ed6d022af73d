"""`caloforge export`: write a trained generator as one ONNX or TorchScript file (Geant4 Par04 / DDML, or any
CaloChallenge-layout consumer)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("export", help="export a trained generator to ONNX or TorchScript (Par04 / DDML layout)")
    p.add_argument("--checkpoint", required=True, help="run directory (latest checkpoint) or a checkpoint file")
    p.add_argument("--format", required=True, choices=("onnx", "torchscript"), help="file format")
    p.add_argument("--layout", required=True, choices=("calochallenge", "par04"),
                   help="calochallenge: inputs noise, energy MeV (+ phi, theta, detector one-hot), output MeV in "
                        "CaloChallenge order; par04: one (B, 8) input [E GeV, phi, theta, one-hot 5], noise drawn "
                        "in the graph, output GeV ordered r, phi, z (z innermost), as Geant4 11.4 calls CaloDiT-2")
    p.add_argument("--steps", type=int, default=None, help="solver steps unrolled in the graph (default: the recipe's)")
    p.add_argument("--solver", default=None, help="solver from the registry (default: the recipe's)")
    p.add_argument("--layer-steps", type=int, default=None,
                   help="two-stage models: steps of the layer-energy model (default: the recipe's layer_model.steps; "
                        "a 1-step generator sets both --steps 1 and --layer-steps 1)")
    p.add_argument("--no-ema", action="store_true", help="export the raw weights instead of the EMA weights")
    p.add_argument("--out", required=True, help="output file (.onnx or .pt)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from caloforge.export.writer import export_generator
    from caloforge.outputs import check_output, clean_stale_temps
    from caloforge.sampling.generator import Generator
    from caloforge.training.checkpoint import resolve_checkpoint

    ckpt = resolve_checkpoint(args.checkpoint)
    out = check_output(args.out, force=args.force, inputs=[args.checkpoint, ckpt])
    clean_stale_temps(out.parent)
    gen = Generator.load(ckpt, use_ema=not args.no_ema, device="cpu")
    gen.solver_steps(args.solver, args.steps)  # a wrong solver/steps is refused before the trace
    gen.layer_solver_steps(args.layer_steps)
    meta = export_generator(gen, args.format, args.layout, out, args.solver, args.steps,
                            layer_steps=args.layer_steps)
    layer = f" + layer model {meta['layer_steps']} steps" if meta["two_stage"] else ""
    print(f"wrote {out}: {meta['recipe']} {meta['solver']} {meta['steps']} steps{layer} ({meta['nfe']} network calls), "
          f"layout {meta['layout']}, inputs {', '.join(meta['inputs'])}")
    return 0
