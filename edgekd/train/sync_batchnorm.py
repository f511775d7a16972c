"""Batch normalisation over the global batch of all ranks, for CPU (gloo) data-parallel runs.

torch.nn.SyncBatchNorm is the tool on GPUs, but it refuses CPU tensors (its kernels, batch_norm_stats and
friends, exist only for CUDA). Without synchronisation every rank would normalise with the statistics of its own
slice of the batch, and a CPU run on N processes would not train the model a single process trains on the same
global batch. This module computes the same statistics as BatchNorm2d over the global batch (Ioffe & Szegedy,
ICML 2015, Algorithm 1: mean, biased variance for normalising, unbiased variance for the running estimate) with
one differentiable all-reduce of per-channel (sum, sum of squares, count) per layer.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose backward sums the incoming gradients over ranks (each rank's output feeds its own
    loss, and the total loss is their sum). Written here because torch's differentiable all_reduce
    (torch.distributed.nn.functional) is deprecated and its successor is a private module."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, tensor: Tensor) -> Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics cover every rank's batch; plain BatchNorm2d otherwise.

    The all-reduce is differentiable: its backward sums the gradients w.r.t. the statistics over ranks, which
    with DDP's gradient averaging gives the gradient of the global-batch loss. Sums are accumulated in float64,
    so the one-pass variance E[x^2] - E[x]^2 keeps float32 accuracy.
    """

    def forward(self, x: Tensor) -> Tensor:
        synchronised = self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not synchronised:
            return super().forward(x)
        self._check_input_dim(x)
        channels = x.shape[1]
        wide = x.double()
        count = wide.new_full((1,), x.numel() // channels)
        totals = _AllReduceSum.apply(torch.cat([wide.sum((0, 2, 3)), (wide * wide).sum((0, 2, 3)), count]))
        n = totals[-1]
        mean = totals[:channels] / n
        var = (totals[channels : 2 * channels] / n - mean * mean).clamp(min=0.0)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), float(n.detach()))
        scale = torch.rsqrt(var + self.eps)
        shift = -mean * scale
        if self.affine:
            scale = scale * self.weight
            shift = shift * self.weight + self.bias
        return x * scale.to(x.dtype).view(1, -1, 1, 1) + shift.to(x.dtype).view(1, -1, 1, 1)

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, n: float) -> None:
        self.num_batches_tracked.add_(1)
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        unbiased = var * (n / max(n - 1.0, 1.0))
        self.running_mean.mul_(1 - momentum).add_(mean.to(self.running_mean.dtype), alpha=momentum)
        self.running_var.mul_(1 - momentum).add_(unbiased.to(self.running_var.dtype), alpha=momentum)


def convert_to_cpu_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Swap every BatchNorm2d in `module` for a CPUSyncBatchNorm sharing its parameters and buffers (so state
    dict keys and the optimizer's parameters stay the same); returns the (possibly replaced) module."""
    if type(module) is nn.BatchNorm2d:
        converted = CPUSyncBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        if module.track_running_stats:
            converted.running_mean, converted.running_var = module.running_mean, module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        replaced = convert_to_cpu_sync_batchnorm(child)
        if replaced is not child:
            setattr(module, name, replaced)
    return module
