"""Pieces of scaled-out training checked without a full run: BatchNorm synchronised over two gloo ranks equals
BatchNorm on the concatenated batch; the data order of a run is a function of (seed, epoch) shared out between
ranks and unchanged by worker processes; mixed-precision modes."""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader

from edgekd.data.loader import load_dataset
from edgekd.data.torch_dataset import DetectionDataset, EpochShardSampler, epoch_order, make_train_loader
from edgekd.data.transforms import AugmentConfig
from edgekd.errors import EdgeKDError
from edgekd.models.detector import DetectorConfig
from edgekd.models.zoo import build_detector
from edgekd.train.acceleration import grad_scaler, resolve_amp
from edgekd.train.distributed import per_rank_batch
from edgekd.train.objective import DetectionObjective, StepInfo
from edgekd.train.sync_batchnorm import CPUSyncBatchNorm, convert_to_cpu_sync_batchnorm
from edgekd.train.trainer import Trainer, TrainOptions

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _free_port() -> int:
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def _batchnorm_problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A conv + BN + conv stack, an input batch of 4 and a fixed upstream gradient."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5, momentum=0.3), nn.Conv2d(5, 2, 1))
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-1, 1)
    images = torch.randn(4, 3, 7, 6) * 3 + 1
    return model, images, torch.randn(4, 2, 5, 4)


