"""The queued ONNX Runtime engine: model import, decode loop, batching, providers."""
