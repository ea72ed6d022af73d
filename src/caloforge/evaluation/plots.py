"""Evaluation figures: feature histograms with gen/ref ratio panels, per-layer profiles, average showers, ROC.

The drawing functions build and return a matplotlib Figure from plain arrays; ``make_figures`` assembles the report's
set from the evaluation results and writes each PNG atomically. Matplotlib runs headless (Agg); the mplhep CMS style is used when installed, never
LaTeX. The reference is a grey filled histogram; each generated file has its own colour and legend entry.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.ticker import LogLocator, NullFormatter

from caloforge.data.geometry import Geometry
from caloforge.outputs import atomic_write_bytes

REF_COLOUR = "0.55"
GEN_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:cyan")
_styled = False


def use_style() -> None:
    """CMS-like style when mplhep is importable; always without LaTeX (usetex would need a TeX install)."""
    global _styled
    if _styled:
        return
    try:
        import mplhep

        plt.style.use(mplhep.style.CMS)
    except (ImportError, AttributeError, OSError):  # mplhep is optional for plotting: matplotlib defaults
        plt.style.use("default")
    plt.rcParams.update({"text.usetex": False, "font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11,
                         "legend.fontsize": 9, "xtick.labelsize": 9, "ytick.labelsize": 9,
                         "figure.dpi": 150, "savefig.dpi": 150,
                         # minor ticks are most of the drawing time of the per-layer grids (measured: 46 -> 17
                         # CPU-s for the report's figures); major ticks are enough to read a histogram
                         "xtick.minor.visible": False, "ytick.minor.visible": False})
    _styled = True


def colour(i: int) -> str:
    return GEN_COLOURS[i % len(GEN_COLOURS)]


@dataclass
class HistPanel:
    """One histogram comparison: bin edges, reference density and one density per generated file."""

    title: str
    edges: np.ndarray
    ref: np.ndarray
    gens: list[tuple[str, np.ndarray]] = field(default_factory=list)
    xlabel: str = ""
    logx: bool = False
    logy: bool = False
    note: str = ""  # e.g. separation powers, drawn in the corner


def ratio_limits(ratios) -> tuple[float, float, bool]:
    """Limits of the gen/ref strip: 0.5-1.5 when everything fits, else wide enough for the largest mismatch
    (log scale beyond a factor 3), so a large disagreement is never drawn off the axis."""
    vals = np.concatenate([np.asarray(r, dtype=float).ravel() for r in ratios]) if ratios else np.array([])
    vals = vals[np.isfinite(vals) & (vals > 0)]
    if vals.size == 0:
        return 0.5, 1.5, False
    lo, hi = float(vals.min()), float(vals.max())
    if lo >= 0.5 and hi <= 1.5:
        return 0.5, 1.5, False
    if lo >= 1 / 3 and hi <= 3:
        return min(0.5, lo * 0.9), max(1.5, hi * 1.1), False
    return max(min(lo * 0.8, 0.5), 1e-3), min(max(hi * 1.25, 2.0), 1e3), True


def _draw_panel(ax, ax_ratio, p: HistPanel) -> None:
    edges = np.asarray(p.edges, dtype=float)
    ax.stairs(p.ref, edges, fill=True, color=REF_COLOUR, alpha=0.45, label="reference")
    ratios = []
    for i, (label, dens) in enumerate(p.gens):
        ax.stairs(dens, edges, color=colour(i), linewidth=1.4, label=label)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(p.ref > 0, dens / p.ref, np.nan)
        ratios.append(ratio)
        ax_ratio.stairs(ratio, edges, color=colour(i), linewidth=1.2, baseline=None)
    ax_ratio.axhline(1.0, color="k", lw=0.8, ls="--")
    lo, hi, log = ratio_limits(ratios)
    if log:
        ax_ratio.set_yscale("log")
        ax_ratio.yaxis.set_minor_formatter(NullFormatter())  # decade labels only: no overlapping minor labels
    ax_ratio.set_ylim(lo, hi)
    ax.set_ylabel("density", fontsize=8)
    ax_ratio.set_ylabel("gen/ref", fontsize=8)
    ax.set_title(p.title)
    if p.logx:
        ax.set_xscale("log")
        ax_ratio.set_xscale("log")
    if p.logy:
        ax.set_yscale("log")
    ax.set_xlim(edges[0], edges[-1])
    ax_ratio.set_xlim(edges[0], edges[-1])
    ax_ratio.set_xlabel(p.xlabel)
    ax.tick_params(labelbottom=False)
    if p.note:
        ax.text(0.97, 0.95, p.note, transform=ax.transAxes, ha="right", va="top", fontsize=7)


def histogram_grid(panels: list[HistPanel], title: str = "", ncols: int = 3) -> plt.Figure:
    """Panels in a grid, each a histogram over a gen/ref ratio strip; one shared legend."""
    use_style()
    n = max(len(panels), 1)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig = plt.figure(figsize=(4.2 * ncols, 4.0 * nrows + 0.6))
    # per row: histogram, ratio strip, spacer (room for the next row's title)
    grid = fig.add_gridspec(nrows * 3, ncols, height_ratios=[3, 1, 0.55] * nrows, hspace=0.08, wspace=0.3)
    for k, p in enumerate(panels):
        r, c = divmod(k, ncols)
        ax = fig.add_subplot(grid[3 * r, c])
        _draw_panel(ax, fig.add_subplot(grid[3 * r + 1, c], sharex=ax), p)
    handles, labels = fig.axes[0].get_legend_handles_labels() if fig.axes else ([], [])
    if handles:
        fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 5), frameon=False,
                   bbox_to_anchor=(0.5, 1.0))
    if title:
        fig.suptitle(title, y=1.0 + 0.3 / (4.0 * nrows + 0.6), fontsize=12)  # 0.3 inch above the legend
    fig.subplots_adjust(top=1 - 0.7 / (4.0 * nrows + 0.6), bottom=0.04, left=0.08, right=0.98)
    return fig


def layer_profiles(ref: dict, gens: list[tuple[str, dict]], layers: tuple[int, ...]) -> plt.Figure:
    """Mean (band: 16-84 %) per layer of layer energy, radial centre and width, sparsity: the whole depth at once."""
    use_style()
    keys = [("E_layer", "mean layer energy [MeV]", True), ("EC_r", "radial centre EC_r [mm]", False),
            ("width_r", "radial width [mm]", False), ("sparsity", "sparsity", False)]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    x = np.asarray(layers)
    for ax, (key, label, logy) in zip(axes.flat, keys):
        lo, hi = np.percentile(ref[key], [16, 84], axis=0)
        ax.fill_between(x, lo, hi, step="mid", color=REF_COLOUR, alpha=0.3, label="reference 16-84 %")
        ax.plot(x, ref[key].mean(axis=0), drawstyle="steps-mid", color="k", lw=1.2, label="reference mean")
        for i, (name, f) in enumerate(gens):
            ax.plot(x, f[key].mean(axis=0), drawstyle="steps-mid", color=colour(i), lw=1.2, label=name)
        ax.set_ylabel(label)
        ax.set_xlabel("layer")
        if logy:
            ax.set_yscale("log")
    axes.flat[0].legend(loc="best")
    fig.tight_layout()
    return fig


def separation_by_layer(per_gen: list[tuple[str, dict[str, np.ndarray]]], layers_of: dict) -> plt.Figure:
    """Separation power per layer, one panel per feature family (log scale: 1e-4 is good, 1e-1 is bad)."""
    use_style()
    names = sorted({k for _, d in per_gen for k in d})
    ncols = 4
    nrows = max(1, int(np.ceil(len(names) / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(14, 3.2 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for i, (label, d) in enumerate(per_gen):
            if name in d:
                ax.plot(layers_of[name], np.maximum(d[name], 1e-8), "o-", ms=2.5, lw=1, color=colour(i), label=label)
        ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("layer")
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    axes.flat[0].set_ylabel("separation power")
    axes.flat[0].legend(loc="best")
    fig.tight_layout()
    return fig


def _polar_image(ax, geometry: Geometry, mean_shower: np.ndarray, layer: int, norm) -> None:
    ly = geometry.layers[layer]
    img = mean_shower[geometry.layer_slice(layer)].reshape(ly.n_alpha, ly.n_r)  # (alpha, r)
    a_edges = np.linspace(-np.pi, np.pi, ly.n_alpha + 1)
    r_edges = np.asarray(ly.r_edges)
    mesh = ax.pcolormesh(a_edges, r_edges, np.where(img.T > 0, img.T, np.nan), norm=norm, cmap="viridis")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    return mesh


def average_showers(
    geometry: Geometry, ref_mean: np.ndarray, gens: list[tuple[str, np.ndarray]], layers: list[int], title: str
) -> plt.Figure:
    """Average shower (MeV per voxel) in polar coordinates: rows = reference and each generated file,
    columns = layers; one shared log colour scale per column, so rows compare directly."""
    use_style()
    rows = [("reference", ref_mean)] + list(gens)
    fig, axes = plt.subplots(len(rows), len(layers), subplot_kw={"projection": "polar"},
                             figsize=(2.3 * len(layers) + 0.8, 2.4 * len(rows) + 0.5), squeeze=False)
    for c, layer in enumerate(layers):
        sl = geometry.layer_slice(layer)
        vals = np.concatenate([m[sl] for _, m in rows])
        pos = vals[vals > 0]
        hi = pos.max() if pos.size else 1.0
        norm = LogNorm(vmin=max(hi * 1e-4, pos.min() if pos.size else 1e-6), vmax=hi)
        for r, (label, mean) in enumerate(rows):
            mesh = _polar_image(axes[r, c], geometry, mean, layer, norm)
            if r == 0:
                axes[r, c].set_title(f"layer {layer}", fontsize=9)
            if c == 0:
                axes[r, c].set_ylabel(label, labelpad=18, fontsize=9)
        cbar = fig.colorbar(mesh, ax=axes[:, c].tolist(), orientation="horizontal", fraction=0.04, pad=0.04,
                            label="MeV per voxel")
        cbar.ax.xaxis.set_major_locator(LogLocator(numticks=3))  # a few decades: labels that do not overlap
        cbar.ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=11)
    return fig


def roc_curves(curves: list[tuple[str, np.ndarray, np.ndarray, float]]) -> plt.Figure:
    """Calibrated ROC curves of the classifiers on the val split; the diagonal is 'indistinguishable'."""
    use_style()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="AUC 0.5")
    for i, (label, fpr, tpr, auc) in enumerate(curves):
        ax.plot(fpr, tpr, color=colour(i), lw=1.4, label=f"{label} (AUC {auc:.3f})")
    ax.set_xlabel("false positive rate (generated called reference)")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def quality_vs_time(points: dict[str, list[tuple[str, float, float]]]) -> plt.Figure:
    """Quality against generation cost, one panel per metric: {metric: [(label, ms/shower, value)]}; the Pareto
    front (no other model both faster and better; lower is better for every metric drawn) is joined by a line."""
    fig, axes = plt.subplots(1, len(points), figsize=(5 * len(points), 4), squeeze=False)
    for ax, (metric, pts) in zip(axes[0], points.items()):
        for i, (label, ms, v) in enumerate(pts):
            ax.scatter([ms], [v], color=colour(i), s=40, zorder=3)
            ax.annotate(label, (ms, v), textcoords="offset points", xytext=(4, 4), fontsize=8)
        front, best = [], np.inf
        for _, ms, v in sorted(pts, key=lambda p: (p[1], p[2])):
            if v < best:
                front.append((ms, v))
                best = v
        if len(front) > 1:
            ax.plot(*zip(*front), "k--", lw=0.8, zorder=2, label="Pareto front")
            ax.legend(loc="upper right")
        ax.set_xscale("log")
        ax.set_xlabel("generation cost [ms / shower]")
        ax.set_ylabel(metric)
    fig.tight_layout()
    return fig


def write_atomic(path: str | Path, data: bytes) -> None:
    """Whole file or nothing (``caloforge.outputs``)."""
    atomic_write_bytes(path, lambda f: f.write(data))


def save_png(fig: plt.Figure, path: str | Path) -> None:
    for ax in fig.axes:
        ax.minorticks_off()  # log axes add minor ticks whatever the rcParams say
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    write_atomic(path, buf.getvalue())


_HIST_FEATURES = (
    ("E_layer", "layer energy [MeV]", True, True, "Energy deposited per layer"),
    ("EC_eta", "EC eta (x) [mm]", False, False, "Centre of energy in eta = r cos(alpha)"),
    ("EC_phi", "EC phi (y) [mm]", False, False, "Centre of energy in phi = r sin(alpha)"),
    ("width_eta", "width eta [mm]", False, False, "Shower width in eta"),
    ("width_phi", "width phi [mm]", False, False, "Shower width in phi"),
    ("EC_r", "EC r [mm]", False, False, "Radial centre of energy"),
    ("width_r", "width r [mm]", False, False, "Radial width"),
    ("sparsity", "sparsity", False, False, "Fraction of empty voxels"),
)


def pick_layers(layers, ref_e_layer: np.ndarray | None = None, k: int = 6) -> list[int]:
    """Up to k layers spread over the depth, always including the layer with the largest mean energy."""
    layers = list(layers)
    idx = set(np.round(np.linspace(0, len(layers) - 1, min(k, len(layers)))).astype(int).tolist())
    if ref_e_layer is not None and ref_e_layer.size:
        idx.add(int(np.argmax(ref_e_layer.mean(axis=0))))
    return [layers[i] for i in sorted(idx)]


def _panels(results, labels, name, layers, xlabel, logx, logy) -> list[HistPanel]:
    panels = []
    for layer in layers:
        found = [next((h for h in r["_hists"] if h.name == name and h.layer == layer), None) for r in results]
        if found[0] is None or found[0].edges.size == 0:
            continue
        note = "\n".join(f"S={h.separation_power:.2g}" for h in found if h is not None)
        title = name if layer is None else f"layer {layer}"
        panels.append(HistPanel(title, found[0].edges, found[0].ref_density,
                                [(lab, h.gen_density) for lab, h in zip(labels, found)], xlabel, logx, logy, note))
    return panels


def make_figures(plot_dir: Path, geometry: Geometry, ref, gens, labels, results) -> list[dict]:
    """Draw and save the report figures; returns [{file, section, caption}] in report order."""
    plot_dir = Path(plot_dir)
    out: list[dict] = []

    def add(fig, name, section, caption):
        save_png(fig, plot_dir / name)
        out.append({"file": f"plots/{name}", "section": section, "caption": caption})

    add(histogram_grid(_panels(results, labels, "E_ratio", [None], "E_tot / E_inc", False, False)
                       + _panels(results, labels, "voxel", [None], "voxel energy [MeV]", True, True), ncols=2),
        "etot_voxels.png", "Energy response",
        "E_tot/E_inc (official bins 0.5-1.5) and the voxel-energy spectrum above the readout threshold (log). "
        "Ratio strips show generated/reference; S is the separation power.")
    rel = geometry.relevant_layers
    chosen = pick_layers(rel, ref.feats.get("E_layer"))
    alpha_chosen = [l for l in chosen if l in geometry.alpha_binned_layers] or list(geometry.alpha_binned_layers[:6])
    for name, xlabel, logx, logy, what in _HIST_FEATURES:
        layers = alpha_chosen if name in ("EC_eta", "EC_phi", "width_eta", "width_phi") else chosen
        panels = _panels(results, labels, name, layers, xlabel, logx, logy)
        if panels:
            add(histogram_grid(panels, what), f"hist_{name}.png", "Per-layer features",
                f"{what}, for layers {', '.join(map(str, layers))} (all layers: see the separation-power plot).")
    add(layer_profiles(ref.feats, [(lab, g.feats) for lab, g in zip(labels, gens)], rel), "layer_profiles.png",
        "Per-layer features", "Mean per layer of energy, radial centre, radial width and sparsity; the grey band "
        "is the reference 16-84 % range.")
    layers_of: dict[str, list] = {}
    for h in results[0]["_hists"]:
        if h.layer is not None:
            layers_of.setdefault(h.name, []).append(h.layer)
    per_gen = [(lab, {name: np.array([h.separation_power for h in r["_hists"] if h.name == name and h.layer is not None])
                      for name in layers_of}) for lab, r in zip(labels, results)]
    add(separation_by_layer(per_gen, layers_of), "separation_power.png", "Per-layer features",
        "Separation power of every per-layer histogram (0 = identical, 1 = disjoint).")
    img_layers = pick_layers(rel, ref.feats.get("E_layer"), k=5)
    add(average_showers(geometry, ref.mean_shower, [(lab, g.mean_shower) for lab, g in zip(labels, gens)],
                        img_layers, "Average shower, all energies"), "avg_shower.png", "Average showers",
        "Mean energy per voxel (log colour, MeV) in polar (alpha, r) coordinates.")
    for k, (lo, hi, count, mean) in enumerate(ref.range_means):
        if count == 0:
            continue
        gm = [(f"{lab} (n={g.range_means[k][2]})", g.range_means[k][3]) for lab, g in zip(labels, gens)]
        add(average_showers(geometry, mean, gm, img_layers,
                            f"Average shower, E_inc {lo / 1e3:g}-{hi / 1e3:g} GeV (reference n={count})"),
            f"avg_shower_E{k}.png", "Average showers",
            f"Mean energy per voxel for incident energies {lo / 1e3:g}-{hi / 1e3:g} GeV.")
    timed = [(lab, r) for lab, r in zip(labels, results) if r.get("ms_per_shower")]
    points: dict[str, list] = {}
    for lab, r in timed:
        for metric, v in (("FPD x10^3", (r.get("fpd") or {}).get("value_x1e3")),
                          ("|AUC cls-high - 0.5|", (r["classifiers"].get("high") or {}).get("auc")),
                          ("mean separation power", r["separation_power"]["mean_official"])):
            if v is not None and np.isfinite(v):
                points.setdefault(metric, []).append((lab, r["ms_per_shower"], abs(v - 0.5) if "AUC" in metric else v))
    if points:
        add(quality_vs_time(points), "quality_vs_time.png", "Quality against generation cost",
            "Each generated file at its generation cost (ms/shower); lower is better on every axis; the dashed "
            "line joins the models no other model beats on both.")
    curves = [(f"{lab} cls-{m}", np.asarray(c["roc"]["fpr"]), np.asarray(c["roc"]["tpr"]), c["auc"])
              for lab, r in zip(labels, results) for m, c in r["classifiers"].items() if c.get("roc")]
    if curves:
        add(roc_curves(curves), "roc.png", "Classifiers",
            "Calibrated ROC curves on the independent val split (first repeat).")
    return out
