"""Typed evaluation results: COCO box AP and the KITTI 2D benchmark (AP|R40 and 11-point AP) per class and
difficulty, with the headline numbers (`EvalResult.summary`) and the `edgekd eval --json` layout (`to_dict`)."""

from __future__ import annotations

import math
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass

from edgekd.errors import EdgeKDError
from edgekd.evaluate.coco import COCO_METRICS
from edgekd.evaluate.kitti import DIFFICULTIES


@dataclass(frozen=True)
class CocoAP:
    """COCO box AP in percent (IoU 0.50:0.95, 0.50, 0.75; small, medium, large objects), fields named as in
    `COCO_METRICS`; None where COCOeval leaves a metric undefined (no ground truth in that area range)."""

    AP: float | None
    AP50: float | None
    AP75: float | None
    APs: float | None
    APm: float | None
    APl: float | None

    def to_dict(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in COCO_METRICS}


@dataclass(frozen=True)
class DifficultyAP:
    """One KITTI AP (percent) per difficulty (`DIFFICULTIES`)."""

    easy: float
    moderate: float
    hard: float

    def to_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in DIFFICULTIES}


@dataclass(frozen=True)
class KittiClassAP:
    """KITTI 2D AP of one class: AP|R40 (40 recall steps, the benchmark's metric) and the older 11-point AP."""

    r40: DifficultyAP
    r11: DifficultyAP


@dataclass(frozen=True)
class EvalResult:
    """What `evaluate_detections` measured on a dataset.

    `kitti` is None for a dataset that is not in KITTI format or has no KITTI class; else it maps each evaluated
    class to its AP, and `kitti_notes` says why a value is 0 without being measured. `artifact` names what was
    evaluated (a model file or a predictions folder), when the caller says.
    """

    coco: CocoAP
    kitti: dict[str, KittiClassAP] | None = None
    kitti_notes: tuple[str, ...] = ()
    artifact: str | None = None

    def summary(self) -> dict[str, float]:
        """The headline numbers: COCO ``AP``, ``AP50`` and, with KITTI results, ``kitti_moderate``, the mean over
        classes of Moderate AP|R40 (the keys of a training history row)."""
        headline = {"AP": self.coco.AP, "AP50": self.coco.AP50}
        if self.kitti:
            moderate = [per_class.r40.moderate for per_class in self.kitti.values()]
            headline["kitti_moderate"] = sum(moderate) / len(moderate)
        return headline

    def to_dict(self) -> dict:
        """The `edgekd eval --json` layout: ``{"coco": {metric: AP}}``; with KITTI results ``"kitti"`` ({class:
        {difficulty: AP|R40}}), ``"kitti_r11"`` (the same for 11-point AP) and ``"kitti_notes"``; then
        ``"artifact"`` when set."""
        data: dict = {"coco": self.coco.to_dict()}
        if self.kitti is not None:
            data["kitti"] = {cls: ap.r40.to_dict() for cls, ap in self.kitti.items()}
            data["kitti_r11"] = {cls: ap.r11.to_dict() for cls, ap in self.kitti.items()}
            data["kitti_notes"] = list(self.kitti_notes)
        if self.artifact is not None:
            data["artifact"] = self.artifact
        return data

    @classmethod
    def from_dicts(cls, coco: Mapping[str, float | None], kitti: Mapping | None = None) -> EvalResult:
        """Build from `evaluate_coco`'s result and, when given, `evaluate_kitti`'s (``kitti``, ``kitti_r11``,
        ``kitti_notes``)."""
        if kitti is None:
            return cls(CocoAP(**coco))
        per_class = {
            name: KittiClassAP(DifficultyAP(**r40), DifficultyAP(**kitti["kitti_r11"][name]))
            for name, r40 in kitti["kitti"].items()
        }
        return cls(CocoAP(**coco), per_class, tuple(kitti["kitti_notes"]))

    @classmethod
    def from_dict(cls, data: object, origin: str = "eval result") -> EvalResult:
        """Read the layout `to_dict` writes; an EdgeKDError names `origin` and the first field that does not fit."""
        if not isinstance(data, Mapping) or not isinstance(data.get("coco"), Mapping):
            raise EdgeKDError(f"{origin}: not an eval result (field 'coco' must be an object of metrics)")
        coco = {name: _number(data["coco"], name, f"{origin}: field 'coco", nullable=True) for name in COCO_METRICS}
        artifact = data.get("artifact")
        if artifact is not None and not isinstance(artifact, str):
            raise EdgeKDError(f"{origin}: field 'artifact' must be a string, got {reprlib.repr(artifact)}")
        if "kitti" not in data:
            return cls(CocoAP(**coco), artifact=artifact)
        tables = {}
        for section in ("kitti", "kitti_r11"):
            table = data.get(section)
            if not isinstance(table, Mapping) or set(table) != set(data["kitti"]):
                raise EdgeKDError(f"{origin}: field '{section}' must map the same classes to AP per difficulty")
            tables[section] = table
        per_class = {}
        for name in data["kitti"]:
            rows = []
            for section, table in tables.items():
                row = table[name]
                if not isinstance(row, Mapping):
                    raise EdgeKDError(f"{origin}: field '{section}.{name}' must map difficulties to AP")
                where = f"{origin}: field '{section}.{name}"
                rows.append(DifficultyAP(**{d: _number(row, d, where) for d in DIFFICULTIES}))
            per_class[name] = KittiClassAP(*rows)
        notes = data.get("kitti_notes", [])
        if not isinstance(notes, list) or not all(isinstance(note, str) for note in notes):
            raise EdgeKDError(f"{origin}: field 'kitti_notes' must be a list of strings, got {reprlib.repr(notes)}")
        return cls(CocoAP(**coco), per_class, tuple(notes), artifact)


def _number(row: Mapping, key: str, where: str, nullable: bool = False) -> float | None:
    """`row[key]` as a float; `where` is the error's prefix up to the field path (closed here with the key)."""
    if key not in row:
        raise EdgeKDError(f"{where}.{key}' is missing")
    value = row[key]
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        expected = "a number or null" if nullable else "a number"
        raise EdgeKDError(f"{where}.{key}' must be {expected}, got {reprlib.repr(value)}")
    return float(value)


def summarize(result: EvalResult | Mapping) -> dict[str, float]:
    """The headline numbers (`EvalResult.summary`) of an evaluation, given as an `EvalResult` or in the
    `edgekd eval --json` layout."""
    if not isinstance(result, EvalResult):
        result = EvalResult.from_dict(result)
    return result.summary()
