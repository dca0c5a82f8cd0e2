"""edgecnn: Keras image classifiers to embedded hardware.

The package has two sides. Host modules (data, zoo, train, optimize, export,
parity, bench orchestration) import TensorFlow lazily; device modules
(runtime, daemon, manifest, errors, fsutil) never do.
"""

__version__ = "0.1.0"
