"""What a training step minimises: the detector's own losses, or (in distill) those plus KD losses."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from edgekd.models.detector import Detector, Targets


@dataclass
class StepInfo:
    """Where training stands, for losses with warm-ups or attenuation."""

    step: int
    epoch: int
    max_epochs: int


class DetectionObjective(nn.Module):
    """Plain supervised training: the sum of the detector's losses."""

    def __init__(self, detector: Detector) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: Tensor, targets: Targets, info: StepInfo) -> tuple[Tensor, dict[str, float]]:
        features = self.detector.features(self.detector.preprocess(images))
        losses = self.detector.loss(self.detector.head(features), features, targets)
        total = sum(losses.values())
        return total, {name: float(value.detach()) for name, value in losses.items()}

    def trainable_modules(self) -> dict[str, nn.Module]:
        """Children holding trainable parameters: what data-parallel training replicates and keeps in sync (the
        detector, KD adaptation layers; never a frozen teacher)."""
        return {name: m for name, m in self.named_children() if any(p.requires_grad for p in m.parameters())}

    def on_epoch_start(self, epoch: int) -> None:
        """Hook for objectives that refresh state between epochs (global KD prototypes)."""

    def extra_state(self) -> dict:
        """Trainable state beyond the detector (KD adaptation layers), saved in last.pt for resume."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        """Restore what `extra_state` returned."""
