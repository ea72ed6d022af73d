"""What the evaluation shows a reader: the headline table (one column per model, as the CaloChallenge paper prints
it), summary.csv (one row per model) and the self-contained report.html. Pure formatting of the metrics dict: no
numbers are computed here, so every cell is the number in metrics.json."""

from __future__ import annotations

import csv
import html
import io

#: Separation-power families of the headline table, in the paper's order (mean over layers).
HEADLINE_FAMILIES = ("E_ratio", "E_layer", "EC_eta", "EC_phi", "width_eta", "width_phi", "voxel")


def _distance_cell(d: dict | None):
    if d is None:
        return None
    if d.get("refused"):
        return "refused"
    return d["value_x1e3"]


def headline(entry: dict) -> dict:
    """The headline numbers of one model: {row name: value or None}. Refused distances read 'refused'."""
    row: dict = {}
    for mode in ("low", "high", "low-normed", "cnn"):
        c = entry["classifiers"].get(mode)
        if c is not None:
            row[f"AUC cls-{mode}"] = c.get("auc")
    for name in ("fpd", "kpd"):
        if entry.get(name) is not None:
            row[f"{name.upper()} x10^3"] = _distance_cell(entry[name])
            row[f"{name.upper()} error x10^3"] = entry[name].get("error_x1e3")
    summary = entry["separation_power"]["summary"]
    for fam in HEADLINE_FAMILIES:
        if fam in summary:
            row[f"sep. power {fam}"] = summary[fam]["mean"]
    row["sep. power, mean of official"] = entry["separation_power"]["mean_official"]
    if entry.get("ms_per_shower") is not None:
        row["ms / shower"] = entry["ms_per_shower"]
    return row


def headline_columns(metrics: dict) -> tuple[list[str], list[str], dict]:
    """(row names, model labels, {(row, label): value}): the table with one column per model."""
    labels = [g["label"] for g in metrics["generated"]]
    cells, rows = {}, []
    for g in metrics["generated"]:
        for k, v in headline(g).items():
            if k not in rows:
                rows.append(k)
            cells[(k, g["label"])] = v
    return rows, labels, cells


def summary_row(entry: dict) -> dict:
    """One flat row of the headline numbers of a generated file (FPD/KPD x 10^3, as the published tables)."""
    row = {"label": entry["label"], "path": entry["path"], "n": entry["n"]}
    for mode, c in entry["classifiers"].items():
        row.update({f"auc_{mode}": c["auc"], f"auc_{mode}_std": c["auc_std"], f"jsd_{mode}": c["jsd"]})
    for name in ("fpd", "kpd"):
        d = entry[name]
        row[f"{name}_x1e3"] = d["value_x1e3"] if d else None
        row[f"{name}_err_x1e3"] = d["error_x1e3"] if d else None
    row["sep_mean_official"] = entry["separation_power"]["mean_official"]
    row["energy_ks_p"] = entry["energy_check"]["ks_pvalue"]
    row["ms_per_shower"] = entry.get("ms_per_shower")
    return row


def summary_csv(metrics: dict) -> str:
    rows = [summary_row(e) for e in metrics["generated"]]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})
    return buf.getvalue()


def fmt(v, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:.3e}"
    return html.escape(str(v))


_CSS = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}"
        "th{background:#eee}td:first-child{text-align:left}.warn{background:#fdd;border:2px solid #c00;padding:.5em}"
        "figure{margin:1em 0}img{max-width:100%}figcaption{font-size:90%;color:#444}")


def table(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{fmt(r.get(k))}</td>" for k in keys) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def headline_table(metrics: dict) -> str:
    rows, labels, cells = headline_columns(metrics)
    head = "<th>metric</th>" + "".join(f"<th>{html.escape(lab)}</th>" for lab in labels)
    body = "".join(f"<tr><td>{html.escape(r)}</td>" + "".join(f"<td>{fmt(cells.get((r, lab)))}</td>" for lab in labels)
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _notes(metrics: dict) -> list[str]:
    """Numbers that were refused or columns that were dropped: said next to the table, never hidden."""
    out = []
    for g in metrics["generated"]:
        for name in ("fpd", "kpd"):
            d = g.get(name)
            if d and d.get("refused"):
                out.append(f"{g['label']}: {name.upper()} refused: {d['refused']}")
            if d and d.get("dropped_columns"):
                out.append(f"{g['label']}: {name.upper()} without {len(d['dropped_columns'])} degenerate reference "
                           f"column(s) (all |values| <= 1e-6): {', '.join(d['dropped_columns'])}")
        for mode, c in g["classifiers"].items():
            if c.get("refused"):
                out.append(f"{g['label']}: cls-{mode} refused: {c['refused']}")
        out += [f"{g['label']}: {n}" for n in g["separation_power"].get("notes", [])]
    return out


def render_html(metrics: dict, figures: list[dict]) -> str:
    """A self-contained page (inline CSS, no scripts): inputs, warnings, headline table (one column per model),
    notes on refused/dropped numbers, separation-power summary, figures by section, evaluation cost."""
    e = html.escape
    parts = [(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>caloforge evaluation</title>"
              f"<style>{_CSS}</style></head><body><h1>caloforge evaluation</h1>"),
             (f"<p>Reference: <code>{e(metrics['reference']['path'])}</code> ({metrics['reference']['n']} showers); "
              f"geometry {e(metrics['geometry'])}; dataset {e(str(metrics['dataset']))}; threshold "
              f"{fmt(metrics['threshold_mev'])} MeV; classifier protocol "
              f"{'official' if metrics['settings']['official'] else 'fast (see docs/evaluate.md)'}.</p>")]
    if metrics["warnings"]:
        parts.append("<div class='warn'><b>Warnings</b><ul>" + "".join(f"<li>{e(w)}</li>" for w in metrics["warnings"])
                     + "</ul></div>")
    parts.append("<h2>Metrics</h2><p>One column per generated file. AUC: calibrated classifier on the val split "
                 "(0.5 = indistinguishable). FPD/KPD x10<sup>3</sup> as in the published tables. Separation power: "
                 "mean over the layers of each family (0 = identical histograms, 1 = disjoint).</p>")
    parts.append(headline_table(metrics))
    notes = _notes(metrics)
    if notes:
        parts.append("<p><b>Notes</b></p><ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    parts.append("<p>Files:</p>" + table([{"label": g["label"], "path": g["path"], "n": g["n"]}
                                          for g in metrics["generated"]]))
    parts.append("<h2>Separation power by feature</h2>")
    parts.append(table([{"file": g["label"], "feature": name, "mean": s["mean"], "max": s["max"], "n": s["n"],
                         "official": s["official"]}
                        for g in metrics["generated"] for name, s in g["separation_power"]["summary"].items()]))
    section = None
    for f in figures:
        if f["section"] != section:
            section = f["section"]
            parts.append(f"<h2>{e(section)}</h2>")
        parts.append(f"<figure><img src='{e(f['file'])}' alt='{e(f['file'])}'><figcaption>{e(f['caption'])}"
                     "</figcaption></figure>")
    parts.append("<h2>Evaluation cost</h2>")
    parts.append(table([{"file": "(all)", **metrics["timings_s"]}]
                       + [{"file": g["label"], **g["timings_s"]} for g in metrics["generated"]]))
    parts.append(f"<p>caloforge {e(metrics['caloforge_version'])}, {e(metrics['created_utc'])}, schema "
                 f"{e(metrics['schema'])}.</p></body></html>")
    return "\n".join(parts)
