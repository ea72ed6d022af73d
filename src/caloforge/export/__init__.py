"""Export a trained generator as one file Geant4 (Par04) or DD4hep (DDML) can run: ONNX or TorchScript.

``writer.export_generator(gen, fmt, layout, out, solver, steps)``; layouts in ``layouts`` (calochallenge, par04).
"""
