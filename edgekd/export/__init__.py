"""Export: ONNX (NMS none | onnx | trt-plugin), INT8 QDQ, TensorRT engines, their metadata and parity reports.

Entry point: `edgekd.export.run.export_checkpoint`. The metadata format lives in `edgekd.runtime.metadata`, where
the torch-free runtime reads it; the modules here import torch, onnx, onnxruntime or tensorrt lazily where needed.
"""

from edgekd._callable_package import make_callable

make_callable(__name__)
