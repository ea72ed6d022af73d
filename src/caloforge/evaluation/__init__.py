"""Evaluation: the official CaloChallenge high-level features, histograms with separation power, FPD/KPD.

Pure numpy/scipy here; the torch classifier lives in its own module so importing this package stays light.
"""

from caloforge.evaluation.features import compute_hlf, compute_hlf_stream, hlf_vector, voxel_inputs
from caloforge.evaluation.fpd_kpd import fpd, frechet_distance, kpd
from caloforge.evaluation.histograms import HistResult, feature_histograms, separation_power, summarise

__all__ = [
    "HistResult",
    "compute_hlf",
    "compute_hlf_stream",
    "feature_histograms",
    "fpd",
    "frechet_distance",
    "hlf_vector",
    "kpd",
    "separation_power",
    "summarise",
    "voxel_inputs",
]
