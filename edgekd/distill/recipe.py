"""Distillation recipes (recipes/*.yaml): teacher/student pair, losses with weights, schedule, input size.

```yaml
teacher: retinanet_resnet50          # zoo name the recipe was written for
student: retinanet_mobilenet_v3
img_size: 640x192
inherit: false                       # initialise student neck+heads from the teacher where shapes match
schedule: {epochs: 12, batch: 8, lr: 0.002}
losses:
  fgfi: {weight: 1.0, psi: 0.5}      # any of edgekd.distill.losses.LOSSES, several may be combined
```
Every key is checked before training starts; an unknown one is an error naming the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from edgekd.errors import EdgeKDError

_TOP_LEVEL = {"name", "description", "teacher", "student", "img_size", "inherit", "schedule", "losses"}
_SCHEDULE = {"epochs": int, "batch": int, "lr": float, "warmup_iters": int, "weight_decay": float}


@dataclass
class Recipe:
    """A parsed, validated recipe (loss options are validated again when the losses are built)."""

    path: str
    name: str
    teacher: str | None
    student: str | None
    img_size: str | None
    inherit: bool
    schedule: dict[str, float | int] = field(default_factory=dict)
    losses: dict[str, dict] = field(default_factory=dict)

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


def parse_recipe(data: object, source: str) -> Recipe:
    """Validate a recipe mapping; `source` names it in errors."""
    from edgekd.distill.losses import LOSSES

    if not isinstance(data, dict):
        raise EdgeKDError(f"{source}: a recipe must be a YAML mapping")
    unknown = sorted(set(data) - _TOP_LEVEL)
    if unknown:
        raise EdgeKDError(f"{source}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_TOP_LEVEL))}")
    schedule = data.get("schedule") or {}
    if not isinstance(schedule, dict):
        raise EdgeKDError(f"{source}: 'schedule' must be a mapping")
    for key, value in schedule.items():
        if key not in _SCHEDULE:
            raise EdgeKDError(f"{source}: unknown schedule key '{key}'; allowed: {', '.join(_SCHEDULE)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EdgeKDError(f"{source}: schedule.{key} must be a number, got {value!r}")
        schedule[key] = _SCHEDULE[key](value)
    losses = data.get("losses")
    if not isinstance(losses, dict) or not losses:
        raise EdgeKDError(f"{source}: 'losses' must map at least one loss name to its options")
    for name, options in losses.items():
        if name not in LOSSES:
            raise EdgeKDError(f"{source}: unknown loss '{name}'; available: {', '.join(LOSSES)}")
        if options is not None and not isinstance(options, dict):
            raise EdgeKDError(f"{source}: options of loss '{name}' must be a mapping")
    inherit = data.get("inherit", False)
    if not isinstance(inherit, bool):
        raise EdgeKDError(f"{source}: 'inherit' must be true or false")
    return Recipe(
        path=source,
        name=str(data.get("name") or Path(source).stem),
        teacher=data.get("teacher"),
        student=data.get("student"),
        img_size=data.get("img_size"),
        inherit=inherit,
        schedule=schedule,
        losses={name: dict(options or {}) for name, options in losses.items()},
    )


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file."""
    path = Path(path)
    if not path.is_file():
        raise EdgeKDError(f"recipe not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise EdgeKDError(f"{path}: not valid YAML: {error}") from error
    return parse_recipe(data, str(path))
