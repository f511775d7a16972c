"""Distillation recipes (recipes/*.yaml): teacher/student pair, losses with weights, schedule, input size.

```yaml
teacher: retinanet_resnet50          # zoo name the recipe was written for
student: retinanet_mobilenet_v3
inherit: false                       # initialise student neck+heads from the teacher where shapes match
schedule: {epochs: 12, batch: 8, lr: 0.002}
losses:
  fgfi: {weight: 1.0, psi: 0.5}      # any of edgekd.distill.losses.LOSSES, several may be combined
```
Every key, value and loss option is checked before training starts; a mistake is an error naming the file and
the key (`recipe.yaml: schedule.batch 0: must be a whole number >= 1`).

`img_size` (WIDTHxHEIGHT) is optional and best left out: distillation runs at the teacher's input size, so that
teacher and student feature maps align cell for cell; a recipe that sets it is refused for a teacher of another
size.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from edgekd.errors import EdgeKDError

_TOP_LEVEL = {"name", "description", "teacher", "student", "img_size", "inherit", "schedule", "losses"}


@dataclass(frozen=True)
class _Range:
    """What a schedule value may be: a whole number or any finite number, at least (or above) `low`."""

    whole: bool
    low: float
    low_allowed: bool

    def describe(self) -> str:
        kind = "a whole number" if self.whole else "a finite number"
        return f"{kind} {'>=' if self.low_allowed else '>'} {self.low:g}"

    def accepts(self, value: float) -> bool:
        if not math.isfinite(value) or (self.whole and not float(value).is_integer()):
            return False
        return value >= self.low if self.low_allowed else value > self.low


_SCHEDULE = {
    "epochs": _Range(whole=True, low=1, low_allowed=True),
    "batch": _Range(whole=True, low=1, low_allowed=True),
    "lr": _Range(whole=False, low=0, low_allowed=False),
    "warmup_iters": _Range(whole=True, low=0, low_allowed=True),
    "weight_decay": _Range(whole=False, low=0, low_allowed=True),
}
_IMG_SIZE = re.compile(r"\s*(\d+)\s*[xX]\s*(\d+)\s*")


@dataclass
class Recipe:
    """A parsed, validated recipe (loss options are validated by the losses themselves, here and when built)."""

    path: str
    name: str
    teacher: str | None
    student: str | None
    img_size: str | None
    inherit: bool
    schedule: dict[str, float | int] = field(default_factory=dict)
    losses: dict[str, dict] = field(default_factory=dict)

    @property
    def input_size(self) -> tuple[int, int] | None:
        """`img_size` as (height, width), the order tensors use; None when the recipe sets none."""
        if self.img_size is None:
            return None
        return _parse_img_size(self.img_size, self.path)

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "name": self.name,
            "teacher": self.teacher,
            "student": self.student,
            "img_size": self.img_size,
            "inherit": self.inherit,
            "schedule": dict(self.schedule),
            "losses": {name: dict(options) for name, options in self.losses.items()},
        }


def _parse_img_size(value: object, source: str) -> tuple[int, int]:
    """'640x192' (width x height) -> (192, 640); anything else is an error naming the file."""
    match = _IMG_SIZE.fullmatch(value) if isinstance(value, str) else None
    if not match:
        raise EdgeKDError(f"{source}: img_size {value!r}: expected a string WIDTHxHEIGHT, e.g. 640x192")
    width, height = int(match.group(1)), int(match.group(2))
    if width <= 0 or height <= 0 or width % 32 or height % 32:
        raise EdgeKDError(f"{source}: img_size {value!r}: width and height must be positive multiples of 32")
    return height, width


def _parse_schedule(schedule: object, source: str) -> dict[str, float | int]:
    if not isinstance(schedule, dict):
        raise EdgeKDError(f"{source}: 'schedule' must be a mapping")
    parsed: dict[str, float | int] = {}
    for key, value in schedule.items():
        if key not in _SCHEDULE:
            raise EdgeKDError(f"{source}: unknown schedule key '{key}'; allowed: {', '.join(_SCHEDULE)}")
        valid = _SCHEDULE[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not valid.accepts(value):
            raise EdgeKDError(f"{source}: schedule.{key} {value!r}: must be {valid.describe()}")
        parsed[key] = int(value) if valid.whole else float(value)
    return parsed


def _optional_text(data: dict, key: str, source: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise EdgeKDError(f"{source}: {key} {value!r}: must be a string")
    return value


def parse_recipe(data: object, source: str) -> Recipe:
    """Validate a recipe mapping; `source` names it in errors."""
    from edgekd.distill.losses import LOSSES
    from edgekd.distill.losses.base import resolve_options

    if not isinstance(data, dict):
        raise EdgeKDError(f"{source}: a recipe must be a YAML mapping")
    unknown = sorted(str(key) for key in set(data) - _TOP_LEVEL)
    if unknown:
        raise EdgeKDError(f"{source}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_TOP_LEVEL))}")
    schedule = _parse_schedule(data.get("schedule") or {}, source)
    losses = data.get("losses")
    if not isinstance(losses, dict) or not losses:
        raise EdgeKDError(f"{source}: 'losses' must map at least one loss name to its options")
    for name, options in losses.items():
        if name not in LOSSES:
            raise EdgeKDError(f"{source}: unknown loss '{name}'; available: {', '.join(LOSSES)}")
        if options is not None and not isinstance(options, dict):
            raise EdgeKDError(f"{source}: options of loss '{name}' must be a mapping")
        try:
            resolve_options(name, LOSSES[name].options, options or {})
        except EdgeKDError as error:
            raise EdgeKDError(f"{source}: losses.{name}: {error}") from None
    inherit = data.get("inherit", False)
    if not isinstance(inherit, bool):
        raise EdgeKDError(f"{source}: 'inherit' must be true or false")
    img_size = data.get("img_size")
    if img_size is not None:
        _parse_img_size(img_size, source)
    for key in ("name", "description"):
        _optional_text(data, key, source)
    return Recipe(
        path=source,
        name=data.get("name") or Path(source).stem,
        teacher=_optional_text(data, "teacher", source),
        student=_optional_text(data, "student", source),
        img_size=img_size,
        inherit=inherit,
        schedule=schedule,
        losses={name: dict(options or {}) for name, options in losses.items()},
    )


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file (UTF-8 YAML)."""
    path = Path(path)
    if not path.is_file():
        raise EdgeKDError(f"recipe not found: {path}")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise EdgeKDError(f"{path}: cannot read the recipe: {error.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise EdgeKDError(
            f"{path}: not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {error.start}); save the recipe as UTF-8"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise EdgeKDError(f"{path}: not valid YAML: {error}") from None
    return parse_recipe(data, str(path))
