"""The main job: make a small dataset, train a small generator inside a time budget, sample, evaluate, report.

Every stage writes its output atomically and is skipped when that output exists and is still current, so a killed
demo resumes where it stopped: training resumes from its last checkpoint with the step count planned on the first
run, and the budget counts the training time of all runs together. By default the data come from the built-in
GFlash generator (no download needed); ``data=`` runs the same chain on any CaloChallenge-format file instead.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from caloforge.errors import CaloforgeError
from caloforge.outputs import atomic_write_text

DEFAULT_RECIPE = "tiny-fm-2s"  # best small recipe measured (docs/fidelity.md): two-stage beats tiny-fm at 10 min
DEFAULT_MINUTES = 6.0


@dataclass
class DemoSettings:
    """What the demo does; the defaults take about ten minutes on an idle 2-core machine."""

    out_dir: Path
    detector: str = "par04-siw"
    n_showers: int = 6000
    energy_range_gev: tuple[float, float] = (1.0, 100.0)
    data: Path | None = None  # an existing shower file instead of the built-in generator
    recipe: str = DEFAULT_RECIPE
    minutes: float = DEFAULT_MINUTES  # training wall-time budget (speed probe included); 0: no budget
    steps: int | None = None  # None: as many as fit in the budget (the recipe's own without a budget)
    overrides: tuple[str, ...] = ()
    solver: str | None = None
    sampler_steps: int | None = None
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 0
    device: str = "auto"
    classifier_epochs: int | None = None
    stage_seconds: dict = field(default_factory=dict)


class _State:
    """``demo_state.json``: the training plan, the step each later stage was made from, and the stage times of
    all runs merged (``stage_seconds.json`` mirrors them)."""

    def __init__(self, out: Path):
        self.path, self.times_path = out / "demo_state.json", out / "stage_seconds.json"
        self.data = json.loads(self.path.read_text()) if self.path.is_file() else {}
        old_times = json.loads(self.times_path.read_text()) if self.times_path.is_file() else {}
        self.times: dict = {**old_times, **self.data.get("stage_seconds", {})}

    def add_time(self, stage: str, seconds: float, accumulate: bool = False) -> None:
        self.times[stage] = round((self.times.get(stage, 0.0) if accumulate else 0.0) + seconds, 2)
        self.save()

    def save(self) -> None:
        self.data["stage_seconds"] = self.times
        atomic_write_text(self.path, json.dumps(self.data, indent=1))
        atomic_write_text(self.times_path, json.dumps(self.times, indent=2))


def _stage(name: str, output: Path, log, current: bool = True) -> bool:
    """True when the stage must run (output missing or made from an older model); logs what happens either way."""
    if output.exists() and current:
        log(f"[{name}] found {output}, skipping")
        return False
    log(f"[{name}] -> {output}")
    return True


def _checkpoint_step(run_dir: Path) -> int:
    from caloforge.training.checkpoint import latest_step

    return latest_step(run_dir)


def _make_data(settings: DemoSettings, out: Path, state: _State, log) -> Path:
    from caloforge.data.reader import ShowerFile
    from caloforge.simulate.generate import make_file

    if settings.data is not None:
        with ShowerFile(settings.data):  # validates the layout before any work
            pass
        return Path(settings.data)
    source = out / "data" / f"{settings.detector}.h5"
    if _stage("data", source, log):
        t0 = time.perf_counter()
        source.parent.mkdir(parents=True, exist_ok=True)
        lo, hi = settings.energy_range_gev
        make_file(settings.detector, settings.n_showers, source, energy_range=(lo * 1e3, hi * 1e3),
                  seed=settings.seed, show_progress=True)
        state.add_time("data", time.perf_counter() - t0)
    return source


def _train(settings: DemoSettings, recipe, parts: dict, run_dir: Path, state: _State, log) -> int:
    """Train inside the budget (probe, plan, deadline); returns the step of the model to sample."""
    from caloforge.training.trainer import train
    from caloforge.workflows.budget import Deadline, plan_steps, probe_speed

    budget_s = settings.minutes * 60 if settings.minutes and settings.minutes > 0 else None
    spent = float(state.times.get("train", 0.0))
    plan = state.data.get("plan") or {}
    done = _checkpoint_step(run_dir)
    if settings.steps is not None:
        plan = {"steps": int(settings.steps), "how": "--steps"}
    elif not plan.get("steps") and budget_s is not None:
        log(f"[train] measuring the speed of {recipe.name} on this machine ({settings.device})")
        t0 = time.perf_counter()
        speed = probe_speed(recipe, parts["train"], run_dir.parent / "probe", settings.device,
                            max_seconds=max(20.0, 0.1 * budget_s))
        spent += time.perf_counter() - t0
        steps = plan_steps(speed["seconds_per_step"], budget_s - spent - speed["setup_s"])
        plan = {"steps": steps, "how": f"fits {settings.minutes:g} min", **{k: round(v, 4) for k, v in speed.items()}}
        log(f"[train] {1 / speed['seconds_per_step']:.1f} steps/s -> {steps} steps fit the "
            f"{settings.minutes:g}-minute budget")
    elif not plan.get("steps"):
        plan = {"steps": recipe.train.steps, "how": "recipe"}
    state.data["plan"] = plan
    state.add_time("train", spent)
    if done >= plan["steps"]:
        log(f"[train] found {run_dir} at step {done}, skipping")
        return done
    left = None if budget_s is None else budget_s - spent
    if left is not None and left <= 0:
        log(f"[train] budget of {settings.minutes:g} min spent; using the model at step {done} of {plan['steps']} "
            f"(a larger --minutes continues it)")
        return done
    log(f"[train] {recipe.name}: {plan['steps']} steps -> {run_dir}")
    t0 = time.perf_counter()
    callbacks = [Deadline(time.monotonic() + left)] if left is not None else []
    try:
        result = train(recipe, parts["train"], run_dir, val_path=parts["val"], steps=plan["steps"],
                       device=settings.device, callbacks=callbacks)
    finally:
        state.add_time("train", time.perf_counter() - t0, accumulate=True)
    if result.signal is not None:
        raise CaloforgeError(f"training stopped at step {result.step}; run the demo again to resume")
    if not result.completed:
        log(f"[train] the {settings.minutes:g}-minute budget ran out at step {result.step} of {plan['steps']}: the "
            f"machine is slower than the probe measured (busy?); sampling the model as it is")
    return result.step


def run_demo(settings: DemoSettings, log=print) -> dict:
    """Run data -> split -> train -> sample -> evaluate; returns metrics.json's content plus ``floor`` (the
    reference-vs-reference numbers at the same size) and ``demo`` (what was made, where)."""
    from caloforge.data.reader import ShowerFile
    from caloforge.data.split import split_file
    from caloforge.evaluation.context import reference_floor
    from caloforge.evaluation.fpd_kpd import scaled_options
    from caloforge.evaluation.report import evaluate
    from caloforge.training.recipe_io import load_recipe

    t_all = time.perf_counter()
    out = Path(settings.out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CaloforgeError(f"--out {out}: cannot create the output folder ({exc.strerror})") from None
    recipe = load_recipe(settings.recipe, list(settings.overrides))  # a wrong recipe is refused before any work
    state = _State(out)
    budget = f"a {settings.minutes:g}-minute training budget" if settings.minutes else "no time budget"
    log(f"caloforge demo: recipe {recipe.name} with {budget} -> {out}")

    source = _make_data(settings, out, state, log)
    split_dir = out / "data" / "split"  # train / validation / test, seeded and disjoint
    parts = {k: split_dir / f"{source.stem}_{k}.h5" for k in ("train", "val", "test")}
    if _stage("split", parts["test"], log):
        split_dir.mkdir(parents=True, exist_ok=True)
        split_file(source, out_paths=parts, fractions=settings.fractions, seed=settings.seed, force=True)  # own dir

    run_dir = out / "run"
    step = _train(settings, recipe, parts, run_dir, state, log)

    gen_path = out / "generated.h5"  # as many showers as the test split, with its incident energies
    if _stage("sample", gen_path, log, current=state.data.get("sampled_step") == step):
        _sample(settings, parts["test"], run_dir, gen_path, out, state)
        state.data["sampled_step"] = step
        state.save()

    with ShowerFile(parts["test"]) as ref, ShowerFile(gen_path) as gen_file:
        fpd_opts, kpd_opts = scaled_options(ref.n, gen_file.n)
        n_gen, geometry = gen_file.n, gen_file.geometry or ref.geometry
    floor_path = out / "floor.json"  # depends on the data only: kept across re-runs
    if _stage("floor", floor_path, log):
        t0 = time.perf_counter()
        floor = reference_floor(parts["test"], geometry, n_gen, other_path=parts["train"], seed=settings.seed,
                                classifiers=("high", "low"), fpd_options=fpd_opts, kpd_options=kpd_opts,
                                classifier_epochs=settings.classifier_epochs, device=settings.device)
        atomic_write_text(floor_path, json.dumps(floor, indent=1, default=float))
        state.add_time("floor", time.perf_counter() - t0)
    floor = json.loads(floor_path.read_text())

    report_dir = out / "evaluation"
    metrics_path = report_dir / "metrics.json"
    if _stage("evaluate", metrics_path, log, current=state.data.get("evaluated_step") == step):
        t0 = time.perf_counter()
        evaluate([gen_path], parts["test"], dataset=None, out_dir=report_dir, train_path=parts["train"],
                 classifiers=("high", "low"), fpd_options=fpd_opts, kpd_options=kpd_opts,
                 classifier_epochs=settings.classifier_epochs, seed=settings.seed, device=settings.device,
                 floor=floor, force=True)  # a stale report of an older model is replaced
        state.add_time("evaluate", time.perf_counter() - t0)
        state.data["evaluated_step"] = step
        state.save()
    metrics = json.loads(metrics_path.read_text())
    metrics["floor"] = floor
    metrics["demo"] = {"recipe": recipe.name, "step": step, "planned_steps": state.data["plan"]["steps"],
                       "minutes": settings.minutes, "data": str(source), "run_dir": str(run_dir),
                       "generated": str(gen_path), "report": str(report_dir / "report.html"),
                       "stage_seconds": dict(state.times), "this_run_s": round(time.perf_counter() - t_all, 1),
                       "sample_stats": state.data.get("sample_stats", {})}
    return metrics


def _sample(settings: DemoSettings, test_path: Path, run_dir: Path, gen_path: Path, out: Path, state: _State):
    from caloforge.data.reader import ShowerFile
    from caloforge.data.writer import write_showers
    from caloforge.sampling.generator import Generator

    with ShowerFile(test_path) as f:
        energies = f.energies()
    gen = Generator.load(run_dir, device=settings.device)
    showers, stats = gen.generate(energies, solver=settings.solver, steps=settings.sampler_steps,
                                  seed=settings.seed)
    gen_path.unlink(missing_ok=True)
    write_showers(gen_path, energies, showers, geometry=gen.geometry,
                  attrs={"generator": f"caloforge {settings.recipe}", "run_dir": str(run_dir)})
    state.data["sample_stats"] = {k: v for k, v in stats.items() if isinstance(v, (int, float, str))}
    atomic_write_text(out / "sample_stats.json", json.dumps(stats, indent=2, default=float))
    state.add_time("sample", stats.get("seconds", 0.0))


def final_screen(metrics: dict) -> list[str]:
    """The one screen printed at the end: what was made, how good it is against the floor, where the report is."""
    from caloforge.evaluation.context import headline_rows

    d, floor = metrics.get("demo", {}), metrics.get("floor") or {}
    times = d.get("stage_seconds", {})
    entry = (metrics.get("generated") or [{}])[0]
    ms = (d.get("sample_stats") or {}).get("ms_per_shower")
    sizes = "/".join(map(str, floor.get("n", [])))
    train_min = times.get("train", 0) / 60
    made = [f"  data       {d.get('data')} (training split {metrics.get('train')})",
            (f"  model      {d.get('recipe')}, {d.get('step')} of {d.get('planned_steps')} steps in "
             f"{train_min:.1f} min of training -> {d.get('run_dir')}"),
            f"  showers    {entry.get('n')} generated" + (f" ({ms:.1f} ms/shower)" if ms else "")
            + f" -> {d.get('generated')}"]
    rows = headline_rows(entry, floor)
    width = max((len(r["metric"]) for r in rows), default=10)
    table = [f"  {'metric':<{width}}  {'value':<22} {'floor':<20} verdict"]
    table += [f"  {r['metric']:<{width}}  {r['value']:<22} {r['floor']:<20} {r['verdict']}" for r in rows]
    total = sum(v for v in times.values() if isinstance(v, (int, float)))
    bar = "=" * 78
    return ["", bar, "caloforge demo: done", bar, "Made:", *made, "",
            f"How good, on {metrics['reference']['n']} held-out test showers. Floor: the same metric of real showers",
            f"against real showers ({floor.get('kind', 'another reference sample')}, {sizes} showers):", *table, "",
            "Stage times (all runs, s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items())
            + f"; total {total / 60:.1f} min",
            f"Report: {d.get('report')}", bar]
