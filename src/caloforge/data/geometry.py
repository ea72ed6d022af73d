"""Calorimeter readout geometry: the official CaloChallenge binnings, any regular cylindrical mesh, DS1 layers.

Flat voxel order is the CaloChallenge one: r fastest, then alpha, then layer (``reshape(N, n_z, n_alpha, n_r)`` for
a regular mesh). Coordinates follow the official ``XMLHandler``: r is the midpoint of its r bin, alpha bin centres are
the midpoints of ``linspace(-pi, pi, n_alpha + 1)``, and ``x = r cos(alpha)`` (called eta by the official code),
``y = r sin(alpha)`` (phi). Units are mm. Pure numpy; no torch.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np

from caloforge.errors import DataError

#: Official dataset names -> (binning XML shipped in the package, readout threshold in MeV used by evaluate.py).
OFFICIAL = {
    "1-photons": ("binning_dataset_1_photons.xml", 1.0),
    "1-pions": ("binning_dataset_1_pions.xml", 1.0),
    "2": ("binning_dataset_2.xml", 0.5e-3 / 0.033),
    "3": ("binning_dataset_3.xml", 0.5e-3 / 0.033),
}


@dataclass(frozen=True)
class Layer:
    """One readout layer: radial bin edges (mm) and the number of alpha bins; no r edges means an empty layer."""

    r_edges: tuple[float, ...]
    n_alpha: int

    @property
    def n_r(self) -> int:
        return max(len(self.r_edges) - 1, 0)

    @property
    def n_voxels(self) -> int:
        return self.n_r * self.n_alpha

    @property
    def r_centres(self) -> np.ndarray:
        e = np.asarray(self.r_edges, dtype=np.float64)
        return 0.5 * (e[1:] + e[:-1])

    @property
    def alpha_centres(self) -> np.ndarray:
        e = np.linspace(-np.pi, np.pi, self.n_alpha + 1)
        return 0.5 * (e[1:] + e[:-1])


@dataclass(frozen=True)
class Geometry:
    """A readout geometry: an ordered list of layers, plus the depth of a layer when it is known."""

    name: str
    layers: tuple[Layer, ...]
    layer_depth_mm: float | None = None
    threshold_mev: float = 0.5e-3 / 0.033

    # ---- construction -------------------------------------------------------------------------------------------
    @classmethod
    def regular(
        cls,
        n_z: int,
        n_alpha: int,
        n_r: int,
        dr_mm: float,
        dz_mm: float | None = None,
        name: str | None = None,
        threshold_mev: float = 0.5e-3 / 0.033,
    ) -> Geometry:
        """A regular cylindrical mesh of n_z layers, n_alpha angular and n_r radial bins of dr_mm."""
        for label, v in (("n_z", n_z), ("n_alpha", n_alpha), ("n_r", n_r)):
            if int(v) != v or v < 1:
                raise DataError(f"geometry: {label} must be a positive integer, got {v!r}")
        if not dr_mm > 0:
            raise DataError(f"geometry: dr_mm must be > 0, got {dr_mm!r}")
        edges = tuple(float(x) for x in np.round(np.arange(n_r + 1) * dr_mm, 10))
        layer = Layer(edges, int(n_alpha))
        return cls(
            name or f"mesh-{n_z}x{n_alpha}x{n_r}",
            (layer,) * int(n_z),
            None if dz_mm is None else float(dz_mm),
            float(threshold_mev),
        )

    @classmethod
    def from_xml(cls, path: str | Path, name: str | None = None, threshold_mev: float | None = None) -> Geometry:
        """Parse a CaloChallenge binning XML (``<Bin><Layer r_edges=.. n_bin_alpha=..>``)."""
        path = Path(path)
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError) as exc:
            raise DataError(f"{path}: cannot read binning XML ({exc})") from None
        layers = []
        for el in root.iter("Layer"):
            try:
                edges = tuple(float(x) for x in el.attrib["r_edges"].split(","))
                n_alpha = int(el.attrib["n_bin_alpha"])
            except (KeyError, ValueError) as exc:
                raise DataError(f"{path}: Layer {el.attrib.get('id', '?')}: bad attribute ({exc})") from None
            layers.append(Layer(edges if len(edges) > 1 else (), n_alpha))
        if not layers:
            raise DataError(f"{path}: no <Layer> elements found")
        thr = 0.5e-3 / 0.033 if threshold_mev is None else threshold_mev
        return cls(name or path.stem, tuple(layers), None, thr)

    @classmethod
    def official(cls, dataset: str) -> Geometry:
        """One of the four official CaloChallenge binnings: '1-photons', '1-pions', '2' or '3'."""
        key = str(dataset)
        if key not in OFFICIAL:
            raise DataError(f"dataset: expected one of {sorted(OFFICIAL)}, got {dataset!r}")
        fname, thr = OFFICIAL[key]
        with resources.as_file(resources.files("caloforge.data") / "binning" / fname) as p:
            geo = cls.from_xml(p, name=f"calochallenge-{key}", threshold_mev=thr)
        # DS2/DS3 readout layers are two Par04 sampling layers (2 x 1.7 mm) deep; DS1 layers differ per layer.
        return replace(geo, layer_depth_mm=3.4) if key in ("2", "3") else geo

    @classmethod
    def parse(cls, spec: str | Path) -> Geometry:
        """THE geometry grammar of every command and recipe: an official key ('1-photons', '1-pions', '2', '3'; also
        written 'official:2'), 'regular:NZxNAxNR:DR_MM' (a regular mesh, dr in mm) or a binning .xml file."""
        text = str(spec)
        key = text.split(":", 1)[1] if text.startswith("official:") else text
        if key in OFFICIAL:
            return cls.official(key)
        if text.startswith("regular:"):
            try:
                _, shape, dr = text.split(":")
                nz, na, nr = (int(v) for v in shape.lower().split("x"))
                return cls.regular(nz, na, nr, float(dr))
            except ValueError:
                raise DataError(f"geometry {text!r}: expected regular:NZxNAxNR:DR_MM like regular:45x16x9:4.65") from None
        if Path(text).suffix.lower() == ".xml":
            return cls.from_xml(text)
        raise DataError(f"geometry {text!r}: expected an official key ({', '.join(OFFICIAL)}), "
                        f"regular:NZxNAxNR:DR_MM or a binning .xml file")

    @classmethod
    def for_voxels(cls, n_voxels: int) -> Geometry | None:
        """The official geometry with this many voxels, if there is one (368, 533, 6480, 40500)."""
        for key in OFFICIAL:
            g = cls.official(key)
            if g.n_voxels == n_voxels:
                return g
        return None

    # ---- serialisation (for file attributes and checkpoints) ------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "layers": [{"r_edges": list(layer.r_edges), "n_alpha": layer.n_alpha} for layer in self.layers],
            "layer_depth_mm": self.layer_depth_mm,
            "threshold_mev": self.threshold_mev,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Geometry:
        try:
            layers = tuple(Layer(tuple(float(x) for x in ly["r_edges"]), int(ly["n_alpha"])) for ly in d["layers"])
            return cls(str(d["name"]), layers, d.get("layer_depth_mm"), float(d.get("threshold_mev", 0.5e-3 / 0.033)))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"geometry: malformed description ({exc})") from None

    # ---- shape ---------------------------------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @cached_property
    def layer_sizes(self) -> np.ndarray:
        return np.array([layer.n_voxels for layer in self.layers], dtype=np.int64)

    @cached_property
    def layer_offsets(self) -> np.ndarray:
        """Flat index where each layer starts (length n_layers + 1; the last entry is n_voxels)."""
        return np.concatenate([[0], np.cumsum(self.layer_sizes)])

    @property
    def n_voxels(self) -> int:
        return int(self.layer_offsets[-1])

    @cached_property
    def relevant_layers(self) -> tuple[int, ...]:
        """Layers that hold voxels (the official code's ``relevantLayers``)."""
        return tuple(i for i, layer in enumerate(self.layers) if layer.n_voxels > 0)

    @cached_property
    def alpha_binned_layers(self) -> tuple[int, ...]:
        """Layers with more than one alpha bin (the official code's ``bin_alpha`` layers)."""
        return tuple(i for i in self.relevant_layers if self.layers[i].n_alpha > 1)

    def layer_slice(self, layer: int) -> slice:
        return slice(int(self.layer_offsets[layer]), int(self.layer_offsets[layer + 1]))

    @cached_property
    def is_regular(self) -> bool:
        """True when every layer has the same r edges and alpha bins (then the showers form a 3-D grid)."""
        first = self.layers[0]
        return first.n_voxels > 0 and all(layer == first for layer in self.layers)

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """(n_z, n_alpha, n_r) of a regular mesh."""
        if not self.is_regular:
            raise DataError(f"geometry {self.name}: not a regular mesh, it has no (z, alpha, r) grid shape")
        return (self.n_layers, self.layers[0].n_alpha, self.layers[0].n_r)

    # ---- per-voxel coordinates (flat, length n_voxels) ----------------------------------------------------------
    @cached_property
    def voxel_layer(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_layers), self.layer_sizes)

    @cached_property
    def voxel_alpha_index(self) -> np.ndarray:
        return np.concatenate([np.repeat(np.arange(ly.n_alpha), ly.n_r) for ly in self.layers if ly.n_voxels] or [[]])

    @cached_property
    def voxel_r_index(self) -> np.ndarray:
        return np.concatenate([np.tile(np.arange(ly.n_r), ly.n_alpha) for ly in self.layers if ly.n_voxels] or [[]])

    @cached_property
    def voxel_r(self) -> np.ndarray:
        """Radial bin midpoint of each voxel (mm)."""
        return np.concatenate([np.tile(ly.r_centres, ly.n_alpha) for ly in self.layers if ly.n_voxels] or [[]])

    @cached_property
    def voxel_alpha(self) -> np.ndarray:
        """Alpha bin centre of each voxel (rad, in (-pi, pi))."""
        return np.concatenate(
            [np.repeat(ly.alpha_centres, ly.n_r) for ly in self.layers if ly.n_voxels] or [[]]
        )

    @cached_property
    def voxel_x(self) -> np.ndarray:
        """r cos(alpha): the official code's 'eta' coordinate (mm)."""
        return self.voxel_r * np.cos(self.voxel_alpha)

    @cached_property
    def voxel_y(self) -> np.ndarray:
        """r sin(alpha): the official code's 'phi' coordinate (mm)."""
        return self.voxel_r * np.sin(self.voxel_alpha)

    @cached_property
    def voxel_area_mm2(self) -> np.ndarray:
        """Transverse area of each voxel (annulus sector), used to turn energy densities into voxel energies."""
        out = []
        for ly in self.layers:
            if ly.n_voxels:
                e = np.asarray(ly.r_edges)
                ring = np.pi * (e[1:] ** 2 - e[:-1] ** 2) / ly.n_alpha
                out.append(np.tile(ring, ly.n_alpha))
        return np.concatenate(out or [[]])

    # ---- index mapping -----------------------------------------------------------------------------------------
    def flat_index(self, layer, alpha, r) -> np.ndarray:
        """Flat voxel index of (layer, alpha bin, r bin); vectorised over numpy arrays."""
        layer, alpha, r = (np.asarray(v, dtype=np.int64) for v in (layer, alpha, r))
        n_r = np.array([ly.n_r for ly in self.layers])[layer]
        n_a = np.array([ly.n_alpha for ly in self.layers])[layer]
        if np.any((alpha < 0) | (alpha >= n_a) | (r < 0) | (r >= n_r)):
            raise IndexError("alpha or r bin out of range for its layer")
        return self.layer_offsets[layer] + alpha * n_r + r

    def unravel(self, flat) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(layer, alpha bin, r bin) of flat voxel indices."""
        flat = np.asarray(flat, dtype=np.int64)
        if np.any((flat < 0) | (flat >= self.n_voxels)):
            raise IndexError(f"flat index out of range [0, {self.n_voxels})")
        return self.voxel_layer[flat], self.voxel_alpha_index[flat], self.voxel_r_index[flat]

    def describe(self) -> str:
        if self.is_regular:
            z, a, r = self.grid_shape
            return f"{self.name}: regular mesh {z} z x {a} alpha x {r} r = {self.n_voxels} voxels"
        return f"{self.name}: {len(self.relevant_layers)} non-empty layers, {self.n_voxels} voxels"