def _sync_bn_rank(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    model, images, upstream = _batchnorm_problem()
    convert_to_cpu_sync_batchnorm(model)
    assert isinstance(model[1], CPUSyncBatchNorm)
    rows = slice(2 * rank, 2 * rank + 2)  # each rank holds half of the batch
    x = images[rows].clone().requires_grad_(True)
    y = model(x)
    # Sum of both ranks' losses = the global loss; DDP would average parameter gradients, here we sum them.
    (y * upstream[rows]).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    for grad in grads:
        dist.all_reduce(grad)
    state = {"y": y.detach(), "x_grad": x.grad, "grads": grads, **model[1].state_dict()}
    torch.save(state, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_cpu_sync_batchnorm_over_two_ranks_equals_batchnorm_on_the_whole_batch(tmp_path):
    mp.start_processes(_sync_bn_rank, args=(_free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    model, images, upstream = _batchnorm_problem()
    x = images.clone().requires_grad_(True)
    y = model(x)
    (y * upstream).sum().backward()
    assert torch.allclose(torch.cat([r["y"] for r in ranks]), y.detach(), atol=1e-5)
    assert torch.allclose(torch.cat([r["x_grad"] for r in ranks]), x.grad, atol=1e-5)
    for rank in ranks:
        for got, parameter in zip(rank["grads"], model.parameters()):
            assert torch.allclose(got, parameter.grad, rtol=1e-5, atol=1e-5)
        for key in ("running_mean", "running_var", "num_batches_tracked"):
            assert torch.allclose(rank[key], model[1].state_dict()[key], atol=1e-6), key


def test_cpu_sync_batchnorm_without_a_process_group_is_batchnorm():
    model, images, _ = _batchnorm_problem()
    reference = model(images)
    converted = convert_to_cpu_sync_batchnorm(model)
    assert converted is model and isinstance(model[1], CPUSyncBatchNorm)
    assert torch.equal(model(images), reference)  # no process group: BatchNorm2d's own forward
    assert list(model.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                                        "1.running_var", "1.num_batches_tracked", "2.weight", "2.bias"]  # fmt: skip


def test_epoch_order_is_the_order_single_process_runs_always_had():
    for seed, epoch in ((0, 0), (0, 3), (7, 1)):
        generator = torch.Generator().manual_seed(seed * 100003 + epoch)
        loader = DataLoader(list(range(11)), batch_size=11, shuffle=True, generator=generator)
        assert epoch_order(11, seed, epoch) == next(iter(loader)).tolist()
    assert epoch_order(11, 0, 0) != epoch_order(11, 0, 1)


def test_ranks_take_strided_shares_of_every_global_batch():
    order = epoch_order(5, seed=2, epoch=4)
    shares = []
    for rank in range(2):
        sampler = EpochShardSampler(5, seed=2, rank=rank, world_size=2)
        sampler.set_epoch(4)
        shares.append(list(sampler))
    # Padded like DistributedSampler: 5 samples on 2 ranks -> 6 positions, the 6th repeats the first.
    assert shares[0] == [(4, order[0]), (4, order[2]), (4, order[4])]
    assert shares[1] == [(4, order[1]), (4, order[3]), (4, order[0])]
    # Global batch 4 on 2 ranks (2 each): step k of both ranks together is step k of one process.
    order = epoch_order(12, seed=0, epoch=1)
    ranks = [EpochShardSampler(12, seed=0, rank=r, world_size=2) for r in range(2)]
    for sampler in ranks:
        sampler.set_epoch(1)
    per_rank = [[index for _, index in sampler] for sampler in ranks]
    for step in range(3):
        together = per_rank[0][2 * step : 2 * step + 2] + per_rank[1][2 * step : 2 * step + 2]
        assert sorted(together) == sorted(order[4 * step : 4 * step + 4])


def test_global_batch_must_split_evenly_over_ranks():
    assert per_rank_batch(8, 2) == 4
    with pytest.raises(EdgeKDError, match="--batch 6 is the global batch and must be divisible by the 4 ranks"):
        per_rank_batch(6, 4)


def test_worker_processes_give_the_same_batches_as_the_main_process(tiny_kitti):
    # DataLoader workers run torch with one thread, and so does the main process here (`one_thread`): the
    # photometric augmentation's image.mean() rounds differently (~1e-5) when torch splits the sum over threads.
    assert torch.get_num_threads() == 1
    data = load_dataset(tiny_kitti, "train")
    batches = {}
    for workers in (0, 2):
        samples = DetectionDataset(data, (64, 160), AugmentConfig(), seed=5, cache=workers == 0)
        loader = make_train_loader(samples, 4, seed=5, workers=workers)
        assert loader.persistent_workers == (workers > 0)
        batches[workers] = []
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)
            batches[workers] += [(images, targets) for images, targets, _, _ in loader]
    assert len(batches[0]) == len(batches[2]) == 6
    for (images_a, targets_a), (images_b, targets_b) in zip(batches[0], batches[2]):
        assert torch.equal(images_a, images_b)
        for a, b in zip(targets_a, targets_b):
            assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["labels"], b["labels"])
    # The epoch reaches the persistent workers: epoch 1 augments differently from epoch 0.
    first_epoch = torch.cat([images for images, _ in batches[2][:3]])
    second_epoch = torch.cat([images for images, _ in batches[2][3:]])
    assert not torch.equal(first_epoch, second_epoch)


def test_amp_modes_resolve_per_device(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert resolve_amp("auto", cpu) == "off"
    assert resolve_amp("bf16", cpu) == "bf16"
    with pytest.raises(EdgeKDError, match="--amp fp16 needs a CUDA device"):
        resolve_amp("fp16", cpu)
    with pytest.raises(EdgeKDError, match="--amp fp32: expected one of auto, off, bf16, fp16"):
        resolve_amp("fp32", cpu)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_amp("auto", cuda) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_amp("auto", cuda) == "fp16"
    with pytest.raises(EdgeKDError, match="no bf16 support"):
        resolve_amp("bf16", cuda)
    assert not grad_scaler("bf16").is_enabled() and not grad_scaler("off").is_enabled()  # fp16's needs CUDA


def test_a_bf16_step_trains_on_cpu(tiny_kitti):
    data = load_dataset(tiny_kitti, "train")
    torch.manual_seed(0)
    detector = build_detector(DetectorConfig("retinanet_mobilenet_v3_lite", data.classes, (64, 160)))
    options = TrainOptions(batch_size=2, device="cpu", amp="bf16", quiet=True)
    trainer = Trainer(DetectionObjective(detector), data, data, Path("unused"), options)
    before = [p.detach().clone() for p in detector.parameters()]
    trainer.objective.train()
    images, targets, _, _ = next(iter(trainer.train_loader))
    parts = trainer.step(images, targets, StepInfo(0, 0, 1))
    assert trainer.amp == "bf16" and not trainer.scaler.is_enabled()
    assert all(math.isfinite(value) for value in parts.values()) and parts["loss"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, detector.parameters()))
