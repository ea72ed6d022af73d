"""The main job: make a small dataset, train a tiny generator, sample, evaluate and write a report.

Every stage writes its output atomically and is skipped when that output already exists, so a killed demo resumes
where it stopped (training itself resumes from its last checkpoint). By default the data come from the built-in
GFlash generator (no download needed); ``data=`` runs the same chain on any CaloChallenge-format file instead.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from caloforge.errors import CaloforgeError


@dataclass
class DemoSettings:
    """What the demo does; the defaults finish in minutes on a 2-core laptop."""

    out_dir: Path
    detector: str = "par04-siw"
    n_showers: int = 6000
    energy_range_gev: tuple[float, float] = (1.0, 100.0)
    data: Path | None = None  # an existing shower file instead of the built-in generator
    recipe: str = "tiny-fm"
    steps: int | None = None  # None: the recipe's own number of steps
    overrides: tuple[str, ...] = ()
    solver: str | None = None
    sampler_steps: int | None = None
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 0
    device: str = "auto"
    classifier_epochs: int | None = None
    stage_seconds: dict = field(default_factory=dict)


def _stage(settings: DemoSettings, name: str, output: Path, log) -> bool:
    """True when the stage must run (its output is missing); logs what happens either way."""
    if output.exists():
        log(f"[{name}] found {output}, skipping")
        return False
    log(f"[{name}] -> {output}")
    return True


def run_demo(settings: DemoSettings, log=print) -> dict:
    """Run data -> split -> train -> sample -> evaluate; returns the evaluation metrics of the generated file."""
    from caloforge.data.reader import ShowerFile
    from caloforge.data.split import split_file
    from caloforge.data.writer import write_showers
    from caloforge.evaluation.fpd_kpd import scaled_options
    from caloforge.evaluation.report import evaluate
    from caloforge.sampling.generator import Generator
    from caloforge.simulate.generate import make_file
    from caloforge.training.trainer import train

    out = Path(settings.out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CaloforgeError(f"--out {out}: cannot create the output folder ({exc.strerror})") from None
    times = settings.stage_seconds

    # 1. data
    if settings.data is not None:
        source = Path(settings.data)
        with ShowerFile(source):  # validates the layout before any work
            pass
    else:
        source = out / "data" / f"{settings.detector}.h5"
        if _stage(settings, "data", source, log):
            t0 = time.perf_counter()
            source.parent.mkdir(parents=True, exist_ok=True)
            lo, hi = settings.energy_range_gev
            make_file(settings.detector, settings.n_showers, source, energy_range=(lo * 1e3, hi * 1e3),
                      seed=settings.seed, show_progress=True)
            times["data"] = time.perf_counter() - t0

    # 2. split (train / validation / test, seeded, disjoint)
    split_dir = out / "data" / "split"
    parts = {k: split_dir / f"{source.stem}_{k}.h5" for k in ("train", "val", "test")}
    if _stage(settings, "split", parts["test"], log):
        split_dir.mkdir(parents=True, exist_ok=True)
        split_file(source, out_paths=parts, fractions=settings.fractions, seed=settings.seed, force=True)  # own dir

    # 3. train (resumes from the last checkpoint when the run folder exists)
    run_dir = out / "run"
    log(f"[train] recipe {settings.recipe} -> {run_dir}")
    t0 = time.perf_counter()
    from caloforge.training.config import load_recipe

    recipe = load_recipe(settings.recipe, list(settings.overrides))
    result = train(recipe, parts["train"], run_dir, val_path=parts["val"], steps=settings.steps,
                   device=settings.device)
    times["train"] = time.perf_counter() - t0
    if not result.completed:
        raise CaloforgeError(f"training stopped at step {result.step}; run the demo again to resume")

    # 4. sample: as many showers as the test split, with its incident energies
    gen_path = out / "generated.h5"
    sample_stats: dict = {}
    if _stage(settings, "sample", gen_path, log):
        with ShowerFile(parts["test"]) as f:
            energies = f.energies()
        gen = Generator.load(run_dir, device=settings.device)
        showers, sample_stats = gen.generate(energies, solver=settings.solver, steps=settings.sampler_steps,
                                             seed=settings.seed)
        write_showers(gen_path, energies, showers, geometry=gen.geometry,
                      attrs={"generator": f"caloforge {settings.recipe}", "run_dir": str(run_dir)})
        times["sample"] = sample_stats.get("seconds", 0.0)
        (out / "sample_stats.json").write_text(json.dumps(sample_stats, indent=2, default=float))

    # 5. evaluate against the held-out test split (never trained on)
    t0 = time.perf_counter()
    with ShowerFile(parts["test"]) as ref, ShowerFile(gen_path) as gen_file:
        fpd_opts, kpd_opts = scaled_options(ref.n, gen_file.n)
    metrics = evaluate([gen_path], parts["test"], dataset=None, out_dir=out / "evaluation",
                       train_path=parts["train"], classifiers=("high", "low"),
                       fpd_options=fpd_opts, kpd_options=kpd_opts,
                       classifier_epochs=settings.classifier_epochs, seed=settings.seed, device=settings.device)
    times["evaluate"] = time.perf_counter() - t0
    (out / "stage_seconds.json").write_text(json.dumps({k: round(v, 2) for k, v in times.items()}, indent=2))
    log(f"[done] report: {out / 'evaluation' / 'report.html'}")
    return metrics


def headline(metrics: dict) -> list[str]:
    """A few human-readable lines of the most important numbers of one evaluated file."""
    lines = []
    for entry in metrics.get("generated", []):
        parts = [f"{entry.get('label', 'generated')}: n={entry.get('n')}"]
        for key in ("fpd", "kpd"):
            v = entry.get(key)
            if isinstance(v, dict) and v.get("value") is not None:
                parts.append(f"{key.upper()}={1e3 * v['value']:.2f}e-3")
        for mode, res in (entry.get("classifiers") or {}).items():
            if isinstance(res, dict) and res.get("auc") is not None:
                parts.append(f"AUC[{mode}]={res['auc']:.3f}")
        lines.append("  ".join(parts))
    return lines or [json.dumps(metrics)[:200]]

