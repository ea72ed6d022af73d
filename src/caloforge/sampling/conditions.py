"""Per-shower conditions for sampling: energies, incident angles and a detector slot, checked against what the model
was trained on. A model conditioned on angles or a detector refuses to sample without them (never fills zeros).

Raw condition rows are ``[E MeV, (phi, theta rad), (detector one-hot K + 1)]``: what ``GeneratorModule`` takes.
"""

from __future__ import annotations

import numpy as np

from caloforge.errors import CaloforgeError


def needed_conditions(encoder) -> list[str]:
    """Names of the per-shower inputs this model needs besides the energy."""
    return (["phi", "theta"] if encoder.angles else []) + (["detector"] if encoder.n_detectors else [])


def detector_slots(values, encoder, names: list[str] | None = None) -> np.ndarray | None:
    """Integer one-hot slots from integers or names (looked up in ``names``, the encoder's ``detector_names``)."""
    if values is None:
        return None
    arr = np.atleast_1d(np.asarray(values, dtype=object))
    out = np.empty(arr.shape[0], dtype=np.int64)
    for i, v in enumerate(arr):
        text = str(v).strip()
        if text.lstrip("-").isdigit():
            out[i] = int(text)
        elif names and text in names:
            out[i] = names.index(text)
        else:
            known = f"one of {', '.join(names)} or " if names else ""
            raise CaloforgeError(f"detector: expected {known}an integer slot in [0, {encoder.n_detectors}], "
                                 f"found {text!r}")
        if not 0 <= out[i] <= encoder.n_detectors:
            raise CaloforgeError(f"detector: expected a slot in [0, {encoder.n_detectors}] ({encoder.n_detectors} "
                                 f"known detectors + 1 new), found {out[i]}")
    return out


def raw_conditions(encoder, energies, phi=None, theta=None, detector=None, names=None) -> np.ndarray:
    """(n, R) float32 raw conditions; one-line refusal when the model needs angles or a detector and none is given.

    Scalars are broadcast to every shower. Conditions a model was not trained on are dropped (the CLI refuses them
    when a user names them explicitly).
    """
    e = np.asarray(energies, dtype=np.float64).reshape(-1)
    n = e.shape[0]
    given = {"phi": phi, "theta": theta, "detector": detector}
    needed = needed_conditions(encoder)
    missing = [k for k in needed if given[k] is None]
    if missing:
        what = "incident angles (phi, theta)" if "phi" in missing or "theta" in missing else "a detector"
        raise CaloforgeError(f"conditions: this model is conditioned on {what}; expected "
                             f"{' and '.join(missing)} for every shower (sample: --{' --'.join(missing)} or "
                             f"--conditions-from FILE), found none")
    cols = [e[:, None]]
    if encoder.angles:
        cols += [np.broadcast_to(np.asarray(v, dtype=np.float64).reshape(-1), (n,))[:, None] for v in (phi, theta)]
    slots = detector_slots(detector, encoder, names) if encoder.n_detectors else None
    if slots is not None:
        slots = np.broadcast_to(slots, (n,))
        cols.append(np.eye(encoder.n_detectors + 1)[slots])
    encoder.encode(e, cols[1][:, 0] if encoder.angles else None, cols[2][:, 0] if encoder.angles else None,
                   slots)  # the reference checks (finite values, energy > 0, slot range): one-line errors
    return np.concatenate(cols, axis=1).astype(np.float32)


def conditions_from_file(path, n: int | None = None) -> dict:
    """Energies and every condition column a shower file holds (first n rows): keys energies, phi, theta, detector."""
    from caloforge.data.reader import ShowerFile

    with ShowerFile(path) as f:
        count = f.n if n is None else n
        if count > f.n:
            raise CaloforgeError(f"{path}: holds {f.n} showers, expected at least {count}")
        b = f.read(np.arange(count), with_extras=True)
    x = b.extras
    return {"energies": b.energies, "phi": x.get("incident_phi"), "theta": x.get("incident_theta"),
            "detector": x.get("detector_id")}


def file_detector_slots(path, encoder, n: int | None = None) -> np.ndarray | None:
    """The model slot of each of the first n rows of a shower file, for a model whose slots are named: the file's
    ``detector_id`` is read through its own ``detector_names`` (or its whole-file ``detector`` attribute) and
    looked up by name in the model's table (``training.sources.row_slots``), never taken as a slot number.
    None when the model is unnamed (the file's ids are its slots) or has no detector condition."""
    if not getattr(encoder, "n_detectors", 0) or not encoder.named:
        return None
    from caloforge.data.reader import ShowerFile
    from caloforge.training.sources import row_slots

    with ShowerFile(path) as f:
        slots = row_slots(f, encoder)
    return slots if n is None else slots[:n]
