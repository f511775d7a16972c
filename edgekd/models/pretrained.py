"""Start a detector from pretrained weights, offline: torchvision's COCO detectors and ImageNet backbones from the
torch hub cache, or a local file (torchvision's state_dict layout, or an edgekd checkpoint).

`coco` / `imagenet` resolve torchvision's weights entry for the model and read torchvision's own file name from
`torch.hub.get_dir()/checkpoints` (`$TORCH_HOME/hub/checkpoints`); edgekd never downloads: a missing file is one
EdgeKDError naming the file, its URL and where to put it.

Class-aware head start: every tensor loads as it is except the class-specific output rows
(`Detector.class_rows`), which start from a fresh initialisation for the dataset's classes, except where a dataset
class has a counterpart in the weights' classes (same name, `COUNTERPARTS`, or a `--class-map` file): its rows
start from that class's rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlparse

import torch
import yaml
from torch import Tensor
from torchvision.models import get_model_weights
from torchvision.models._api import WeightsEnum

from edgekd.errors import EdgeKDError
from edgekd.models.backbones import MAX_TRAINABLE_LAYERS, classifier_builder
from edgekd.models.checkpoint import FORMAT
from edgekd.models.detector import Detector, DetectorConfig
from edgekd.models.zoo import TORCHVISION_MODELS, build_detector, model_spec

COUNTERPARTS = {
    "car": "car",
    "pedestrian": "person",
    "cyclist": "bicycle",
    "van": "car",
    "truck": "truck",
    "person_sitting": "person",
    "tram": "train",
}
"""Dataset class (lower case) -> COCO category, used where no class has the same name."""

_BACKGROUND = "__background__"


def hub_file(weights: WeightsEnum, option: str) -> Path:
    """The cached file of torchvision weights entry `weights`, under torchvision's own file name; never downloads."""
    name = Path(urlparse(weights.url).path).name
    path = Path(torch.hub.get_dir()) / "checkpoints" / name
    if not path.is_file():
        raise EdgeKDError(
            f"{option}: {name} is not in the torch hub cache and edgekd never downloads; fetch {weights.url} "
            f"(torchvision's {weights}) on a machine with internet and put it at {path} "
            "(the cache folder is $TORCH_HOME/hub/checkpoints)"
        )
    return path


def imagenet_weights(backbone: str, option: str = "--pretrained-backbone imagenet") -> Path:
    """torchvision's ImageNet weights file (IMAGENET1K_V1, as its detection builders use) of `backbone`."""
    return hub_file(get_model_weights(classifier_builder(backbone))["IMAGENET1K_V1"], option)


@dataclass(frozen=True)
class PretrainedOptions:
    """Where a detector's starting weights come from; `option` / `backbone_option` name the flags in errors."""

    weights: str | None = None  # "coco" or a file
    backbone: str | None = None  # "imagenet" or a file
    class_map: Path | None = None
    trainable_layers: int | None = None
    option: str = "--pretrained"
    backbone_option: str = "--pretrained-backbone"

    @property
    def pretrained(self) -> bool:
        return self.weights is not None or self.backbone is not None


@dataclass
class StartReport:
    """What a class-aware start did, for printing."""

    source: str
    mapped: list[tuple[str, str]] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)
    unchanged: int = 0
    class_tensors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        mapped = ", ".join(f"{mine} <- {theirs}" for mine, theirs in self.mapped) or "none"
        lines = [f"pretrained weights: {self.source}", f"  class rows mapped: {mapped}"]
        if self.reinitialised:
            lines.append(f"  class rows re-initialised (no counterpart): {', '.join(self.reinitialised)}")
        lines.append(
            f"  left alone: {self.unchanged} tensors loaded as they are; class rows rebuilt in "
            f"{', '.join(self.class_tensors)}"
        )
        return lines


