"""Pruning (magnitude and filter) and quantization helpers; host side, TensorFlow imported lazily."""
