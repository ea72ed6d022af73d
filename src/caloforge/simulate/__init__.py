"""Showers for any detector: one detector description, two back-ends.

Detectors: ``materials`` (PDG constants, GFlash effective-medium formulae, Geant4 NIST names), ``detectors``
(DetectorSpec and the named presets with stable ids), ``detector_yaml`` (user detectors, ``resolve_detector``).
GFlash back-end (pure numpy + scipy): ``gflash`` (Grindhammer-Peters profiles), ``deposit`` (spots onto voxels) and
``generate`` (``generate`` / ``make_file``). Geant4 back-end (geant4-pybind, extra [sim]): ``g4env`` (data sets and
the offline mode), ``g4tables`` (stand-in tables), ``g4physics``, ``g4mesh`` (the aligned scoring mesh), ``g4app``
(the Geant4 application, in worker processes) and ``g4run`` (``Request`` / ``simulate_file``). See docs/simulate.md.
"""
