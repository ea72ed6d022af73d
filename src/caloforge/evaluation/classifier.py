"""Binary classifier test (CaloChallenge protocol): how well can a network tell generated from reference showers?

Label 0 = generated, 1 = reference. Each class is split 0.6 / 0.2 / 0.2 into train / test / val (the official
60k/20k/20k for 100k showers). The network is trained on *train*, the epoch with the best *test* accuracy is kept
(training stops early at accuracy 1), its sigmoid outputs are calibrated by isotonic regression fitted on *test*,
and AUC and JSD = (ln 2 - BCE) / ln 2 are measured on the independent *val* split.

``official=True`` follows the published protocol exactly (float64, 3 x 2048 hidden units, 50 epochs, no patience).
The fast default differs only where it saves time: float32, inputs standardised with train-split statistics, 3 x 512
hidden units, at most 30 epochs and a patience of 5 epochs without test-accuracy improvement (docs/evaluate.md).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score, roc_curve

from caloforge.devices import resolve_device
from caloforge.errors import CaloforgeError
from caloforge.progress import progress

SPLIT_FRACTIONS = (0.6, 0.2, 0.2)  # train / test / val, per class


@dataclass(frozen=True)
class ClassifierSettings:
    """Everything that defines one classifier run; ``official()`` is the published protocol."""

    hidden: int = 512
    n_hidden_layers: int = 3
    epochs: int = 30
    patience: int | None = 5
    batch_size: int = 1000
    lr: float = 2e-4
    dropout: float = 0.0
    dtype: str = "float32"
    standardize: bool = True  # z-score features with train-split statistics: same optimum, far fewer epochs

    @classmethod
    def official(cls) -> ClassifierSettings:
        return cls(hidden=2048, n_hidden_layers=3, epochs=50, patience=None, dtype="float64", standardize=False)


def build_dnn(n_in: int, hidden: int, n_hidden_layers: int = 3, dropout: float = 0.0) -> torch.nn.Sequential:
    """The official DNN: n_hidden_layers x (Linear -> LeakyReLU -> Dropout), then a single logit."""
    layers: list[torch.nn.Module] = []
    width = n_in
    for _ in range(n_hidden_layers):
        layers += [torch.nn.Linear(width, hidden), torch.nn.LeakyReLU(), torch.nn.Dropout(dropout)]
        width = hidden
    layers.append(torch.nn.Linear(width, 1))
    return torch.nn.Sequential(*layers)


def split_per_class(n: int, rng: np.random.Generator, fractions=SPLIT_FRACTIONS) -> list[np.ndarray]:
    """Shuffled indices of one class cut into train / test / val by ``fractions`` (int-truncated, as official)."""
    sizes = (n * np.asarray(fractions)).astype(int)
    perm = rng.permutation(n)
    return np.split(perm, np.cumsum(sizes)[:-1])[: len(fractions)]


def _logits(model: torch.nn.Module, x: torch.Tensor, batch_size: int, device: torch.device) -> np.ndarray:
    """Model logits for all rows of x, in batches (x may live on the CPU; batches move to device)."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(model(x[i : i + batch_size].to(device)).reshape(-1).double().cpu())  # (b,)
    return torch.cat(out).numpy() if out else np.zeros(0)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -700, 700)))


def calibrated_scores(p_test: np.ndarray, y_test: np.ndarray, p_val: np.ndarray) -> np.ndarray:
    """Isotonic calibration fitted on the test split, applied to the val split (official settings)."""
    iso = IsotonicRegression(out_of_bounds="clip", y_min=1e-6, y_max=1 - 1e-6).fit(p_test, y_test)
    return iso.predict(p_val)


def jsd_from_probs(p: np.ndarray, y: np.ndarray) -> float:
    """(ln 2 - BCE) / ln 2: 0 for indistinguishable samples, 1 for perfectly separated ones."""
    p = np.clip(p, 1e-12, 1 - 1e-12)
    bce = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    return float((math.log(2.0) - bce) / math.log(2.0))


def _train_one(
    model: torch.nn.Module,
    x_tr: torch.Tensor,
    y_tr: torch.Tensor,
    x_te: torch.Tensor,
    y_te: np.ndarray,
    st: ClassifierSettings,
    device: torch.device,
    gen: torch.Generator,
    desc: str,
) -> tuple[torch.nn.Module, int, int]:
    """Train; keep the state with the best test accuracy. Returns (best model, best epoch, epochs run)."""
    opt = torch.optim.Adam(model.parameters(), lr=st.lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    best_acc, best_epoch, best_state, stale, epoch = -1.0, 0, None, 0, 0
    for epoch in progress(range(1, st.epochs + 1), desc=desc, unit="epoch"):
        model.train()
        order = torch.randperm(len(x_tr), generator=gen)
        for i in range(0, len(order), st.batch_size):
            idx = order[i : i + st.batch_size]
            xb, yb = x_tr[idx].to(device), y_tr[idx].to(device)  # (b, D), (b,)
            loss = loss_fn(model(xb).reshape(-1), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        acc = float(np.mean((_logits(model, x_te, st.batch_size, device) > 0) == (y_te > 0.5)))
        if acc > best_acc:
            best_acc, best_epoch, stale = acc, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        if acc == 1.0 or (st.patience is not None and stale >= st.patience):
            break
    model.load_state_dict(best_state)
    return model, best_epoch, epoch


def _roc_points(y: np.ndarray, p: np.ndarray, max_points: int = 200) -> dict:
    fpr, tpr, _ = roc_curve(y, p)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(max_points, len(fpr))).astype(int))
    return {"fpr": fpr[keep].round(6).tolist(), "tpr": tpr[keep].round(6).tolist()}