def read_class_map(path: Path, classes: tuple[str, ...]) -> dict[str, str | None]:
    """`--class-map FILE`: a YAML mapping dataset class -> class of the weights (null: re-initialise)."""
    if not path.is_file():
        raise EdgeKDError(f"--class-map: no such file: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise EdgeKDError(f"--class-map {where}: not valid YAML ({type(error).__name__})") from None
    if not isinstance(data, dict):
        raise EdgeKDError(f"--class-map {path}: must map dataset classes to classes of the weights, e.g. 'Van: car'")
    mapping: dict[str, str | None] = {}
    for key, value in data.items():
        if key not in classes:
            raise EdgeKDError(f"--class-map {path}: '{key}' is not a dataset class; classes: {', '.join(classes)}")
        if value is not None and not isinstance(value, str):
            raise EdgeKDError(f"--class-map {path}: '{key}' must map to a class name or null, got {value!r}")
        mapping[key] = value
    return mapping


def _read_state(path: Path, option: str) -> tuple[dict[str, Tensor], list[str] | None]:
    """Tensors of a torchvision state_dict (names None) or an edgekd checkpoint (its class names)."""
    if not path.is_file():
        raise EdgeKDError(f"{option}: no such file: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt, foreign or unsafe files
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "weights_only" in detail:
            detail = "it holds pickled Python objects, not only tensors"
        raise EdgeKDError(f"{option}: cannot read {path}: {detail}") from None
    names = None
    if isinstance(data, dict) and data.get("format") == FORMAT:
        config = data.get("config")
        names = list(config.get("classes", [])) if isinstance(config, dict) else []
        data = data.get("model")
    if not isinstance(data, dict) or not all(isinstance(v, Tensor) for v in data.values()):
        raise EdgeKDError(f"{option}: {path} is not a state_dict (a mapping of tensor names to tensors)")
    return data, names


def _edgekd_layout(state: dict[str, Tensor], detector: Detector) -> dict[str, Tensor]:
    """Rename torchvision's keys to the adapter's (`Detector.torchvision_prefixes`); edgekd keys pass."""
    renamed = {}
    for key, value in state.items():
        for theirs, mine in detector.torchvision_prefixes.items():
            if key.startswith(theirs):
                key = mine + key[len(theirs) :]
                break
        renamed[key] = value
    return renamed


def _slot_names(names: list[str], first: int, slots: int) -> list[str]:
    return [_BACKGROUND] * first + names if len(names) + first == slots else names


def _match(name: str, wanted: str | None, sources: list[str]) -> int | None:
    lowered = [s.lower() for s in sources]
    for candidate in [wanted] if wanted else [name, COUNTERPARTS.get(name.lower())]:
        if candidate and candidate.lower() in lowered and candidate != _BACKGROUND:
            return lowered.index(candidate.lower())
    return None


def load_pretrained(
    detector: Detector,
    path: Path,
    names: list[str] | None,
    class_map: dict[str, str | None],
    option: str,
    source: str,
) -> StartReport:
    """Load the weights at `path` into `detector`, class-aware; `names` are the class slots of a torchvision file
    (its weights entry's categories) when known."""
    state, checkpoint_names = _read_state(path, option)
    state = _edgekd_layout(state, detector)
    mine = detector.state_dict()
    state = {k: v for k, v in state.items() if k in mine or not k.endswith("num_batches_tracked")}
    for key, value in mine.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    missing = [k for k in mine if k not in state]
    unexpected = [k for k in state if k not in mine]
    model = detector.config.name
    if missing or unexpected:
        what = f"lacks {missing[0]}" if missing else f"holds {unexpected[0]}, which {model} has not"
        count = len(missing) + len(unexpected)
        raise EdgeKDError(f"{option}: {path} is not {model}'s architecture: it {what} ({count} tensor(s) differ)")
    rows = detector.class_rows()
    for key, value in mine.items():
        if key not in rows and value.shape != state[key].shape:
            raise EdgeKDError(
                f"{option}: {path}: tensor '{key}' has shape {tuple(state[key].shape)} but {model} expects "
                f"{tuple(value.shape)}"
            )
    report = StartReport(source, class_tensors=list(rows), unchanged=len(mine) - len(rows))
    classes = list(detector.config.classes)
    for index, (key, (groups, per_slot, first)) in enumerate(rows.items()):
        theirs = state[key]
        slots = theirs.shape[0] // (groups * per_slot)
        if theirs.shape[0] != groups * per_slot * slots or theirs.shape[1:] != mine[key].shape[1:]:
            raise EdgeKDError(
                f"{option}: {path}: class tensor '{key}' has shape {tuple(theirs.shape)}, which does not fit "
                f"{model}'s head (expected ({groups} x classes x {per_slot}, ...) rows)"
            )
        known = names if names is not None and len(names) == slots else None
        if checkpoint_names is not None:
            known = _slot_names(checkpoint_names, first, slots)
        sources = known or [f"#{i}" for i in range(slots)]
        for wanted in class_map.values():
            if wanted is not None and _match(wanted, wanted, sources) is None:
                known_names = ", ".join(sorted(set(sources)))
                raise EdgeKDError(f"--class-map: '{wanted}' is not a class of {source}; its classes: {known_names}")
        fresh = mine[key].clone().view(groups, -1, per_slot, *mine[key].shape[1:])
        given = theirs.view(groups, slots, per_slot, *theirs.shape[1:])
        targets = [_BACKGROUND] * first + classes
        for slot, name in enumerate(targets):
            wanted = class_map.get(name, name if name == _BACKGROUND else None)
            if name == _BACKGROUND:
                found = sources.index(_BACKGROUND) if _BACKGROUND in sources else None
            elif name in class_map and wanted is None:
                found = None
            else:
                found = _match(name, wanted, sources)
            if found is not None:
                fresh[:, slot] = given[:, found]
            if index == 0 and name != _BACKGROUND:
                if found is None:
                    report.reinitialised.append(name)
                else:
                    report.mapped.append((name, sources[found]))
        state[key] = fresh.view_as(mine[key])
    detector.load_state_dict(state)
    return report


def build_pretrained_detector(
    config: DetectorConfig, options: PretrainedOptions, echo: Callable[[str], None] = print
) -> Detector:
    """Build zoo model `config.name` from `options` (see the module docstring); prints what the start did."""
    spec = model_spec(config.name)
    if options.weights is not None and options.backbone is not None:
        raise EdgeKDError(f"{options.option} already holds the backbone's weights; leave out {options.backbone_option}")
    if options.trainable_layers is not None and not options.pretrained:
        raise EdgeKDError(
            f"--trainable-backbone-layers {options.trainable_layers}: only with {options.option} or "
            f"{options.backbone_option} (from scratch every layer trains, with trainable BatchNorm)"
        )
    most = MAX_TRAINABLE_LAYERS[spec.backbone]
    if options.trainable_layers is not None and not 0 <= options.trainable_layers <= most:
        raise EdgeKDError(
            f"--trainable-backbone-layers {options.trainable_layers}: {spec.backbone} has {most} stages; "
            f"choose 0 to {most}"
        )
    if options.class_map is not None and options.weights is None:
        raise EdgeKDError(f"--class-map applies to {options.option} weights; pass {options.option} coco or a file")
    class_map = read_class_map(options.class_map, config.classes) if options.class_map is not None else {}
    names, weights_path, source = None, None, ""
    if options.weights == "coco":
        model = TORCHVISION_MODELS.get(config.name)
        if model is None:
            raise EdgeKDError(
                f"{options.option} coco: {config.name} is not a torchvision COCO architecture; those are "
                f"{', '.join(TORCHVISION_MODELS)} (or pass a file)"
            )
        weights = model.coco_weights()
        weights_path = hub_file(weights, f"{options.option} coco")
        names, source = list(weights.meta["categories"]), f"COCO ({weights_path})"
    elif options.weights is not None:
        weights_path, source = Path(options.weights), options.weights
        if spec.torchvision is not None:
            names = list(spec.torchvision.coco_weights().meta["categories"])
    backbone = None
    if options.backbone == "imagenet":
        backbone = imagenet_weights(spec.backbone, f"{options.backbone_option} imagenet")
    elif options.backbone is not None:
        backbone = Path(options.backbone)
    if options.pretrained:
        extra = {**config.extra, "frozen_bn": True}
        if options.trainable_layers is not None:
            extra["trainable_backbone_layers"] = options.trainable_layers
        config = replace(config, extra=extra)
    detector = build_detector(config, backbone)
    if weights_path is not None:
        report = load_pretrained(detector, weights_path, names, class_map, options.option, source)
        for line in report.lines():
            echo(line)
    return detector
