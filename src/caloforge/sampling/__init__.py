"""Sampling a trained run: load it, build conditions, generate showers (one torch module), write with provenance.

Import the submodules directly (``from caloforge.sampling.generator import Generator``); this package stays
import-light.
"""
