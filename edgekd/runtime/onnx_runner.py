"""Run an exported ONNX model with ONNX Runtime (CPU by default; any installed execution provider on request)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgekd.errors import EdgeKDError


class OnnxRunner:
    """An ONNX Runtime session returning outputs by name."""

    def __init__(
        self,
        path: str | Path | bytes,
        threads: int | None = None,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> None:
        """`path` is a model file or a serialized model; `threads` sets ONNX Runtime's intra-op threads."""
        import onnxruntime as ort

        missing = [p for p in providers if p not in ort.get_available_providers()]
        if missing:
            raise EdgeKDError(
                f"ONNX Runtime provider(s) {', '.join(missing)} not available; installed: "
                + ", ".join(ort.get_available_providers())
            )
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        source = path if isinstance(path, bytes) else str(path)
        try:
            self.session = ort.InferenceSession(source, sess_options=options, providers=list(providers))
        except Exception as error:  # onnxruntime raises its own exception types for unloadable models
            if isinstance(path, bytes):
                raise EdgeKDError(f"ONNX Runtime cannot load the in-memory model: {error}") from None
            raise EdgeKDError(
                f"{path}: ONNX Runtime cannot load it (truncated or not an ONNX model?): {error}"
            ) from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [output.name for output in self.session.get_outputs()]

    def io_shapes(self) -> tuple[dict[str, list], dict[str, list]]:
        """Input and output shapes by name (symbolic dimensions as names or None)."""
        return (
            {value.name: list(value.shape) for value in self.session.get_inputs()},
            {value.name: list(value.shape) for value in self.session.get_outputs()},
        )

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.output_names, {self.input_name: np.ascontiguousarray(images, np.float32)})
        return dict(zip(self.output_names, outputs))
