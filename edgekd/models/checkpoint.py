"""Checkpoints: written atomically, read with `torch.load(weights_only=True)`, self-describing.

A checkpoint carries the detector config (model name, classes, input size, normalisation, thresholds), the
recipe it was distilled with (if any) and its metrics, so `eval`, `export` and `bench` need no other flags.
Reading one checks everything before use: the format tag, the config (see `DetectorConfig.from_dict`), the model
name against the zoo, and every weight tensor's name and shape against the model the config describes.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from edgekd.atomic import atomic_output
from edgekd.errors import EdgeKDError
from edgekd.models.detector import Detector, DetectorConfig
from edgekd.models.zoo import ZOO, build_detector

FORMAT = "edgekd-checkpoint-v1"
_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


def atomic_torch_save(obj: dict, path: Path) -> None:
    """Write to a temporary file in the same folder, then rename: a crash never leaves a half-written file."""
    with atomic_output(path) as temporary:
        torch.save(obj, temporary)


def detector_payload(detector: Detector, **extra: object) -> dict:
    """The stand-alone part of a checkpoint: enough to rebuild and run the detector."""
    return {"format": FORMAT, "config": detector.config.to_dict(), "model": detector.state_dict(), **extra}


def _load_error(path: Path, error: Exception) -> EdgeKDError:
    """One line for a file torch cannot load with weights_only=True. torch's own message is never passed on
    where it advises turning the safety check off (that would run whatever code the file carries)."""
    text = str(error)
    unsafe = _UNSAFE_GLOBAL.search(text) if isinstance(error, pickle.UnpicklingError) else None
    if unsafe:
        return EdgeKDError(
            f"{path} is not a plain edgekd checkpoint: it holds a pickled Python object ({unsafe.group(1)}) and "
            "may be unsafe to load, since unpickling can run code; edgekd only reads tensors, numbers, strings, "
            "lists and dicts: re-create the file with edgekd (train, distill) from a source you trust"
        )
    detail = text.strip().splitlines()[0] if text.strip() and "weights_only" not in text else type(error).__name__
    return EdgeKDError(
        f"cannot read checkpoint {path}: not a PyTorch checkpoint file, or a corrupt or truncated one ({detail})"
    )


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint dictionary safely, with a clear error for a missing, foreign or unsafe file."""
    path = Path(path)
    if not path.is_file():
        raise EdgeKDError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several exception types for corrupt, foreign or unsafe files
        raise _load_error(path, error) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise EdgeKDError(f"{path} is not an edgekd checkpoint (missing format tag '{FORMAT}')")
    for key in ("config", "model"):
        if key not in payload:
            raise EdgeKDError(f"{path}: checkpoint lacks '{key}'")
    return payload


def _shape(shape: torch.Size) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"


def _listed(keys: list[str], limit: int = 3) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_weights(detector: Detector, state: object, path: str | Path) -> None:
    """Load `state` into `detector` after checking it holds exactly the detector's tensors, shape for shape;
    else one EdgeKDError naming the first tensor at fault, its shape in the file and the shape expected."""
    config = detector.config
    model = f"{config.name} with {len(config.classes)} classes at {config.input_size[1]}x{config.input_size[0]}"
    if not isinstance(state, dict):
        raise EdgeKDError(f"{path}: 'model' must map tensor names to tensors, got {type(state).__name__}")
    expected = detector.state_dict()
    missing = [key for key in expected if key not in state]
    if missing:
        raise EdgeKDError(f"{path}: weights lack {len(missing)} tensor(s) of {model}: {_listed(missing)}")
    unexpected = [str(key) for key in state if key not in expected]
    if unexpected:
        raise EdgeKDError(
            f"{path}: weights hold {len(unexpected)} tensor(s) {model} does not have: {_listed(unexpected)}"
        )
    for key, wanted in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise EdgeKDError(f"{path}: weight '{key}' is a {type(value).__name__}, not a tensor")
        if value.shape != wanted.shape:
            raise EdgeKDError(
                f"{path}: weight '{key}' has shape {_shape(value.shape)} in the file but {model} expects "
                f"{_shape(wanted.shape)}"
            )
    detector.load_state_dict(state)


def detector_config(payload: dict, path: str | Path) -> DetectorConfig:
    """The checkpoint's detector config, checked against the zoo and the input-size rule."""
    config = DetectorConfig.from_dict(payload["config"], str(path))
    if config.name not in ZOO:
        raise EdgeKDError(f"{path}: config.name '{config.name}' is not a zoo model (`edgekd models` lists them)")
    height, width = config.input_size
    if height % 32 or width % 32:
        raise EdgeKDError(f"{path}: config.input_size {list(config.input_size)}: must be multiples of 32")
    return config


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> tuple[Detector, dict]:
    """Rebuild the detector stored in a checkpoint; returns it in eval mode with the full payload."""
    payload = read_checkpoint(path)
    detector = build_detector(detector_config(payload, path))
    load_weights(detector, payload["model"], path)
    return detector.to(device).eval(), payload
