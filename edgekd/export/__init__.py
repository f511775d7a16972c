"""Export: ONNX (NMS none | onnx | trt-plugin), INT8 QDQ, TensorRT engines, metadata and parity reports.

Entry point: `edgekd.export.run.export_checkpoint`. `metadata` is torch-free (the runtime reads it on devices
without torch); the other modules import torch, onnx, onnxruntime or tensorrt lazily where they need them.
"""
