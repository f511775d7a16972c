"""Data-parallel training across processes with torch DDP, launched by `torchrun` (no process management here).

`torchrun --nproc-per-node N -m edgekd train|distill ...` sets RANK, WORLD_SIZE and LOCAL_RANK; `session` reads
them, picks the device (cuda:LOCAL_RANK, or the CPU) and starts the process group (NCCL on GPUs, gloo on CPU).
`--batch` stays the global batch: each rank trains on batch / world images per step and DDP averages gradients,
so N ranks train the model one process trains on the same global batch. Outside torchrun, or with one process,
every helper here is the identity and nothing distributed is started.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from edgekd.errors import EdgeKDError
from edgekd.train.sync_batchnorm import convert_to_cpu_sync_batchnorm

T = TypeVar("T")
_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands among the ranks of a run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in _TORCHRUN_VARIABLES)


def env_from_torchrun() -> DistEnv:
    """Rank, world size and local rank from torchrun's environment (rank 0 of 1 outside torchrun)."""
    if not launched_by_torchrun():
        return DistEnv()
    try:
        return DistEnv(*(int(os.environ[name]) for name in _TORCHRUN_VARIABLES))
    except ValueError as error:
        values = ", ".join(f"{name}={os.environ[name]!r}" for name in _TORCHRUN_VARIABLES)
        raise EdgeKDError(f"torchrun environment is not integers: {values}") from error


def current() -> DistEnv:
    """The running process group's view (what the Trainer uses), or a single process."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistEnv()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return DistEnv(dist.get_rank(), dist.get_world_size(), local_rank)


def rank_device(device: str, env: DistEnv) -> str:
    """The device of this rank: `device` as resolved for one process ('cpu', 'cuda', 'cuda:N'); under a
    multi-process launch every rank takes cuda:LOCAL_RANK."""
    if device == "cpu" or not env.distributed:
        return device
    if device not in ("cuda", f"cuda:{env.local_rank}"):
        raise EdgeKDError(
            f"--device {device}: under torchrun each rank uses cuda:LOCAL_RANK; pass --device cuda (or auto) "
            "and choose GPUs with CUDA_VISIBLE_DEVICES"
        )
    if env.local_rank >= torch.cuda.device_count():
        raise EdgeKDError(
            f"LOCAL_RANK {env.local_rank} has no GPU: {torch.cuda.device_count()} visible; start at most that many "
            "processes per node (--nproc-per-node)"
        )
    return f"cuda:{env.local_rank}"


@contextmanager
def session(device: str) -> Iterator[tuple[DistEnv, str]]:
    """Start the process group when torchrun launched several ranks; yields (env, this rank's device).

    `device` is the single-process device ('cpu' or 'cuda...'); the backend is NCCL on GPUs and gloo on CPU.
    The group is destroyed on exit.
    """
    env = env_from_torchrun()
    device = rank_device(device, env)
    if not env.distributed or dist.is_initialized():
        yield env, device
        return
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
        dist.init_process_group("nccl", rank=env.rank, world_size=env.world_size, device_id=torch.device(device))
    else:
        dist.init_process_group("gloo", rank=env.rank, world_size=env.world_size)
    try:
        yield env, device
    finally:
        dist.destroy_process_group()


def per_rank_batch(global_batch: int, world_size: int) -> int:
    """`--batch` is the global batch; each rank gets an equal share."""
    if global_batch % world_size:
        raise EdgeKDError(
            f"--batch {global_batch} is the global batch and must be divisible by the {world_size} ranks "
            f"(each rank trains on batch / {world_size} images per step)"
        )
    return global_batch // world_size


def synchronise_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm over the global batch: torch's SyncBatchNorm on GPUs, CPUSyncBatchNorm on CPU (gloo)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return convert_to_cpu_sync_batchnorm(module)


class _Replicated(nn.Module):
    """What DDP wraps: the objective's trainable modules (student, KD adapters) as children, never the frozen
    teacher, which each rank holds as a plain replica; forward runs the whole objective."""

    def __init__(self, objective: nn.Module, trainable: dict[str, nn.Module]) -> None:
        super().__init__()
        self.trainable = nn.ModuleDict(trainable)
        self._objective = (objective,)  # a tuple keeps the objective (and its teacher) out of DDP's module tree

    def forward(self, *args: Any) -> Any:
        return self._objective[0](*args)


def replicate(objective: nn.Module, trainable: dict[str, nn.Module], env: DistEnv, device: torch.device) -> nn.Module:
    """The callable the trainer steps with: `objective` itself in one process, else DDP over `trainable`.

    DDP broadcasts rank 0's weights and buffers at construction (and buffers again before each forward) and
    averages gradients in backward. Every trainable parameter gets a gradient in every step (checked with 2 gloo
    ranks for RetinaNet, FCOS and Faster R-CNN training and for distillation with every KD loss: adapters are
    applied unconditionally, and empty RoI selections still reach the box heads), so DDP need not search the graph
    for unused parameters; an objective that broke this would stop with DDP's error naming the parameters.
    """
    if not env.distributed:
        return objective
    return nn.parallel.DistributedDataParallel(
        _Replicated(objective, trainable), device_ids=[device.index] if device.type == "cuda" else None
    )


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Per key, the mean over the ranks that report it (keys may differ between ranks)."""
    if not current().distributed:
        return values
    gathered: list[dict[str, float] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, values)
    keys = list(dict.fromkeys(key for part in gathered if part for key in part))
    return {key: sum(p[key] for p in gathered if p and key in p) / sum(key in p for p in gathered if p) for key in keys}


def gather_to_main(value: T) -> list[T] | None:
    """Every rank's `value` on rank 0 (in rank order), None on the others."""
    env = current()
    if not env.distributed:
        return [value]
    gathered: list[T] | None = [None] * env.world_size if env.is_main else None  # type: ignore[list-item]
    dist.gather_object(value, gathered, dst=0)
    return gathered


def broadcast_from_main(value: T) -> T:
    """Rank 0's `value` on every rank."""
    if not current().distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def run_on_main(function: Callable[[], T]) -> T:
    """Run `function` on rank 0 only and return its result on every rank; a user error (EdgeKDError) there is
    raised on every rank, so no rank is left waiting in a collective."""
    if not current().distributed:
        return function()
    outcome: tuple[bool, Any] = (True, None)
    if current().is_main:
        try:
            outcome = (True, function())
        except EdgeKDError as error:
            outcome = (False, str(error))
    ok, value = broadcast_from_main(outcome)
    if not ok:
        raise EdgeKDError(value)
    return value


def barrier() -> None:
    if current().distributed:
        dist.barrier()


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """The command that runs `edgekd <argv>` on `nproc` local processes, `--gpus` removed from argv."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--gpus":
            skip = True
        elif not arg.startswith("--gpus="):
            kept.append(arg)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "edgekd", *kept]  # fmt: skip


def launch_on_gpus(gpus: int, argv: list[str]) -> int | None:
    """`--gpus N`: start torchrun with N processes on this node and return its exit status; None means "train
    here" (one GPU). Under torchrun already, `--gpus` is a mistake."""
    if launched_by_torchrun():
        raise EdgeKDError("--gpus starts torchrun itself; under torchrun leave it out (use --nproc-per-node)")
    visible = torch.cuda.device_count()
    if gpus > visible:
        raise EdgeKDError(f"--gpus {gpus}: only {visible} CUDA device(s) visible to torch")
    if gpus == 1:
        return None
    return subprocess.run(torchrun_command(gpus, argv), check=False).returncode
