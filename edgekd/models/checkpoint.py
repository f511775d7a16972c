"""Checkpoints: written atomically, read with `torch.load(weights_only=True)`, self-describing.

A checkpoint carries the detector config (model name, classes, input size, normalisation, thresholds), the
recipe it was distilled with (if any) and its metrics, so `eval`, `export` and `bench` need no other flags.
"""

from __future__ import annotations

from pathlib import Path

import torch

from edgekd.atomic import atomic_output
from edgekd.errors import EdgeKDError
from edgekd.models.detector import Detector, DetectorConfig
from edgekd.models.zoo import build_detector

FORMAT = "edgekd-checkpoint-v1"


def atomic_torch_save(obj: dict, path: Path) -> None:
    """Write to a temporary file in the same folder, then rename: a crash never leaves a half-written file."""
    with atomic_output(path) as temporary:
        torch.save(obj, temporary)


def detector_payload(detector: Detector, **extra: object) -> dict:
    """The stand-alone part of a checkpoint: enough to rebuild and run the detector."""
    return {"format": FORMAT, "config": detector.config.to_dict(), "model": detector.state_dict(), **extra}


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint dictionary safely, with a clear error for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise EdgeKDError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several exception types for corrupt or foreign files
        raise EdgeKDError(f"cannot read checkpoint {path}: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise EdgeKDError(f"{path} is not an edgekd checkpoint (missing format tag '{FORMAT}')")
    return payload


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> tuple[Detector, dict]:
    """Rebuild the detector stored in a checkpoint; returns it in eval mode with the full payload."""
    payload = read_checkpoint(path)
    detector = build_detector(DetectorConfig.from_dict(payload["config"]))
    detector.load_state_dict(payload["model"])
    return detector.to(device).eval(), payload
