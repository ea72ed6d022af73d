"""User detectors from YAML, validated at the door, and ``resolve_detector`` (a preset name or a YAML path).

The YAML holds the same fields as ``DetectorSpec`` (docs/simulate.md shows an example); unknown keys, wrong types,
unknown materials or physics lists and non-positive sizes are refused with one line naming the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from caloforge.errors import ConfigError
from caloforge.simulate.detectors import PRESETS, DetectorSpec, Mesh, get_detector, preset_names_by_id
from caloforge.simulate.g4physics import PHYSICS
from caloforge.simulate.materials import MATERIALS

#: Id given to a user detector (file detector_id is 0 for a custom detector; ids of presets stay theirs).
USER_DETECTOR_ID = 1000


class _MeshModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_z: int = Field(gt=0)
    n_alpha: int = Field(gt=0)
    n_r: int = Field(gt=0)
    dr_mm: float = Field(gt=0)
    dz_mm: float = Field(gt=0)


class _DetectorModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    description: str = "user detector"
    active: str
    absorber: str | None = None
    d_absorber_mm: float = Field(default=0.0, ge=0)
    d_active_mm: float = Field(default=0.0, ge=0)
    d_gap_mm: float = Field(default=0.0, ge=0)
    mesh: _MeshModel
    inner_radius_mm: float = Field(default=800.0, gt=0)
    length_mm: float = Field(default=2000.0, gt=0)
    n_layers: int | None = Field(default=None, gt=0)
    readout: Literal["active", "all"] = "active"
    production_cut_mm: float = Field(default=0.7, gt=0)
    physics: str = "em_opt1"
    x0_front: float = Field(default=0.0, ge=0)  # GFlash only: dead material in front, X0 at normal incidence
    sampling_fraction: float | None = Field(default=None, gt=0, le=1)
    stochastic_term: float | None = Field(default=None, gt=0)
    readout_scale: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _consistent(self):
        for key in ("active", "absorber"):
            value = getattr(self, key)
            if value is not None and value not in MATERIALS:
                raise ValueError(f"{key}: expected one of {sorted(MATERIALS)}, got {value!r}")
        if self.physics not in PHYSICS:
            raise ValueError(f"physics: expected one of {sorted(PHYSICS)}, got {self.physics!r}")
        if self.absorber is not None and not (self.d_absorber_mm > 0 and self.d_active_mm > 0):
            raise ValueError("d_absorber_mm, d_active_mm: a sampling detector needs both > 0 mm")
        if self.absorber is None and (self.d_absorber_mm or self.d_gap_mm):
            raise ValueError("absorber: a homogeneous detector (no absorber) takes no d_absorber_mm / d_gap_mm")
        return self


def _one_line(path: Path, exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{path}: field '{loc}': {msg}"


def load_detector(path: str | Path) -> DetectorSpec:
    """A DetectorSpec from a YAML file; every problem is one ConfigError line naming the file and field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the detector file ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of detector fields, found {type(data).__name__}")
    try:
        m = _DetectorModel(**data)
    except ValidationError as exc:
        raise ConfigError(_one_line(path, exc)) from None
    if m.name in PRESETS:
        raise ConfigError(f"{path}: field 'name': {m.name!r} is a preset name; choose another name")
    return DetectorSpec(
        m.name, USER_DETECTOR_ID, m.description, m.active, Mesh(**m.mesh.model_dump()), m.absorber,
        m.d_absorber_mm, m.d_active_mm, sampling_fraction_override=m.sampling_fraction,
        stochastic_term_override=m.stochastic_term, readout_scale_override=m.readout_scale,
        inner_radius_mm=m.inner_radius_mm, length_mm=m.length_mm, n_layers=m.n_layers, d_gap_mm=m.d_gap_mm,
        readout=m.readout, production_cut_mm=m.production_cut_mm, physics=m.physics, x0_front=m.x0_front,
    )


def resolve_detector(text: str | DetectorSpec) -> DetectorSpec:
    """A preset by name, or a user detector from a .yaml/.yml file: what every --detector accepts."""
    if isinstance(text, DetectorSpec) or str(text) in PRESETS:
        return get_detector(text)
    if str(text).endswith((".yaml", ".yml")) or Path(str(text)).is_file():
        return load_detector(text)
    raise ConfigError(f"--detector: expected a preset ({', '.join(preset_names_by_id())}) or a detector YAML "
                      f"file, got {text!r}")
