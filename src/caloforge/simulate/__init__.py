"""GFlash parametrised electromagnetic showers on a regular readout mesh: the project's embedded data source.

Modules: ``materials`` (PDG material constants and the GFlash effective-medium formulae), ``detectors`` (DetectorSpec
and the named presets with stable ids), ``gflash`` (the Grindhammer-Peters profile parametrisation), ``deposit``
(spots onto voxels in O(voxels) per shower) and ``generate`` (``generate`` / ``make_file``). Pure numpy + scipy.
See docs/simulate.md.
"""
