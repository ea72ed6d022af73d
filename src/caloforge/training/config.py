"""Recipes: one validated pydantic object at the door of training and sampling.

A recipe is YAML (``yaml.safe_load``; nothing is ever eval'ed) with the sections data, transforms, model, objective,
sampler, train and postprocess. Every section forbids unknown keys, so a typo is one clear line
(``recipe tiny-fm: train.lrr: unknown key``) instead of a silently ignored setting. Command-line overrides are
``dotted.key=value`` strings whose values are typed by YAML (``train.lr=1e-3`` is a float, ``model.qk_norm=false`` a
bool).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from caloforge.models.options import Init, Mlp, Norm, PosEmbed, QKNormWeights, RopeLayout

Condition = Literal["energy", "phi", "theta", "detector"]

# Upper bounds that no sane run exceeds: a typo (depth=100000) is refused at the door, not after minutes of work.
_MAX_STEPS = 10**9
_MAX_WIDTH = 16384
_MAX_DEPTH = 512
_SEED_MAX = 2**63 - 1  # what torch.manual_seed, numpy and Python's random all accept
_Beta = Annotated[float, Field(ge=0, lt=1)]


class _Strict(BaseModel):
    # allow_inf_nan=False: every float setting must be finite (train.lr=.inf is refused, not trained to NaN)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DataConfig(_Strict):
    """What the model is conditioned on and how the training file is read."""

    conditions: tuple[Condition, ...] = ("energy",)
    energy_range_mev: tuple[float, float] = (1.0e3, 1.0e6)
    # "file": the geometry stored in (or implied by the voxel count of) the training file; else Geometry.parse's grammar
    geometry: str = "file"
    n_detectors: int = Field(1, ge=1, le=65536)
    ram_budget_mb: float = Field(2048.0, gt=0, le=1e8)  # files smaller than this are loaded once and pre-transformed
    fit_max_showers: int = Field(100_000, ge=1, le=10**9)  # showers used to fit the transform chain statistics
    val_max_showers: int = Field(2048, ge=1, le=10**8)
    # The model's detector slot table (condition 'detector'): slot k is detectors[k]; files are mapped to slots by
    # detector name. Empty: n_detectors unnamed slots indexed by the files' detector_id. One more slot is reserved.
    detectors: tuple[str, ...] = ()
    new_detector: str | None = None  # the detector in the reserved slot (set by `caloforge adapt`)
    # Per-detector sampling weights (several training files, one per detector); empty = every shower once per epoch
    detector_weights: dict[str, float] = Field(default_factory=dict)

    @field_validator("energy_range_mev")
    @classmethod
    def _ordered(cls, v):
        if not 0 < v[0] < v[1]:
            raise ValueError(f"expected 0 < low < high, found {list(v)}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _count_named_slots(cls, v):
        if isinstance(v, dict) and v.get("detectors") and "n_detectors" not in v:
            v = {**v, "n_detectors": len(v["detectors"])}  # the table sets the count (stored configs spell it out)
        return v

    @model_validator(mode="after")
    def _slot_table(self):
        if len(set(self.detectors)) != len(self.detectors):
            raise ValueError(f"detectors: expected distinct names, found {list(self.detectors)}")
        if self.detectors and self.n_detectors != len(self.detectors):
            raise ValueError(f"n_detectors {self.n_detectors} disagrees with the {len(self.detectors)} detectors")
        if self.new_detector is not None and not self.detectors:
            raise ValueError("new_detector needs the detectors slot table")
        if self.new_detector in self.detectors:
            raise ValueError(f"new_detector {self.new_detector!r} already has a slot in detectors")
        named = (*self.detectors, *([self.new_detector] if self.new_detector else []))
        for name, w in self.detector_weights.items():
            if named and name not in named:
                raise ValueError(f"detector_weights: {name!r} is not in detectors {list(named)}")
            if not (w >= 0 and w < float("inf")):
                raise ValueError(f"detector_weights: {name!r}: expected a finite weight >= 0, found {w}")
        if self.detector_weights and not any(w > 0 for w in self.detector_weights.values()):
            raise ValueError("detector_weights: expected at least one weight > 0")
        return self

    @property
    def slots(self) -> int:
        """K, the number of known detector slots (the one-hot has K + 1 columns)."""
        return len(self.detectors) or self.n_detectors


class ModelConfig(_Strict):
    """DiT backbone fields (``caloforge.models.dit.DiTConfig``; the options are ``caloforge.models.options``); grid
    and cond_dim come from the data. ``check_parts`` builds the DiTConfig at load, so a bad combination is refused
    before any data is read."""

    grid: tuple[int, int, int] | None = None  # (n_z, n_alpha, n_r); None = from the geometry
    patch: tuple[int, int, int] = (5, 4, 3)
    dim: int = Field(64, ge=1, le=_MAX_WIDTH)
    depth: int = Field(2, ge=1, le=_MAX_DEPTH)
    heads: int = Field(4, ge=1, le=1024)
    mlp_ratio: float = Field(4.0, gt=0, le=64)
    pos_embed: PosEmbed = "sincos+rope"
    norm: Norm = "rmsnorm"
    qk_norm: bool = True
    mlp: Mlp = "swiglu"
    shared_modulation: bool = True
    # CaloArt-exact options (caloforge.models.options); the defaults are caloforge's own choices
    cond_widths: tuple[int, int, int] | None = None
    norm_affine: bool = False
    qk_norm_weights: QKNormWeights = "shared"
    t_scale: float = Field(1000.0, gt=0)
    rope_layout: RopeLayout = "all"
    init: Init = "zero"

    @model_validator(mode="after")
    def _consistent(self):
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.grid is not None:
            for axis, (g, p) in enumerate(zip(self.grid, self.patch)):
                if p > g:
                    raise ValueError(f"patch {list(self.patch)} is larger than grid {list(self.grid)} on axis {axis}")
        if any(p < 1 for p in self.patch):
            raise ValueError(f"patch sizes must be >= 1, found {list(self.patch)}")
        return self

    def dit_kwargs(self) -> dict:
        """Keyword arguments for DiTConfig, without grid/cond_dim (known only once the data is opened)."""
        return self.model_dump(mode="python", exclude={"grid"})


class SamplerConfig(_Strict):
    solver: str | None = None  # None = the objective's default
    steps: int | None = Field(None, ge=1, le=100_000)


class EMAConfig(_Strict):
    power: float = Field(0.7, gt=0, le=100)
    max_decay: float = Field(0.9999, ge=0, le=1)
    start: int = Field(0, ge=0, le=_MAX_STEPS)  # EMA copies the weights until this step


class TrainConfig(_Strict):
    steps: int = Field(1000, ge=1, le=_MAX_STEPS)
    batch_size: int = Field(64, ge=1, le=2**20)  # global: split over DDP ranks and accumulation shards
    grad_accum: int = Field(1, ge=1, le=65536)
    lr: float = Field(5e-4, gt=0, le=10)
    betas: tuple[_Beta, _Beta] = (0.9, 0.95)
    weight_decay: float = Field(1e-5, ge=0, le=100)
    warmup_steps: int = Field(0, ge=0, le=_MAX_STEPS)
    schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    decay_fraction: float = Field(0.2, gt=0, le=1)  # WSD: final fraction of the steps spent decaying
    min_factor: float = Field(0.0, ge=0, le=1)  # lr floor as a fraction of lr
    grad_clip: float | None = Field(1.0, gt=0)
    ema: EMAConfig = EMAConfig()
    ckpt_every: int = Field(1000, ge=1, le=_MAX_STEPS)
    keep_checkpoints: int = Field(3, ge=1, le=10_000)
    val_every: int = Field(500, ge=1, le=_MAX_STEPS)
    # in-loop quality: every val_every steps (with --val) the EMA model samples this many showers at the validation
    # energies; the Fréchet distance of their high-level features to the validation showers is logged (0 = off)
    quality_showers: int = Field(0, ge=0, le=10**7)
    log_every: int = Field(50, ge=1, le=_MAX_STEPS)
    seed: int = Field(0, ge=0, le=_SEED_MAX)
    deterministic: bool = False
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: bool = False
    # batches are a pure function of (seed, step), read in the training process (that is what makes resume exact);
    # there are no loader workers, so any other value is refused rather than silently ignored
    num_workers: int = Field(0, ge=0, le=1024)
    # ---- seams for fine-tuning, adaptation and distillation (docs/train.md "Starting from another run") ----
    init_from: str | None = None  # run directory or checkpoint whose weights start this run (not on resume)
    init_weights: Literal["ema", "raw"] = "ema"
    init_strict: bool = True  # False: load what matches by name; a shape mismatch copies the overlapping block
    init_map: dict[str, str] = Field(default_factory=dict)  # source-name prefix -> this network's prefix
    init_chain_from_source: bool = False  # take the source's fitted transform chain (and layer coder)
    freeze: tuple[str, ...] = ()  # fnmatch patterns of parameter names kept fixed (no optimiser, no EMA update)
    teacher: str | None = None  # run directory or checkpoint of a frozen teacher handed to the loss (LossContext)
    teacher_weights: Literal["ema", "raw"] = "ema"

    @model_validator(mode="after")
    def _init_settings_need_a_source(self):
        # judged by value, not by "was it given": a stored config.yaml spells out every default
        if self.init_from is None:
            changed = [k for k, v in (("init_weights", self.init_weights != "ema"), ("init_strict", not self.init_strict),
                                      ("init_map", bool(self.init_map)),
                                      ("init_chain_from_source", self.init_chain_from_source)) if v]
            if changed:
                raise ValueError(f"{changed[0]} is set but init_from is not (expected a run directory or checkpoint)")
        if self.teacher is None and self.teacher_weights != "ema":
            raise ValueError("teacher_weights is set but teacher is not (expected a run directory or checkpoint)")
        return self

    @field_validator("num_workers")
    @classmethod
    def _no_workers(cls, v):
        if v != 0:
            raise ValueError(f"batches are read in the training process (a pure function of (seed, step)); "
                             f"expected 0, found {v}")
        return v


class PostprocessConfig(_Strict):
    # THE readout threshold of a run (None = the geometry's official one): applied to every generated shower and,
    # in two-stage runs, to the training showers before the layer energies are taken
    threshold_mev: float | None = Field(None, ge=0)
    max_ratio: float = Field(2.7, gt=0)  # redraw showers with E_dep / E_inc above this
    max_rounds: int = Field(10, ge=0, le=10_000)


def _objective_has_kind(v: dict) -> dict:
    if "kind" not in v:
        raise ValueError("expected a 'kind' key (flow, edm, ddpm or vp)")
    return v


class LayerModelConfig(_Strict):
    """Optional first stage (CaloDREAM): a flow over the u-parametrised layer energies; the DiT then learns the
    showers conditioned on them (optionally layer-normalised), and the transforms apply to what the DiT learns."""

    width: int = Field(256, ge=1, le=_MAX_WIDTH)
    depth: int = Field(4, ge=1, le=_MAX_DEPTH)
    objective: dict[str, Any] = Field(default_factory=lambda: {
        "kind": "flow", "prediction": "v", "loss_space": "v", "time_sampling": "logit_normal"})
    solver: str | None = None  # None = the objective's default
    steps: int | None = Field(None, ge=1, le=100_000)
    loss_weight: float = Field(1.0, gt=0)
    max_dep: float = Field(2.0, gt=0)  # u0 = E_dep / (max_dep E_inc) must stay below 1
    alpha: float = Field(1.0e-6, gt=0, lt=0.5)  # logit(alpha + (1 - 2 alpha) u)
    threshold_mev: float | None = Field(None, ge=0)  # kept so stored configs load; the threshold is postprocess.threshold_mev
    # False: the DiT learns the thresholded showers (in MeV before the transforms), conditioned on the layer codes,
    # and the layer sums are set to the layer model's at sampling; True: each layer normalised to unit sum
    # (CaloDREAM). False measured better on the shared Geant4 set (docs/fidelity.md)
    normalise_layers: bool = False
    # showers per step for the layer model (global, like train.batch_size); None = the voxel model's batch. The layer
    # network is cheap per shower, and a batch of 1024 distinct showers at width 128 x depth 3 learned the layer
    # energies far better than 64 at 256 x 4 for 5 % more time per two-stage step (benchmarks/results/layer_batch.md)
    batch_size: int | None = Field(None, ge=1, le=1_000_000)

    _has_kind = field_validator("objective")(classmethod(lambda cls, v: _objective_has_kind(v)))

    @field_validator("threshold_mev")
    @classmethod
    def _threshold_elsewhere(cls, v):
        if v is not None:
            raise ValueError(f"the readout threshold has one home, postprocess.threshold_mev; found {v}")
        return v


class Recipe(_Strict):
    name: str
    description: str = ""
    data: DataConfig = DataConfig()
    transforms: tuple[dict[str, Any], ...] = ()
    model: ModelConfig = ModelConfig()
    objective: dict[str, Any] = Field(default_factory=lambda: {"kind": "flow"})
    sampler: SamplerConfig = SamplerConfig()
    train: TrainConfig = TrainConfig()
    postprocess: PostprocessConfig = PostprocessConfig()
    layer_model: LayerModelConfig | None = None

    _has_kind = field_validator("objective")(classmethod(lambda cls, v: _objective_has_kind(v)))

    @field_validator("transforms")
    @classmethod
    def _steps_have_kind(cls, v):
        for i, step in enumerate(v):
            if "kind" not in step:
                raise ValueError(f"step {i}: expected a 'kind' key, found keys {sorted(step)}")
        return v

    @field_validator("transforms")
    @classmethod
    def _one_threshold(cls, v):
        for i, step in enumerate(v):
            if step.get("kind") == "threshold":
                raise ValueError(f"step {i}: the readout threshold has one home, postprocess.threshold_mev (null: "
                                 f"the geometry's); remove the threshold step")
        return v

    def to_dict(self) -> dict:
        """Plain JSON-like dict (tuples become lists) for YAML files and checkpoints."""
        return self.model_dump(mode="json")


#: Settings that do not change what a run learns; they may differ when a run is resumed.
RESUME_FREE_KEYS = {
    ("description",),
    ("sampler",),
    ("postprocess", "max_ratio"),
    ("postprocess", "max_rounds"),
    ("layer_model", "solver"),
    ("layer_model", "steps"),
    ("train", "steps"),
    ("train", "ckpt_every"),
    ("train", "keep_checkpoints"),
    ("train", "val_every"),
    ("train", "quality_showers"),
    ("train", "log_every"),
    ("train", "num_workers"),
    ("train", "compile"),
    # where the init source / teacher live: they are read only at step 0; a resume takes the weights (and the
    # teacher) from the run's own checkpoint, so a moved source does not block it
    ("train", "init_from"),
    ("train", "teacher"),
    ("data", "ram_budget_mb"),
}


def recipe_differences(a: dict, b: dict, prefix: tuple = ()) -> list[str]:
    """Dotted keys where two recipe dicts differ in a setting that changes training (ignores RESUME_FREE_KEYS)."""
    out = []
    for key in sorted(set(a) | set(b)):
        path = (*prefix, key)
        if path in RESUME_FREE_KEYS:
            continue
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict) and path[0] != "objective":
            out += recipe_differences(va, vb, path)
        elif va != vb:
            out.append(f"{'.'.join(map(str, path))} ({va!r} vs {vb!r})")
    return out
