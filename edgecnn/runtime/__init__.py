"""Device-side runtime: load an artifact, preprocess, run, postprocess (never TensorFlow).

    from edgecnn.runtime import Runner
    r = Runner("build/digits_cnn")               # int8 TFLite by default
    r.classify(frame, top_k=3)                    # [Prediction(index, label, score), ...]
    r.predict_batch(x_uint8_nhwc)                 # (N, classes) float32 probabilities

Install on a device: `pip install edgecnn[device]` (numpy, Pillow, ai-edge-litert,
onnxruntime). Backends, in the order `backend="auto"` tries them for a .tflite:
  * litert          - `ai-edge-litert`, the TFLite interpreter as its own wheel
                      (Linux x86-64/aarch64, macOS), works with numpy 2;
  * tflite_runtime  - `tflite-runtime` 2.14, its last release, for boards without a
                      LiteRT wheel. It is built against numpy 1.x and needs
                      `numpy<2` (`pip install edgecnn[tflite-runtime]`); with numpy 2
                      the runtime refuses it with a one-line error naming both versions.
                      It also cannot load dynamic-range models made by TF 2.21;
  * edgetpu         - LiteRT/tflite-runtime with the `libedgetpu.so.1` delegate
                      (`sudo apt-get install libedgetpu1-std` from Coral's apt repo).
                      Asked for explicitly, a missing delegate is an error; for an
                      Edge TPU artifact under "auto" it warns and runs the plain int8
                      model on the CPU;
  * onnxruntime     - for .onnx artifacts.
"""

from edgecnn.runtime.preprocess import Prediction, dequantize, top_k
from edgecnn.runtime.runner import Runner, resolve, select_artifact

__all__ = [
    "Prediction",
    "Runner",
    "dequantize",
    "resolve",
    "select_artifact",
    "top_k",
]
