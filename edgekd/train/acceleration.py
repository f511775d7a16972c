"""Speed options of the training loop: mixed precision, channels_last and torch.compile of the trained model."""

from __future__ import annotations

import torch
from torch import nn

from edgekd.errors import EdgeKDError

AMP_MODES = ("auto", "off", "bf16", "fp16")


def resolve_amp(mode: str, device: torch.device) -> str:
    """'auto' -> bf16 on a GPU that supports it, fp16 on older GPUs, off on CPU; explicit modes are checked.

    fp16 needs CUDA (on CPU it is slower than fp32 and has no use for a grad scaler); bf16 also runs on CPU.
    """
    if mode not in AMP_MODES:
        raise EdgeKDError(f"--amp {mode}: expected one of {', '.join(AMP_MODES)}")
    cuda = device.type == "cuda"
    bf16_ok = not cuda or torch.cuda.is_bf16_supported()
    if mode == "auto":
        return ("bf16" if bf16_ok else "fp16") if cuda else "off"
    if mode == "fp16" and not cuda:
        raise EdgeKDError("--amp fp16 needs a CUDA device; on CPU use --amp off (or bf16)")
    if mode == "bf16" and not bf16_ok:
        raise EdgeKDError("--amp bf16: this GPU has no bf16 support (it arrived with Ampere); use --amp fp16")
    return mode


def autocast(device: torch.device, amp: str) -> torch.autocast:
    """The autocast context of a resolved `amp` mode ('off', 'bf16' or 'fp16')."""
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=amp != "off")


def grad_scaler(amp: str) -> torch.amp.GradScaler:
    """Loss scaling guards fp16 gradients against underflow; bf16 has fp32's range and needs none."""
    return torch.amp.GradScaler("cuda", enabled=amp == "fp16")


def channels_last(module: nn.Module, device: torch.device) -> nn.Module:
    """NHWC weights on CUDA, where cuDNN's convolutions (and tensor cores under AMP) run fastest in that layout."""
    if device.type == "cuda":
        module.to(memory_format=torch.channels_last)
    return module


def compile_backbone(detector: nn.Module) -> None:
    """torch.compile the trained detector's backbone + FPN in place (their forward is the bulk of its compute).

    Heads and losses are left eager: target matching has data-dependent shapes that would break graphs at every
    step. `nn.Module.compile` keeps parameter names, so checkpoints are unchanged.
    """
    backbone = getattr(detector, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise EdgeKDError(f"--compile: {type(detector).__name__} has no backbone module to compile")
    backbone.compile()
