"""Prototype Generation Module (PGM) of global-knowledge KD, as pure tensor functions.

Tang, Zhang, Cheng, Lu, Xu, Niu, He, "Distilling Object Detectors With Global Knowledge", ECCV 2022,
arXiv:2210.09022. Equation numbers not available (paper body not retrieved); the algorithm is the official
code's (hikvision-research/DAVAR-Lab-ML, `PrototypeGenerationModule`), restated in docs/kd/global.md eqs. (1)-(6):
instance features (GAP inside the box), L2 normalisation, a density filter, and a joint (teacher + student)
matching pursuit whose selected instances' raw features become the prototypes of one class at one level.

`GlobalKDLoss.on_epoch_start` drives the schedule (which images, every `pgm_every` epochs, teacher features
cached once): it filters candidates with `pgm_candidates`, draws up to `pgm_max_samples` images per class with
`sample_images_per_class`, pools instance features with `batch_instance_features`, and hands them to
`GlobalKDLoss.fit_prototypes`, which calls `generate_prototypes` per class and level.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from edgekd.errors import EdgeKDError


def instance_features(feat_map: Tensor, boxes: Tensor, stride: int) -> Tensor:
    """Mean of a (C, H, W) map inside each box -> (N, C) (the reference's GAP over the instance region).

    Cells [int(y1/s), int(y2/s)] x [int(x1/s), int(x2/s)], inclusive ends, clipped to the map (at least one
    cell). Computed with a summed-area table (in float64, so the differences of large prefix sums stay exact)
    instead of a loop over boxes; torchvision's roi_align would bilinearly resample the region, not average
    exactly these cells.
    """
    channels, height, width = feat_map.shape
    if boxes.shape[0] == 0:
        return feat_map.new_zeros(0, channels)
    cells = (boxes.detach().to(feat_map.device).double() / stride).floor().long()
    c0 = cells[:, 0].clamp(0, width - 1)
    r0 = cells[:, 1].clamp(0, height - 1)
    c1 = torch.maximum(cells[:, 2].clamp(0, width - 1), c0)
    r1 = torch.maximum(cells[:, 3].clamp(0, height - 1), r0)
    table = F.pad(feat_map.double().cumsum(1).cumsum(2), (1, 0, 1, 0))  # (C, H+1, W+1)
    sums = table[:, r1 + 1, c1 + 1] - table[:, r0, c1 + 1] - table[:, r1 + 1, c0] + table[:, r0, c0]
    area = ((r1 - r0 + 1) * (c1 - c0 + 1)).double()
    return (sums / area).t().to(feat_map.dtype)


def batch_instance_features(feats: Sequence[Tensor], boxes: Sequence[Tensor], strides: Sequence[int]) -> list[Tensor]:
    """Instance features of every image's boxes at every level: per level (sum_i N_i, C_l), images in order."""
    return [
        torch.cat([instance_features(level[b], boxes[b], stride) for b in range(level.shape[0])])
        for level, stride in zip(feats, strides, strict=True)
    ]


def pgm_candidates(boxes: Tensor, min_size: float = 30.0) -> Tensor:
    """Boxes wide and tall enough (strictly > min_size pixels) to be prototype candidates -> bool (N,)."""
    return ((boxes[:, 2] - boxes[:, 0]) > min_size) & ((boxes[:, 3] - boxes[:, 1]) > min_size)


def sample_images_per_class(
    image_labels: Sequence[Tensor], num_classes: int, max_images: int, seed: int = 0
) -> list[Tensor]:
    """Which images the PGM reads for each class (reference: up to 800 random images per class): for class c, up
    to `max_images` images drawn uniformly without replacement among those whose candidate labels
    `image_labels[i]` include c, with one torch.Generator seeded by `seed` (classes drawn in order) -> per class
    the sorted image indices (int64); all holders of a class when there are at most `max_images`."""
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for class_index in range(num_classes):
        holders = [i for i, labels in enumerate(image_labels) if bool((labels == class_index).any())]
        picked = torch.tensor(holders, dtype=torch.long)
        if picked.numel() > max_images:
            picked = picked[torch.randperm(picked.numel(), generator=generator)[:max_images]].sort().values
        chosen.append(picked)
    return chosen


def assign_levels(boxes: Tensor, num_levels: int, canonical: float = 56.0) -> Tensor:
    """FPN level per box: clamp(floor(log2(sqrt(w h) / canonical + 1e-6)), 0, L-1) -> int64 (N,).

    56 is the reference's value for Faster R-CNN with P2 as level 0 (< 112 px -> P2). `GlobalKDLoss` passes
    4 * (finest stride) by default instead (see its docstring).
    """
    wh = ((boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)).float()
    levels = torch.floor(torch.log2(wh.sqrt() / canonical + 1e-6))
    return levels.clamp(0, num_levels - 1).long()


def _density(normed: Tensor, bandwidth: float) -> Tensor:
    distance = 1.0 - normed @ normed.t()
    return torch.exp(-((distance / bandwidth) ** 2)).sum(dim=1)


def density_keep(fs: Tensor, ft: Tensor, bandwidth: float = 0.1, quantile: float = 0.4) -> Tensor:
    """Candidates dense in both spaces -> bool (N,) (docs/kd/global.md eq. (3)).

    rho_i = sum_j exp(-((1 - cos_ij) / bandwidth)^2); keep rho_i > rho_(floor(quantile N)) (ascending, strict)
    in the student AND the teacher space. Tie guard (edgekd): when nothing survives (e.g. all densities
    equal), keep every candidate instead of the reference's crash.
    """
    if fs.shape[0] != ft.shape[0]:
        raise EdgeKDError(f"global PGM: {fs.shape[0]} student vs {ft.shape[0]} teacher instance features")
    if fs.shape[0] == 0:
        return torch.zeros(0, dtype=torch.bool, device=fs.device)
    keep = torch.ones(fs.shape[0], dtype=torch.bool, device=fs.device)
    for feats in (fs, ft):
        rho = _density(F.normalize(feats.double(), dim=1), bandwidth)
        cut = rho.sort().values[int(fs.shape[0] * quantile)]
        keep &= rho > cut
    return keep if keep.any() else torch.ones_like(keep)


def matching_pursuit(
    fs: Tensor, ft: Tensor, k: int = 10, alpha: float = 10.0, candidates: Tensor | None = None
) -> Tensor:
    """Joint matching pursuit over teacher and student spaces -> selected row indices (int64, in pick order).

    Features are L2-normalised; `candidates` (bool (N,), default all) are the allowed atoms, all N instances
    are approximated. Each of `k` rounds picks the atom minimising
    E = ||R_s - p_s w_s||^2 + ||R_t - p_t w_t||^2 + alpha ||w_s - w_t||^2 with the closed-form coupled
    coefficients w_s = (alpha(a+b) + a)/(1+2 alpha), w_t = (alpha(a+b) + b)/(1+2 alpha), a = p_s^T R_s,
    b = p_t^T R_t, then removes p w from the residuals (docs/kd/global.md eqs. (4)-(5)). E is expanded
    analytically, (||R||^2 - 2 w.a + ||p||^2 ||w||^2 per space), which equals the reference's value without its
    (atoms x dims x instances) tensor. The reference may pick an atom twice; repeats are dropped here, so
    fewer than k indices can come back.
    """
    if fs.shape[0] != ft.shape[0]:
        raise EdgeKDError(f"global PGM: {fs.shape[0]} student vs {ft.shape[0]} teacher instance features")
    if fs.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=fs.device)
    rs = F.normalize(fs.double(), dim=1).t()  # (Ds, N) residuals
    rt = F.normalize(ft.double(), dim=1).t()
    allowed = torch.arange(fs.shape[0], device=fs.device)
    if candidates is not None:
        allowed = allowed[candidates.to(fs.device)]
    ps, pt = rs[:, allowed].clone(), rt[:, allowed].clone()  # atoms (D, K)
    ps_norm2, pt_norm2 = (ps * ps).sum(0), (pt * pt).sum(0)  # (K,)
    picked: list[int] = []
    for _ in range(k):
        a, b = ps.t() @ rs, pt.t() @ rt  # (K, N)
        ws = (alpha * (a + b) + a) / (1 + 2 * alpha)
        wt = (alpha * (a + b) + b) / (1 + 2 * alpha)
        error = (
            (rs * rs).sum()
            - 2 * (ws * a).sum(1)
            + ps_norm2 * (ws * ws).sum(1)
            + (rt * rt).sum()
            - 2 * (wt * b).sum(1)
            + pt_norm2 * (wt * wt).sum(1)
            + alpha * ((ws - wt) ** 2).sum(1)
        )
        best = int(torch.argmin(error))
        picked.append(int(allowed[best]))
        rs = rs - ps[:, best : best + 1] @ ws[best : best + 1]
        rt = rt - pt[:, best : best + 1] @ wt[best : best + 1]
    return torch.tensor(list(dict.fromkeys(picked)), dtype=torch.long, device=fs.device)


def generate_prototypes(
    fs: Tensor, ft: Tensor, k: int = 10, alpha: float = 10.0, bandwidth: float = 0.1, quantile: float = 0.4
) -> tuple[Tensor, Tensor]:
    """Prototypes of one class at one level: the raw (un-normalised) student and teacher features of the
    instances chosen by `density_keep` + `matching_pursuit` -> ((k', Cs), (k', Ct)), k' <= k."""
    keep = density_keep(fs, ft, bandwidth, quantile)
    chosen = matching_pursuit(fs, ft, k, alpha, candidates=keep)
    return fs[chosen], ft[chosen]
