"""Sweep candidates: a zoo student at an input size. The default grid is the zoo's students (families x student
backbones x widths) at the teacher's input size; `--families/--backbones/--widths/--img-sizes` narrow or widen it,
a `--candidates` YAML lists any set.

Candidates YAML: a list (or a mapping with key `candidates` holding the list) of entries, each a zoo name
(`retinanet_mobilenet_v3_lite`, at the teacher's input size) or a mapping `{model: NAME, img_size: WxH}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from edgekd.errors import EdgeKDError
from edgekd.models.backbones import BACKBONES
from edgekd.models.zoo import FAMILIES, ZOO, ModelSpec, model_spec
from edgekd.options import parse_size

WIDTHS: dict[int, str] = {64: "_lite", 256: ""}
"""Neck/head widths the zoo builds, and the name suffix of each."""


@dataclass(frozen=True, order=True)
class Candidate:
    """A zoo model at an input size (height, width)."""

    model: str
    input_size: tuple[int, int]

    @property
    def key(self) -> str:
        """'retinanet_mobilenet_v3_lite@160x64': the candidate's name in files, folders and tables."""
        return f"{self.model}@{self.size_text}"

    @property
    def size_text(self) -> str:
        return f"{self.input_size[1]}x{self.input_size[0]}"

    @property
    def spec(self) -> ModelSpec:
        return ZOO[self.model]


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def _check_size(size: tuple[int, int], where: str, text: str) -> tuple[int, int]:
    if size[0] % 32 or size[1] % 32:
        raise EdgeKDError(f"{where} '{text}': width and height must be multiples of 32")
    return size


def _student(name: str, where: str) -> str:
    try:
        return model_spec(name).name
    except EdgeKDError as error:
        raise EdgeKDError(f"{where}: {error}") from None


@dataclass(frozen=True)
class GridOptions:
    """`--families`, `--backbones`, `--widths`, `--img-sizes` as typed (comma-separated); None: the default."""

    families: str | None = None
    backbones: str | None = None
    widths: str | None = None
    img_sizes: str | None = None

    @property
    def given(self) -> bool:
        return any(value is not None for value in (self.families, self.backbones, self.widths, self.img_sizes))


def grid_candidates(grid: GridOptions, teacher_size: tuple[int, int]) -> list[Candidate]:
    """families x backbones x widths x input sizes; defaults: every family, the student backbones (all but
    resnet50), both widths, the teacher's input size."""
    students = [b for b in BACKBONES if b != "resnet50"]
    families = _split(grid.families) or list(FAMILIES)
    backbones = _split(grid.backbones) or students
    for family in families:
        if family not in FAMILIES:
            raise EdgeKDError(f"--families: unknown family '{family}' (families: {', '.join(FAMILIES)})")
    for backbone in backbones:
        if backbone not in BACKBONES:
            raise EdgeKDError(f"--backbones: unknown backbone '{backbone}' (backbones: {', '.join(BACKBONES)})")
    widths = []
    for part in _split(grid.widths) or [str(w) for w in WIDTHS]:
        if not part.isdigit() or int(part) not in WIDTHS:
            raise EdgeKDError(f"--widths: '{part}' is not a zoo width (widths: 64 for the _lite models, 256)")
        widths.append(int(part))
    if grid.widths is not None and 64 in widths and "resnet50" in backbones:
        raise EdgeKDError("--widths 64 with --backbones resnet50: the zoo has no resnet50_lite (resnet50 is 256 wide)")
    sizes = [_check_size(parse_size(t, "--img-sizes"), "--img-sizes", t) for t in _split(grid.img_sizes) or []]
    sizes = sizes or [teacher_size]
    found = []
    for family in families:
        for backbone in backbones:
            for width in widths:
                if backbone == "resnet50" and width != 256:
                    continue  # default widths: resnet50 has only the full one
                name = f"{family}_{backbone}{WIDTHS[width]}"
                found += [Candidate(name, size) for size in sizes]
    return _unique(found, "--families/--backbones/--widths/--img-sizes")


def _unique(candidates: list[Candidate], where: str) -> list[Candidate]:
    if not candidates:
        raise EdgeKDError(f"{where}: no candidate to sweep")
    seen: list[Candidate] = []
    for candidate in candidates:
        if candidate in seen:
            raise EdgeKDError(f"{where}: candidate {candidate.key} is listed twice")
        seen.append(candidate)
    return seen


def load_candidates(path: Path, teacher_size: tuple[int, int]) -> list[Candidate]:
    """The candidates of a YAML file (see the module docstring); errors name the file and the entry."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise EdgeKDError(f"--candidates {path}: cannot read the file ({error})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise EdgeKDError(f"{where}: not valid YAML ({getattr(error, 'problem', None) or error})") from None
    if isinstance(data, dict) and set(data) == {"candidates"}:
        data = data["candidates"]
    if not isinstance(data, list):
        raise EdgeKDError(f"{path}: expected a list of candidates (zoo names or {{model: NAME, img_size: WxH}})")
    found = []
    for index, entry in enumerate(data):
        where = f"{path}: candidates[{index}]"
        if isinstance(entry, str):
            found.append(Candidate(_student(entry, where), teacher_size))
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
            raise EdgeKDError(f"{where}: expected a zoo name or a mapping with field 'model' (a zoo name)")
        unknown = set(entry) - {"model", "img_size"}
        if unknown:
            raise EdgeKDError(f"{where}: unknown field '{sorted(unknown)[0]}' (fields: model, img_size)")
        size = teacher_size
        if "img_size" in entry:
            value = entry["img_size"]
            if not isinstance(value, str):
                raise EdgeKDError(f"{where}: field 'img_size' must be WIDTHxHEIGHT such as 640x192, got {value!r}")
            size = _check_size(parse_size(value, f"{where}: field 'img_size'"), f"{where}: field 'img_size'", value)
        found.append(Candidate(_student(entry["model"], f"{where}: field 'model'"), size))
    return _unique(found, str(path))
