"""caloforge: Geant4 calorimeter showers -> fast ML generators, evaluated the CaloChallenge way."""

__version__ = "0.1.0"