def run_classifier(
    X_gen: np.ndarray,
    X_ref: np.ndarray,
    official: bool = False,
    repeats: int = 1,
    seed: int = 0,
    epochs: int | None = None,
    device: str = "auto",
    settings: ClassifierSettings | None = None,
    network: str = "dnn",
    grid_shape: tuple[int, int, int] | None = None,
    desc: str = "classifier",
) -> dict:
    """Train ``repeats`` independent classifiers generated-vs-reference; AUC / JSD mean and std over the repeats.

    ``network='cnn'`` uses the 3-D ResNet (rows must be [log10 E_inc, voxels...] of a regular mesh ``grid_shape``).
    Both classes are cut to the same size (the official code requires equal sizes).
    """
    X_gen, X_ref = np.asarray(X_gen), np.asarray(X_ref)
    if X_gen.ndim != 2 or X_ref.ndim != 2 or X_gen.shape[1] != X_ref.shape[1]:
        raise CaloforgeError(
            f"classifier: expected two 2-D arrays with the same number of features, got {X_gen.shape} and {X_ref.shape}"
        )
    if repeats < 1:
        raise CaloforgeError(f"classifier: repeats must be >= 1, got {repeats}")
    st = settings or (ClassifierSettings.official() if official else ClassifierSettings())
    if epochs is not None:
        st = ClassifierSettings(**{**asdict(st), "epochs": int(epochs)})
    n = min(len(X_gen), len(X_ref))
    if n < 10:
        raise CaloforgeError(f"classifier: need at least 10 showers per class, got {len(X_gen)} and {len(X_ref)}")
    dtype = torch.float64 if st.dtype == "float64" else torch.float32
    dev = resolve_device(device)
    if not np.all(np.isfinite(X_gen)) or not np.all(np.isfinite(X_ref)):
        raise CaloforgeError("classifier: inputs contain NaN or inf values (check the generated file)")

    runs, roc = [], None
    for rep in range(repeats):
        rng = np.random.default_rng(seed + 1000 * rep)
        torch.manual_seed(seed + 1000 * rep)
        sub_gen = rng.permutation(len(X_gen))[:n]  # equal class sizes, as the official split requires
        sub_ref = rng.permutation(len(X_ref))[:n]
        gen_parts, ref_parts = split_per_class(n, rng), split_per_class(n, rng)
        sets = []
        for g_idx, r_idx in zip(gen_parts, ref_parts):
            x = np.concatenate([X_gen[sub_gen[g_idx]], X_ref[sub_ref[r_idx]]])  # (n_g + n_r, D)
            y = np.concatenate([np.zeros(len(g_idx)), np.ones(len(r_idx))])
            sets.append((torch.as_tensor(x, dtype=dtype), y))
        (x_tr, y_tr), (x_te, y_te), (x_va, y_va) = sets
        if st.standardize:
            mu, sd = x_tr.mean(0), x_tr.std(0)  # (D,)
            sd = torch.where(sd > 0, sd, torch.ones_like(sd))
            x_tr, x_te, x_va = ((x - mu) / sd for x in (x_tr, x_te, x_va))
        model = _make_network(network, x_tr.shape[1], st, grid_shape).to(device=dev, dtype=dtype)
        t0 = time.perf_counter()
        model, best_epoch, n_epochs = _train_one(
            model, x_tr, torch.as_tensor(y_tr, dtype=dtype), x_te, y_te, st, dev,
            torch.Generator().manual_seed(seed + 1000 * rep), f"{desc} {rep + 1}/{repeats}",
        )
        p_te = _sigmoid(_logits(model, x_te, st.batch_size, dev))
        p_va = _sigmoid(_logits(model, x_va, st.batch_size, dev))
        p_cal = calibrated_scores(p_te, y_te, p_va)
        runs.append({
            "auc": float(roc_auc_score(y_va, p_cal)),
            "jsd": jsd_from_probs(p_cal, y_va),
            "auc_uncalibrated": float(roc_auc_score(y_va, p_va)),
            "val_accuracy": float(np.mean((p_cal > 0.5) == (y_va > 0.5))),
            "best_epoch": best_epoch,
            "epochs_run": n_epochs,
            "seconds": round(time.perf_counter() - t0, 3),
        })
        if roc is None:
            roc = _roc_points(y_va, p_cal)
    aucs = np.array([r["auc"] for r in runs])
    jsds = np.array([r["jsd"] for r in runs])
    return {
        "auc": float(aucs.mean()),
        "auc_std": float(aucs.std(ddof=1)) if repeats > 1 else 0.0,
        "jsd": float(jsds.mean()),
        "jsd_std": float(jsds.std(ddof=1)) if repeats > 1 else 0.0,
        "n_per_class": int(n),
        "n_features": int(X_gen.shape[1]),
        "official": bool(official),
        "network": network,
        "settings": asdict(st),
        "device": str(dev),
        "per_run": runs,
        "roc": roc,
    }


def _make_network(network: str, n_in: int, st: ClassifierSettings, grid_shape) -> torch.nn.Module:
    if network == "dnn":
        return build_dnn(n_in, st.hidden, st.n_hidden_layers, st.dropout)
    if network == "cnn":
        from caloforge.evaluation.resnet import ShowerResNet

        if grid_shape is None or 1 + int(np.prod(grid_shape)) != n_in:
            raise CaloforgeError(
                f"classifier 'cnn': needs a regular mesh; inputs have {n_in - 1} voxels, grid {grid_shape}"
            )
        return ShowerResNet(tuple(grid_shape))
    raise CaloforgeError(f"classifier: network must be 'dnn' or 'cnn', got {network!r}")
