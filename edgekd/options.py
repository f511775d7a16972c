"""Option values shared by the library and the CLI: image sizes and torch devices."""

from __future__ import annotations

import re

from edgekd.errors import EdgeKDError


def parse_size(text: str, option: str = "--img-size") -> tuple[int, int]:
    """'640x192' (width x height) -> (height, width), the order tensors use."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise EdgeKDError(f"{option} '{text}': expected WIDTHxHEIGHT, e.g. 640x192")
    width, height = int(match.group(1)), int(match.group(2))
    if width <= 0 or height <= 0:
        raise EdgeKDError(f"{option} '{text}': width and height must be positive")
    return height, width


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; an unavailable 'cuda' is a clear error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EdgeKDError(f"--device {device}: no CUDA GPU is visible to torch (use --device cpu)")
    if not (device == "cpu" or device.startswith("cuda")):
        raise EdgeKDError(f"--device {device}: expected cpu, cuda, cuda:N or auto")
    return device
