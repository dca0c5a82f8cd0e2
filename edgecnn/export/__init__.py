"""Exporters: TFLite, ONNX and the Edge TPU compatibility check; host side, imports lazily."""
